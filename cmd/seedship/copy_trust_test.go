package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/format"
)

// TestCopyReverifiesKeptSegmentsCLI: copy onto a destination that holds a
// segment damaged in place (same size, same index) copies it again, and
// the destination then verifies.
func TestCopyReverifiesKeptSegmentsCLI(t *testing.T) {
	im := newImage(t)
	dst := filepath.Join(t.TempDir(), "dst")
	must(t, "copy", "--quiet", im.img, dst)
	p := segPath(dst, 1)
	b := readFile(t, p)
	b[format.SegmentHeaderSize+200] ^= 0x04
	writeFile(t, p, b)
	must(t, "copy", "--quiet", im.img, dst)
	expect(t, exitOK, "verify", "--quiet", dst)
	if got := readFile(t, p); string(got) != string(readFile(t, segPath(im.img, 1))) {
		t.Errorf("%s at the destination is not the source's after the copy", format.DataID(1).Key())
	}
}

// TestRepairSymlinkedFolderCLI: verify --repair of an image whose data/
// is a symlink to a folder outside the image writes nothing there and
// fails with a one-line error naming it.
func TestRepairSymlinkedFolderCLI(t *testing.T) {
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "source.img"), randBytes(5, 3*mib+77))
	img := captureImage(t, src, "--chunk-size", "64KiB", "--segment-size", "256KiB", "--parity", "2+1")
	outside := filepath.Join(d, "outside")
	if err := os.Rename(filepath.Join(img, "data"), outside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(img, "data")); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(outside, "00000001.seg")
	b := readFile(t, seg)
	b[format.SegmentHeaderSize+300] ^= 0x10
	writeFile(t, seg, b)
	before := treeOf(t, outside)
	r := seedshipCtx(t.Context(), "verify", "--repair", img)
	if r.code == exitOK {
		t.Errorf("verify --repair through a symlinked data/ succeeded: %s", r)
	}
	// The report lists the damage it found, one line each; the error
	// that ends the command is one line naming the symlink.
	var errs []string
	for line := range strings.SplitSeq(r.stderr, "\n") {
		if strings.HasPrefix(line, "seedship: ") {
			errs = append(errs, line)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "symbolic link") || !strings.Contains(errs[0], filepath.Join(img, "data")) {
		t.Errorf("want one error line naming the symlinked %s, got %q", filepath.Join(img, "data"), errs)
	}
	if !mapsEqual(before, treeOf(t, outside)) {
		t.Errorf("verify --repair wrote into %s, outside the image", outside)
	}
}
