package engine_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// TestCopyRecopiesDamagedKeptSegment: copy onto a destination that
// already holds the image's segments reads back every one it keeps; one
// damaged in place (same size, same index) is copied again, and the
// destination then verifies.
func TestCopyRecopiesDamagedKeptSegment(t *testing.T) {
	t.Parallel()
	_, src, _, m := multiSegmentImage(t)
	dst, dstRoot := newDest(t)
	if _, err := engine.Copy(context.Background(), src, dst, engine.CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	key := format.DataID(1).Key()
	p := filepath.Join(dstRoot, filepath.FromSlash(key))
	b := readTarget(t, p)
	b[format.SegmentHeaderSize+300] ^= 0x08 // inside the first frame's payload
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := engine.Copy(context.Background(), src, dst, engine.CopyOptions{})
	if err != nil {
		t.Fatalf("second Copy: %v", err)
	}
	if !slices.Contains(res.Copied, key) || slices.Contains(res.Skipped, key) {
		t.Errorf("copy kept the damaged %s at the destination (copied %v, kept %v)", key, res.Copied, res.Skipped)
	}
	if len(res.Skipped) != len(m.Segments)-1 {
		t.Errorf("kept %d segments, want the %d intact ones", len(res.Skipped), len(m.Segments)-1)
	}
	if _, err := engine.CheckImage(context.Background(), dst, engine.CheckOptions{}); err != nil {
		t.Errorf("the destination does not verify after the copy: %v", err)
	}
}

// TestRepairIgnoresStrayManifest: a manifest copy of another image lying
// in a parity image is never adopted, and a repair never writes it over
// the image's own copies; one at a key the image's own copies use is
// rewritten with the image's manifest.
func TestRepairIgnoresStrayManifest(t *testing.T) {
	t.Parallel()
	geo := &format.Geometry{K: 2, M: 1}
	data := chunkPlan("RRTRZRRRTR").build(64*kib, 100, 'R')
	res, _, root := capture(t, writeSource(t, data), engine.CaptureOptions{ChunkSize: 64 * kib, Parity: geo, SegmentSize: format.MinSegmentSize})
	other := chunkPlan("TTRRZRRTRR").build(64*kib, 7, 'T')
	_, _, otherRoot := capture(t, writeSource(t, other), engine.CaptureOptions{ChunkSize: 64 * kib, Parity: geo, SegmentSize: format.MinSegmentSize})
	own := readTarget(t, filepath.Join(root, format.ManifestKey))
	stray := readTarget(t, filepath.Join(otherRoot, format.ManifestKey))
	copies := res.Manifest.CopyKeys()
	// Lists before the image's own copies: the first one a reader that
	// takes any decodable copy would adopt.
	extra := format.ManifestKey + ".0"
	for _, tc := range []struct {
		name   string
		plant  map[string][]byte // files written into the image
		stray  string            // key expected to keep the stray bytes
		damage string            // key of the image's that is damaged
	}{
		{"stray beside the copies, main manifest damaged", map[string][]byte{extra: stray}, extra, format.ManifestKey},
		{"stray at one of the image's own copy keys", map[string][]byte{copies[0]: stray}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img")
			if err := os.CopyFS(img, os.DirFS(root)); err != nil {
				t.Fatal(err)
			}
			for k, b := range tc.plant {
				if err := os.WriteFile(filepath.Join(img, filepath.FromSlash(k)), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.damage != "" {
				bad := bytes.Clone(own)
				bad[len(bad)/2] ^= 0x01
				if err := os.WriteFile(filepath.Join(img, filepath.FromSlash(tc.damage)), bad, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			st, err := dir.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			cres, err := engine.CheckImage(context.Background(), st, engine.CheckOptions{Repair: true})
			if cres == nil {
				t.Fatalf("CheckImage --repair: %v", err)
			}
			// The stray itself may be reported (it is not the image's
			// to repair), nothing else.
			for _, f := range cres.Final().Findings {
				if tc.stray == "" || f.Key != tc.stray {
					t.Errorf("after the repair: %v (error %v)", f, err)
				}
			}
			if cres.Manifest.Hash != res.Manifest.Hash {
				t.Fatalf("repair adopted another image's manifest %x", cres.Manifest.Hash[:8])
			}
			for _, k := range append([]string{format.ManifestKey}, copies...) {
				if got := readTarget(t, filepath.Join(img, filepath.FromSlash(k))); !bytes.Equal(got, own) {
					t.Errorf("%s is not the image's own manifest after the repair", k)
				}
			}
			if tc.stray != "" {
				if got := readTarget(t, filepath.Join(img, filepath.FromSlash(tc.stray))); !bytes.Equal(got, stray) {
					t.Errorf("the repair wrote over the stray %s, which is not one of the image's files", tc.stray)
				}
			}
		})
	}
}

// TestRepairDoesNotFollowSymlinkedFolder: a repair of an image whose
// data/ folder is a symlink to a folder outside it writes nothing there
// and fails with a one-line error.
func TestRepairDoesNotFollowSymlinkedFolder(t *testing.T) {
	t.Parallel()
	data := chunkPlan("RRTRZRRRTR").build(64*kib, 100, 'R')
	_, _, root := capture(t, writeSource(t, data), engine.CaptureOptions{ChunkSize: 64 * kib, Parity: &format.Geometry{K: 2, M: 1}, SegmentSize: format.MinSegmentSize})
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.Rename(filepath.Join(root, "data"), outside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "data")); err != nil {
		t.Fatal(err)
	}
	// Damage that parity would repair, to make the repair write data/.
	seg := filepath.Join(outside, "00000001.seg")
	b := readTarget(t, seg)
	b[format.SegmentHeaderSize+500] ^= 0x20
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	before := imageFiles(t, outside)
	beforeSeg := readTarget(t, seg)
	st, err := dir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = engine.CheckImage(context.Background(), st, engine.CheckOptions{Repair: true})
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Errorf("repair through a symlinked data/: %v, want a one-line error", err)
	}
	if engine.KindOf(err) == engine.KindOK {
		t.Errorf("repair through a symlinked data/ succeeded")
	}
	after := imageFiles(t, outside)
	if len(after) != len(before) {
		t.Errorf("the repair created files outside the image: %v, before %v", after, before)
	}
	if !bytes.Equal(readTarget(t, seg), beforeSeg) {
		t.Errorf("the repair wrote %s, outside the image", seg)
	}
}

// TestCopyAndRepairRefuseSecondWriter: while another writer holds an
// image's lock, copy into it and repair of it are refused as bad input
// and write nothing.
func TestCopyAndRepairRefuseSecondWriter(t *testing.T) {
	t.Parallel()
	_, src, _, _ := multiSegmentImage(t)
	dst, dstRoot := newDest(t)
	unlock, err := store.Lock(context.Background(), dst, "test: another writer")
	if err != nil {
		t.Fatalf("lock the destination: %v", err)
	}
	_, err = engine.Copy(context.Background(), src, dst, engine.CopyOptions{})
	if engine.KindOf(err) != engine.KindBadInput || !errors.Is(err, store.ErrLocked) {
		t.Errorf("Copy into a locked destination: %v, want bad input (locked)", err)
	}
	for k := range imageFiles(t, dstRoot) {
		if _, ok := format.ParseKey(k); ok || strings.HasPrefix(k, format.ManifestKey) {
			t.Errorf("the refused copy wrote %s", k)
		}
	}
	if err := unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Copy(context.Background(), src, dst, engine.CopyOptions{}); err != nil {
		t.Fatalf("Copy once the lock is free: %v", err)
	}

	// Damage the copy, lock it, and ask for a repair.
	p := filepath.Join(dstRoot, filepath.FromSlash(format.DataID(0).Key()))
	if err := os.Truncate(p, 100); err != nil {
		t.Fatal(err)
	}
	unlock, err = store.Lock(context.Background(), dst, "test: another writer")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unlock(context.Background()) }()
	_, err = engine.CheckImage(context.Background(), dst, engine.CheckOptions{Repair: true, Fallback: src})
	if engine.KindOf(err) != engine.KindBadInput || !errors.Is(err, store.ErrLocked) {
		t.Errorf("repair of a locked image: %v, want bad input (locked)", err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 100 {
		t.Errorf("the refused repair rewrote %s", p)
	}
}

// TestCopyInterruptedKeepsWhatItCopied: a cancelled copy reports an
// interruption, keeps the segments it finished (no manifest yet), and the
// same copy run again keeps them and completes the image.
func TestCopyInterruptedKeepsWhatItCopied(t *testing.T) {
	t.Parallel()
	_, src, _, m := multiSegmentImage(t)
	dst, dstRoot := newDest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hook := &hookStore{Store: src, key: format.DataID(2).Key(), hook: cancel}
	_, err := engine.Copy(ctx, hook, dst, engine.CopyOptions{Jobs: 1})
	if engine.KindOf(err) != engine.KindInterrupted {
		t.Fatalf("cancelled Copy: %v (kind %v), want interrupted", err, engine.KindOf(err))
	}
	files := imageFiles(t, dstRoot)
	if _, ok := files[format.ManifestKey]; ok {
		t.Errorf("an interrupted copy wrote %s", format.ManifestKey)
	}
	for _, k := range []string{format.DataID(0).Key(), format.DataID(1).Key()} {
		if _, ok := files[k]; !ok {
			t.Errorf("an interrupted copy lost %s, which it had finished", k)
		}
	}
	res, err := engine.Copy(context.Background(), src, dst, engine.CopyOptions{Jobs: 1})
	if err != nil {
		t.Fatalf("Copy again: %v", err)
	}
	if len(res.Skipped) < 2 || len(res.Skipped) >= len(m.Segments) {
		t.Errorf("the second copy kept %v, want the segments the first one finished", res.Skipped)
	}
	if _, err := engine.CheckImage(context.Background(), dst, engine.CheckOptions{}); err != nil {
		t.Errorf("the copy does not verify: %v", err)
	}
}
