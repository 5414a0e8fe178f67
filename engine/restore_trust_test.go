package engine_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// countingStore counts the bytes read from the store it wraps.
type countingStore struct {
	store.Store
	read atomic.Int64
}

func (c *countingStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := c.Store.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, n: &c.read}, nil
}

func (c *countingStore) Unwrap() store.Store { return c.Store }

// hookStore calls hook before the first Get of key.
type hookStore struct {
	store.Store
	key  string
	once atomic.Bool
	hook func()
}

func (h *hookStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if key == h.key && h.once.CompareAndSwap(false, true) {
		h.hook()
	}
	return h.Store.Get(ctx, key, off, length)
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

// multiSegmentImage captures a 4 MiB source of random and zero chunks
// (64 KiB) into 1 MiB segments.
func multiSegmentImage(t *testing.T) ([]byte, *dir.Store, string, *format.Manifest) {
	t.Helper()
	data := chunkPlan("RRRRRRRRZZRRRRRRRRRRRRRRTTRRRRRRZRRRRRRRRRRRRRRRRRRRRRRRRRRRRRRR").build(64*kib, 0, 'Z')
	res, st, root := capture(t, writeSource(t, data), engine.CaptureOptions{ChunkSize: 64 * kib, SegmentSize: 1 << 20})
	if len(res.Manifest.Segments) < 3 {
		t.Fatalf("want at least 3 segments, got %d", len(res.Manifest.Segments))
	}
	return data, st, root, res.Manifest
}

func readTarget(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRestoreResumeFetchesOnlyWrongChunks: a resumed restore compares the
// target with the chunk hashes and fetches only the chunks that differ,
// not the segments that hold them.
func TestRestoreResumeFetchesOnlyWrongChunks(t *testing.T) {
	t.Parallel()
	data, st, _, m := multiSegmentImage(t)
	target := filepath.Join(t.TempDir(), "target.img")
	if _, err := engine.Restore(context.Background(), st, target, engine.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	// Spoil two stored chunks in different segments and one zero chunk.
	var spoiled []uint64
	var frames int64
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint32]bool{}
	for i, c := range m.Chunks {
		if c.Kind == format.KindStored && !seen[c.Segment] && len(seen) < 2 {
			seen[c.Segment] = true
			spoiled = append(spoiled, uint64(i))
			frames += c.FrameLen()
		}
	}
	for i, c := range m.Chunks {
		if c.Kind == format.KindZero {
			spoiled = append(spoiled, uint64(i))
			break
		}
	}
	for _, i := range spoiled {
		off, _ := m.ChunkRange(i)
		if _, err := f.WriteAt([]byte("SPOILED"), off+100); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	cs := &countingStore{Store: st}
	res, err := engine.Restore(context.Background(), cs, target, engine.RestoreOptions{Resume: true})
	if err != nil {
		t.Fatalf("resumed Restore: %v", err)
	}
	if got := readTarget(t, target); !bytes.Equal(got, data) {
		t.Fatal("target differs from the source after the resumed restore")
	}
	var manifest int64
	for _, k := range append([]string{format.ManifestKey}, m.CopyKeys()...) {
		if fi, err := st.Stat(context.Background(), k); err == nil {
			manifest += fi.Size
		}
	}
	minSeg := m.Segments[0].Size
	for _, s := range m.Segments {
		minSeg = min(minSeg, s.Size)
	}
	if got := cs.read.Load() - manifest; got > 2*frames || got >= minSeg {
		t.Errorf("resumed restore read %d bytes of segments; want about the %d bytes of the 2 spoiled chunks' frames (a segment is %d+ bytes)",
			got, frames, minSeg)
	}
	if want := len(m.Chunks) - len(spoiled); res.InPlace != want {
		t.Errorf("InPlace %d chunks, want %d", res.InPlace, want)
	}
}

// TestRestoreFailureKeepsTarget: an image without parity that turns out
// damaged never leaves an existing file shorter or longer than it was,
// and a restore refused before writing leaves it exactly as it was.
func TestRestoreFailureKeepsTarget(t *testing.T) {
	t.Parallel()
	data, _, root, m := multiSegmentImage(t)
	last := m.Segments[len(m.Segments)-1]
	for _, tc := range []struct {
		name      string
		damage    func(t *testing.T, img string)
		untouched bool // refused before anything was written
	}{
		{"segment missing", func(t *testing.T, img string) {
			if err := os.Remove(filepath.Join(img, filepath.FromSlash(format.DataID(last.Number).Key()))); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"segment truncated", func(t *testing.T, img string) {
			if err := os.Truncate(filepath.Join(img, filepath.FromSlash(format.DataID(last.Number).Key())), last.Size/2); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"chunk damaged in the last segment", func(t *testing.T, img string) {
			p := filepath.Join(img, filepath.FromSlash(format.DataID(last.Number).Key()))
			b := readTarget(t, p)
			b[format.SegmentHeaderSize+200] ^= 0x40
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		for _, size := range []int{len(data) + 3*64*kib + 17, len(data) / 3} {
			t.Run(tc.name, func(t *testing.T) {
				img := filepath.Join(t.TempDir(), "img")
				if err := os.CopyFS(img, os.DirFS(root)); err != nil {
					t.Fatal(err)
				}
				tc.damage(t, img)
				st, err := dir.Open(img)
				if err != nil {
					t.Fatal(err)
				}
				before := fill(0xEE, size)
				target := filepath.Join(t.TempDir(), "target.img")
				if err := os.WriteFile(target, before, 0o600); err != nil {
					t.Fatal(err)
				}
				_, err = engine.Restore(context.Background(), st, target, engine.RestoreOptions{})
				if !errors.Is(err, engine.ErrIntegrity) {
					t.Fatalf("Restore from a damaged image: %v, want ErrIntegrity", err)
				}
				got := readTarget(t, target)
				if len(got) != size {
					t.Errorf("target of %d bytes is %d bytes after the failed restore: it must keep its size", size, len(got))
				}
				if tc.untouched && !bytes.Equal(got, before) {
					t.Errorf("a restore refused before writing changed its target")
				}
			})
		}
	}
}

// TestRestoreRefusesImageFiles: no file of the image (manifest copies
// included) or of the fallback image is accepted as the target.
func TestRestoreRefusesImageFiles(t *testing.T) {
	t.Parallel()
	data := chunkPlan("RRTRZRRR").build(64*kib, 100, 'R')
	res, st, root := capture(t, writeSource(t, data), engine.CaptureOptions{ChunkSize: 64 * kib, Parity: &format.Geometry{K: 2, M: 1}, SegmentSize: format.MinSegmentSize})
	copies := res.Manifest.CopyKeys()
	if len(copies) == 0 {
		t.Fatal("a parity image has no manifest copies")
	}
	fbRoot := filepath.Join(t.TempDir(), "fallback")
	if err := os.CopyFS(fbRoot, os.DirFS(root)); err != nil {
		t.Fatal(err)
	}
	fb, err := dir.Open(fbRoot)
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]string{}
	for _, k := range copies {
		targets["image "+k] = filepath.Join(root, filepath.FromSlash(k))
	}
	for _, k := range []string{format.ManifestKey, copies[0], format.DataID(0).Key(), format.ParityID(0).Key()} {
		targets["fallback "+k] = filepath.Join(fbRoot, filepath.FromSlash(k))
	}
	for name, target := range targets {
		before := readTarget(t, target)
		_, err := engine.Restore(context.Background(), st, target, engine.RestoreOptions{Fallback: fb})
		if !errors.Is(err, engine.ErrBadInput) {
			t.Errorf("Restore onto %s: %v, want ErrBadInput", name, err)
		}
		if got := readTarget(t, target); !bytes.Equal(got, before) {
			t.Errorf("Restore onto %s changed it", name)
		}
	}
}

// TestRestoreTwoOntoOneFile: while one restore writes a file, a second
// one onto the same file is refused as bad input and changes nothing.
func TestRestoreTwoOntoOneFile(t *testing.T) {
	t.Parallel()
	data, st, _, _ := multiSegmentImage(t)
	other := chunkPlan("TTTTRRRR").build(64*kib, 0, 'Z')
	_, st2, _ := capture(t, writeSource(t, other), engine.CaptureOptions{ChunkSize: 64 * kib})
	target := filepath.Join(t.TempDir(), "target.img")
	var second error
	// The second restore starts while the first one reads its image's
	// third segment, having written the first two.
	first := &hookStore{Store: st, key: format.DataID(2).Key(), hook: func() {
		_, second = engine.Restore(context.Background(), st2, target, engine.RestoreOptions{})
	}}
	_, err := engine.Restore(context.Background(), first, target, engine.RestoreOptions{Workers: 1, Readers: 1})
	if err != nil {
		t.Fatalf("first Restore: %v", err)
	}
	if !first.once.Load() {
		t.Fatal("the first restore never read segment 2")
	}
	if !errors.Is(second, engine.ErrBadInput) || engine.KindOf(second) != engine.KindBadInput {
		t.Errorf("second Restore onto a file being restored: %v, want bad input", second)
	}
	if got := readTarget(t, target); !bytes.Equal(got, data) {
		t.Errorf("target is not the first restore's source: the second one wrote to it")
	}
}

// TestRestoreInterruptedKeepsTarget: a cancelled restore keeps what it
// wrote (even in a file it created), reports an interruption, and the
// same restore with Resume completes it, fetching less than the image.
func TestRestoreInterruptedKeepsTarget(t *testing.T) {
	t.Parallel()
	data, st, _, m := multiSegmentImage(t)
	target := filepath.Join(t.TempDir(), "target.img")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Interrupted (as by SIGINT) when it starts on the third segment.
	hook := &hookStore{Store: st, key: format.DataID(2).Key(), hook: cancel}
	_, err := engine.Restore(ctx, hook, target, engine.RestoreOptions{Workers: 1, Readers: 1})
	if !hook.once.Load() {
		t.Fatalf("restore never read segment 2 (err %v)", err)
	}
	if engine.KindOf(err) != engine.KindInterrupted || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Restore: %v (kind %v), want interrupted", err, engine.KindOf(err))
	}
	if _, serr := os.Stat(target); serr != nil {
		t.Fatalf("an interrupted restore removed the target it created: %v", serr)
	}
	cs := &countingStore{Store: st}
	res, err := engine.Restore(context.Background(), cs, target, engine.RestoreOptions{Resume: true})
	if err != nil {
		t.Fatalf("resumed Restore: %v", err)
	}
	if got := readTarget(t, target); !bytes.Equal(got, data) {
		t.Fatal("target differs from the source after resuming")
	}
	if res.InPlace == 0 || cs.read.Load() >= m.Header.StoredBytes {
		t.Errorf("resume found %d chunks in place and read %d bytes (image %d): it started over", res.InPlace, cs.read.Load(), m.Header.StoredBytes)
	}
}
