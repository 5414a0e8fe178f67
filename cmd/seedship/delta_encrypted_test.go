package main

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestDeltaEncrypted drives a delta of an encrypted image (spec §12)
// through the CLI: the delta is computed with the base's passphrase and
// is then opened by the base's recipient's identity (the same wrapped
// keys); it applies onto a target restored from the base, verifies with
// and without the key, copies without it, and is refused (exit 2, target
// untouched) without an identity.
func TestDeltaEncrypted(t *testing.T) {
	resumeKeysIn(t)
	d := t.TempDir()
	id1, r1 := ageKey(t, d, "id1.txt")
	pass := writeFile(t, filepath.Join(d, "pass.txt"), []byte("delta test passphrase\n"))
	base, changed := deltaSource(40, 3, 17, 33)
	src := writeFile(t, filepath.Join(d, "src.img"), base)
	img := captureImage(t, src, "--chunk-size", "256KiB", "--recipient", r1, "--passphrase-file", pass)
	writeFile(t, src, changed)

	delta := filepath.Join(d, "delta")
	var out deltaJSONOut
	decodeJSON(t, must(t, "delta", "--json", "--passphrase-file", pass, img, src, delta), &out)
	if out.ChangedChunks != 3 || out.ChunkSize != 64*kib || out.SHA256 != shaHex(changed) || out.BaseManifest != loadManifestHash(t, img) {
		t.Errorf("delta --json: %+v; want 3 changed 64 KiB chunks, the changed source's sha256 and the base's manifest hash", out)
	}
	if m := loadManifest(t, delta); !m.Encrypted() {
		t.Fatalf("the delta of an encrypted image requires %v, not aead", m.Header.Requires)
	}

	target := filepath.Join(d, "target.img")
	must(t, "restore", "--quiet", "--identity", id1, img, target)
	r := expect(t, exitUsage, "restore", delta, target)
	oneLineError(t, r, "no identity given opens this image's key")
	if !bytes.Equal(readFile(t, target), base) {
		t.Fatal("a restore refused for its key changed the target")
	}
	must(t, "restore", "--quiet", "--identity", id1, delta, target)
	if !bytes.Equal(readFile(t, target), changed) {
		t.Fatal("target differs from the changed source after the encrypted delta")
	}
	must(t, "restore", "--quiet", "--passphrase-file", pass, delta, target) // twice: nothing to do

	must(t, "verify", "--quiet", "--identity", id1, delta)
	must(t, "verify", "--quiet", delta) // keyless: its stored bytes and base digests
	cp := filepath.Join(d, "copy")
	must(t, "copy", "--quiet", delta, cp)
	again := filepath.Join(d, "again.img")
	must(t, "restore", "--quiet", "--identity", id1, img, again)
	must(t, "restore", "--quiet", "--identity", id1, cp, again)
	if !bytes.Equal(readFile(t, again), changed) {
		t.Fatal("the copied encrypted delta does not give the changed source")
	}

	// A target that holds other bytes where the delta writes.
	wrong := writeFile(t, filepath.Join(d, "wrong.img"), randBytes(99, len(base)))
	r = expect(t, exitUsage, "restore", "--identity", id1, delta, wrong)
	oneLineError(t, r, wrong, "bytes 196608-262143", out.BaseManifest, "nothing was written")
	if !bytes.Equal(readFile(t, wrong), randBytes(99, len(base))) {
		t.Fatal("the refused target changed")
	}
	// An encrypted delta is no base of another delta.
	r = expect(t, exitUsage, "delta", "--identity", id1, "--chain", img, delta, src, filepath.Join(d, "d2"))
	oneLineError(t, r, "encrypted delta")
	if files := treeOf(t, filepath.Join(d, "d2")); len(files) != 0 {
		t.Errorf("a refused delta wrote %v", keys(files))
	}
}
