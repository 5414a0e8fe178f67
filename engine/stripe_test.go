package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// stripeCapture captures the file at srcPath into a new directory store.
func stripeCapture(t *testing.T, ctx context.Context, srcPath string, st store.Store, o CaptureOptions) (*CaptureResult, error) {
	t.Helper()
	src, err := OpenSource(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	return Capture(ctx, src, st, o)
}

// readBack reads every chunk of the image in st through seed and
// assembles the source it restores to.
func readBack(t *testing.T, st store.Store) []byte {
	t.Helper()
	im, err := seed.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	m := im.Manifest()
	out := make([]byte, m.Header.Size)
	var mu sync.Mutex
	_, err = im.Read(context.Background(), seed.ReadOptions{
		StopOnDamage: true,
		OnChunk: func(i uint64, raw []byte) error {
			off, _ := m.ChunkRange(i)
			mu.Lock()
			copy(out[off:], raw)
			mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCaptureDigestOnly: a digest-only capture stores no payload, only
// frame headers and indexes, and seed's Read reports every stored chunk's
// hash and block digests through OnDigest, equal to the source's.
func TestCaptureDigestOnly(t *testing.T) {
	const chunk = 256 << 10
	srcPath := mixedSource(t, 12<<20+4321)
	src, _ := os.ReadFile(srcPath)
	st, _ := dir.New(filepath.Join(t.TempDir(), "img"))
	res, err := stripeCapture(t, context.Background(), srcPath, st, CaptureOptions{ChunkSize: chunk, SegmentSize: 1 << 20, DigestOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if !m.Header.RequiresFeature(format.FeatureDigestOnly) {
		t.Fatalf("requires %v, want digest-only", m.Header.Requires)
	}
	// 24 + 92 + 8·4 bytes a chunk, header and footer a segment.
	if m.Header.StoredBytes > int64(len(m.Chunks))*200+int64(len(m.Segments))*96 {
		t.Fatalf("a digest-only image of %d chunks stores %d bytes", len(m.Chunks), m.Header.StoredBytes)
	}
	im, err := seed.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[uint64]format.IndexEntry{}
	stats, err := im.Read(context.Background(), seed.ReadOptions{
		StopOnDamage: true,
		OnChunk:      func(i uint64, _ []byte) error { t.Errorf("OnChunk(%d) for a digest-only image", i); return nil },
		OnDigest: func(i uint64, e format.IndexEntry) error {
			mu.Lock()
			got[i] = e
			mu.Unlock()
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	stored := 0
	for i, c := range m.Chunks {
		off, length := m.ChunkRange(uint64(i))
		raw := src[off : off+length]
		blocks := make([]format.BlockDigest, format.NumBlocks(int(length)))
		h := format.ChunkHash(raw, blocks)
		if c.Kind == format.KindZero {
			if !format.IsZero(raw) {
				t.Fatalf("chunk %d recorded zero", i)
			}
			continue
		}
		stored++
		e, ok := got[uint64(i)]
		if !ok || e.Hash != h || c.Hash != h || e.Codec != format.CodecDigestOnly || e.PayloadLen != 0 {
			t.Fatalf("chunk %d: digest %v, want hash %x", i, ok, h[:8])
		}
		if err := format.CheckBlocks(blocks, e.Blocks); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if stored == 0 || stats.Digests != uint64(stored) || len(got) != stored || stats.ChunksOK != 0 {
		t.Fatalf("stats %+v, %d digests reported, %d stored chunks", stats, len(got), stored)
	}
}

// TestCaptureDigestOnlyDamagedIndex: a digest-only image whose segment
// index is damaged reports the chunks whose digests it held as damaged,
// and hands none of them to OnDigest.
func TestCaptureDigestOnlyDamagedIndex(t *testing.T) {
	srcPath := mixedSource(t, 6<<20)
	root := filepath.Join(t.TempDir(), "img")
	st, _ := dir.New(root)
	res, err := stripeCapture(t, context.Background(), srcPath, st, CaptureOptions{ChunkSize: 256 << 10, DigestOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(root, filepath.FromSlash(format.DataID(0).Key()))
	b, _ := os.ReadFile(seg)
	b[len(b)-format.FooterSize-10] ^= 0x40 // a block digest in the index
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	im, err := seed.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	var damaged, digests int
	var mu sync.Mutex
	_, err = im.Read(context.Background(), seed.ReadOptions{
		OnDigest: func(uint64, format.IndexEntry) error { mu.Lock(); digests++; mu.Unlock(); return nil },
		OnDamage: func(d seed.Damage) error {
			var ce *format.ChunkError
			if errors.As(d.Err, &ce) {
				damaged++
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if frames := int(res.Manifest.Segments[0].Frames); damaged != frames || digests != 0 {
		t.Fatalf("%d chunks damaged, %d digests reported; want %d and 0", damaged, digests, frames)
	}
}

// TestCaptureWidth: without parity, Width grows that many data segments
// together; an interrupted capture resumes after the last complete group
// and ends byte-identical to an uninterrupted one, and the image reads
// back to the source.
func TestCaptureWidth(t *testing.T) {
	srcPath := mixedSource(t, 24<<20+777)
	id := [16]byte{3, 1, 4}
	opts := CaptureOptions{ChunkSize: 256 << 10, SegmentSize: 1 << 20, Width: 3, imageID: &id}
	refRoot := filepath.Join(t.TempDir(), "ref")
	ref, _ := dir.New(refRoot)
	want, err := stripeCapture(t, context.Background(), srcPath, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := want.Manifest
	if m.Header.Width != 3 || m.GroupWidth() != 3 || len(m.Segments) < 6 {
		t.Fatalf("width %d, %d segments", m.Header.Width, len(m.Segments))
	}
	// Each group's segments end within one frame of each other.
	for g := 0; g+3 <= len(m.Segments); g += 3 {
		lo, hi := m.Segments[g].Size, m.Segments[g].Size
		for _, s := range m.Segments[g : g+3] {
			lo, hi = min(lo, s.Size), max(hi, s.Size)
		}
		if hi-lo > format.ParityShardSize(0, 256<<10) {
			t.Fatalf("group %d: segments of %d to %d bytes", g/3, lo, hi)
		}
	}
	src, _ := os.ReadFile(srcPath)
	if !bytes.Equal(readBack(t, ref), src) {
		t.Fatal("the image does not read back to the source")
	}
	imgRoot := filepath.Join(t.TempDir(), "img")
	img, _ := dir.New(imgRoot)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := stripeCapture(t, ctx, srcPath, &cancelAfter{Store: img, n: 1, cancel: cancel}, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted capture: %v", err)
	}
	resumed := CaptureOptions{Resume: true}
	got, err := stripeCapture(t, context.Background(), srcPath, img, resumed)
	if err != nil {
		t.Fatal(err)
	}
	if got.ResumedAt == 0 {
		t.Fatal("the resumed capture started over")
	}
	gm := got.Manifest
	gm.Header.CaptureStart, gm.Header.CaptureEnd = m.Header.CaptureStart, m.Header.CaptureEnd
	gb, _ := gm.Marshal()
	wb, _ := m.Marshal()
	if !bytes.Equal(gb, wb) {
		t.Fatal("resumed manifest differs from the uninterrupted one")
	}
	for _, s := range m.Segments {
		key := filepath.FromSlash(format.DataID(s.Number).Key())
		a, _ := os.ReadFile(filepath.Join(refRoot, key))
		b, _ := os.ReadFile(filepath.Join(imgRoot, key))
		if !bytes.Equal(a, b) {
			t.Fatalf("%s differs after resume", key)
		}
	}
}

// TestCaptureWidthOptions: a width with parity other than K, or out of
// range, is bad input.
func TestCaptureWidthOptions(t *testing.T) {
	for _, o := range []CaptureOptions{
		{Width: 2, Parity: &format.Geometry{K: 3, M: 1}},
		{Width: format.MaxGroupWidth + 1},
		{Width: -1},
	} {
		if err := o.Validate(); !errors.Is(err, ErrBadInput) {
			t.Errorf("width %d, parity %v: %v, want bad input", o.Width, o.Parity, err)
		}
	}
	o := CaptureOptions{Parity: &format.Geometry{K: 3, M: 1}}
	if err := o.Validate(); err != nil || o.Width != 3 {
		t.Fatalf("parity 3+1: width %d, %v", o.Width, err)
	}
}

// TestCaptureDigestOnlyResume: an interrupted digest-only capture resumes
// as one (the checkpoint records it; the flag need not be given again)
// and ends byte-identical to an uninterrupted one; asking for
// --digest-only on a capture that stores data is refused.
func TestCaptureDigestOnlyResume(t *testing.T) {
	// About 90 bytes a chunk: 1,500 chunks of 64 KiB make two 64 KiB
	// segments.
	srcPath := mixedSource(t, 96<<20)
	id := [16]byte{4, 4}
	opts := CaptureOptions{ChunkSize: 64 << 10, SegmentSize: 64 << 10, DigestOnly: true, imageID: &id}
	refRoot := filepath.Join(t.TempDir(), "ref")
	ref, _ := dir.New(refRoot)
	want, err := stripeCapture(t, context.Background(), srcPath, ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Manifest.Segments) < 2 {
		t.Fatalf("want several segments, got %d", len(want.Manifest.Segments))
	}
	img, _ := dir.New(filepath.Join(t.TempDir(), "img"))
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := stripeCapture(t, ctx, srcPath, &cancelAfter{Store: img, n: 1, cancel: cancel}, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted capture: %v", err)
	}
	got, err := stripeCapture(t, context.Background(), srcPath, img, CaptureOptions{Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResumedAt == 0 {
		t.Fatal("the resumed capture started over")
	}
	gm, wm := got.Manifest, want.Manifest
	gm.Header.CaptureStart, gm.Header.CaptureEnd = wm.Header.CaptureStart, wm.Header.CaptureEnd
	gb, _ := gm.Marshal()
	wb, _ := wm.Marshal()
	if !bytes.Equal(gb, wb) {
		t.Fatal("resumed digest-only manifest differs from the uninterrupted one")
	}

	plain, _ := dir.New(filepath.Join(t.TempDir(), "plain"))
	ctx, cancel = context.WithCancel(context.Background())
	plainOpts := CaptureOptions{ChunkSize: 256 << 10, SegmentSize: 1 << 20}
	if _, err := stripeCapture(t, ctx, srcPath, &cancelAfter{Store: plain, n: 1, cancel: cancel}, plainOpts); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted capture: %v", err)
	}
	if _, err := stripeCapture(t, context.Background(), srcPath, plain, CaptureOptions{Resume: true, DigestOnly: true}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("--digest-only resume of a capture that stores data: %v, want bad input", err)
	}
}

// TestResumeAfterShortLastGroup: a capture that stored every group, the
// last one short (fewer frames than its width, so fewer segments), and
// its parity, but failed before the manifest, resumes from a checkpoint
// that is not on a whole-group boundary and writes the same image.
func TestResumeAfterShortLastGroup(t *testing.T) {
	for _, tc := range []struct {
		name   string
		parity *format.Geometry
		width  int
	}{
		{"parity 3+1", &format.Geometry{K: 3, M: 1, RowSize: 4096}, 0},
		{"width 3", nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Seven incompressible 64 KiB chunks, one frame a 64 KiB
			// segment: groups of 3, 3 and 1 segments.
			src := make([]byte, 7<<16)
			rng := uint64(1)
			for i := range src {
				rng = rng*6364136223846793005 + 1442695040888963407
				src[i] = byte(rng >> 56)
			}
			srcPath := filepath.Join(t.TempDir(), "src.img")
			if err := os.WriteFile(srcPath, src, 0o600); err != nil {
				t.Fatal(err)
			}
			id := [16]byte{9, 9}
			opts := func() CaptureOptions {
				o := CaptureOptions{ChunkSize: 64 << 10, SegmentSize: 64 << 10, Level: -1, Width: tc.width, imageID: &id}
				if tc.parity != nil {
					g := *tc.parity
					o.Parity = &g
				}
				return o
			}
			ref, _ := dir.New(filepath.Join(t.TempDir(), "ref"))
			want, err := stripeCapture(t, context.Background(), srcPath, ref, opts())
			if err != nil {
				t.Fatal(err)
			}
			if n := len(want.Manifest.Segments); n != 7 {
				t.Fatalf("%d data segments, want 7", n)
			}
			img, _ := dir.New(filepath.Join(t.TempDir(), "img"))
			failing := opts()
			failing.BeforeManifest = func(context.Context) (json.RawMessage, error) { return nil, errors.New("injected failure") }
			if _, err := stripeCapture(t, context.Background(), srcPath, img, failing); KindOf(err) != KindResumable {
				t.Fatalf("capture failing before its manifest: %v, want a resumable failure", err)
			}
			got, err := stripeCapture(t, context.Background(), srcPath, img, CaptureOptions{Resume: true})
			if err != nil {
				t.Fatal(err)
			}
			gm, wm := got.Manifest, want.Manifest
			gm.Header.CaptureStart, gm.Header.CaptureEnd = wm.Header.CaptureStart, wm.Header.CaptureEnd
			gb, _ := gm.Marshal()
			wb, _ := wm.Marshal()
			if !bytes.Equal(gb, wb) {
				t.Fatal("resumed manifest differs from the uninterrupted one")
			}
			if got.ReadBytes != 0 {
				t.Fatalf("the resume read %d source bytes after the checkpoint, want none", got.ReadBytes)
			}
		})
	}
}
