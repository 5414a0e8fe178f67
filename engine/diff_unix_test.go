//go:build unix

package engine_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/store"
)

func TestDiffBadInput(t *testing.T) {
	srcPath := writeSource(t, chunkPlan("RTZR").build(256*kib, 1000, 'R'))
	_, st, _ := capture(t, srcPath, engine.CaptureOptions{ChunkSize: 256 * kib, Workers: 2})
	ctx := context.Background()
	tmp := t.TempDir()
	fifo := filepath.Join(tmp, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	// A delta image: its base chunks have no block digests of their own.
	changed, err := os.ReadFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	changed[3] ^= 1
	newSrc := writeSource(t, changed)
	src, err := engine.OpenSource(newSrc)
	if err != nil {
		t.Fatal(err)
	}
	delta, _ := newDest(t)
	_, err = engine.Delta(ctx, st, src, delta, engine.DeltaOptions{Workers: 2})
	src.Close()
	if err != nil {
		t.Fatalf("Delta: %v", err)
	}

	for _, tc := range []struct {
		name string
		img  store.Store
		dev  string
		want string
	}{
		{"missing device", st, filepath.Join(tmp, "nothing"), "does not exist"},
		{"directory", st, tmp, "give a block device or an image file"},
		{"FIFO", st, fifo, "give a block device or an image file"},
		{"delta image", delta, newSrc, "is a delta image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := engine.Diff(ctx, tc.img, tc.dev, engine.DiffOptions{})
			if !errors.Is(err, engine.ErrBadInput) || !strings.Contains(err.Error(), tc.want) || res != nil {
				t.Fatalf("Diff: %v (result %v); want bad input saying %q", err, res, tc.want)
			}
		})
	}
}

// TestDiffLoopDevice compares a real block device: the changed realistic
// image attached to a loop device.
func TestDiffLoopDevice(t *testing.T) {
	devicetest.RequireLoop(t)
	srcPath, data := realisticSource(t)
	_, st, _ := capture(t, srcPath, diffCaptureOpts(true))
	changed := slices.Clone(data)
	touched := randomWrites(changed, 50, 2)
	backing := writeSource(t, changed)
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", backing).CombinedOutput()
	if err != nil {
		t.Skipf("losetup: %v: %s", err, out)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", loop, err, out)
		}
	})
	res, got := diffRanges(t, st, loop)
	if want := blockRanges(touched, int64(len(changed))); !slices.Equal(got, want) {
		t.Fatalf("diff of %s: %d ranges, want %d\ngot  %v\nwant %v", loop, len(got), len(want), head(got), head(want))
	}
	if res.DeviceSize != int64(len(changed)) {
		t.Fatalf("device size %d, want %d", res.DeviceSize, len(changed))
	}
}
