package main

import (
	"context"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/store/s3"
)

// seedship diff through the CLI, on real files and real images (full and
// digest-only), and against a real S3 server with every read counted.

// diffJSON is diff's --json output, as a script reads it.
type diffJSON struct {
	Image      string `json:"image"`
	Device     string `json:"device"`
	DigestOnly bool   `json:"digest_only"`
	Ranges     []struct {
		Offset  int64 `json:"offset"`
		Length  int64 `json:"length"`
		Located bool  `json:"located"`
	} `json:"ranges"`
	Identical    *bool             `json:"identical"`
	ImageSize    int64             `json:"image_size"`
	DeviceSize   int64             `json:"device_size"`
	RangeCount   int64             `json:"range_count"`
	ChangedBytes int64             `json:"changed_bytes"`
	Compared     int64             `json:"compared_bytes"`
	Missing      *engine.ByteRange `json:"missing"`
	Extra        *engine.ByteRange `json:"extra"`
	Checked      []string          `json:"checked"`
	Error        string            `json:"error"`
}

// digestOnlyImage captures src digest-only into a new directory with the
// engine (the CLI's --digest-only flag is wired in capture.go).
func digestOnlyImage(t *testing.T, src string, chunk int) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "digests")
	st, err := dir.New(img)
	if err != nil {
		t.Fatal(err)
	}
	s, err := engine.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := engine.Capture(context.Background(), s, st, engine.CaptureOptions{DigestOnly: true, ChunkSize: chunk, SegmentSize: mib, Workers: 2}); err != nil {
		t.Fatalf("digest-only capture: %v", err)
	}
	return img
}

func TestDiffCommand(t *testing.T) {
	d := t.TempDir()
	src := makeExt4(t, d)
	data := readFile(t, src)
	full := captureImage(t, src, "--chunk-size", "256KiB", "--segment-size", "4MiB")
	digests := digestOnlyImage(t, src, 256*kib)

	// Three changed bytes: two in one 64 KiB block, one far away.
	changed := slices.Clone(data)
	for _, off := range []int{5*mib + 10, 5*mib + 20000, 40*mib + 1} {
		changed[off] ^= 0x5a
	}
	dev := writeFile(t, filepath.Join(d, "device.img"), changed)
	short := writeFile(t, filepath.Join(d, "short.img"), data[:len(data)-128*kib])

	for _, img := range []string{full, digests} {
		name := map[bool]string{true: "full", false: "digest-only"}[img == full]
		t.Run(name, func(t *testing.T) {
			r := must(t, "diff", img, src)
			if !strings.Contains(r.stdout, "identical: ") || strings.Contains(r.stdout, "changed bytes") {
				t.Errorf("diff of the source itself: %s", r)
			}

			r = expect(t, exitIntegrity, "diff", img, dev)
			want := []string{"changed bytes 5242880-5308415 (64.0 KiB)", "changed bytes 41943040-42008575 (64.0 KiB)"}
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if !slices.Equal(lines, want) {
				t.Errorf("diff lines %q, want %q", lines, want)
			}
			oneLineError(t, r, dev, "differs", "2 range(s)", "128.0 KiB")

			r = expect(t, exitIntegrity, "diff", "--quiet", img, dev)
			if r.stdout != "" {
				t.Errorf("diff --quiet printed %q", r.stdout)
			}

			r = expect(t, exitIntegrity, "diff", "--json", img, dev)
			var j diffJSON
			decodeJSON(t, r, &j)
			if j.Identical == nil || *j.Identical || len(j.Ranges) != 2 || j.Ranges[0].Offset != 5*mib || j.Ranges[1].Offset != 40*mib ||
				j.ChangedBytes != 128*kib || j.Compared != int64(len(data)) || j.DigestOnly != (img == digests) || j.Error != "" {
				t.Errorf("diff --json: %+v\n%s", j, r)
			}

			r = expect(t, exitIntegrity, "diff", "--json", img, short)
			j = diffJSON{}
			decodeJSON(t, r, &j)
			if len(j.Ranges) != 0 || j.Missing == nil || *j.Missing != (engine.ByteRange{Offset: int64(len(data)) - 128*kib, Length: 128 * kib}) ||
				j.DeviceSize != int64(len(data))-128*kib || j.ImageSize != int64(len(data)) {
				t.Errorf("diff --json of a shorter device: %+v", j)
			}

			r = expect(t, exitUsage, "diff", img, filepath.Join(d, "nothing"))
			oneLineError(t, r, "does not exist")
			expect(t, exitUsage, "diff", img)
		})
	}
}

// countingStore counts every Get: the key and the byte range asked for.
type countingStore struct {
	store.Store
	mu   sync.Mutex
	gets []countedGet
}

type countedGet struct {
	key      string
	off, end int64 // end -1: to the end of the object
}

func (c *countingStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	end := int64(-1)
	if length >= 0 {
		end = off + length
	}
	c.mu.Lock()
	c.gets = append(c.gets, countedGet{key, off, end})
	c.mu.Unlock()
	return c.Store.Get(ctx, key, off, length)
}

// TestDiffS3ReadsOnlyIndexes: diff of an image in S3 reads the manifest,
// the segment headers and indexes (footers included), and never a byte of
// a frame's payload; the requests are a few per segment at most.
func TestDiffS3ReadsOnlyIndexes(t *testing.T) {
	e := newS3Env(t)
	src, data := s3Source(t, 31, 24, 777) // 24 chunks of 256 KiB in 1 MiB segments
	url := e.url("diff")
	must(t, append(append([]string{"capture", "--quiet"}, s3ImgFlags...), src, url)...)
	m := s3Manifest(t, e, "diff")

	changed := slices.Clone(data)
	changed[3*s3Chunk+70000] ^= 1 // chunk 3, block 1
	changed[17*s3Chunk] ^= 1      // chunk 17, block 0
	dev := writeFile(t, filepath.Join(t.TempDir(), "device.img"), changed)

	cfg, err := s3.ConfigFromEnv(url)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s3.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: st}
	var got []engine.DiffRange
	res, err := engine.Diff(context.Background(), cs, dev, engine.DiffOptions{Workers: 2, OnRange: func(r engine.DiffRange) error {
		got = append(got, r)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []engine.DiffRange{
		{ByteRange: engine.ByteRange{Offset: 3*s3Chunk + 64*kib, Length: 64 * kib}, Located: true},
		{ByteRange: engine.ByteRange{Offset: 17 * s3Chunk, Length: 64 * kib}, Located: true},
	}
	if !slices.Equal(got, want) || res.Identical() {
		t.Fatalf("diff through S3: %v, want %v", got, want)
	}

	// Where each segment's payloads lie: no Get may touch them.
	type span struct{ off, end int64 }
	payloads := map[string][]span{}
	for _, c := range m.Chunks {
		if c.Kind == format.KindStored {
			k := format.DataID(c.Segment).Key()
			payloads[k] = append(payloads[k], span{c.Offset + format.FrameHeaderSize, c.Offset + c.FrameLen()})
		}
	}
	var segmentGets, bytesRead int64
	for _, g := range cs.gets {
		switch {
		case g.key == format.ManifestKey:
		case strings.HasPrefix(g.key, "data/"):
			segmentGets++
			sum, _ := m.Summary(mustParseKey(t, g.key))
			end := g.end
			if end < 0 {
				end = sum.Size
			}
			bytesRead += end - g.off
			for _, p := range payloads[g.key] {
				if g.off < p.end && p.off < end {
					t.Errorf("diff read %s bytes %d-%d, which holds the payload at %d-%d", g.key, g.off, end, p.off, p.end)
				}
			}
		default:
			t.Errorf("diff read %s (bytes %d-%d): it needs the manifest and segment indexes only", g.key, g.off, g.end)
		}
	}
	// Two segments hold a changed chunk: each costs a footer and an index
	// read, and the segment after each may be fetched ahead; seed reads
	// segment 0's header to check the manifest belongs to the segments.
	if limit := int64(1 + 2*2*2); segmentGets > limit {
		t.Errorf("diff made %d segment requests for %d segments with changes; want at most %d", segmentGets, 2, limit)
	}
	t.Logf("diff through S3: %d requests (%d to segments, %d bytes of them) for an image of %d segments and %d stored bytes",
		len(cs.gets), segmentGets, bytesRead, len(m.Segments), m.Header.StoredBytes)
}

func mustParseKey(t *testing.T, key string) format.SegmentID {
	t.Helper()
	id, ok := format.ParseKey(key)
	if !ok {
		t.Fatalf("%s is not a segment key", key)
	}
	return id
}
