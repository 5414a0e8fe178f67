package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// interruptedCapture leaves an interrupted capture of srcPath in a new
// directory, cancelled once a few chunks are through, and returns it.
func interruptedCapture(t *testing.T, srcPath string) string {
	t.Helper()
	src, err := engine.OpenSource(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dest := filepath.Join(t.TempDir(), "seed")
	st, err := dir.New(dest)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = engine.Capture(ctx, src, st, engine.CaptureOptions{
		ChunkSize: 64 * kib, SegmentSize: 256 * kib, Workers: 1,
		Progress: func(p engine.Progress) {
			if p.Done >= p.Total/2 {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("capture to interrupt: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dest, format.DataID(0).Key())); err != nil {
		t.Fatalf("the interrupted capture stored no segment: %v", err)
	}
	return dest
}

// TestCaptureResumeOtherSource: --resume with a different source of the
// same size is refused (exit 2, one line naming the cause); the same
// source then resumes into an image that restores the source.
func TestCaptureResumeOtherSource(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	data := append(randBytes(31, 4*mib), textBytes(4*mib)...)
	srcPath := writeFile(t, filepath.Join(d, "src.img"), data)
	dest := interruptedCapture(t, srcPath)

	other := append([]byte(nil), data...)
	other[70*kib] ^= 0x80 // in chunk 1, long since stored
	otherPath := writeFile(t, filepath.Join(d, "other.img"), other)
	before := treeOf(t, dest)
	r := expect(t, exitUsage, "capture", "--resume", otherPath, dest)
	oneLineError(t, r, otherPath, "differs", "chunk 1")
	if !mapsEqual(before, treeOf(t, dest)) {
		t.Error("the refused resume changed the destination")
	}

	must(t, "capture", "--resume", "--quiet", srcPath, dest)
	must(t, "verify", "--quiet", dest)
	target := filepath.Join(d, "restored.img")
	must(t, "restore", "--quiet", dest, target)
	if shaHex(readFile(t, target)) != shaHex(data) {
		t.Fatal("the resumed image does not restore the source")
	}
}

// TestCaptureResumeEditedCheckpoint: an edited checkpoint is refused with
// exit 2 and one line naming it.
func TestCaptureResumeEditedCheckpoint(t *testing.T) {
	t.Parallel()
	srcPath := writeFile(t, filepath.Join(t.TempDir(), "src.img"), randBytes(32, 4*mib))
	dest := interruptedCapture(t, srcPath)
	p := filepath.Join(dest, format.CheckpointKey)
	b := readFile(t, p)
	b = regexp.MustCompile(`"chunks":\d+`).ReplaceAll(b, []byte(`"chunks":3`))
	writeFile(t, p, b)
	r := expect(t, exitUsage, "capture", "--resume", srcPath, dest)
	oneLineError(t, r, format.CheckpointKey, "seal")
}

// TestCaptureParityAdviceWorks: the segment size that a refused --parity
// names is accepted, and the image it makes verifies.
func TestCaptureParityAdviceWorks(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	srcPath := writeFile(t, filepath.Join(d, "src.img"), textBytes(3*mib))
	r := expect(t, exitUsage, "capture", "--parity", "10+8", srcPath, filepath.Join(d, "refused"))
	oneLineError(t, r, "--parity 10+8", "--segment-size")
	absent(t, filepath.Join(d, "refused"), "a refused capture must not create its destination")
	m := regexp.MustCompile(`use --segment-size (\S+) or smaller`).FindStringSubmatch(r.stderr)
	if m == nil {
		t.Fatalf("the advice names no segment size: %s", r)
	}
	img := filepath.Join(d, "seed")
	must(t, "capture", "--quiet", "--parity", "10+8", "--segment-size", m[1], srcPath, img)
	must(t, "verify", "--quiet", img)
}

// TestCaptureSecondWriter: a capture into a destination another writer
// holds is refused with exit 2, naming the holder, and writes nothing.
func TestCaptureSecondWriter(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	srcPath := writeFile(t, filepath.Join(d, "src.img"), textBytes(1*mib))
	dest := filepath.Join(d, "seed")
	st, err := dir.New(dest)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := store.Lock(context.Background(), st, "the first seedship capture")
	if err != nil {
		t.Fatal(err)
	}
	before := treeOf(t, dest)
	for _, args := range [][]string{{"capture"}, {"capture", "--resume"}} {
		r := expect(t, exitUsage, append(args, srcPath, dest)...)
		oneLineError(t, r, "the first seedship capture")
	}
	if !mapsEqual(before, treeOf(t, dest)) {
		t.Error("a refused second writer changed the destination")
	}
	if err := unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	must(t, "capture", "--quiet", srcPath, dest)
}

// TestCaptureChangingFile: a source file written during the capture is
// refused with exit 1 naming the cause and the fixes, leaving no image
// and nothing to resume; --allow-in-use captures it and the image says so.
func TestCaptureChangingFile(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	srcPath := writeFile(t, filepath.Join(d, "src.img"), textBytes(8*mib))
	// A writer that rewrites one byte with its own value until stopped:
	// the data stays the same, but the file is written during the run.
	writing := func() (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := os.OpenFile(srcPath, os.O_RDWR, 0)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			b := make([]byte, 1)
			for {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
				if _, err := f.ReadAt(b, 0); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.WriteAt(b, 0); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		return func() { close(done); wg.Wait() }
	}
	dest := filepath.Join(d, "seed")
	stop := writing()
	r := expect(t, exitRuntime, "capture", "--chunk-size", "64KiB", srcPath, dest)
	stop()
	oneLineError(t, r, srcPath, "snapshot", "--allow-in-use")
	absent(t, filepath.Join(dest, format.ManifestKey), "a refused capture must not write a manifest")
	absent(t, filepath.Join(dest, format.CheckpointKey), "a torn capture must not be resumable")
	if strings.Contains(r.stderr, "--resume") {
		t.Errorf("a torn capture must not suggest --resume: %s", r)
	}

	img := filepath.Join(d, "in-use")
	stop = writing()
	must(t, "capture", "--quiet", "--allow-in-use", "--chunk-size", "64KiB", srcPath, img)
	stop()
	if !loadManifest(t, img).Header.Source.InUse {
		t.Error("the manifest of an --allow-in-use capture does not say so")
	}
}

// peakRSS runs seedship as its own process and returns its exit and its
// peak RSS (VmHWM, sampled while it runs).
func peakRSS(t *testing.T, args ...string) (cliResult, int64) {
	t.Helper()
	p := startSeedship(t, args...)
	status := fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)
	var hwm int64
	for !p.exited() {
		time.Sleep(5 * time.Millisecond)
		b, err := os.ReadFile(status)
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64); err == nil {
					hwm = max(hwm, kb<<10)
				}
			}
		}
	}
	return p.result(t), hwm
}

// TestCaptureMemoryLargeChunks: the largest chunk size, with many workers
// asked for, keeps capture under 512 MiB of RSS (it was 0.7-1 GB).
func TestCaptureMemoryLargeChunks(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		devicetest.Skipf(t, "needs /proc/self/status to measure RSS")
	}
	d := t.TempDir()
	// Compressible and random data, so that every encoder works.
	data := append(textBytes(64*mib), randBytes(41, 64*mib)...)
	data = append(data, data...)
	srcPath := writeFile(t, filepath.Join(d, "src.img"), data)
	for _, args := range [][]string{
		{"--chunk-size", "64MiB"},
		{"--chunk-size", "64MiB", "--workers", "64"},
		{"--chunk-size", "64MiB", "--level", "-1"},
		{"--chunk-size", "32MiB", "--parity", "4+2"},
	} {
		img := filepath.Join(d, "seed-"+strings.Join(args, ""))
		r, hwm := peakRSS(t, append(append([]string{"capture", "--quiet"}, args...), srcPath, img)...)
		if r.code != exitOK {
			t.Fatalf("want exit 0, got %s", r)
		}
		t.Logf("capture %s of %d MiB: peak RSS %d MiB", strings.Join(args, " "), len(data)>>20, hwm>>20)
		if hwm == 0 || hwm >= 512*mib {
			t.Errorf("capture %s: peak RSS %d MiB, want under 512 MiB", strings.Join(args, " "), hwm>>20)
		}
		if err := os.RemoveAll(img); err != nil {
			t.Fatal(err)
		}
	}
}
