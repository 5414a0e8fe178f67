//go:build unix

package seed_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
)

// fifo replaces the file of key with a FIFO nobody writes to.
func fifo(t *testing.T, root, key string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(key))
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
}

// TestFIFOIsDamageNotAHang: a FIFO in place of a segment is damage of that
// segment; in place of the manifest, with no copy, it is bad input naming
// the key; with a copy, the copy is adopted and the manifest reported.
func TestFIFOIsDamageNotAHang(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ti := small(t)
	root, st := toDir(t, ti)
	seg := format.DataID(1).Key()
	fifo(t, root, seg)
	im, err := seed.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	_, damage, err := readAll(t, im, seed.ReadOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(damage) == 0 || damage[0].Key != seg || !errors.Is(damage[0].Err, format.ErrMissing) {
		t.Fatalf("damage %v, want %s missing", damage, seg)
	}

	fifo(t, root, format.ManifestKey)
	_, err = seed.Open(ctx, st)
	if !errors.Is(err, format.ErrFormat) || format.IsDamage(err) || !strings.Contains(err.Error(), format.ManifestKey) {
		t.Fatalf("open with a FIFO manifest: %v, want bad input naming %s", err, format.ManifestKey)
	}

	tp := withParity(t)
	root, st = toDir(t, tp)
	fifo(t, root, format.ManifestKey)
	im, err = seed.Open(ctx, st)
	if err != nil {
		t.Fatalf("open with a FIFO manifest and a copy: %v", err)
	}
	mc, err := im.CheckManifests(ctx)
	if err != nil || len(mc.Bad) != 1 || mc.Bad[0] != format.ManifestKey {
		t.Fatalf("check manifests: %v, bad %v", err, mc.Bad)
	}
}
