package main

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// checkedOut is the part of verify, restore and info --json that says
// what was checked.
type checkedOut struct {
	OK           bool     `json:"ok"`
	Checked      []string `json:"checked"`
	SourceSHA256 string   `json:"source_sha256"`
}

// TestCommandsSayWhatTheyChecked: verify of an image names the chunk
// hashes, block digests, segment structure and manifest copies; verify
// --device names the chunk hashes and the whole-source SHA-256, which it
// recomputed; info says it checked only the manifest. The human output
// says the same.
func TestCommandsSayWhatTheyChecked(t *testing.T) {
	t.Parallel()
	im := newImage(t)

	var v checkedOut
	decodeJSON(t, must(t, "verify", "--json", im.img), &v)
	for _, want := range []string{"chunk-hashes", "block-digests", "segment-structure", "manifest-copies"} {
		if !slices.Contains(v.Checked, want) {
			t.Errorf("verify --json checked %q, want it to list %q", v.Checked, want)
		}
	}
	if slices.Contains(v.Checked, "source-sha256") {
		t.Errorf("verify of an image claims the whole-source SHA-256, which only verify --device recomputes: %q", v.Checked)
	}
	if r := must(t, "verify", im.img); !strings.Contains(r.stdout, "checked: chunk hashes, block digests") {
		t.Errorf("verify does not say what it checked: %s", r)
	}

	var d checkedOut
	decodeJSON(t, must(t, "verify", "--json", "--device", im.src, im.img), &d)
	if !slices.Contains(d.Checked, "chunk-hashes") || !slices.Contains(d.Checked, "source-sha256") || d.SourceSHA256 != shaHex(im.data) {
		t.Errorf("verify --device --json: checked %q, source_sha256 %q; want chunk-hashes and source-sha256, and %s",
			d.Checked, d.SourceSHA256, shaHex(im.data))
	}
	if r := must(t, "verify", "--device", im.src, im.img); !strings.Contains(r.stdout, "source sha256 "+shaHex(im.data)) {
		t.Errorf("verify --device does not print the recomputed source SHA-256: %s", r)
	}

	var i checkedOut
	decodeJSON(t, must(t, "info", "--json", im.img), &i)
	if !slices.Equal(i.Checked, []string{"manifest-checksum"}) {
		t.Errorf("info --json checked %q, want only the manifest's checksum", i.Checked)
	}

	// Restore reports what its own report says it checked, and nothing
	// it did not.
	var r checkedOut
	target := filepath.Join(t.TempDir(), "t.img")
	decodeJSON(t, must(t, "restore", "--json", im.img, target), &r)
	if r.Checked == nil {
		t.Errorf("restore --json has no \"checked\" list")
	}
	if slices.Contains(r.Checked, "source-sha256") {
		t.Errorf("restore claims the whole-source SHA-256: %q", r.Checked)
	}
	if !bytes.Equal(readFile(t, target), im.data) {
		t.Errorf("restore did not restore the source")
	}
}
