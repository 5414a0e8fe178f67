package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/format"
)

// TestCaptureNoSpace captures into a real filesystem that fills up: exit
// 1 and the capture with --resume; once space is freed, that command
// completes the image.
func TestCaptureNoSpace(t *testing.T) {
	devicetest.RequireLoop(t)
	dev := devicetest.Attach(t, devicetest.Image(t, 160*mib))
	devicetest.Mkfs(t, "ext4", dev)
	mnt := devicetest.Mount(t, dev)
	// A ballast file leaves about 40 MiB free.
	ballast := filepath.Join(mnt, "ballast")
	writeFile(t, ballast, make([]byte, 100*mib))
	data := randBytes(44, 64*mib) // does not compress: more than is free
	src := writeFile(t, filepath.Join(t.TempDir(), "disk.img"), data)
	dest := filepath.Join(mnt, "seed")

	r := seedshipCtx(t.Context(), "capture", "-q", "--chunk-size", "1MiB", "--segment-size", "4MiB", src, dest)
	if r.code != exitRuntime {
		t.Fatalf("capture into a full filesystem: want exit %d, got %s", exitRuntime, r)
	}
	t.Logf("full disk: %s", r)
	argv := continueArgs(t, r)
	if !strings.Contains(strings.ToLower(r.stderr), "no space") {
		t.Errorf("the error does not say the disk is full: %s", r)
	}
	if want := []string{"seedship", "capture", "--resume", "-q", "--chunk-size", "1MiB", "--segment-size", "4MiB", src, dest}; !slices.Equal(argv, want) {
		t.Errorf("continue with %q, want %q", argv, want)
	}
	absent(t, filepath.Join(dest, format.ManifestKey), "a capture that ran out of space must not write a manifest")
	if len(segmentFiles(t, dest)) == 0 {
		t.Errorf("no segment was stored before the disk filled up: the test does not test a partial capture")
	}

	// Make room, and continue with the printed command.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil || int64(st.Bavail)*st.Bsize < int64(len(data)) {
		t.Fatalf("%s has %d bytes free (%v), want more than %d", mnt, int64(st.Bavail)*st.Bsize, err, len(data))
	}
	must(t, argv[1:]...)
	checkRestores(t, dest, data)
}
