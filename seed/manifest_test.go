package seed_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store/dir"
)

// TestHugeManifestRefusedAtOnce: a zero-filled "manifest" of 2 GiB (over
// the limit) or 900 MiB (under it) is refused without being read into
// memory.
func TestHugeManifestRefusedAtOnce(t *testing.T) {
	for _, size := range []int64{2 << 30, 900 << 20} {
		root := t.TempDir()
		f, err := os.Create(filepath.Join(root, format.ManifestKey))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil { // sparse: reads as zeros
			t.Fatal(err)
		}
		f.Close()
		st, err := dir.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		_, err = seed.Open(context.Background(), st)
		el := time.Since(start)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, format.ErrTooLarge) && !errors.Is(err, format.ErrFormat) {
			t.Fatalf("%d bytes: %v, want too large or not a manifest", size, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 || el > time.Second {
			t.Fatalf("%d bytes: refused after %v and %d MiB allocated", size, el, alloc>>20)
		}
	}
}

// TestStrayCopiesNeverAdopted: with manifest.ssm damaged, a copy of
// another image lying beside the image's own copy is ignored and named;
// with only another image's copy, Open refuses.
func TestStrayCopiesNeverAdopted(t *testing.T) {
	ctx := context.Background()
	ti := withParity(t)
	other := build(t, testSource(5*65536, 65536, 9), 65536, 128<<10, &format.Geometry{K: 2, M: 2, RowSize: 4096})
	flip(t, ti.st, format.ManifestKey, 40) // damage the main manifest
	ti.st.SetObject("manifest.ssm.2", other.mb)
	ti.st.SetObject("manifest.ssm.0", other.mb) // not a copy key at all
	im, err := seed.Open(ctx, ti.st)
	if err != nil {
		t.Fatal(err)
	}
	if im.Manifest().Hash != ti.m.Hash || im.ManifestKey() != "manifest.ssm.1" {
		t.Fatalf("adopted %s (%x), want manifest.ssm.1 (%x)", im.ManifestKey(), im.Manifest().Hash[:4], ti.m.Hash[:4])
	}
	if len(im.Strays()) != 1 || im.Strays()[0].Key != "manifest.ssm.2" {
		t.Fatalf("strays %v, want manifest.ssm.2", im.Strays())
	}
	mc, err := im.CheckManifests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(mc.Bad) != 1 || mc.Bad[0] != format.ManifestKey || len(mc.Strays) != 1 || mc.Strays[0] != "manifest.ssm.2" {
		t.Fatalf("check: bad %v strays %v, want [manifest.ssm] and [manifest.ssm.2]", mc.Bad, mc.Strays)
	}

	// Only another image's copy: refuse, adopt nothing.
	_ = ti.st.Delete(ctx, "manifest.ssm.1")
	if im, err := seed.Open(ctx, ti.st); err == nil {
		t.Fatalf("adopted %s of another image", im.ManifestKey())
	} else if !format.IsDamage(err) {
		t.Fatalf("open: %v, want damage", err)
	}
}

// TestForeignMainManifest: a manifest.ssm of another image in place of
// this one's is not believed; the image's own copy is adopted, and the
// main manifest is the one to rewrite.
func TestForeignMainManifest(t *testing.T) {
	ctx := context.Background()
	ti := withParity(t)
	other := build(t, testSource(5*65536, 65536, 9), 65536, 128<<10, nil)
	ti.st.SetObject(format.ManifestKey, other.mb)
	im, err := seed.Open(ctx, ti.st)
	if err != nil {
		t.Fatal(err)
	}
	if im.Manifest().Hash != ti.m.Hash {
		t.Fatalf("adopted %s, not the image's own copy", im.ManifestKey())
	}
	mc, err := im.CheckManifests(ctx)
	if err != nil || len(mc.Bad) != 1 || mc.Bad[0] != format.ManifestKey {
		t.Fatalf("check: %v, bad %v; want [manifest.ssm]", err, mc.Bad)
	}
	// Without a copy of its own, the image cannot be opened.
	_ = ti.st.Delete(ctx, "manifest.ssm.1")
	if _, err := seed.Open(ctx, ti.st); !format.IsDamage(err) {
		t.Fatalf("open without a copy: %v, want damage", err)
	}
}

// TestUnfinishedCaptureIsNoImage: manifest copies beside a capture
// checkpoint, without manifest.ssm, are a capture killed between writing
// its copies and its manifest: no image (exit 2, "continue it with
// capture --resume"), not a complete image read from a copy. Without the
// checkpoint the same files are an image that lost its manifest.
func TestUnfinishedCaptureIsNoImage(t *testing.T) {
	ti := build(t, testSource(6<<20, 1<<20, 3), 1<<20, 2<<20, &format.Geometry{K: 2, M: 1, RowSize: 4096})
	if err := ti.st.Delete(t.Context(), format.ManifestKey); err != nil {
		t.Fatal(err)
	}
	if _, err := seed.Open(t.Context(), ti.st); err != nil {
		t.Fatalf("an image that lost manifest.ssm but kept its copies: %v", err)
	}
	ti.st.SetObject(format.CheckpointKey, []byte("{}"))
	_, err := seed.Open(t.Context(), ti.st)
	if !errors.Is(err, seed.ErrNoImage) || !strings.Contains(err.Error(), "capture --resume") {
		t.Fatalf("copies beside a checkpoint: %v; want ErrNoImage saying to resume the capture", err)
	}
}
