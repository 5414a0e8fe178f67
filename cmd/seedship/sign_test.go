package main

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/sign"
)

// sshKey makes an ed25519 key with the real ssh-keygen and returns the
// private key path and its "keytype base64" public fields.
func sshKey(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	key := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops@example.com", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	f := strings.Fields(string(readFile(t, key+".pub")))
	return key, f[0] + " " + f[1]
}

// opensshAccepts runs ssh-keygen -Y verify on a manifest file and the
// signature beside it, as the README tells anyone without seedship to.
func opensshAccepts(t *testing.T, allowed, manifest string) bool {
	t.Helper()
	cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "ops@example.com", "-n", "seedship", "-s", manifest+".sig")
	cmd.Stdin = bytes.NewReader(readFile(t, manifest))
	return cmd.Run() == nil
}

// TestSignedImage: capture --sign-key signs every manifest file; verify,
// info, restore and copy with --trust accept it, and refuse with exit 3,
// writing nothing, an image signed by another key, an unsigned one, and
// one whose manifest was forged with its hashes recomputed.
func TestSignedImage(t *testing.T) {
	d := t.TempDir()
	key, pub := sshKey(t, d, "id_ed25519")
	_, otherPub := sshKey(t, d, "other")
	allowed := writeFile(t, filepath.Join(d, "allowed_signers"), []byte("# seed signers\nops@example.com namespaces=\"seedship\" "+pub+"\n"))
	otherAllowed := writeFile(t, filepath.Join(d, "other_signers"), []byte("someone "+otherPub+"\n"))
	data := randBytes(31, 3*mib+77)
	src := writeFile(t, filepath.Join(d, "source.img"), data)
	img := captureImage(t, src, "--chunk-size", "64KiB", "--segment-size", "256KiB", "--parity", "2+1", "--sign-key", key)

	m := loadManifest(t, img)
	keys := append([]string{format.ManifestKey}, m.CopyKeys()...)
	if len(keys) < 2 {
		t.Fatalf("want manifest copies in a parity image, got %v", keys)
	}
	for _, k := range keys {
		if !opensshAccepts(t, allowed, filepath.Join(img, k)) {
			t.Errorf("ssh-keygen -Y verify refused %s.sig", k)
		}
	}

	for _, trust := range []string{allowed, key + ".pub"} {
		if r := must(t, "verify", "--trust", trust, img); !strings.Contains(r.stdout, "signed by ops@example.com (ssh-ed25519 SHA256:") {
			t.Errorf("verify does not say who signed: %s", r)
		}
	}
	if r := must(t, "info", "--trust", allowed, img); !strings.Contains(r.stdout, "trusted by "+allowed+" line 2") {
		t.Errorf("info does not say who signed: %s", r)
	}
	if r := must(t, "info", img); !strings.Contains(r.stdout, "(not checked: give --trust)") {
		t.Errorf("info without --trust: %s", r)
	}
	target := filepath.Join(d, "restored.img")
	must(t, "restore", "--quiet", "--trust", allowed, img, target)
	if !bytes.Equal(readFile(t, target), data) {
		t.Fatal("restored bytes differ from the source")
	}
	// A copy carries the signature: the copy verifies under --trust.
	copied := filepath.Join(d, "copied")
	must(t, "copy", "--quiet", "--trust", allowed, img, copied)
	must(t, "verify", "--quiet", "--trust", allowed, copied)
	for _, k := range keys {
		if !bytes.Equal(readFile(t, filepath.Join(copied, sign.SigKey(k))), readFile(t, filepath.Join(img, sign.SigKey(k)))) {
			t.Errorf("copy did not carry %s", sign.SigKey(k))
		}
	}

	refused := func(img, trust string, names ...string) {
		t.Helper()
		for _, args := range [][]string{{"verify"}, {"info"}, {"verify", "--device", src}} {
			r := expect(t, exitIntegrity, append(append(args, "--trust", trust), img)...)
			oneLineError(t, r, names...)
		}
		fresh := filepath.Join(t.TempDir(), "new.img")
		oneLineError(t, expect(t, exitIntegrity, "restore", "--trust", trust, img, fresh), names...)
		absent(t, fresh, "a refused restore must not create its target")
		existing := writeFile(t, filepath.Join(t.TempDir(), "existing.img"), []byte("precious"))
		expect(t, exitIntegrity, "restore", "--trust", trust, img, existing)
		if string(readFile(t, existing)) != "precious" {
			t.Error("a refused restore changed its target")
		}
		dst := filepath.Join(t.TempDir(), "dst")
		oneLineError(t, expect(t, exitIntegrity, "copy", "--trust", trust, img, dst), names...)
		if _, err := os.Stat(filepath.Join(dst, format.ManifestKey)); err == nil {
			t.Error("a refused copy wrote a manifest")
		}
	}
	refused(img, otherAllowed, "manifest.ssm.sig", "signed by an untrusted key ssh-ed25519")

	unsigned := captureImage(t, src, "--chunk-size", "64KiB")
	refused(unsigned, allowed, "manifest.ssm.sig", "not signed")

	// The attack: edit the manifest (one byte of its "tool" value) and
	// recompute its trailer hash. The reader's own checks pass; the
	// signature does not, for seedship and for ssh-keygen.
	forged := copyImage(t, img)
	mb := readFile(t, filepath.Join(forged, format.ManifestKey))
	at := bytes.Index(mb, []byte(`"tool":"`)) + len(`"tool":"`)
	mb[at] ^= 0x01
	sum := sha256.Sum256(mb[:len(mb)-40])
	copy(mb[len(mb)-40:], sum[:])
	for _, k := range keys {
		writeFile(t, filepath.Join(forged, k), mb)
	}
	must(t, "verify", "--quiet", forged) // without --trust nothing tells
	refused(forged, allowed, "manifest.ssm.sig", "does not match the manifest")
	if opensshAccepts(t, allowed, filepath.Join(forged, format.ManifestKey)) {
		t.Error("ssh-keygen -Y verify accepted the forged manifest")
	}
}

// TestSigningBadInput: an unusable key, passphrase or trust file is bad
// input (exit 2) on one line, and nothing is created.
func TestSigningBadInput(t *testing.T) {
	d := t.TempDir()
	key, _ := sshKey(t, d, "id_ed25519")
	src := writeFile(t, filepath.Join(d, "source.img"), randBytes(5, 300*kib))
	img := captureImage(t, src, "--chunk-size", "64KiB")
	for _, tc := range []struct {
		args  []string
		names []string
	}{
		{[]string{"capture", "--sign-key", filepath.Join(d, "missing"), src}, []string{"missing", "unusable signing key"}},
		{[]string{"capture", "--sign-key", key + ".pub", src}, []string{"not an OpenSSH private key"}},
		{[]string{"capture", "--sign-passphrase-file", key, src}, []string{"--sign-key"}},
	} {
		dst := filepath.Join(t.TempDir(), "dst")
		oneLineError(t, expect(t, exitUsage, append(tc.args, dst)...), tc.names...)
		absent(t, dst, "a refused capture must not create its destination")
	}
	badTrust := writeFile(t, filepath.Join(d, "bad_signers"), []byte("ops cert-authority ssh-ed25519 AAAA\n"))
	for _, cmd := range []string{"verify", "info", "copy", "restore"} {
		args := []string{cmd, "--trust", badTrust, img}
		if cmd == "copy" || cmd == "restore" {
			args = append(args, filepath.Join(t.TempDir(), "out"))
		}
		oneLineError(t, expect(t, exitUsage, args...), badTrust, "line 1", "cert-authority")
	}
}
