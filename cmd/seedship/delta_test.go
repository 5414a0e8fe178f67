package main

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/s3/s3test"
)

// deltaSource returns base data of n 64 KiB blocks (random, text and zero
// blocks) and a changed copy: a few bytes overwritten in the given blocks.
func deltaSource(n int, blocks ...int) (base, changed []byte) {
	const B = 64 * kib
	for i := range n {
		switch {
		case i%4 == 1:
			base = append(base, make([]byte, B)...)
		case i%4 == 2:
			base = append(base, textBytes(B)...)
		default:
			base = append(base, randBytes(byte(i), B)...)
		}
	}
	changed = bytes.Clone(base)
	for _, b := range blocks {
		changed[b*B+123] ^= 0x5A
	}
	return base, changed
}

// deltaJSONOut is the part of delta --json the tests read.
type deltaJSONOut struct {
	ChangedChunks  uint64 `json:"changed_chunks"`
	ChunkSize      int    `json:"chunk_size"`
	StoredBytes    int64  `json:"stored_bytes"`
	BaseManifest   string `json:"base_manifest_sha256"`
	SHA256         string `json:"sha256"`
	ManifestSHA256 string `json:"manifest_sha256"`
}

func TestDeltaCommand(t *testing.T) {
	d := t.TempDir()
	base, changed := deltaSource(40, 3, 17, 33)
	src := writeFile(t, filepath.Join(d, "src.img"), base)
	img := filepath.Join(d, "base")
	must(t, "capture", "--quiet", "--chunk-size", "256KiB", src, img)
	writeFile(t, src, changed)
	delta := filepath.Join(d, "delta")
	var out deltaJSONOut
	decodeJSON(t, must(t, "delta", "--json", img, src, delta), &out)
	if out.ChangedChunks != 3 || out.ChunkSize != 64*kib || out.SHA256 != shaHex(changed) || out.BaseManifest != loadManifestHash(t, img) {
		t.Errorf("delta --json: %+v; want 3 changed 64 KiB chunks, the changed source's sha256 and the base's manifest hash", out)
	}

	target := filepath.Join(d, "target.img")
	must(t, "restore", "--quiet", img, target)
	must(t, "restore", delta, target)
	if got := readFile(t, target); !bytes.Equal(got, changed) {
		t.Fatal("target differs from the changed source after the delta")
	}
	must(t, "restore", delta, target) // twice: nothing to do

	// A second catch-up: the delta of the delta, applied after it.
	changed2 := bytes.Clone(changed)
	changed2[3*64*kib+123] ^= 0x33 // a block the first delta wrote
	changed2[20*64*kib+9] ^= 0x33
	writeFile(t, src, changed2)
	delta2 := filepath.Join(d, "delta2")
	must(t, "delta", "--quiet", "--chain", img, delta, src, delta2)
	must(t, "restore", "--quiet", delta2, target)
	if got := readFile(t, target); !bytes.Equal(got, changed2) {
		t.Fatal("target differs from the source after the second delta")
	}
	writeFile(t, src, changed)

	// A target that holds other bytes where the delta writes.
	wrong := writeFile(t, filepath.Join(d, "wrong.img"), randBytes(99, len(base)))
	r := expect(t, exitUsage, "restore", delta, wrong)
	oneLineError(t, r, wrong, "bytes 196608-262143", out.BaseManifest, "nothing was written")
	if !bytes.Equal(readFile(t, wrong), randBytes(99, len(base))) {
		t.Fatal("the refused target changed")
	}

	// Refusals before anything is written, each one line, exit 2.
	r = expect(t, exitUsage, "delta", delta, src, filepath.Join(d, "d2"))
	oneLineError(t, r, "is a delta image", "--chain")
	r = expect(t, exitUsage, "delta", "--chain", delta, delta, src, filepath.Join(d, "d5"))
	oneLineError(t, r, "is not the base of delta")
	r = expect(t, exitUsage, "delta", img, writeFile(t, filepath.Join(d, "small.img"), base[:len(base)/2]), filepath.Join(d, "d3"))
	oneLineError(t, r, "smaller")
	r = expect(t, exitUsage, "delta", img, src, delta)
	oneLineError(t, r, "not empty")
	r = expect(t, exitUsage, "delta", "--chunk-size", "100KiB", img, src, filepath.Join(d, "d4"))
	oneLineError(t, r, "--chunk-size")
	for _, p := range []string{"d2", "d3", "d4", "d5"} {
		absent(t, filepath.Join(d, p, format.ManifestKey), "a refused delta")
	}
}

// loadManifestHash returns the hex manifest hash of the image in dir img.
func loadManifestHash(t *testing.T, img string) string {
	t.Helper()
	m := loadManifest(t, img)
	return hex.EncodeToString(m.Hash[:])
}

// TestDeltaS3: computing a delta of a base in S3 reads only the base's
// manifest, segment headers and indexes (counted at an HTTP proxy), and a
// delta stored in S3 is applied from there.
func TestDeltaS3(t *testing.T) {
	e := newS3Env(t)
	d := t.TempDir()
	base, changed := deltaSource(96, 5, 50, 90)
	src := writeFile(t, filepath.Join(d, "src.img"), base)
	must(t, "capture", "--quiet", "--chunk-size", "256KiB", "--segment-size", "1MiB", src, e.url("base"))
	writeFile(t, src, changed)

	proxy := s3test.NewProxy(t, e.srv.Endpoint)
	var out deltaJSONOut
	decodeJSON(t, must(t, "delta", "--json", "--endpoint", proxy.URL, e.url("base"), src, e.url("delta")), &out)
	if out.ChangedChunks != 3 {
		t.Errorf("%d changed chunks, want 3", out.ChangedChunks)
	}
	// Every ranged read of a base segment lies in its header or in its
	// index and footer, found from the footer's index offset.
	objs := e.objects(t, "base")
	gets := 0
	for _, rq := range proxy.Requests() {
		if rq.Method != "GET" || !strings.Contains(rq.Path, "/base/data/") {
			continue
		}
		gets++
		key := rq.Path[strings.Index(rq.Path, "/base/")+len("/base/"):]
		seg := e.get(t, "base", key)
		indexAt := int64(binary.LittleEndian.Uint64(seg[len(seg)-format.FooterSize:]))
		var from, to int64
		if _, err := fmtSscanRange(rq.Range, &from, &to); err != nil {
			t.Errorf("GET %s without a byte range (%q): a whole segment was read", key, rq.Range)
			continue
		}
		if to >= format.SegmentHeaderSize && from < indexAt {
			t.Errorf("GET %s bytes %d-%d: reaches the frames (index at %d of %d)", key, from, to, indexAt, objs[key])
		}
	}
	if gets == 0 {
		t.Error("the delta read no segment index of the base: the proxy saw no requests")
	}

	target := filepath.Join(d, "target.img")
	must(t, "restore", "--quiet", e.url("base"), target)
	must(t, "restore", "--quiet", e.url("delta"), target)
	if got := readFile(t, target); !bytes.Equal(got, changed) {
		t.Fatal("target differs from the changed source after the delta from S3")
	}
	if _, err := os.Stat(target); err != nil {
		t.Fatal(err)
	}
}

// fmtSscanRange parses an HTTP Range header "bytes=FROM-TO".
func fmtSscanRange(h string, from, to *int64) (int, error) {
	a, b, ok := strings.Cut(strings.TrimPrefix(h, "bytes="), "-")
	if !ok || !strings.HasPrefix(h, "bytes=") {
		return 0, strconv.ErrSyntax
	}
	var err error
	if *from, err = strconv.ParseInt(a, 10, 64); err != nil {
		return 0, err
	}
	if *to, err = strconv.ParseInt(b, 10, 64); err != nil {
		return 1, err
	}
	return 2, nil
}
