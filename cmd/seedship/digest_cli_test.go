package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The digest-only procedure through the CLI, as an operator runs it on a
// realistic ext4 disk: capture --digest-only before the disk leaves,
// verify the digests, verify --device on arrival, diff when it differs;
// restore and copy refuse the image.
func TestDigestOnlyCLI(t *testing.T) {
	d := t.TempDir()
	src := makeExt4(t, d)
	data := readFile(t, src)
	img := filepath.Join(d, "digests")

	var capJSON struct {
		DigestOnly  bool  `json:"digest_only"`
		StoredBytes int64 `json:"stored_bytes"`
		Size        int64 `json:"size"`
	}
	decodeJSON(t, must(t, "capture", "--digest-only", "--json", src, img), &capJSON)
	if !capJSON.DigestOnly || capJSON.StoredBytes == 0 || capJSON.StoredBytes > capJSON.Size/1000 {
		t.Fatalf("capture --digest-only --json: %+v", capJSON)
	}
	oneLineError(t, expect(t, exitUsage, "capture", "--digest-only", "--level", "9", src, filepath.Join(d, "other")), "--digest-only", "--level")
	absent(t, filepath.Join(d, "other"), "a refused capture")

	r := must(t, "verify", img)
	if !strings.Contains(r.stdout, "a digest-only image") || !strings.Contains(r.stdout, "digest entries") || strings.Contains(r.stdout, "chunk hashes") {
		t.Errorf("verify of a digest-only image does not say what it checked: %s", r)
	}
	var vj struct {
		OK         bool     `json:"ok"`
		DigestOnly bool     `json:"digest_only"`
		Digests    uint64   `json:"digests"`
		Checked    []string `json:"checked"`
		Changed    []struct {
			Chunk   uint64 `json:"chunk"`
			Offset  int64  `json:"offset"`
			Length  int64  `json:"length"`
			Located bool   `json:"located"`
		} `json:"changed"`
	}
	decodeJSON(t, must(t, "verify", "--json", img), &vj)
	if !vj.OK || !vj.DigestOnly || vj.Digests == 0 || slices.Contains(vj.Checked, "chunk-hashes") {
		t.Errorf("verify --json of a digest-only image: %+v", vj)
	}

	r = must(t, "verify", "--device", src, img)
	for _, want := range []string{"chunk hashes", "block digests", "source sha256"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("verify --device does not list %q among its checks: %s", want, r)
		}
	}

	// One changed byte: verify --device names the chunk and the block,
	// diff names the 64 KiB range.
	off := 20*mib + 12345
	changed := slices.Clone(data)
	changed[off] ^= 0x20
	dev := writeFile(t, filepath.Join(d, "arrived.img"), changed)
	block := off / (64 * kib) * (64 * kib)
	chunk := off / (8 * mib)
	r = expect(t, exitIntegrity, "verify", "--device", dev, img)
	if !strings.Contains(r.stderr, fmt.Sprintf("BAD chunk %d:", chunk)) || !strings.Contains(r.stderr, fmt.Sprintf("bytes %d-%d", block, block+64*kib-1)) {
		t.Errorf("verify --device does not name chunk %d and block %d-%d: %s", chunk, block, block+64*kib-1, r)
	}
	vj.Changed = nil
	r = expect(t, exitIntegrity, "verify", "--json", "--device", dev, img)
	decodeJSON(t, r, &vj)
	if len(vj.Changed) != 1 || vj.Changed[0].Chunk != uint64(chunk) || vj.Changed[0].Offset != int64(block) || vj.Changed[0].Length != 64*kib || !vj.Changed[0].Located {
		t.Errorf("verify --json --device: changed %+v", vj.Changed)
	}
	r = expect(t, exitIntegrity, "diff", img, dev)
	if strings.TrimSpace(r.stdout) != fmt.Sprintf("changed bytes %d-%d (64.0 KiB)", block, block+64*kib-1) {
		t.Errorf("diff: %s", r)
	}

	target := writeFile(t, filepath.Join(d, "target.img"), []byte("keep me"))
	oneLineError(t, expect(t, exitUsage, "restore", img, target), "digest-only")
	if string(readFile(t, target)) != "keep me" {
		t.Error("a refused restore changed the target")
	}
	oneLineError(t, expect(t, exitUsage, "copy", img, filepath.Join(d, "copy")), "digest-only")
	if _, err := os.Stat(filepath.Join(d, "copy", "manifest.ssm")); err == nil {
		t.Error("a refused copy wrote a manifest")
	}
}
