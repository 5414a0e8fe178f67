package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/s3/s3test"
)

// S3 tests: the CLI against a real S3 service (the versitygw that s3test
// starts, or the one SEEDSHIP_TEST_S3_* names), as an operator would use it:
// credentials and endpoint from AWS_* variables (or --endpoint), images at
// s3://bucket/prefix. They set process-wide environment variables with
// t.Setenv, so none of them runs in parallel.

// s3ImgFlags make small images with many segments.
var s3ImgFlags = []string{"--chunk-size", "256KiB", "--segment-size", "1MiB"}

const s3Chunk = 256 * kib

// s3Env is one test's S3 setup: the service, a fresh bucket, a minio client
// to look behind the CLI's back, and the AWS_* environment the CLI reads.
type s3Env struct {
	srv    *s3test.Service
	bucket string
	mc     *minio.Client
}

func newS3Env(t *testing.T) *s3Env {
	t.Helper()
	srv := s3test.Server(t)
	e := &s3Env{srv: srv, bucket: srv.NewBucket(t), mc: srv.Client(t)}
	for _, k := range []string{"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3",
		"AWS_SHARED_CREDENTIALS_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_WEB_IDENTITY_TOKEN_FILE"} {
		t.Setenv(k, "")
	}
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	t.Setenv("AWS_REGION", srv.Region)
	t.Setenv("AWS_ENDPOINT_URL", srv.Endpoint)
	return e
}

func (e *s3Env) url(prefix string) string { return "s3://" + e.bucket + "/" + prefix }

// objects maps the keys under prefix (relative to it) to their sizes.
func (e *s3Env) objects(t *testing.T, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	p := ""
	if prefix != "" {
		p = prefix + "/"
	}
	for o := range e.mc.ListObjects(t.Context(), e.bucket, minio.ListObjectsOptions{Prefix: p, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("listing s3://%s/%s: %v", e.bucket, p, o.Err)
		}
		out[strings.TrimPrefix(o.Key, p)] = o.Size
	}
	return out
}

func (e *s3Env) get(t *testing.T, prefix, key string) []byte {
	t.Helper()
	o, err := e.mc.GetObject(t.Context(), e.bucket, prefix+"/"+key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s/%s: %v", prefix, key, err)
	}
	defer o.Close()
	b, err := io.ReadAll(o)
	if err != nil {
		t.Fatalf("get %s/%s: %v", prefix, key, err)
	}
	return b
}

func (e *s3Env) exists(t *testing.T, prefix, key string) bool {
	t.Helper()
	_, err := e.mc.StatObject(t.Context(), e.bucket, prefix+"/"+key, minio.StatObjectOptions{})
	if err == nil {
		return true
	}
	if minio.ToErrorResponse(err).StatusCode != http.StatusNotFound {
		t.Fatalf("stat %s/%s: %v", prefix, key, err)
	}
	return false
}

func (e *s3Env) put(t *testing.T, prefix, key string, b []byte) {
	t.Helper()
	_, err := e.mc.PutObject(t.Context(), e.bucket, prefix+"/"+key, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{})
	if err != nil {
		t.Fatalf("put %s/%s: %v", prefix, key, err)
	}
}

func (e *s3Env) remove(t *testing.T, prefix, key string) {
	t.Helper()
	if err := e.mc.RemoveObject(t.Context(), e.bucket, prefix+"/"+key, minio.RemoveObjectOptions{}); err != nil {
		t.Fatalf("remove %s/%s: %v", prefix, key, err)
	}
}

// tree maps every key under prefix to its content, like treeOf for a
// directory.
func (e *s3Env) tree(t *testing.T, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k := range e.objects(t, prefix) {
		out[k] = string(e.get(t, prefix, k))
	}
	return out
}

// s3SourceData is nchunks chunks of 256 KiB, mostly random (so that they
// fill many 1 MiB segments), with zero and text chunks mixed in, and a short
// random tail.
func s3SourceData(seed byte, nchunks, tail int) []byte {
	var out []byte
	for i := range nchunks {
		switch {
		case i%5 == 1:
			out = append(out, make([]byte, s3Chunk)...)
		case i%7 == 3:
			out = append(out, textBytes(s3Chunk)...)
		default:
			out = append(out, randBytes(seed+byte(i), s3Chunk)...)
		}
	}
	return append(out, randBytes(seed+100, tail)...)
}

// s3Source writes a source file and returns its path and bytes.
func s3Source(t *testing.T, seed byte, nchunks, tail int) (string, []byte) {
	t.Helper()
	data := s3SourceData(seed, nchunks, tail)
	return writeFile(t, filepath.Join(t.TempDir(), "source.img"), data), data
}

type s3CaptureJSON struct {
	Dest           string `json:"dest"`
	Size           int64  `json:"size"`
	Chunks         uint64 `json:"chunks"`
	ZeroChunks     uint64 `json:"zero_chunks"`
	StoredBytes    int64  `json:"stored_bytes"`
	Segments       int    `json:"segments"`
	Parity         string `json:"parity"`
	SHA256         string `json:"sha256"`
	ManifestSHA256 string `json:"manifest_sha256"`
	ResumedAt      int64  `json:"resumed_at"`
	SourceRead     *int64 `json:"source_bytes_read"`
}

type s3InfoJSON struct {
	Image          string `json:"image"`
	Size           int64  `json:"size"`
	Chunks         uint64 `json:"chunks"`
	ZeroChunks     uint64 `json:"zero_chunks"`
	StoredBytes    int64  `json:"stored_bytes"`
	Segments       int    `json:"segments"`
	Parity         string `json:"parity"`
	ParitySegments int    `json:"parity_segments"`
	SHA256         string `json:"sha256"`
	ManifestSHA256 string `json:"manifest_sha256"`
}

type s3VerifyJSON struct {
	OK         bool              `json:"ok"`
	ChunksOK   uint64            `json:"chunks_ok"`
	ZeroChunks uint64            `json:"zero_chunks"`
	Repaired   []string          `json:"repaired"`
	Findings   []json.RawMessage `json:"findings"`
}

type s3RestoreJSON struct {
	Size          int64    `json:"size"`
	ChunksWritten uint64   `json:"chunks_written"`
	SHA256        string   `json:"sha256"`
	Rebuilt       []uint64 `json:"rebuilt_from_parity"`
	Fetched       []uint64 `json:"fetched_from_fallback"`
}

type s3CopyJSON struct {
	Copied  []string `json:"copied"`
	Skipped []string `json:"skipped"`
	Damaged []string `json:"damaged"`
	Bytes   int64    `json:"bytes"`
}

// s3Cmp runs cmp on two files.
func s3Cmp(t *testing.T, a, b string) {
	t.Helper()
	if out, err := exec.Command("cmp", a, b).CombinedOutput(); err != nil {
		t.Errorf("cmp %s %s: %v %s", a, b, err, out)
	}
}

// s3Restore restores img (with extra flags) onto a new file, checks it
// against src with cmp and returns restore's JSON.
func s3Restore(t *testing.T, img, src string, extra ...string) s3RestoreJSON {
	t.Helper()
	target := filepath.Join(t.TempDir(), "target.img")
	var out s3RestoreJSON
	decodeJSON(t, must(t, append(append([]string{"restore", "--json"}, extra...), img, target)...), &out)
	s3Cmp(t, src, target)
	return out
}

// s3Verify verifies img (with extra flags) and checks that it is intact.
func s3Verify(t *testing.T, img string, chunks uint64, extra ...string) s3VerifyJSON {
	t.Helper()
	var out s3VerifyJSON
	decodeJSON(t, must(t, append(append([]string{"verify", "--json"}, extra...), img)...), &out)
	if !out.OK || len(out.Findings) != 0 || out.ChunksOK+out.ZeroChunks != chunks {
		t.Errorf("verify %s: ok %v, %d findings, %d+%d chunks, want ok and %d chunks", img, out.OK, len(out.Findings), out.ChunksOK, out.ZeroChunks, chunks)
	}
	return out
}

// s3Sizes maps a directory tree to file sizes.
func s3Sizes(tree map[string]string) map[string]int64 {
	out := map[string]int64{}
	for k, v := range tree {
		out[k] = int64(len(v))
	}
	return out
}

func s3Manifest(t *testing.T, e *s3Env, prefix string) *format.Manifest {
	t.Helper()
	m, err := format.DecodeManifest(e.get(t, prefix, format.ManifestKey))
	if err != nil {
		t.Fatalf("manifest of %s: %v", e.url(prefix), err)
	}
	return m
}

// s3StoredChunks returns the stored chunks of data segment n.
func s3StoredChunks(m *format.Manifest, n uint32) []uint64 {
	var out []uint64
	for i, c := range m.Chunks {
		if c.Kind == format.KindStored && c.Segment == n {
			out = append(out, uint64(i))
		}
	}
	return out
}

// s3FlipChunk flips a byte in the middle of chunk i's payload in the image
// directory img.
func s3FlipChunk(t *testing.T, img string, m *format.Manifest, i uint64) {
	t.Helper()
	c := m.Chunks[i]
	p := segPath(img, c.Segment)
	b := readFile(t, p)
	off := c.Offset + format.FrameHeaderSize + int64(c.PayloadLen)/2
	b[off] ^= 0x5a
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// ---------------------------------------------------------------------------
// A recording proxy: counts part uploads in flight and checks the S3
// checksum header (x-amz-checksum-crc32c) of every PUT against its body.

type s3PutRecord struct {
	path, query string
	bytes       int
	sum         string // the x-amz-checksum-crc32c header
	sumOK       bool   // it matches the (decoded) body
}

type s3Recorder struct {
	URL       string
	partDelay time.Duration // each part upload is held this long, to make overlap visible
	rp        *httputil.ReverseProxy

	mu            sync.Mutex
	inflight, max int // part uploads
	puts          []s3PutRecord
}

func newS3Recorder(t *testing.T, target string, partDelay time.Duration) *s3Recorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &s3Recorder{partDelay: partDelay, rp: httputil.NewSingleHostReverseProxy(u)}
	r.rp.ErrorLog = nil
	srv := &http.Server{Handler: r}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }() // ends with http.ErrServerClosed at cleanup
	t.Cleanup(func() { srv.Close() })
	r.URL = "http://" + l.Addr().String()
	return r
}

func (r *s3Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodPut && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		payload := body
		if strings.HasPrefix(req.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
			payload = s3DecodeChunked(body)
		}
		var sum [4]byte
		binary.BigEndian.PutUint32(sum[:], crc32.Checksum(payload, crc32.MakeTable(crc32.Castagnoli)))
		rec := s3PutRecord{path: req.URL.Path, query: req.URL.RawQuery, bytes: len(payload), sum: req.Header.Get("X-Amz-Checksum-Crc32c")}
		rec.sumOK = rec.sum == base64.StdEncoding.EncodeToString(sum[:])
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
		part := req.URL.Query().Has("partNumber")
		r.mu.Lock()
		r.puts = append(r.puts, rec)
		if part {
			r.inflight++
			r.max = max(r.max, r.inflight)
		}
		r.mu.Unlock()
		if part {
			defer func() { r.mu.Lock(); r.inflight--; r.mu.Unlock() }()
			time.Sleep(r.partDelay)
		}
	}
	r.rp.ServeHTTP(w, req)
}

func (r *s3Recorder) records() ([]s3PutRecord, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.puts), r.max
}

// checkSums fails unless every PUT with a body carried a correct CRC-32C
// checksum header, which the server verifies before storing.
func (r *s3Recorder) checkSums(t *testing.T) []s3PutRecord {
	t.Helper()
	puts, _ := r.records()
	if len(puts) == 0 {
		t.Fatal("the recording proxy saw no PUT")
	}
	for _, p := range puts {
		if p.bytes > 0 && !p.sumOK {
			t.Errorf("PUT %s?%s (%d bytes): x-amz-checksum-crc32c %q is missing or does not match the body", p.path, p.query, p.bytes, p.sum)
		}
	}
	return puts
}

// s3DecodeChunked decodes an aws-chunked body (hex size[;chunk-signature=..]
// CRLF data CRLF ..., ending with a zero-size chunk and optional trailers).
func s3DecodeChunked(b []byte) []byte {
	var out []byte
	br := bufio.NewReader(bytes.NewReader(b))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return out
		}
		hexSize, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		n, err := strconv.ParseInt(hexSize, 16, 64)
		if err != nil || n == 0 {
			return out
		}
		chunk := make([]byte, n)
		if _, err := io.ReadFull(br, chunk); err != nil {
			return out
		}
		out = append(out, chunk...)
		_, _ = br.ReadString('\n') // CRLF after the data; a short body shows in the decoded bytes
	}
}

// ---------------------------------------------------------------------------

// TestS3RoundTrip captures into s3://, then runs info, verify, verify
// --device and restore straight from the bucket; the restored file equals
// the source (cmp), the bucket holds exactly the keys and sizes that the
// same capture writes into a directory, every PUT carries a correct
// CRC-32C checksum header, and nothing is staged in a local temporary directory.
func TestS3RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		flags  []string
		parity string
	}{
		{"plain", nil, ""},
		{"parity 4+2", []string{"--parity", "4+2"}, "4+2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newS3Env(t)
			rec := newS3Recorder(t, e.srv.Endpoint, 0)
			src, data := s3Source(t, 1, 34, 12345)
			chunks := uint64((len(data) + s3Chunk - 1) / s3Chunk)
			flags := append(slices.Clone(s3ImgFlags), tc.flags...)
			prefix := "seeds/site-a/sdb1"
			url := e.url(prefix)
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)

			var c s3CaptureJSON
			decodeJSON(t, must(t, append(append([]string{"capture", "--json", "--endpoint", rec.URL, "--jobs", "3"}, flags...), src, url)...), &c)
			if c.Size != int64(len(data)) || c.SHA256 != shaHex(data) || c.Chunks != chunks || c.Segments < 6 || c.Parity != tc.parity {
				t.Errorf("capture --json: %+v; want size %d, sha256 %s, %d chunks, >= 6 segments, parity %q", c, len(data), shaHex(data), chunks, tc.parity)
			}
			if c.SourceRead == nil || *c.SourceRead != int64(len(data)) || c.ResumedAt != 0 {
				t.Errorf("capture --json: source_bytes_read %v, resumed_at %d; want %d and 0", c.SourceRead, c.ResumedAt, len(data))
			}
			if c.Dest != url {
				t.Errorf("capture --json dest %q, want %q", c.Dest, url)
			}
			puts := rec.checkSums(t)
			if len(puts) < c.Segments+1 {
				t.Errorf("the proxy saw %d PUTs, want at least one per segment (%d) and the manifest", len(puts), c.Segments)
			}

			// Same keys and sizes as a capture into a directory (spec §2).
			local := captureImage(t, src, flags...)
			// (The manifests differ in their capture times, whose JSON
			// length varies, so only their presence is compared.)
			objs := e.objects(t, prefix)
			want := s3Sizes(treeOf(t, local))
			for k := range want {
				if strings.HasPrefix(k, format.ManifestKey) {
					if _, ok := objs[k]; ok {
						objs[k] = -1
					}
					want[k] = -1
				}
			}
			if !maps.Equal(objs, want) {
				t.Errorf("bucket holds %v,\nwant the directory layout %v", objs, want)
			}
			if _, ok := objs[engine.CheckpointKey]; ok {
				t.Errorf("a finished capture left %s in the bucket", engine.CheckpointKey)
			}

			// info, verify, restore through AWS_ENDPOINT_URL (no flag).
			var info s3InfoJSON
			decodeJSON(t, must(t, "info", "--json", url), &info)
			if info.Size != int64(len(data)) || info.SHA256 != shaHex(data) || info.Chunks != chunks ||
				info.Segments != c.Segments || info.Parity != tc.parity || info.ManifestSHA256 != c.ManifestSHA256 || info.StoredBytes != c.StoredBytes {
				t.Errorf("info --json %+v does not match capture %+v", info, c)
			}
			if tc.parity != "" && info.ParitySegments == 0 {
				t.Errorf("info: no parity segments")
			}
			if r := must(t, "info", url); !strings.Contains(r.stdout, shaHex(data)) {
				t.Errorf("info does not show the sha256: %s", r)
			}
			s3Verify(t, url, chunks)
			out := s3Restore(t, url, src)
			if out.SHA256 != shaHex(data) || out.Size != int64(len(data)) {
				t.Errorf("restore --json %+v", out)
			}
			expect(t, exitOK, "verify", "--device", src, url)
			if left := treeOf(t, tmp); len(left) != 0 {
				t.Errorf("capture/verify/restore through S3 left files in TMPDIR: %v", keys(left))
			}
		})
	}
}

// TestS3CaptureParallelParts captures one segment larger than the part size
// (16 MiB), held back by a proxy that delays each part upload: with --jobs
// 4 several parts are in flight at once, with --jobs 1 only one.
func TestS3CaptureParallelParts(t *testing.T) {
	e := newS3Env(t)
	data := randBytes(77, 40*mib+4321)
	src := writeFile(t, filepath.Join(t.TempDir(), "big.img"), data)
	for _, tc := range []struct {
		jobs string
		ok   func(int) bool
		want string
	}{
		{"4", func(n int) bool { return n >= 2 }, "at least 2"},
		{"1", func(n int) bool { return n == 1 }, "exactly 1"},
	} {
		t.Run("jobs="+tc.jobs, func(t *testing.T) {
			rec := newS3Recorder(t, e.srv.Endpoint, 300*time.Millisecond)
			url := e.url("jobs-" + tc.jobs)
			must(t, "capture", "--quiet", "--endpoint", rec.URL, "--jobs", tc.jobs, "--level", "-1",
				"--chunk-size", "1MiB", "--segment-size", "64MiB", src, url)
			puts, maxInflight := rec.records()
			parts := 0
			for _, p := range puts {
				if strings.Contains(p.query, "partNumber") {
					parts++
				}
			}
			if parts < 3 {
				t.Fatalf("capture of a 40 MiB segment sent %d part uploads, want >= 3 (multipart)", parts)
			}
			if !tc.ok(maxInflight) {
				t.Errorf("--jobs %s: %d part uploads in flight at most, want %s", tc.jobs, maxInflight, tc.want)
			}
			rec.checkSums(t)
			if tc.jobs == "4" {
				s3Restore(t, url, src)
			}
		})
	}
}

// s3FaultImage captures src into prefix through the fault proxy with the
// given faults, which must all be used.
func s3FaultImage(t *testing.T, e *s3Env, src, prefix string, proxy *s3test.Proxy, faults ...s3test.Fault) s3CaptureJSON {
	t.Helper()
	proxy.Reset()
	for _, f := range faults {
		proxy.Inject(f)
	}
	var c s3CaptureJSON
	decodeJSON(t, must(t, append(append([]string{"capture", "--json", "--endpoint", proxy.URL}, s3ImgFlags...), src, e.url(prefix))...), &c)
	if n := proxy.Pending(); n != 0 {
		t.Errorf("%d injected faults were not used: the test did not exercise them", n)
	}
	return c
}

// TestS3Faults: 500/503 bursts and connections dropped mid-body, during
// capture and during restore and verify, are retried and the result is
// exact.
func TestS3Faults(t *testing.T) {
	e := newS3Env(t)
	proxy := s3test.NewProxy(t, e.srv.Endpoint)
	src, data := s3Source(t, 2, 24, 999)
	chunks := uint64((len(data) + s3Chunk - 1) / s3Chunk)

	t.Run("capture 5xx on segments", func(t *testing.T) {
		s3FaultImage(t, e, src, "cap-5xx", proxy,
			s3test.Fault{Kind: s3test.Status, Method: "PUT", Path: "data/00000001.seg", Code: 503, Times: 2},
			s3test.Fault{Kind: s3test.Status, Method: "PUT", Path: "data/00000002.seg", Code: 500},
		)
		s3Verify(t, e.url("cap-5xx"), chunks)
		s3Restore(t, e.url("cap-5xx"), src)
	})
	t.Run("capture 5xx on checkpoint, listing and manifest", func(t *testing.T) {
		s3FaultImage(t, e, src, "cap-meta", proxy,
			s3test.Fault{Kind: s3test.Status, Method: "PUT", Path: engine.CheckpointKey, Code: 503, Times: 2},
			s3test.Fault{Kind: s3test.Status, Method: "PUT", Path: format.ManifestKey, Code: 500},
			s3test.Fault{Kind: s3test.Status, Method: "GET", Query: "list-type", Code: 503},
		)
		s3Verify(t, e.url("cap-meta"), chunks)
	})
	t.Run("capture connection dropped mid-body", func(t *testing.T) {
		s3FaultImage(t, e, src, "cap-drop", proxy,
			s3test.Fault{Kind: s3test.DropRequest, Method: "PUT", Path: "data/00000003.seg", N: 300 * kib},
		)
		s3Verify(t, e.url("cap-drop"), chunks)
		s3Restore(t, e.url("cap-drop"), src)
	})
	t.Run("capture body corrupted in transit", func(t *testing.T) {
		// The server must refuse the damaged body (its CRC-32C, or the
		// chunk signature), and the upload must be sent again.
		s3FaultImage(t, e, src, "cap-corrupt", proxy,
			s3test.Fault{Kind: s3test.CorruptRequest, Method: "PUT", Path: "data/00000002.seg", N: 200 * kib},
		)
		s3Verify(t, e.url("cap-corrupt"), chunks)
	})
	t.Run("capture multipart parts 5xx, dropped, corrupted", func(t *testing.T) {
		big := randBytes(99, 20*mib+77)
		bsrc := writeFile(t, filepath.Join(t.TempDir(), "big.img"), big)
		proxy.Reset()
		for _, f := range []s3test.Fault{
			// At most two failures per part: the store retries a part 3 times.
			{Kind: s3test.Status, Method: "PUT", Query: "partNumber=1", Code: 503},
			{Kind: s3test.CorruptRequest, Method: "PUT", Query: "partNumber=1", N: 5 * mib},
			{Kind: s3test.DropRequest, Method: "PUT", Query: "partNumber=2", N: 1 * mib},
			{Kind: s3test.Status, Method: "PUT", Query: "partNumber=2", Code: 500},
		} {
			proxy.Inject(f)
		}
		url := e.url("cap-parts")
		must(t, "capture", "--quiet", "--endpoint", proxy.URL, "--level", "-1", "--chunk-size", "1MiB", "--segment-size", "64MiB", bsrc, url)
		if n := proxy.Pending(); n != 0 {
			t.Errorf("%d injected faults were not used", n)
		}
		s3Restore(t, url, bsrc)
	})
	t.Run("capture 503 on the first request", func(t *testing.T) {
		s3FaultImage(t, e, src, "cap-open", proxy,
			s3test.Fault{Kind: s3test.Status, Code: 503, Times: 2},
		)
		s3Verify(t, e.url("cap-open"), chunks)
	})

	// A clean image to read through faults.
	url := e.url("clean")
	must(t, append(append([]string{"capture", "--quiet"}, s3ImgFlags...), src, url)...)
	read := func(t *testing.T, faults ...s3test.Fault) {
		t.Helper()
		proxy.Reset()
		for _, f := range faults {
			proxy.Inject(f)
		}
	}
	t.Run("restore 5xx bursts", func(t *testing.T) {
		read(t,
			s3test.Fault{Kind: s3test.Status, Method: "GET", Path: format.ManifestKey, Code: 503, Times: 2},
			s3test.Fault{Kind: s3test.Status, Method: "GET", Path: "data/00000000.seg", Code: 500, Times: 2},
			s3test.Fault{Kind: s3test.Status, Method: "GET", Path: "data/00000004.seg", Code: 503, Times: 3},
		)
		s3Restore(t, url, src, "--endpoint", proxy.URL)
		if n := proxy.Pending(); n != 0 {
			t.Errorf("%d injected faults were not used", n)
		}
	})
	t.Run("restore connection dropped mid-body", func(t *testing.T) {
		read(t,
			s3test.Fault{Kind: s3test.DropResponse, Method: "GET", Path: "data/00000001.seg", N: 100 * kib},
			s3test.Fault{Kind: s3test.DropResponse, Method: "GET", Path: "data/00000003.seg", N: 700 * kib},
		)
		s3Restore(t, url, src, "--endpoint", proxy.URL)
		if n := proxy.Pending(); n != 0 {
			t.Errorf("%d injected faults were not used", n)
		}
	})
	t.Run("copy s3 to dir through faults", func(t *testing.T) {
		read(t,
			s3test.Fault{Kind: s3test.Status, Method: "GET", Path: "data/00000001.seg", Code: 503, Times: 2},
			s3test.Fault{Kind: s3test.DropResponse, Method: "GET", Path: "data/00000004.seg", N: 300 * kib},
		)
		back := filepath.Join(t.TempDir(), "back")
		must(t, "copy", "--quiet", "--endpoint", proxy.URL, url, back)
		if n := proxy.Pending(); n != 0 {
			t.Errorf("%d injected faults were not used", n)
		}
		s3Verify(t, back, chunks)
		if got, want := treeOf(t, back), e.tree(t, "clean"); !mapsEqual(got, want) {
			t.Errorf("copied directory differs from the bucket: %v", diffS3Trees(want, got))
		}
	})
	t.Run("copy dir to s3 through faults", func(t *testing.T) {
		local := captureImage(t, src, s3ImgFlags...)
		read(t,
			s3test.Fault{Kind: s3test.Status, Method: "PUT", Path: "data/00000001.seg", Code: 503, Times: 2},
			s3test.Fault{Kind: s3test.DropRequest, Method: "PUT", Path: "data/00000002.seg", N: 200 * kib},
			s3test.Fault{Kind: s3test.Status, Method: "PUT", Path: format.ManifestKey, Code: 500},
		)
		r := seedshipCtx(context.Background(), "copy", "--quiet", "--endpoint", proxy.URL, local, e.url("copy-faults"))
		if r.code != exitOK {
			t.Errorf("copy through 5xx and a dropped upload: want exit 0 (retried), got %s", r)
		}
		// Whatever happened, copying again completes the image.
		must(t, "copy", "--quiet", local, e.url("copy-faults"))
		if got, want := e.tree(t, "copy-faults"), treeOf(t, local); !mapsEqual(got, want) {
			t.Errorf("bucket differs from the copied directory: %v", diffS3Trees(want, got))
		}
	})
	t.Run("verify and info through faults", func(t *testing.T) {
		read(t,
			s3test.Fault{Kind: s3test.Status, Method: "GET", Path: format.ManifestKey, Code: 500},
			s3test.Fault{Kind: s3test.DropResponse, Method: "GET", Path: "data/00000002.seg", N: 50 * kib},
			s3test.Fault{Kind: s3test.Status, Method: "GET", Path: "data/00000005.seg", Code: 503, Times: 2},
		)
		s3Verify(t, url, chunks, "--endpoint", proxy.URL)
		read(t, s3test.Fault{Kind: s3test.Status, Method: "GET", Path: format.ManifestKey, Code: 503, Times: 2})
		must(t, "info", "--endpoint", proxy.URL, url)
		if n := proxy.Pending(); n != 0 {
			t.Errorf("%d injected faults were not used", n)
		}
	})
}

// s3StartSeedship runs seedship as a separate process: this test binary,
// re-executed with execMainEnv=1 so that TestMain calls main().
func s3StartSeedship(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, <-chan struct{}) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), execMainEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // it may have exited
		<-done
	})
	return cmd, &out, done
}

// s3Checkpoint is the part of capture.ckpt this test reads.
type s3Checkpoint struct {
	Segments  uint32 `json:"segments"`
	Chunks    uint64 `json:"chunks"`
	ChunkSize int    `json:"chunk_size"`
}

// TestS3KillAndResume kills a capture process (SIGKILL) in the middle of
// its upload, once capture.ckpt is in the bucket, and resumes it: the
// resumed capture keeps the stored segments, reads only the rest of the
// source, and the image verifies, restores byte for byte and has the same
// tables as an uninterrupted capture.
func TestS3KillAndResume(t *testing.T) {
	e := newS3Env(t)
	src, data := s3Source(t, 3, 64, 4321) // 16 MiB, ~12 MiB stored
	prefix := "killed"
	url := e.url(prefix)
	cmd, out, exited := s3StartSeedship(t, append(append([]string{"capture", "--quiet", "--bwlimit", "4MiB/s"}, s3ImgFlags...), src, url)...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if e.exists(t, prefix, engine.CheckpointKey) {
			var ck s3Checkpoint
			if err := json.Unmarshal(e.get(t, prefix, engine.CheckpointKey), &ck); err == nil && ck.Segments >= 2 {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("capture ended before it could be killed:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("no %s with 2 segments in the bucket after 30 s:\n%s", engine.CheckpointKey, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	if e.exists(t, prefix, format.ManifestKey) {
		t.Fatalf("the killed capture finished (manifest present): kill it earlier\n%s", out)
	}
	var ck s3Checkpoint
	if err := json.Unmarshal(e.get(t, prefix, engine.CheckpointKey), &ck); err != nil {
		t.Fatal(err)
	}
	kept := map[string]string{}
	for n := range ck.Segments {
		kept[format.DataID(n).Key()] = string(e.get(t, prefix, format.DataID(n).Key()))
	}
	t.Logf("killed after %d stored segment(s), %d chunks", ck.Segments, ck.Chunks)

	// Nothing reads it as an image yet.
	r := expect(t, exitUsage, "verify", url)
	oneLineError(t, r)
	// A fresh capture into it is refused: it holds an interrupted capture.
	r = expect(t, exitUsage, append(append([]string{"capture"}, s3ImgFlags...), src, url)...)
	oneLineError(t, r, "--resume")

	var c s3CaptureJSON
	decodeJSON(t, must(t, "capture", "--resume", "--json", src, url), &c)
	wantAt := int64(ck.Chunks) * s3Chunk
	if c.ResumedAt <= 0 || c.ResumedAt != wantAt {
		t.Errorf("resumed_at %d, want %d (the checkpoint's %d chunks)", c.ResumedAt, wantAt, ck.Chunks)
	}
	if c.SourceRead == nil || *c.SourceRead >= int64(len(data)) || *c.SourceRead != int64(len(data))-c.ResumedAt {
		t.Errorf("source_bytes_read %v, want %d (size %d - resumed_at %d)", c.SourceRead, int64(len(data))-c.ResumedAt, len(data), c.ResumedAt)
	}
	if c.SHA256 != shaHex(data) {
		t.Errorf("resumed capture sha256 %s, want %s", c.SHA256, shaHex(data))
	}
	for k, v := range kept {
		if got := string(e.get(t, prefix, k)); got != v {
			t.Errorf("resume rewrote %s, which was stored and valid", k)
		}
	}
	if e.exists(t, prefix, engine.CheckpointKey) {
		t.Errorf("%s left after the resumed capture finished", engine.CheckpointKey)
	}
	// The killed run's unfinished multipart uploads were aborted.
	for u := range e.mc.ListIncompleteUploads(t.Context(), e.bucket, prefix, true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		t.Errorf("incomplete upload of %s left after resume", u.Key)
	}
	chunks := uint64((len(data) + s3Chunk - 1) / s3Chunk)
	s3Verify(t, url, chunks)
	s3Restore(t, url, src)

	// The same tables as an uninterrupted capture (image IDs differ).
	ref := loadManifest(t, captureImage(t, src, s3ImgFlags...))
	m := s3Manifest(t, e, prefix)
	if !slices.Equal(m.Chunks, ref.Chunks) {
		t.Errorf("the resumed image's chunk table differs from an uninterrupted capture's")
	}
	if len(m.Segments) != len(ref.Segments) {
		t.Fatalf("resumed image has %d segments, uninterrupted %d", len(m.Segments), len(ref.Segments))
	}
	for i := range m.Segments {
		if m.Segments[i].Size != ref.Segments[i].Size || m.Segments[i].Frames != ref.Segments[i].Frames {
			t.Errorf("segment %d: %+v, uninterrupted %+v", i, m.Segments[i], ref.Segments[i])
		}
	}
	if m.Header.SHA256 != ref.Header.SHA256 || m.Header.StoredBytes != ref.Header.StoredBytes || m.Header.ZeroChunks != ref.Header.ZeroChunks {
		t.Errorf("resumed header %+v, uninterrupted %+v", m.Header, ref.Header)
	}
}

// TestS3ResumeAfterNetworkFailure: a capture that fails because the
// service keeps dropping the connection of one segment's upload exits 1
// and prints the capture with --resume, which continues it once the
// network is back.
func TestS3ResumeAfterNetworkFailure(t *testing.T) {
	e := newS3Env(t)
	proxy := s3test.NewProxy(t, e.srv.Endpoint)
	src, data := s3Source(t, 4, 24, 777)
	prefix := "netfail"
	url := e.url(prefix)
	proxy.Inject(s3test.Fault{Kind: s3test.DropRequest, Method: "PUT", Path: "data/00000003.seg", N: 64 * kib, Times: 1000})
	start := time.Now()
	r := seedshipCtx(context.Background(), append(append([]string{"capture", "--endpoint", proxy.URL}, s3ImgFlags...), src, url)...)
	t.Logf("capture through a failing network: exit %d after %v", r.code, time.Since(start).Round(time.Millisecond))
	if r.code != exitRuntime {
		t.Fatalf("want exit %d when the network keeps failing, got %s", exitRuntime, r)
	}
	argv := continueArgs(t, r)
	if first, _, _ := strings.Cut(r.stderr, "\n"); !strings.Contains(first, "data/00000003.seg") {
		t.Errorf("the error does not name the segment that failed: %s", r)
	}
	wantArgv := append(append([]string{"seedship", "capture", "--resume", "--endpoint", proxy.URL}, s3ImgFlags...), src, url)
	if !slices.Equal(argv, wantArgv) {
		t.Errorf("continue with %q, want %q", argv, wantArgv)
	}
	if e.exists(t, prefix, format.ManifestKey) {
		t.Fatal("a failed capture wrote a manifest")
	}
	if !e.exists(t, prefix, engine.CheckpointKey) {
		t.Fatalf("no %s after the failed capture", engine.CheckpointKey)
	}
	// The network is back: the printed command continues the capture.
	proxy.Reset()
	var c s3CaptureJSON
	decodeJSON(t, must(t, slices.Concat([]string{argv[1], "--json"}, argv[2:])...), &c)
	if c.ResumedAt <= 0 || c.SourceRead == nil || *c.SourceRead >= int64(len(data)) {
		t.Errorf("resume: resumed_at %d, source_bytes_read %v; want > 0 and < %d", c.ResumedAt, c.SourceRead, len(data))
	}
	s3Verify(t, url, uint64((len(data)+s3Chunk-1)/s3Chunk))
	s3Restore(t, url, src)
}

// TestS3RestoreAfterNetworkFailure: a restore whose reads of one segment
// keep losing their connection exits 1 and prints the restore with
// --resume, which completes the target once the network is back.
func TestS3RestoreAfterNetworkFailure(t *testing.T) {
	e := newS3Env(t)
	proxy := s3test.NewProxy(t, e.srv.Endpoint)
	src, data := s3Source(t, 6, 24, 555)
	url := e.url("netfail-restore")
	must(t, append(append([]string{"capture", "-q"}, s3ImgFlags...), src, url)...)
	target := filepath.Join(t.TempDir(), "target.img")
	proxy.Inject(s3test.Fault{Kind: s3test.DropResponse, Method: "GET", Path: "data/00000003.seg", N: 64 * kib, Times: 1000})
	r := seedshipCtx(context.Background(), "restore", "--endpoint", proxy.URL, url, target)
	if r.code != exitRuntime {
		t.Fatalf("want exit %d when the network keeps failing, got %s", exitRuntime, r)
	}
	argv := continueArgs(t, r)
	if want := []string{"seedship", "restore", "--resume", "--endpoint", proxy.URL, url, target}; !slices.Equal(argv, want) {
		t.Errorf("continue with %q, want %q", argv, want)
	}
	proxy.Reset()
	must(t, argv[1:]...)
	if !bytes.Equal(readFile(t, target), data) {
		t.Errorf("the continued restore did not restore the source")
	}
}

// TestS3PermanentErrors: bad credentials, a missing bucket and an
// unreachable endpoint give a one-line error and exit 2 within seconds,
// before capture reads the source or writes anything.
func TestS3PermanentErrors(t *testing.T) {
	e := newS3Env(t)
	src, _ := s3Source(t, 5, 12, 100)
	local := captureImage(t, src, s3ImgFlags...)
	good := "good"
	must(t, "copy", "--quiet", local, e.url(good))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	cases := []struct {
		name  string
		env   map[string]string
		url   func(prefix string) string
		names []string
	}{
		{"bad secret key", map[string]string{"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, e.url, []string{e.bucket, "AWS_ACCESS_KEY_ID"}},
		{"unknown access key", map[string]string{"AWS_ACCESS_KEY_ID": "nobody"}, e.url, []string{e.bucket, "AWS_ACCESS_KEY_ID"}},
		{"missing bucket", nil, func(p string) string { return "s3://" + e.bucket + "-missing/" + p }, []string{e.bucket + "-missing", "bucket"}},
		{"unreachable endpoint", map[string]string{"AWS_ENDPOINT_URL": "http://" + closed}, e.url, []string{closed, "unreachable"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			check := func(t *testing.T, args ...string) {
				t.Helper()
				start := time.Now()
				r := expect(t, exitUsage, args...)
				if el := time.Since(start); el > 10*time.Second {
					t.Errorf("seedship %s took %v to fail, want a few seconds", strings.Join(args, " "), el)
				}
				oneLineError(t, r, tc.names...)
			}
			before := e.objects(t, "")
			check(t, append(append([]string{"capture"}, s3ImgFlags...), src, tc.url("new"))...)
			check(t, "capture", "--resume", src, tc.url("new"))
			check(t, "capture", "--json", src, tc.url("new"))
			if after := e.objects(t, ""); !maps.Equal(before, after) {
				t.Errorf("a refused capture changed the bucket: %v, was %v", after, before)
			}
			check(t, "info", tc.url(good))
			check(t, "verify", tc.url(good))
			target := filepath.Join(t.TempDir(), "target.img")
			check(t, "restore", tc.url(good), target)
			absent(t, target, "a refused restore must not create its target")
			check(t, "copy", local, tc.url("copy"))
			back := filepath.Join(t.TempDir(), "back")
			check(t, "copy", tc.url(good), back)
			absent(t, back, "a refused copy must not create its destination")
			// A fallback that cannot be reached is refused up front too.
			img := copyImage(t, local)
			tree := treeOf(t, img)
			check(t, "restore", "--fallback", tc.url(good), img, target)
			absent(t, target, "a refused restore must not create its target")
			check(t, "verify", "--repair", "--fallback", tc.url(good), img)
			if !mapsEqual(tree, treeOf(t, img)) {
				t.Errorf("a refused verify --repair changed the image")
			}
			if after := e.objects(t, ""); !maps.Equal(before, after) {
				t.Errorf("refused commands changed the bucket")
			}
		})
	}
}

// s3Client is a second S3 tool, configured for the test service by its
// environment.
type s3Client struct {
	name             string
	download, upload func(e *s3Env, prefix, dir string) []string
}

var s3Clients = []s3Client{
	{
		name: "aws",
		download: func(e *s3Env, prefix, dir string) []string {
			return []string{"aws", "--endpoint-url", e.srv.Endpoint, "s3", "cp", "--recursive", "--no-progress", e.url(prefix), dir}
		},
		upload: func(e *s3Env, prefix, dir string) []string {
			return []string{"aws", "--endpoint-url", e.srv.Endpoint, "s3", "sync", "--no-progress", dir, e.url(prefix)}
		},
	},
	{
		name: "rclone",
		download: func(e *s3Env, prefix, dir string) []string {
			return []string{"rclone", "copy", "seedshiptest:" + e.bucket + "/" + prefix, dir}
		},
		upload: func(e *s3Env, prefix, dir string) []string {
			return []string{"rclone", "copy", dir, "seedshiptest:" + e.bucket + "/" + prefix}
		},
	},
}

// s3ClientEnv is the environment of a second client: none of the caller's
// AWS or rclone settings (these machines export AWS_CA_BUNDLE, which such
// clients fail to load), the test service's credentials, and an rclone
// remote "seedshiptest" configured by environment variables.
func s3ClientEnv(t *testing.T, e *s3Env) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "RCLONE_") || k == "TMPDIR" {
			continue
		}
		env = append(env, kv)
	}
	none := filepath.Join(t.TempDir(), "none")
	return append(env,
		"AWS_ACCESS_KEY_ID="+e.srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+e.srv.SecretKey,
		"AWS_DEFAULT_REGION="+e.srv.Region,
		"AWS_CONFIG_FILE="+none,
		"AWS_SHARED_CREDENTIALS_FILE="+none,
		"AWS_EC2_METADATA_DISABLED=true",
		"RCLONE_CONFIG="+none,
		"RCLONE_CONFIG_SEEDSHIPTEST_TYPE=s3",
		"RCLONE_CONFIG_SEEDSHIPTEST_PROVIDER=Other",
		"RCLONE_CONFIG_SEEDSHIPTEST_ENV_AUTH=false",
		"RCLONE_CONFIG_SEEDSHIPTEST_ACCESS_KEY_ID="+e.srv.AccessKey,
		"RCLONE_CONFIG_SEEDSHIPTEST_SECRET_ACCESS_KEY="+e.srv.SecretKey,
		"RCLONE_CONFIG_SEEDSHIPTEST_ENDPOINT="+e.srv.Endpoint,
		"RCLONE_CONFIG_SEEDSHIPTEST_REGION="+e.srv.Region,
		"RCLONE_CONFIG_SEEDSHIPTEST_FORCE_PATH_STYLE=true",
	)
}

func s3RunClient(t *testing.T, env []string, args []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, args[0], args[1:]...)
	c.Env = env
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestS3Interop: an image captured into a bucket and copied out with aws
// or rclone is a local image that verifies and restores; a local image
// uploaded with them is an s3:// image that verifies and restores.
func TestS3Interop(t *testing.T) {
	e := newS3Env(t)
	src, data := s3Source(t, 6, 20, 31337)
	chunks := uint64((len(data) + s3Chunk - 1) / s3Chunk)
	prefix := "by-seedship/host-1"
	must(t, append(append([]string{"capture", "--quiet", "--parity", "2+1"}, s3ImgFlags...), src, e.url(prefix))...)
	local := captureImage(t, src, s3ImgFlags...)
	stored := e.tree(t, prefix)
	for _, c := range s3Clients {
		t.Run(c.name, func(t *testing.T) {
			if _, err := exec.LookPath(c.name); err != nil {
				s3test.SkipOrFail(t, "%s is not on PATH: install it for the interoperability test (%v)", c.name, err)
			}
			env := s3ClientEnv(t, e)

			dir := filepath.Join(t.TempDir(), "downloaded")
			s3RunClient(t, env, c.download(e, prefix, dir))
			if got := treeOf(t, dir); !mapsEqual(got, stored) {
				t.Fatalf("%s download: files %v differ from the bucket's %v: %v", c.name, keys(got), slices.Sorted(maps.Keys(stored)), diffS3Trees(stored, got))
			}
			s3Verify(t, dir, chunks)
			must(t, "info", dir)
			s3Restore(t, dir, src)

			up := "uploaded-by-" + c.name
			s3RunClient(t, env, c.upload(e, up, local))
			if got := e.tree(t, up); !mapsEqual(got, treeOf(t, local)) {
				t.Fatalf("%s upload: bucket differs from the local image: %v", c.name, diffS3Trees(treeOf(t, local), got))
			}
			s3Verify(t, e.url(up), chunks)
			must(t, "info", e.url(up))
			s3Restore(t, e.url(up), src)
		})
	}
}

func diffS3Trees(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, k+" missing")
		} else if w != v {
			out = append(out, k+" differs")
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+" extra")
		}
	}
	slices.Sort(out)
	return out
}

func s3SortedU64(s []uint64) []uint64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func s3SortedStrings(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func s3NonManifest(keys []string) []string {
	var out []string
	for _, k := range keys {
		if !strings.HasPrefix(k, format.ManifestKey) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// TestS3Copy: copy between a directory and a bucket both ways, verifying as
// it copies, and resuming (only what is missing at the destination is
// copied).
func TestS3Copy(t *testing.T) {
	e := newS3Env(t)
	src, data := s3Source(t, 7, 28, 555)
	chunks := uint64((len(data) + s3Chunk - 1) / s3Chunk)
	local := captureImage(t, src, append([]string{"--parity", "3+1"}, s3ImgFlags...)...)
	tree := treeOf(t, local)
	var segs []string
	for k := range tree {
		if !strings.HasPrefix(k, format.ManifestKey) {
			segs = append(segs, k)
		}
	}
	slices.Sort(segs)
	prefix := "copied"
	url := e.url(prefix)

	var c s3CopyJSON
	decodeJSON(t, must(t, "copy", "--json", local, url), &c)
	if got := s3NonManifest(c.Copied); !slices.Equal(got, segs) || len(c.Skipped) != 0 {
		t.Errorf("copy dir→s3 copied %v, skipped %v; want %v and nothing", got, c.Skipped, segs)
	}
	if got := e.tree(t, prefix); !mapsEqual(got, tree) {
		t.Errorf("the bucket differs from the local image: %v", diffS3Trees(tree, got))
	}
	s3Verify(t, url, chunks)

	// Resume: one object missing at the destination.
	gone := format.DataID(2).Key()
	e.remove(t, prefix, gone)
	decodeJSON(t, must(t, "copy", "--json", local, url), &c)
	if got := s3NonManifest(c.Copied); !slices.Equal(got, []string{gone}) || len(c.Skipped) != len(segs)-1 {
		t.Errorf("copy again after deleting %s: copied %v, skipped %d; want only %s copied and %d skipped", gone, got, len(c.Skipped), gone, len(segs)-1)
	}
	if got := e.tree(t, prefix); !mapsEqual(got, tree) {
		t.Errorf("the bucket differs from the local image after the resumed copy: %v", diffS3Trees(tree, got))
	}

	// s3 → dir.
	back := filepath.Join(t.TempDir(), "back")
	decodeJSON(t, must(t, "copy", "--json", url, back), &c)
	if got := s3NonManifest(c.Copied); !slices.Equal(got, segs) {
		t.Errorf("copy s3→dir copied %v, want %v", got, segs)
	}
	if got := treeOf(t, back); !mapsEqual(got, tree) {
		t.Errorf("the copied directory differs from the original: %v", diffS3Trees(tree, got))
	}
	noTemps(t, back)
	s3Verify(t, back, chunks)
	s3Restore(t, back, src)
	gone = format.DataID(4).Key()
	if err := os.Remove(filepath.Join(back, filepath.FromSlash(gone))); err != nil {
		t.Fatal(err)
	}
	decodeJSON(t, must(t, "copy", "--json", url, back), &c)
	if got := s3NonManifest(c.Copied); !slices.Equal(got, []string{gone}) {
		t.Errorf("copy s3→dir again after deleting %s: copied %v, want only it", gone, got)
	}
	if got := treeOf(t, back); !mapsEqual(got, tree) {
		t.Errorf("the copied directory differs after the resumed copy: %v", diffS3Trees(tree, got))
	}

	// Verifying as it copies: a damaged object in the bucket is not copied,
	// and the destination gets no manifest.
	m := loadManifest(t, local)
	bad := format.DataID(3).Key()
	b := []byte(tree[bad])
	c3 := m.Chunks[s3StoredChunks(m, 3)[0]]
	b[c3.Offset+format.FrameHeaderSize+int64(c3.PayloadLen)/2] ^= 1
	e.put(t, "damaged", bad, b)
	for k, v := range tree {
		if k != bad {
			e.put(t, "damaged", k, []byte(v))
		}
	}
	dst := filepath.Join(t.TempDir(), "from-damaged")
	r := expect(t, exitIntegrity, "copy", "--json", e.url("damaged"), dst)
	decodeJSON(t, r, &c)
	if len(c.Damaged) != 1 || !strings.Contains(c.Damaged[0], bad) {
		t.Errorf("copy of a damaged image: damaged %v, want %s", c.Damaged, bad)
	}
	absent(t, filepath.Join(dst, format.ManifestKey), "a copy with a damaged segment must not write a manifest")
	absent(t, filepath.Join(dst, filepath.FromSlash(bad)), "a damaged segment must not be copied")

	// And a damaged local image is not completed in the bucket.
	dimg := copyImage(t, local)
	s3FlipChunk(t, dimg, m, s3StoredChunks(m, 1)[0])
	expect(t, exitIntegrity, "copy", dimg, e.url("from-damaged-dir"))
	if e.exists(t, "from-damaged-dir", format.ManifestKey) || e.exists(t, "from-damaged-dir", format.DataID(1).Key()) {
		t.Errorf("copy of a damaged directory wrote the manifest or the damaged segment: %v", e.objects(t, "from-damaged-dir"))
	}
}

// TestS3Fallback: restore and verify --repair of a damaged local image take
// from a second copy in the bucket exactly what is damaged or missing and
// what parity cannot rebuild, and nothing else.
func TestS3Fallback(t *testing.T) {
	e := newS3Env(t)
	proxy := s3test.NewProxy(t, e.srv.Endpoint)
	src, data := s3Source(t, 8, 40, 4242)
	chunks := uint64((len(data) + s3Chunk - 1) / s3Chunk)

	// dataGets returns the data objects the fallback served. Reading a
	// segment header alone is not serving data: opening an image reads
	// the header of data segment 0 to learn its image ID.
	header := fmt.Sprintf("bytes=0-%d", format.SegmentHeaderSize-1)
	dataGets := func() []string {
		var out []string
		for _, r := range proxy.Requests() {
			if r.Method == "GET" && r.Range != header {
				if i := strings.Index(r.Path, "/data/"); i >= 0 {
					out = append(out, r.Path[i+1:])
				}
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	setup := func(t *testing.T, prefix string, flags ...string) (string, *format.Manifest, map[string]string, string) {
		local := captureImage(t, src, append(slices.Clone(s3ImgFlags), flags...)...)
		must(t, "copy", "--quiet", local, e.url(prefix))
		return local, loadManifest(t, local), treeOf(t, local), e.url(prefix)
	}

	t.Run("damaged chunks", func(t *testing.T) {
		local, m, pristine, url := setup(t, "plain")
		img := copyImage(t, local)
		damaged := []uint64{s3StoredChunks(m, 1)[0], s3StoredChunks(m, 3)[len(s3StoredChunks(m, 3))-1], s3StoredChunks(m, 5)[1]}
		slices.Sort(damaged)
		for _, i := range damaged {
			s3FlipChunk(t, img, m, i)
		}
		before := treeOf(t, img)
		expect(t, exitIntegrity, "restore", img, filepath.Join(t.TempDir(), "no-fallback.img"))

		proxy.Reset()
		out := s3Restore(t, img, src, "--endpoint", proxy.URL, "--fallback", url)
		if !slices.Equal(s3SortedU64(out.Fetched), damaged) {
			t.Errorf("fetched_from_fallback %v, want exactly the damaged chunks %v", out.Fetched, damaged)
		}
		want := []string{format.DataID(1).Key(), format.DataID(3).Key(), format.DataID(5).Key()}
		if got := dataGets(); !slices.Equal(got, want) {
			t.Errorf("the fallback served data from %v, want only the damaged segments %v", got, want)
		}
		if !mapsEqual(before, treeOf(t, img)) {
			t.Errorf("restore changed the image it restored from")
		}

		proxy.Reset()
		var v s3VerifyJSON
		decodeJSON(t, must(t, "verify", "--json", "--repair", "--endpoint", proxy.URL, "--fallback", url, img), &v)
		if !v.OK || !slices.Equal(s3SortedStrings(v.Repaired), want) {
			t.Errorf("verify --repair --fallback: ok %v, repaired %v; want ok and %v", v.OK, v.Repaired, want)
		}
		if got := dataGets(); !slices.Equal(got, want) {
			t.Errorf("repair read data from %v in the fallback, want only %v", got, want)
		}
		if got := treeOf(t, img); !mapsEqual(got, pristine) {
			t.Errorf("the repaired image differs from the original: %v", diffS3Trees(pristine, got))
		}
		noTemps(t, img)
		s3Verify(t, img, chunks)
	})

	t.Run("missing segment", func(t *testing.T) {
		local, m, pristine, url := setup(t, "missing")
		img := copyImage(t, local)
		gone := format.DataID(2).Key()
		if err := os.Remove(filepath.Join(img, filepath.FromSlash(gone))); err != nil {
			t.Fatal(err)
		}
		proxy.Reset()
		out := s3Restore(t, img, src, "--endpoint", proxy.URL, "--fallback", url)
		if want := s3StoredChunks(m, 2); !slices.Equal(s3SortedU64(out.Fetched), want) {
			t.Errorf("fetched_from_fallback %v, want the chunks of the missing segment %v", out.Fetched, want)
		}
		if got := dataGets(); !slices.Equal(got, []string{gone}) {
			t.Errorf("the fallback served data from %v, want only %s", got, gone)
		}
		must(t, "verify", "--quiet", "--repair", "--fallback", url, img)
		if got := treeOf(t, img); !mapsEqual(got, pristine) {
			t.Errorf("the repaired image differs from the original: %v", diffS3Trees(pristine, got))
		}
	})

	t.Run("parity first", func(t *testing.T) {
		local, m, pristine, url := setup(t, "parity", "--parity", "4+2")
		g, _ := m.Geometry()
		// One damaged chunk: parity rebuilds it, the fallback is not read.
		img := copyImage(t, local)
		one := s3StoredChunks(m, 1)[1]
		s3FlipChunk(t, img, m, one)
		proxy.Reset()
		out := s3Restore(t, img, src, "--endpoint", proxy.URL, "--fallback", url)
		if len(out.Fetched) != 0 || !slices.Equal(out.Rebuilt, []uint64{one}) {
			t.Errorf("one damaged chunk: rebuilt %v, fetched %v; want [%d] rebuilt from parity and nothing fetched", out.Rebuilt, out.Fetched, one)
		}
		if got := dataGets(); len(got) != 0 {
			t.Errorf("the fallback served data %v although parity could rebuild everything", got)
		}

		// The same row damaged in M+1 segments of a stripe: beyond parity.
		img = copyImage(t, local)
		var damaged []uint64
		off := int64(300 * kib)
		for n := range uint32(g.M + 1) {
			for _, i := range s3StoredChunks(m, n) {
				if c := m.Chunks[i]; c.Offset+format.FrameHeaderSize <= off && off < c.Offset+c.FrameLen() {
					damaged = append(damaged, i)
				}
			}
			p := segPath(img, n)
			b := readFile(t, p)
			b[off] ^= 0xff
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if len(damaged) != g.M+1 {
			t.Fatalf("offset %d is not in a payload of each of segments 0-%d (%v)", off, g.M, damaged)
		}
		var v s3VerifyJSON
		decodeJSON(t, expect(t, exitIntegrity, "verify", "--json", img), &v)
		var found []uint64
		for _, f := range v.Findings {
			var fj struct {
				Chunk *uint64 `json:"chunk"`
			}
			if err := json.Unmarshal(f, &fj); err == nil && fj.Chunk != nil {
				found = append(found, *fj.Chunk)
			}
		}
		if !slices.Equal(s3SortedU64(found), damaged) {
			t.Fatalf("verify finds chunks %v damaged, want %v", found, damaged)
		}
		proxy.Reset()
		out = s3Restore(t, img, src, "--endpoint", proxy.URL, "--fallback", url)
		all := s3SortedU64(append(slices.Clone(out.Rebuilt), out.Fetched...))
		if len(out.Fetched) == 0 || !slices.Equal(all, damaged) {
			t.Errorf("%d segments damaged in one row: rebuilt %v, fetched %v; want some fetched and together exactly %v", g.M+1, out.Rebuilt, out.Fetched, damaged)
		}
		for _, k := range dataGets() {
			if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(k, "data/"), ".seg")); err != nil || n > g.M {
				t.Errorf("the fallback served %s, which is not damaged", k)
			}
		}
		must(t, "verify", "--quiet", "--repair", "--fallback", url, img)
		if got := treeOf(t, img); !mapsEqual(got, pristine) {
			t.Errorf("the repaired image differs from the original: %v", diffS3Trees(pristine, got))
		}
	})
}

// TestS3BandwidthLimit: --bwlimit caps the traffic (a lower bound on the
// time, not a performance assertion).
func TestS3BandwidthLimit(t *testing.T) {
	e := newS3Env(t)
	data := randBytes(9, 8*mib)
	src := writeFile(t, filepath.Join(t.TempDir(), "src.img"), data)
	url := e.url("limited")
	start := time.Now()
	var c s3CaptureJSON
	decodeJSON(t, must(t, append(append([]string{"capture", "--json", "--level", "-1", "--bwlimit", "4MiB/s"}, s3ImgFlags...), src, url)...), &c)
	el := time.Since(start)
	t.Logf("capture of %d stored bytes at --bwlimit 4MiB/s took %v", c.StoredBytes, el)
	if c.StoredBytes < 8*mib {
		t.Fatalf("stored %d bytes, want >= 8 MiB (uncompressed)", c.StoredBytes)
	}
	if el < 1500*time.Millisecond {
		t.Errorf("capture of 8 MiB at --bwlimit 4MiB/s took %v, want >= 1.5 s", el)
	}
	start = time.Now()
	s3Restore(t, url, src, "--bwlimit", "4MiB/s")
	el = time.Since(start)
	t.Logf("restore at --bwlimit 4MiB/s took %v", el)
	if el < 1500*time.Millisecond {
		t.Errorf("restore of 8 MiB at --bwlimit 4MiB/s took %v, want >= 1.5 s", el)
	}
	if r := expect(t, exitUsage, "info", "--bwlimit", "fast", url); r.code == exitUsage {
		oneLineError(t, r, "--bwlimit")
	}
}

// TestS3CaptureMemoryBounded runs capture into s3:// as a separate process
// for a small and a nine times larger source: its peak RSS (VmHWM, sampled
// while it runs: wait4's ru_maxrss would include this test process's RSS,
// which the child inherits through vfork) must not grow with the source.
func TestS3CaptureMemoryBounded(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		devicetest.Skipf(t, "needs /proc/self/status to measure RSS")
	}
	e := newS3Env(t)
	peak := func(t *testing.T, size int, prefix string) int64 {
		src := writeFile(t, filepath.Join(t.TempDir(), "src.img"), randBytes(byte(size>>20), size))
		start := time.Now()
		cmd, out, done := s3StartSeedship(t, append(append([]string{"capture", "--quiet", "--level", "-1", "--jobs", "4"}, s3ImgFlags...), src, e.url(prefix))...)
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		var hwm int64
		for running := true; running; {
			select {
			case <-done:
				running = false
			case <-time.After(5 * time.Millisecond):
			}
			b, err := os.ReadFile(status)
			if err != nil {
				continue
			}
			for line := range strings.SplitSeq(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					if kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64); err == nil {
						hwm = max(hwm, kb<<10)
					}
				}
			}
		}
		if !cmd.ProcessState.Success() {
			t.Fatalf("capture: %v\n%s", cmd.ProcessState, out)
		}
		if hwm == 0 {
			t.Fatal("could not sample the capture's VmHWM")
		}
		t.Logf("capture of %d MiB into S3: peak RSS >= %d MiB, %v", size>>20, hwm>>20, time.Since(start).Round(time.Millisecond))
		return hwm
	}
	// Buffers of the S3 store (16 MiB parts) and the garbage collector's
	// headroom account for some growth; keeping the image, or a good part
	// of it, in memory would add 128 MiB.
	small := peak(t, 16*mib, "small")
	large := peak(t, 144*mib, "large")
	if large > small+64*mib {
		t.Errorf("peak RSS grew from %d MiB (16 MiB source) to %d MiB (144 MiB source): memory is not bounded", small>>20, large>>20)
	}
}
