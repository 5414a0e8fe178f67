//go:build unix

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seedship/seedship/format"
)

// SIGINT and SIGTERM during capture, restore and copy, sent to seedship
// running as its own process (Unix only: Windows cannot send them to a
// process).

// TestInterruptCapture sends SIGINT to a capture once it has stored a
// segment: it exits 130 and prints the capture with --resume, which then
// completes the image.
func TestInterruptCapture(t *testing.T) {
	data := hexBytes(41, 8*mib)
	src := writeFile(t, filepath.Join(t.TempDir(), "disk.img"), data)
	dest := filepath.Join(t.TempDir(), "seed of it's disk") // the hint must quote it
	p := startSeedship(t, "capture", "--quiet", "--level", "10", "--chunk-size", "256KiB", "--segment-size", "1MiB", src, dest)
	p.signalWhen(t, os.Interrupt, "a capture checkpoint", func() bool { return fileExists(filepath.Join(dest, format.CheckpointKey)) })
	r := p.result(t)
	if r.code != exitInterrupted {
		t.Fatalf("capture interrupted by SIGINT: want exit %d, got %s", exitInterrupted, r)
	}
	if !strings.HasPrefix(r.stderr, "seedship: capture interrupted") {
		t.Errorf("stderr does not say the capture was interrupted: %s", r)
	}
	absent(t, filepath.Join(dest, format.ManifestKey), "an interrupted capture must not write a manifest")
	c := runContinue(t, r)
	if c.code != exitOK || !slices.Contains(shellWords(t, c.args[2]), "--resume") {
		t.Fatalf("the printed command (with --resume) did not complete the capture: %s", c)
	}
	checkRestores(t, dest, data)
}

// TestInterruptRestore sends SIGINT to a restore from object storage while
// it writes: it exits 130 and prints the restore with --resume, which then
// completes the target.
func TestInterruptRestore(t *testing.T) {
	e := newS3Env(t)
	data := randBytes(42, 8*mib)
	src := writeFile(t, filepath.Join(t.TempDir(), "disk.img"), data)
	url := e.url("interrupted restore")
	must(t, "capture", "-q", "--chunk-size", "256KiB", "--segment-size", "1MiB", src, url)
	target := filepath.Join(t.TempDir(), "target (sdc1).img")
	start := time.Now()
	p := startSeedship(t, "restore", "--quiet", "--bwlimit", "2MiB/s", url, target)
	p.signalWhen(t, os.Interrupt, "a started restore", func() bool { return fileExists(target) && time.Since(start) > time.Second })
	r := p.result(t)
	if r.code != exitInterrupted {
		t.Fatalf("restore interrupted by SIGINT: want exit %d, got %s", exitInterrupted, r)
	}
	c := runContinue(t, r)
	if c.code != exitOK || !slices.Contains(shellWords(t, c.args[2]), "--resume") {
		t.Fatalf("the printed command (with --resume) did not complete the restore: %s", c)
	}
	if !bytes.Equal(readFile(t, target), data) {
		t.Errorf("the continued restore did not restore the source")
	}
}

// TestInterruptCopy sends SIGTERM (as a service manager stopping it
// would) to a copy into object storage: it exits 130 and prints the same
// copy, which then completes the image.
func TestInterruptCopy(t *testing.T) {
	e := newS3Env(t)
	data := randBytes(43, 8*mib)
	src := writeFile(t, filepath.Join(t.TempDir(), "disk.img"), data)
	img := captureImage(t, src, "--chunk-size", "256KiB", "--segment-size", "1MiB")
	prefix := "interrupted copy"
	url := e.url(prefix)
	p := startSeedship(t, "copy", "--quiet", "--bwlimit", "2MiB/s", img, url)
	p.signalWhen(t, syscall.SIGTERM, "a copied segment", func() bool { return e.exists(t, prefix, format.DataID(0).Key()) })
	r := p.result(t)
	if r.code != exitInterrupted {
		t.Fatalf("copy interrupted by SIGTERM: want exit %d, got %s", exitInterrupted, r)
	}
	if e.exists(t, prefix, format.ManifestKey) {
		t.Fatalf("an interrupted copy wrote the manifest")
	}
	c := runContinue(t, r)
	if c.code != exitOK {
		t.Fatalf("the printed command did not complete the copy: %s", c)
	}
	checkRestores(t, url, data)
}
