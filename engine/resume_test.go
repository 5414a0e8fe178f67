package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// cancelAfter cancels a capture once n segments have been checkpointed
// (after the first checkpoint, which precedes any segment), as a killed
// process would stop: between two segments.
type cancelAfter struct {
	store.Store
	n      int32
	cancel context.CancelFunc
	puts   atomic.Int32
}

func (c *cancelAfter) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	err := c.Store.Put(ctx, key, r, size)
	if err == nil && key == CheckpointKey && c.puts.Add(1) == c.n+1 {
		c.cancel()
	}
	return err
}

// Unwrap lets store.Lock find the wrapped store's lock.
func (c *cancelAfter) Unwrap() store.Store { return c.Store }

// countingSource counts what a capture reads from its source file.
func mixedSource(t *testing.T, size int) string {
	t.Helper()
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, size)
	for off := 0; off < size; off += 1 << 20 {
		end := min(off+1<<20, size)
		switch (off >> 20) % 4 {
		case 0:
			for i := off; i < end; i++ {
				b[i] = byte(r.Uint32())
			}
		case 1:
			copy(b[off:end], bytes.Repeat([]byte("resume me please "), (end-off)/17+1))
		case 2: // zero
		case 3:
			for i := off; i < end; i += 7 {
				b[i] = byte(i)
			}
		}
	}
	p := filepath.Join(t.TempDir(), "src.img")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResumeMatchesUninterrupted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		parity *format.Geometry
		stopAt int32
	}{
		{"plain", nil, 3},
		// A checkpoint falls on a stripe boundary: the capture is
		// stopped while the next stripe's segments are being written.
		{"parity 3+2", &format.Geometry{K: 3, M: 2}, 2},
		{"parity 3+1", &format.Geometry{K: 3, M: 1}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcPath := mixedSource(t, 24<<20+12345)
			id := [16]byte{7, 7, 7}
			opts := func() CaptureOptions {
				o := CaptureOptions{ChunkSize: 256 << 10, SegmentSize: 1 << 20, imageID: &id}
				if tc.parity != nil {
					g := *tc.parity
					o.Parity = &g
				}
				return o
			}
			capture := func(ctx context.Context, st store.Store, o CaptureOptions) (*CaptureResult, error) {
				src, err := OpenSource(srcPath)
				if err != nil {
					t.Fatal(err)
				}
				defer src.Close()
				return Capture(ctx, src, st, o)
			}
			// The reference: one uninterrupted capture.
			refDir := filepath.Join(t.TempDir(), "ref")
			ref, _ := dir.New(refDir)
			want, err := capture(context.Background(), ref, opts())
			if err != nil {
				t.Fatal(err)
			}
			// Interrupted after tc.stopAt segments, then resumed.
			imgDir := filepath.Join(t.TempDir(), "img")
			img, _ := dir.New(imgDir)
			ctx, cancel := context.WithCancel(context.Background())
			_, err = capture(ctx, &cancelAfter{Store: img, n: tc.stopAt, cancel: cancel}, opts())
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted capture: %v", err)
			}
			if _, err := os.Stat(filepath.Join(imgDir, format.ManifestKey)); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("an interrupted capture left a manifest")
			}
			// A fresh capture refuses the half-written destination.
			if _, err := capture(context.Background(), img, opts()); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "--resume") {
				t.Fatalf("fresh capture into an interrupted one: %v", err)
			}
			o := opts()
			o.Resume = true
			o.ChunkSize, o.SegmentSize, o.Parity = 0, 0, nil // taken from the checkpoint
			got, err := capture(context.Background(), img, o)
			if err != nil {
				t.Fatal(err)
			}
			if got.ResumedAt == 0 || got.ReadBytes >= want.Manifest.Header.Size {
				t.Fatalf("resume re-read the whole source (resumed at %d, read %d)", got.ResumedAt, got.ReadBytes)
			}
			t.Logf("resumed at %d, re-read %d of %d source bytes", got.ResumedAt, got.ReadBytes, want.Manifest.Header.Size)
			gm, wm := got.Manifest, want.Manifest
			gm.Header.CaptureEnd = wm.Header.CaptureEnd
			gm.Header.CaptureStart = wm.Header.CaptureStart
			gb, _ := gm.Marshal()
			wb, _ := wm.Marshal()
			if !bytes.Equal(gb, wb) {
				t.Fatal("resumed manifest differs from the uninterrupted one")
			}
			// Every stored file is byte-identical.
			err = filepath.Walk(refDir, func(p string, fi os.FileInfo, err error) error {
				if err != nil || fi.IsDir() || strings.HasPrefix(filepath.Base(p), "manifest") {
					return err
				}
				rel, _ := filepath.Rel(refDir, p)
				a, _ := os.ReadFile(p)
				b, err := os.ReadFile(filepath.Join(imgDir, rel))
				if err != nil || !bytes.Equal(a, b) {
					t.Errorf("%s differs after resume (%v)", rel, err)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(imgDir, CheckpointKey)); !errors.Is(err, os.ErrNotExist) {
				t.Error("checkpoint left behind after a complete capture")
			}
			// And nothing more to resume.
			if _, err := capture(context.Background(), img, o); !errors.Is(err, ErrBadInput) {
				t.Fatalf("resume of a complete image: %v", err)
			}
		})
	}
}

func TestResumeRefusesOtherSourceAndOptions(t *testing.T) {
	srcPath := mixedSource(t, 8<<20)
	imgDir := filepath.Join(t.TempDir(), "img")
	img, _ := dir.New(imgDir)
	ctx, cancel := context.WithCancel(context.Background())
	src, _ := OpenSource(srcPath)
	_, err := Capture(ctx, src, &cancelAfter{Store: img, n: 1, cancel: cancel}, CaptureOptions{ChunkSize: 256 << 10, SegmentSize: 1 << 20})
	src.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	other := mixedSource(t, 9<<20)
	src2, _ := OpenSource(other)
	defer src2.Close()
	if _, err := Capture(context.Background(), src2, img, CaptureOptions{Resume: true}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("resume from another source: %v", err)
	}
	src3, _ := OpenSource(srcPath)
	defer src3.Close()
	if _, err := Capture(context.Background(), src3, img, CaptureOptions{Resume: true, ChunkSize: 1 << 20}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("resume with another chunk size: %v", err)
	}
	empty, _ := dir.New(filepath.Join(t.TempDir(), "empty"))
	if _, err := Capture(context.Background(), src3, empty, CaptureOptions{Resume: true}); !errors.Is(err, ErrBadInput) {
		t.Fatalf("resume into an empty destination: %v", err)
	}
}

// countGets counts the data segments read, and cancels after n of them.
type countGets struct {
	store.Store
	n      int32
	cancel context.CancelFunc
	gets   atomic.Int32
}

func (c *countGets) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if strings.HasPrefix(key, "data/") && off == 0 && length < 0 {
		if c.gets.Add(1) > c.n && c.cancel != nil {
			c.cancel()
			return nil, context.Canceled
		}
	}
	return c.Store.Get(ctx, key, off, length)
}

func TestRestoreResume(t *testing.T) {
	srcPath := mixedSource(t, 20<<20+777)
	img, _ := dir.New(filepath.Join(t.TempDir(), "img"))
	src, _ := OpenSource(srcPath)
	cres, err := Capture(context.Background(), src, img, CaptureOptions{ChunkSize: 256 << 10, SegmentSize: 1 << 20})
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	nseg := len(cres.Manifest.Segments)
	target := filepath.Join(t.TempDir(), "target.img")
	ctx, cancel := context.WithCancel(context.Background())
	_, err = Restore(ctx, &countGets{Store: img, n: 4, cancel: cancel}, target, RestoreOptions{Readers: 1, Workers: 1})
	// The CLI adds the command that continues it; the error names what
	// is left incomplete.
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), target+" is incomplete") || strings.Contains(err.Error(), "--resume") {
		t.Fatalf("interrupted restore: %v", err)
	}
	if _, err := os.Stat(target); err != nil {
		t.Fatalf("an interrupted restore removed its target, so it cannot resume: %v", err)
	}
	counter := &countGets{Store: img, n: 1 << 30}
	res, err := Restore(context.Background(), counter, target, RestoreOptions{Resume: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Skipped == 0 || int(counter.gets.Load()) != nseg-res.Skipped {
		t.Fatalf("resume fetched %d of %d segments, skipped %d", counter.gets.Load(), nseg, res.Skipped)
	}
	want, _ := os.ReadFile(srcPath)
	got, _ := os.ReadFile(target)
	if !bytes.Equal(got, want) {
		t.Fatal("resumed restore differs from the source")
	}
	t.Logf("resume skipped %d of %d segments", res.Skipped, nseg)
}

// TestResumeRefusesParityOfAnotherImage: a resumed capture adopts the
// parity segments already written only when their headers name this
// image; one of another capture of the same source is refused as bad
// input naming the segment. (The checkpoint's digest of the stored
// segments refuses it too, since the parity covers the data segments'
// headers, but names no segment.)
func TestResumeRefusesParityOfAnotherImage(t *testing.T) {
	srcPath := mixedSource(t, 8<<20)
	opts := CaptureOptions{ChunkSize: 256 << 10, SegmentSize: 1 << 20, Parity: &format.Geometry{K: 2, M: 1, RowSize: 64 << 10}}
	imgDir := filepath.Join(t.TempDir(), "img")
	img, _ := dir.New(imgDir)
	ctx, cancel := context.WithCancel(context.Background())
	src, _ := OpenSource(srcPath)
	_, err := Capture(ctx, src, &cancelAfter{Store: img, n: 1, cancel: cancel}, opts)
	src.Close()
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	otherDir := filepath.Join(t.TempDir(), "other")
	other, _ := dir.New(otherDir)
	src2, _ := OpenSource(srcPath)
	_, err = Capture(context.Background(), src2, other, opts)
	src2.Close()
	if err != nil {
		t.Fatal(err)
	}
	key := format.ParityID(0).Key()
	if _, err := os.Stat(filepath.Join(imgDir, filepath.FromSlash(key))); err != nil {
		t.Fatalf("the interrupted capture wrote no %s: %v", key, err)
	}
	b, err := os.ReadFile(filepath.Join(otherDir, filepath.FromSlash(key)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(imgDir, filepath.FromSlash(key)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	src3, _ := OpenSource(srcPath)
	defer src3.Close()
	resumed := opts
	resumed.Resume = true
	_, err = Capture(context.Background(), src3, img, resumed)
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), key) {
		t.Fatalf("resume with %s of another image: %v, want bad input naming it", key, err)
	}
}
