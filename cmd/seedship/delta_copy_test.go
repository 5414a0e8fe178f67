package main

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/seedship/seedship/format"
)

// TestDeltaCopy: a delta moved with 'seedship copy' keeps its base-digest
// table and applies from the copy.
func TestDeltaCopy(t *testing.T) {
	d, img, delta, changed := capturedDelta(t)
	moved := filepath.Join(d, "moved")
	must(t, "copy", "--quiet", delta, moved)
	if !bytes.Equal(readFile(t, filepath.Join(moved, format.BaseDigestsKey)), readFile(t, filepath.Join(delta, format.BaseDigestsKey))) {
		t.Fatal("the copy's base digests differ from the delta's")
	}
	target := filepath.Join(d, "target.img")
	must(t, "restore", "--quiet", img, target)
	must(t, "restore", "--quiet", moved, target)
	if !bytes.Equal(readFile(t, target), changed) {
		t.Fatal("target differs from the changed source after the copied delta")
	}
}

// capturedDelta captures a small source into d/base, changes two of its
// blocks and computes d/delta against it; it returns d, the two images
// and the changed source's bytes.
func capturedDelta(t *testing.T) (d, img, delta string, changed []byte) {
	t.Helper()
	d = t.TempDir()
	var base []byte
	base, changed = deltaSource(24, 2, 9)
	src := writeFile(t, filepath.Join(d, "src.img"), base)
	img = filepath.Join(d, "base")
	must(t, "capture", "--quiet", src, img)
	writeFile(t, src, changed)
	delta = filepath.Join(d, "delta")
	must(t, "delta", "--quiet", img, src, delta)
	return d, img, delta, changed
}
