package sign

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store/dir"
)

// copyDir copies the files of the test vector image src into a new
// directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestSignedImageRefusesForgedManifest is the attack the package exists
// for, on a real image with a manifest copy: someone who can write to the
// seed edits the manifest and recomputes its trailer hash, so that the
// reader's own checks pass; the signature beside it refuses it, and so
// does ssh-keygen.
func TestSignedImageRefusesForgedManifest(t *testing.T) {
	ctx := context.Background()
	root := copyDir(t, "../testdata/vectors/parity/image")
	st, err := dir.New(root)
	if err != nil {
		t.Fatal(err)
	}
	im, err := seed.Open(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	keys := append([]string{format.ManifestKey}, im.Manifest().CopyKeys()...)
	if len(keys) < 2 {
		t.Fatalf("the vector image should have a manifest copy; keys %v", keys)
	}
	k := makeKey(t, "ed25519", "")
	sig, err := k.signer(t).Sign(im.ManifestBytes())
	if err != nil {
		t.Fatal(err)
	}
	if err := PutSignatures(ctx, st, keys, sig); err != nil {
		t.Fatal(err)
	}
	allowed := `ops@example.com namespaces="seedship" ` + k.keyFields() + "\n"
	trust := trustOf(t, allowed)
	if _, err := VerifyStored(ctx, st, keys, im.ManifestBytes(), trust); err != nil {
		t.Fatalf("signed image: %v", err)
	}
	for _, key := range keys {
		mb, err := os.ReadFile(filepath.Join(root, key))
		if err != nil {
			t.Fatal(err)
		}
		sb, err := os.ReadFile(filepath.Join(root, SigKey(key)))
		if err != nil {
			t.Fatal(err)
		}
		if out, ok := opensshVerify(t, allowed, "ops@example.com", "seedship", mb, sb); !ok {
			t.Fatalf("ssh-keygen -Y verify %s: %s", SigKey(key), out)
		}
	}

	// Forge: change one byte of the header JSON's "tool" value and
	// recompute the manifest hash in the trailer.
	forged := bytes.Clone(im.ManifestBytes())
	at := bytes.Index(forged, []byte(`"tool":"`))
	if at < 0 {
		t.Fatal("no tool field in the manifest")
	}
	forged[at+len(`"tool":"`)] ^= 0x01
	sum := sha256.Sum256(forged[:len(forged)-40])
	copy(forged[len(forged)-40:], sum[:])
	for _, key := range keys {
		if err := os.WriteFile(filepath.Join(root, key), forged, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	im2, err := seed.Open(ctx, st)
	if err != nil {
		t.Fatalf("the forged manifest should pass the reader's own checks: %v", err)
	}
	if !bytes.Equal(im2.ManifestBytes(), forged) {
		t.Fatal("seed.Open did not read the forged manifest")
	}
	if _, err := VerifyStored(ctx, st, keys, im2.ManifestBytes(), trust); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged manifest: %v, want ErrBadSignature", err)
	}
	if out, ok := opensshVerify(t, allowed, "ops@example.com", "seedship", forged, sig); ok {
		t.Fatalf("ssh-keygen accepted the forged manifest: %s", out)
	}
}
