package engine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// TestContinueOneBay captures over three directories one at a time, as
// drives filled one after another with only the new one attached: each
// run stops (cancelled once a few segments are stored, as a full drive
// stops it), its state is suspended and round-tripped through its
// encoding, and the next run continues into an empty directory from that
// state alone. The second continuation is itself interrupted and
// continued. The manifest and every stored file equal an uninterrupted
// capture's, and no file is on two drives.
func TestContinueOneBay(t *testing.T) {
	for _, tc := range []struct {
		name   string
		parity *format.Geometry
	}{
		{"plain", nil},
		{"parity 3+1", &format.Geometry{K: 3, M: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcPath := mixedSource(t, 48<<20+12345)
			id := [16]byte{9, 9, 9}
			opts := func() CaptureOptions {
				o := CaptureOptions{ChunkSize: 256 << 10, SegmentSize: 1 << 20, imageID: &id}
				if tc.parity != nil {
					g := *tc.parity
					o.Parity = &g
				}
				return o
			}
			open := func() *Source {
				src, err := OpenSource(srcPath)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { src.Close() })
				return src
			}
			refDir := filepath.Join(t.TempDir(), "ref")
			ref, _ := dir.New(refDir)
			want, err := Capture(context.Background(), open(), ref, opts())
			if err != nil {
				t.Fatal(err)
			}
			drives := []string{filepath.Join(t.TempDir(), "d1"), filepath.Join(t.TempDir(), "d2"), filepath.Join(t.TempDir(), "d3")}
			stores := make([]*dir.Store, len(drives))
			for i, d := range drives {
				stores[i], _ = dir.New(d)
			}
			// Drive 1 fills after one group.
			ctx, cancel := context.WithCancel(context.Background())
			if _, err := Capture(ctx, open(), &cancelAfter{Store: stores[0], n: 1, cancel: cancel}, opts()); !errors.Is(err, context.Canceled) {
				t.Fatalf("first drive: %v", err)
			}
			cont := suspendRoundTrip(t, stores[0], nil)
			resumed := CaptureOptions{Resume: true}
			// Drive 2: interrupted once, continued, and full after more.
			ctx, cancel = context.WithCancel(context.Background())
			if _, err := ContinueCapture(ctx, open(), &cancelAfter{Store: stores[1], n: 0, cancel: cancel}, resumed, cont); !errors.Is(err, context.Canceled) {
				t.Fatalf("second drive, interrupted: %v", err)
			}
			ctx, cancel = context.WithCancel(context.Background())
			if _, err := ContinueCapture(ctx, open(), &cancelAfter{Store: stores[1], n: 0, cancel: cancel}, resumed, cont); !errors.Is(err, context.Canceled) {
				t.Fatalf("second drive, continued: %v", err)
			}
			cont2 := suspendRoundTrip(t, stores[1], cont)
			if cont2.Stored() <= cont.Stored() {
				t.Fatalf("the second drive stored nothing: %d then %d data segments", cont.Stored(), cont2.Stored())
			}
			// Drive 3 finishes the image from the state alone.
			got, err := ContinueCapture(context.Background(), open(), stores[2], resumed, cont2)
			if err != nil {
				t.Fatal(err)
			}
			gm, wm := got.Manifest, want.Manifest
			gm.Header.CaptureEnd, gm.Header.CaptureStart = wm.Header.CaptureEnd, wm.Header.CaptureStart
			gb, _ := gm.Marshal()
			wb, _ := wm.Marshal()
			if !bytes.Equal(gb, wb) {
				t.Fatal("the manifest of the capture continued drive by drive differs from the uninterrupted one")
			}
			err = filepath.Walk(refDir, func(p string, fi os.FileInfo, err error) error {
				if err != nil || fi.IsDir() || strings.HasPrefix(filepath.Base(p), "manifest") || strings.HasPrefix(filepath.Base(p), ".") {
					return err
				}
				rel, _ := filepath.Rel(refDir, p)
				a, _ := os.ReadFile(p)
				var on []string
				for _, d := range drives {
					if b, err := os.ReadFile(filepath.Join(d, rel)); err == nil {
						on = append(on, d)
						if !bytes.Equal(a, b) {
							t.Errorf("%s on %s differs from the uninterrupted capture's", rel, d)
						}
					}
				}
				if len(on) != 1 {
					t.Errorf("%s is on %d drives (%v), want one", rel, len(on), on)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// suspendRoundTrip suspends the capture in st and returns its
// continuation as read back from its encoding.
func suspendRoundTrip(t *testing.T, st store.Store, prior *Continuation) *Continuation {
	t.Helper()
	ct, err := SuspendCapture(context.Background(), st, prior)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := ct.Rows()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseContinuation(ct.Checkpoint, rows)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

// TestContinuationRefused: a continuation whose rows are not the ones its
// checkpoint was sealed for, or whose checkpoint was edited, is refused;
// a continuation onto the wrong source or onto a drive of another
// capture writes nothing.
func TestContinuationRefused(t *testing.T) {
	srcPath := mixedSource(t, 8<<20)
	d1, _ := dir.New(filepath.Join(t.TempDir(), "d1"))
	src, err := OpenSource(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := Capture(ctx, src, &cancelAfter{Store: d1, n: 2, cancel: cancel}, CaptureOptions{ChunkSize: 256 << 10, SegmentSize: 1 << 20}); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	ct, err := SuspendCapture(context.Background(), d1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ct.Stored() == 0 {
		t.Fatal("nothing stored before the stop: the test tests nothing")
	}
	edit := func(f func(*Continuation)) ([]byte, []byte) {
		c := *ct
		c.State.Segments = append([]format.SegmentSummary(nil), ct.State.Segments...)
		c.State.Chunks = append([]format.ChunkEntry(nil), ct.State.Chunks...)
		f(&c)
		rows, err := c.Rows()
		if err != nil {
			t.Fatal(err)
		}
		return c.Checkpoint, rows
	}
	for _, tc := range []struct {
		name string
		f    func(*Continuation)
	}{
		{"a segment's size", func(c *Continuation) { c.State.Segments[0].Size++ }},
		{"a segment's index hash", func(c *Continuation) { c.State.Segments[0].IndexHash[3] ^= 1 }},
		{"a chunk dropped", func(c *Continuation) { c.State.Chunks = c.State.Chunks[1:] }},
		{"a chunk in a segment not stored", func(c *Continuation) { c.State.Chunks[0].Segment = 1 << 20 }},
		{"the checkpoint edited", func(c *Continuation) {
			c.Checkpoint = bytes.Replace(c.Checkpoint, []byte(`"chunks":`), []byte(`"chunks":1`), 1)
		}},
		{"the rows cut", func(c *Continuation) { c.State.Segments = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck, rows := edit(tc.f)
			if _, err := ParseContinuation(ck, rows); !errors.Is(err, ErrBadInput) {
				t.Fatalf("want ErrBadInput, got %v", err)
			}
		})
	}
	if _, err := ParseContinuation(ct.Checkpoint, []byte("not gob")); !errors.Is(err, ErrBadInput) {
		t.Fatalf("garbage rows: %v", err)
	}

	// Another source of the same size: refused before anything is written.
	other, err := OpenSource(mixedSourceSeeded(t, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	d2Dir := filepath.Join(t.TempDir(), "d2")
	d2, _ := dir.New(d2Dir)
	if _, err := ContinueCapture(context.Background(), other, d2, CaptureOptions{Resume: true}, ct); !errors.Is(err, ErrBadInput) {
		t.Fatalf("another source: %v", err)
	}
	if entries, _ := os.ReadDir(d2Dir); len(entries) != 0 {
		t.Errorf("a refused continuation wrote %d entries", len(entries))
	}
	// A drive holding a checkpoint of another image.
	d3, _ := dir.New(filepath.Join(t.TempDir(), "d3"))
	ctx, cancel = context.WithCancel(context.Background())
	if _, err := Capture(ctx, src, &cancelAfter{Store: d3, n: 1, cancel: cancel}, CaptureOptions{ChunkSize: 256 << 10, SegmentSize: 1 << 20}); !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if _, err := ContinueCapture(context.Background(), src, d3, CaptureOptions{Resume: true}, ct); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "does not continue") {
		t.Fatalf("a drive of another capture: %v", err)
	}
}

// mixedSourceSeeded is mixedSource's content with its first MiB changed.
func mixedSourceSeeded(t *testing.T, size int) string {
	t.Helper()
	p := mixedSource(t, size)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1 << 20 {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzParseContinuation: a continuation read from a state file (hostile
// input) is refused or accepted, never a panic, and one accepted has
// rows whose stored-segment digest is its checkpoint's.
func FuzzParseContinuation(f *testing.F) {
	b := bytes.Repeat([]byte("continue from here, "), 2<<20/20)
	for i := 0; i < len(b); i += 4099 {
		b[i] = byte(i >> 8) // not all alike: several chunks and segments
	}
	srcPath := filepath.Join(f.TempDir(), "src.img")
	if err := os.WriteFile(srcPath, b, 0o600); err != nil {
		f.Fatal(err)
	}
	d, _ := dir.New(f.TempDir())
	src, err := OpenSource(srcPath)
	if err != nil {
		f.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithCancel(context.Background())
	_, _ = Capture(ctx, src, &cancelAfter{Store: d, n: 1, cancel: cancel}, CaptureOptions{ChunkSize: 64 << 10, SegmentSize: 256 << 10})
	ct, err := SuspendCapture(context.Background(), d, nil)
	if err != nil {
		f.Fatal(err)
	}
	rows, _ := ct.Rows()
	f.Add(ct.Checkpoint, rows)
	f.Add(ct.Checkpoint, []byte{})
	f.Fuzz(func(t *testing.T, ck, rows []byte) {
		got, err := ParseContinuation(ck, rows)
		if err != nil {
			if !errors.Is(err, ErrBadInput) {
				t.Fatalf("error not bad input: %v", err)
			}
			return
		}
		if format.StoredDigest(got.State.Segments, got.State.Parity) != got.ck.Stored {
			t.Fatal("accepted rows that do not match the checkpoint")
		}
	})
}

// TestContinueEncrypted: an encrypted capture stopped on a full drive is
// suspended (its sealed checkpoint opened with the resume key this host
// keeps, and sealed again) and continued onto a second drive; the two
// drives together restore byte for byte, and the resume key is gone.
func TestContinueEncrypted(t *testing.T) {
	home := encStateHome(t)
	key := newTestKey(t)
	srcPath := mixedSource(t, 24<<20+12345)
	open := func() *Source {
		src, err := OpenSource(srcPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { src.Close() })
		return src
	}
	d1, d2 := filepath.Join(t.TempDir(), "d1"), filepath.Join(t.TempDir(), "d2")
	s1, _ := dir.New(d1)
	s2, _ := dir.New(d2)
	ctx, cancel := context.WithCancel(context.Background())
	if _, err := Capture(ctx, open(), &cancelAfter{Store: s1, n: 2, cancel: cancel}, encOpts("", key.r)); !errors.Is(err, context.Canceled) {
		t.Fatalf("first drive: %v", err)
	}
	cont := suspendRoundTrip(t, s1, nil)
	got, err := ContinueCapture(context.Background(), open(), s2, CaptureOptions{Resume: true}, cont)
	if err != nil {
		t.Fatalf("second drive: %v", err)
	}
	if !got.Manifest.Encrypted() {
		t.Fatal("the continued capture is not encrypted")
	}
	if left := resumeKeys(t, home); len(left) != 0 {
		t.Fatalf("resume keys left after the capture finished: %v", left)
	}
	// The drives gathered into one directory are the whole image.
	all := filepath.Join(t.TempDir(), "all")
	for _, d := range []string{d1, d2} {
		err := filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() || strings.HasPrefix(fi.Name(), ".") || fi.Name() == format.CheckpointKey {
				return err
			}
			rel, _ := filepath.Rel(d, p)
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Join(all, filepath.Dir(rel)), 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(all, rel), b, 0o600)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	st, err := dir.New(all)
	if err != nil {
		t.Fatal(err)
	}
	target, err := restoreTo(t, st, key.id)
	if err != nil {
		t.Fatalf("restore of the gathered drives: %v", err)
	}
	sameFile(t, srcPath, target)
}
