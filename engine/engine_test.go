package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/verify"
)

// These tests drive the real pipeline: real files, the real directory
// store, the real codec. Nothing is mocked.

const kib = 1 << 10

// randBytes returns n deterministic pseudo-random (incompressible) bytes.
func randBytes(seed byte, n int) []byte {
	c := rand.NewChaCha8([32]byte{seed, 's', 'e', 'e', 'd'})
	b := make([]byte, n)
	_, _ = c.Read(b)
	return b
}

// textBytes returns n bytes of highly compressible text.
func textBytes(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %06d: the quick brown fox jumps over the lazy dog\n", i)
	}
	return b.Bytes()[:n]
}

// chunkPlan describes a source chunk by chunk: 'R' random, 'T' text,
// 'Z' all zero, 'L' zero but for its last byte.
type chunkPlan string

func (p chunkPlan) build(chunk, tail int, tailKind byte) []byte {
	var out []byte
	add := func(kind byte, n int, seed int) {
		switch kind {
		case 'R':
			out = append(out, randBytes(byte(seed), n)...)
		case 'T':
			out = append(out, textBytes(n)...)
		case 'Z':
			out = append(out, make([]byte, n)...)
		case 'L':
			b := make([]byte, n)
			b[n-1] = 1
			out = append(out, b...)
		}
	}
	for i := range len(p) {
		add(p[i], chunk, i)
	}
	if tail > 0 {
		add(tailKind, tail, 250)
	}
	return out
}

func writeSource(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "source.img")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func newDest(t *testing.T) (*dir.Store, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "image")
	st, err := dir.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return st, root
}

func capture(t *testing.T, srcPath string, opts engine.CaptureOptions) (*engine.CaptureResult, *dir.Store, string) {
	t.Helper()
	src, err := engine.OpenSource(srcPath)
	if err != nil {
		t.Fatalf("OpenSource(%s): %v", srcPath, err)
	}
	defer src.Close()
	st, root := newDest(t)
	res, err := engine.Capture(context.Background(), src, st, opts)
	if err != nil {
		t.Fatalf("Capture: %v", err)
	}
	return res, st, root
}

// imageFiles lists every file under root (relative, slash-separated) with
// its size, including ones a store would hide.
func imageFiles(t *testing.T, root string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// checkImageOnDisk checks what Capture left in root against its manifest:
// exactly the manifest and the segments it lists, each of the recorded
// size, summing to stored_bytes; no temporary files; and the manifest on
// disk is the one Capture returned.
func checkImageOnDisk(t *testing.T, root string, m *format.Manifest) {
	t.Helper()
	files := imageFiles(t, root)
	want := map[string]bool{format.ManifestKey: true}
	var sum int64
	for _, s := range m.Segments {
		key := format.DataID(s.Number).Key()
		want[key] = true
		size, ok := files[key]
		if !ok {
			t.Errorf("segment %s listed in the manifest is not on disk", key)
			continue
		}
		if size != s.Size {
			t.Errorf("segment %s is %d bytes on disk, manifest says %d", key, size, s.Size)
		}
		sum += size
	}
	for f := range files {
		if !want[f] {
			t.Errorf("unexpected file %s in the image (temporary or stray)", f)
		}
	}
	if _, ok := files[format.ManifestKey]; !ok {
		t.Fatalf("no %s in %s", format.ManifestKey, root)
	}
	var diskSegs int64
	for f, size := range files {
		if strings.HasPrefix(f, "data/") {
			diskSegs += size
		}
	}
	if m.Header.StoredBytes != diskSegs || sum != diskSegs {
		t.Errorf("stored_bytes %d, segments in manifest sum to %d, segment files on disk sum to %d: all must agree",
			m.Header.StoredBytes, sum, diskSegs)
	}
	for i, s := range m.Segments {
		if s.Number != uint32(i) {
			t.Errorf("segment %d numbered %d: want consecutive numbers from 0", i, s.Number)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, format.ManifestKey))
	if err != nil {
		t.Fatal(err)
	}
	disk, err := format.DecodeManifest(b)
	if err != nil {
		t.Fatalf("manifest on disk does not decode: %v", err)
	}
	if disk.Hash != m.Hash {
		t.Errorf("manifest on disk has hash %x, Capture returned %x", disk.Hash[:8], m.Hash[:8])
	}
}

func TestCaptureRecordsChunkKinds(t *testing.T) {
	t.Parallel()
	const chunk = 64 * kib
	// Chunk by chunk: random, zero, text, zero but one byte, zero, random,
	// text; then a short tail.
	plan := chunkPlan("RZTLZRT")
	for _, tc := range []struct {
		name     string
		level    int
		tail     int
		tailKind byte
		codecT   format.Codec // codec expected for text chunks
		compress string
	}{
		{"zstd, zero tail", 3, 1000, 'Z', format.CodecZstdX86, "zstd"},
		{"zstd, random tail", 3, 12345, 'R', format.CodecZstdX86, "zstd"},
		{"no compression", -1, 777, 'T', format.CodecRaw, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := plan.build(chunk, tc.tail, tc.tailKind)
			res, _, root := capture(t, writeSource(t, data), engine.CaptureOptions{
				ChunkSize: chunk, Level: tc.level, SegmentSize: format.MinSegmentSize, Workers: 2, Tool: "engine_test",
			})
			m := res.Manifest
			h := m.Header
			if h.Size != int64(len(data)) || h.ChunkSize != chunk {
				t.Fatalf("size %d chunk size %d, want %d and %d", h.Size, h.ChunkSize, len(data), chunk)
			}
			if h.SHA256 != sha(data) {
				t.Errorf("sha256 %s, want %s (crypto/sha256 of the source)", h.SHA256, sha(data))
			}
			if h.Compression.Codec != tc.compress {
				t.Errorf("compression codec %q, want %q", h.Compression.Codec, tc.compress)
			}
			kinds := string(plan) + string(tc.tailKind)
			if uint64(len(m.Chunks)) != h.Chunks || len(m.Chunks) != len(kinds) {
				t.Fatalf("%d chunks in table, header %d, want %d", len(m.Chunks), h.Chunks, len(kinds))
			}
			var zeros uint64
			for i, c := range m.Chunks {
				off, n := m.ChunkRange(uint64(i))
				raw := data[off : off+n]
				if c.Hash != format.ChunkHash(raw, nil) {
					t.Errorf("chunk %d: hash does not match its source bytes", i)
				}
				switch kinds[i] {
				case 'Z':
					zeros++
					if c.Kind != format.KindZero {
						t.Errorf("chunk %d is all zero but recorded as %v", i, c.Kind)
					}
					if c.Segment != 0 || c.Offset != 0 || c.PayloadLen != 0 || c.Codec != 0 {
						t.Errorf("zero chunk %d has a stored location %+v: zero chunks must not be stored", i, c)
					}
				default:
					if c.Kind != format.KindStored {
						t.Errorf("chunk %d (%c) recorded as %v, want stored", i, kinds[i], c.Kind)
						continue
					}
					want := format.CodecRaw
					if kinds[i] == 'T' || kinds[i] == 'L' {
						want = tc.codecT // text and near-zero chunks compress
					}
					if c.Codec != want {
						t.Errorf("chunk %d (%c) stored with codec %v, want %v", i, kinds[i], c.Codec, want)
					}
					if c.Codec == format.CodecRaw && int64(c.PayloadLen) != n {
						t.Errorf("raw chunk %d payload %d bytes, want %d", i, c.PayloadLen, n)
					}
				}
			}
			if h.ZeroChunks != zeros {
				t.Errorf("zero_chunks %d, want %d", h.ZeroChunks, zeros)
			}
			checkImageOnDisk(t, root, m)
		})
	}
}

func TestCaptureRollsSegments(t *testing.T) {
	t.Parallel()
	const chunk = 64 * kib
	const segSize = format.MinSegmentSize
	// 5 MiB of random data with a zero stretch: raw frames of 64 KiB fill
	// a 1 MiB segment after 16 chunks.
	data := randBytes(7, 5<<20+4321)
	clear(data[2<<20 : 2<<20+3*chunk])
	res, st, root := capture(t, writeSource(t, data), engine.CaptureOptions{
		ChunkSize: chunk, Level: 3, SegmentSize: segSize, Workers: 2,
	})
	m := res.Manifest
	if len(m.Segments) < 5 {
		t.Fatalf("%d segments for %d bytes at segment size %d: segments are not rolled", len(m.Segments), len(data), segSize)
	}
	if m.Header.SegmentSize != segSize {
		t.Errorf("manifest segment_size %d, want %d", m.Header.SegmentSize, segSize)
	}
	layout := m.SegmentChunks()
	for i, s := range m.Segments {
		idx := layout[s.Number]
		if len(idx) == 0 {
			t.Fatalf("segment %d holds no chunks", s.Number)
		}
		last := m.Chunks[idx[len(idx)-1]]
		end := last.Offset + last.FrameLen()
		if i < len(m.Segments)-1 {
			// Closed because it reached the segment size with its last
			// frame, and not earlier.
			if end < segSize {
				t.Errorf("segment %d closed at %d bytes of frames, before the segment size %d", s.Number, end, segSize)
			}
			if last.Offset >= segSize {
				t.Errorf("segment %d got another frame at %d after reaching the segment size %d", s.Number, last.Offset, segSize)
			}
		} else if end > segSize+int64(chunk)+format.FrameHeaderSize {
			t.Errorf("last segment %d runs to %d", s.Number, end)
		}
	}
	checkImageOnDisk(t, root, m)

	// The image reads back through verify and restores byte for byte.
	rep, err := verify.Check(context.Background(), st, m, verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: 2}})
	if err != nil || !rep.OK() {
		t.Fatalf("verify.Check: %v, findings %v", err, rep.Findings)
	}
	target := filepath.Join(t.TempDir(), "restored.img")
	rres, err := engine.Restore(context.Background(), st, target, engine.RestoreOptions{Workers: 2})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if rres.Report.ChunksOK+rres.Report.ZeroChunks != m.Header.Chunks || rres.Report.ZeroChunks != 3 {
		t.Errorf("restore report: %d chunks ok, %d zero; want %d in all, 3 zero",
			rres.Report.ChunksOK, rres.Report.ZeroChunks, m.Header.Chunks)
	}
	got, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("restored file differs from the source (%d vs %d bytes)", len(got), len(data))
	}
}

func TestCaptureEmptyAndTinySources(t *testing.T) {
	t.Parallel()
	for _, data := range [][]byte{{}, {'x'}, {0}} {
		t.Run(fmt.Sprintf("%d bytes %q", len(data), data), func(t *testing.T) {
			t.Parallel()
			res, st, root := capture(t, writeSource(t, data), engine.CaptureOptions{ChunkSize: 64 * kib})
			h := res.Manifest.Header
			wantZero := uint64(0)
			if len(data) == 1 && data[0] == 0 {
				wantZero = 1
			}
			if h.Size != int64(len(data)) || h.Chunks != uint64(len(data)) || h.ZeroChunks != wantZero || h.SHA256 != sha(data) {
				t.Errorf("header size %d chunks %d zero %d sha %s; want %d %d %d %s",
					h.Size, h.Chunks, h.ZeroChunks, h.SHA256, len(data), len(data), wantZero, sha(data))
			}
			checkImageOnDisk(t, root, res.Manifest)
			target := filepath.Join(t.TempDir(), "t.img")
			if _, err := engine.Restore(context.Background(), st, target, engine.RestoreOptions{}); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			got, err := os.ReadFile(target)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("restored %q (%v), want %q", got, err, data)
			}
		})
	}
}

// fill returns n bytes of b.
func fill(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func TestRestoreOntoExistingFiles(t *testing.T) {
	t.Parallel()
	const chunk = 64 * kib
	data := chunkPlan("RZZTRZ").build(chunk, 999, 'Z')
	res, st, _ := capture(t, writeSource(t, data), engine.CaptureOptions{ChunkSize: chunk, Workers: 2})
	zeroBytes := int64(0)
	for i, c := range res.Manifest.Chunks {
		if c.Kind == format.KindZero {
			_, n := res.Manifest.ChunkRange(uint64(i))
			zeroBytes += n
		}
	}
	for _, tc := range []struct {
		name   string
		before []byte
		zeroed bool // RestoreOptions.TargetZeroed
	}{
		{"larger, not zeroed", fill(0xFF, len(data)+5*chunk+3), false},
		{"smaller, not zeroed", fill(0xAA, chunk/2), false},
		{"same size, not zeroed", fill(0x55, len(data)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			target := filepath.Join(t.TempDir(), "target.img")
			if err := os.WriteFile(target, tc.before, 0o600); err != nil {
				t.Fatal(err)
			}
			rres, err := engine.Restore(context.Background(), st, target, engine.RestoreOptions{Workers: 2, TargetZeroed: tc.zeroed})
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			got, err := os.ReadFile(target)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(data) {
				t.Errorf("target is %d bytes after restore, want the source's %d (resized)", len(got), len(data))
			}
			if !bytes.Equal(got, data) {
				for i := range min(len(got), len(data)) {
					if got[i] != data[i] {
						t.Fatalf("restored target differs from the source first at byte %d (chunk %d): %#x, want %#x",
							i, i/chunk, got[i], data[i])
					}
				}
				t.Fatalf("restored target differs from the source")
			}
			if rres.SkippedZeros || rres.ZeroedBytes != zeroBytes {
				t.Errorf("skipped zeros %v, zeroed %d bytes; want false and %d", rres.SkippedZeros, rres.ZeroedBytes, zeroBytes)
			}
		})
	}
	t.Run("target-zeroed skips zero chunks", func(t *testing.T) {
		t.Parallel()
		target := filepath.Join(t.TempDir(), "target.img")
		before := fill(0xFF, len(data))
		if err := os.WriteFile(target, before, 0o600); err != nil {
			t.Fatal(err)
		}
		rres, err := engine.Restore(context.Background(), st, target, engine.RestoreOptions{TargetZeroed: true})
		if err != nil {
			t.Fatalf("Restore: %v", err)
		}
		if !rres.SkippedZeros || rres.ZeroedBytes != 0 {
			t.Errorf("skipped zeros %v, zeroed %d; want true, 0", rres.SkippedZeros, rres.ZeroedBytes)
		}
		got, _ := os.ReadFile(target)
		m := res.Manifest
		for i, c := range m.Chunks {
			off, n := m.ChunkRange(uint64(i))
			want := data[off : off+n]
			if c.Kind == format.KindZero {
				want = before[off : off+n] // the operator said zeroed: left alone
			}
			if !bytes.Equal(got[off:off+n], want) {
				t.Errorf("chunk %d (%v) wrong after a --target-zeroed restore", i, c.Kind)
			}
		}
	})
}

func TestRestoreRefusesItsSource(t *testing.T) {
	t.Parallel()
	data := chunkPlan("RTZR").build(64*kib, 10, 'R')
	srcPath := writeSource(t, data)
	_, st, _ := capture(t, srcPath, engine.CaptureOptions{ChunkSize: 64 * kib})
	// The source lives on after the capture: change it, so that a restore
	// onto it would be visible.
	changed := bytes.Clone(data)
	copy(changed[100:], "NEW DATA WRITTEN AFTER THE CAPTURE")
	if err := os.WriteFile(srcPath, changed, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "link-to-source")
	if err := os.Symlink(srcPath, link); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{srcPath, link} {
		_, err := engine.Restore(context.Background(), st, target, engine.RestoreOptions{})
		if !errors.Is(err, engine.ErrBadInput) {
			t.Errorf("Restore onto the capture source via %s: %v, want ErrBadInput", target, err)
		}
		got, _ := os.ReadFile(srcPath)
		if !bytes.Equal(got, changed) {
			t.Fatalf("Restore onto %s overwrote the capture source", target)
		}
	}
}

func TestCaptureBadInput(t *testing.T) {
	t.Parallel()
	data := randBytes(3, 100*kib)
	srcPath := writeSource(t, data)

	t.Run("sources", func(t *testing.T) {
		for _, p := range []string{filepath.Join(t.TempDir(), "missing"), t.TempDir(), "/dev/null"} {
			src, err := engine.OpenSource(p)
			if err == nil {
				src.Close()
			}
			if !errors.Is(err, engine.ErrBadInput) || !strings.Contains(err.Error(), p) {
				t.Errorf("OpenSource(%s): %v, want ErrBadInput naming the path", p, err)
			}
		}
	})
	t.Run("options", func(t *testing.T) {
		for _, o := range []engine.CaptureOptions{
			{ChunkSize: 3000}, {ChunkSize: 32 * kib}, {ChunkSize: 128 << 20}, {ChunkSize: 3 * 64 * kib},
			{Level: 23}, {Level: -2}, {SegmentSize: 4096},
		} {
			src, err := engine.OpenSource(srcPath)
			if err != nil {
				t.Fatal(err)
			}
			st, root := newDest(t)
			_, err = engine.Capture(context.Background(), src, st, o)
			src.Close()
			if !errors.Is(err, engine.ErrBadInput) {
				t.Errorf("Capture with %+v: %v, want ErrBadInput", o, err)
			}
			if files := imageFiles(t, root); len(files) != 0 {
				t.Errorf("Capture with %+v wrote %v", o, files)
			}
		}
	})
	t.Run("destination not empty", func(t *testing.T) {
		st, root := newDest(t)
		other := filepath.Join(root, "holiday-photos.jpg")
		if err := os.WriteFile(other, []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
		src, err := engine.OpenSource(srcPath)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		_, err = engine.Capture(context.Background(), src, st, engine.CaptureOptions{})
		if !errors.Is(err, engine.ErrBadInput) || !strings.Contains(err.Error(), "holiday-photos.jpg") {
			t.Errorf("Capture into a non-empty destination: %v, want ErrBadInput naming what is there", err)
		}
		files := imageFiles(t, root)
		if len(files) != 1 {
			t.Errorf("destination now holds %v, want only the file that was there", files)
		}
		if b, _ := os.ReadFile(other); string(b) != "precious" {
			t.Errorf("existing file changed to %q", b)
		}
	})
}

func TestCaptureCancelled(t *testing.T) {
	t.Parallel()
	data := randBytes(9, 32<<20)
	srcPath := writeSource(t, data)
	src, err := engine.OpenSource(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	st, root := newDest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cancelledAt := int64(-1)
	_, err = engine.Capture(ctx, src, st, engine.CaptureOptions{
		ChunkSize: 64 * kib, SegmentSize: format.MinSegmentSize, Workers: 2,
		Progress: func(p engine.Progress) {
			// Cancel mid-capture, at the first report (the first chunk
			// written), while a segment upload is in flight.
			if cancelledAt < 0 && p.Done > 0 && p.Done < p.Total {
				cancelledAt = p.Done
				cancel()
			}
		},
	})
	if cancelledAt < 0 {
		t.Fatalf("capture never reported progress mid-way (err %v)", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Capture cancelled at %d bytes returned %v, want context.Canceled", cancelledAt, err)
	}
	files := imageFiles(t, root)
	if _, ok := files[format.ManifestKey]; ok {
		t.Errorf("a cancelled capture wrote %s", format.ManifestKey)
	}
	var names []string
	for f := range files {
		names = append(names, f)
		if strings.Contains(f, dir.TempPrefix) {
			t.Errorf("temporary file %s left behind by a cancelled capture", f)
		}
	}
	sort.Strings(names)
	t.Logf("cancelled after %d bytes; left %v", cancelledAt, names)
	_, err = engine.OpenImage(context.Background(), st)
	if !errors.Is(err, engine.ErrBadInput) || !errors.Is(err, verify.ErrNoImage) {
		t.Errorf("OpenImage of an interrupted capture: %v, want ErrBadInput and verify.ErrNoImage", err)
	}
}

// TestOpenImageAndCheckSegments covers the checks restore makes before it
// writes anything.
func TestOpenImageAndCheckSegments(t *testing.T) {
	t.Parallel()
	data := randBytes(5, 3<<20)
	_, _, root := capture(t, writeSource(t, data), engine.CaptureOptions{ChunkSize: 64 * kib, SegmentSize: format.MinSegmentSize})
	open := func(t *testing.T, root string) (*dir.Store, *format.Manifest, error) {
		st, err := dir.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		m, err := engine.OpenImage(context.Background(), st)
		return st, m, err
	}
	manifest := filepath.Join(root, format.ManifestKey)
	orig, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"bit flip", func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }, engine.ErrIntegrity},
		{"truncated", func(b []byte) []byte { return b[:len(b)-17] }, engine.ErrIntegrity},
		{"empty", func(b []byte) []byte { return b[:0] }, engine.ErrIntegrity},
		{"version 2", func(b []byte) []byte { b[8], b[9] = 2, 0; return b }, engine.ErrBadInput},
		{"version 4", func(b []byte) []byte { b[8], b[9] = 4, 0; return b }, engine.ErrBadInput},
		{"not a manifest", func(b []byte) []byte {
			return []byte("just some text file, not an image at all, long enough to pass the size check......")
		}, engine.ErrBadInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(manifest, tc.mutate(bytes.Clone(orig)), 0o644); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := os.WriteFile(manifest, orig, 0o644); err != nil {
					t.Fatal(err)
				}
			}()
			_, _, err := open(t, root)
			if !errors.Is(err, tc.want) {
				t.Errorf("OpenImage: %v, want %v", err, tc.want)
			}
		})
	}
	st, m, err := open(t, root)
	if err != nil {
		t.Fatal(err)
	}
	if errs := engine.CheckSegments(context.Background(), st, m); len(errs) != 0 {
		t.Fatalf("CheckSegments on a good image: %v", errs)
	}
	if len(m.Segments) < 3 {
		t.Fatalf("want at least 3 segments, got %d", len(m.Segments))
	}
	if err := os.Remove(filepath.Join(root, "data", "00000001.seg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(root, "data", "00000002.seg"), 1000); err != nil {
		t.Fatal(err)
	}
	errs := engine.CheckSegments(context.Background(), st, m)
	msg := fmt.Sprint(errs)
	if len(errs) != 2 || !strings.Contains(msg, "data/00000001.seg") || !strings.Contains(msg, "data/00000002.seg") {
		t.Errorf("CheckSegments with one segment missing and one truncated: %v", errs)
	}
	target := filepath.Join(t.TempDir(), "target.img")
	if _, err := engine.Restore(context.Background(), st, target, engine.RestoreOptions{}); !errors.Is(err, engine.ErrIntegrity) {
		t.Errorf("Restore from an image with missing segments: %v, want ErrIntegrity", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Restore from an image with missing segments created the target (%v)", err)
	}
}
