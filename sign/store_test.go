package sign

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// TestStoredSignatures: signatures stored beside each manifest copy in a
// real directory store are found, checked in order, and any one by a
// trusted key over the manifest suffices; the files on disk are what
// ssh-keygen checks.
func TestStoredSignatures(t *testing.T) {
	root := t.TempDir()
	st, err := dir.New(root)
	if err != nil {
		t.Fatal(err)
	}
	manifest, k := testManifest(t), makeKey(t, "ed25519", "")
	sig, err := k.signer(t).Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := PutSignatures(context.Background(), st, []string{"manifest.ssm", "manifest.ssm.1"}, sig); err != nil {
		t.Fatal(err)
	}
	if got := SigKey("manifest.ssm.1"); got != "manifest.ssm.1.sig" {
		t.Fatalf("SigKey = %q", got)
	}
	for _, key := range []string{"manifest.ssm", "manifest.ssm.1"} {
		b, err := os.ReadFile(filepath.Join(root, key+".sig"))
		if err != nil || !bytes.Equal(b, sig) {
			t.Fatalf("%s.sig: %v", key, err)
		}
	}
	// ssh-keygen checks the pair on disk as the README says, and finds
	// whom to name with -I.
	allowed := writeFile(t, "allowed_signers", []byte("ops@example.com "+k.keyFields()+"\n"))
	if out, ok := sshKeygen(t, manifest, "-Y", "verify", "-f", allowed, "-I", "ops@example.com", "-n", "seedship",
		"-s", filepath.Join(root, "manifest.ssm.1.sig")); !ok {
		t.Fatalf("ssh-keygen -Y verify of the stored signature: %s", out)
	}
	if out, ok := sshKeygen(t, nil, "-Y", "find-principals", "-f", allowed, "-s", filepath.Join(root, "manifest.ssm.sig")); !ok || strings.TrimSpace(out) != "ops@example.com" {
		t.Fatalf("ssh-keygen -Y find-principals: %q", out)
	}
	checkStoredSignatures(t, func() store.Store {
		st, err := dir.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// checkStoredSignatures runs the store-level checks on a fresh store from
// newStore.
func checkStoredSignatures(t *testing.T, newStore func() store.Store) {
	ctx := context.Background()
	st := newStore()
	manifest := testManifest(t)
	k, other := makeKey(t, "ed25519", ""), makeKey(t, "ed25519", "")
	trust := trustOf(t, "ops@example.com "+k.keyFields())
	keys := []string{"manifest.ssm", "manifest.ssm.1", "manifest.ssm.2"}
	put := func(key string, b []byte) {
		t.Helper()
		if err := st.Put(ctx, key, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
	}
	del := func(key string) {
		t.Helper()
		if err := st.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := VerifyStored(ctx, st, keys, manifest, trust); !errors.Is(err, ErrUnsigned) || !strings.Contains(err.Error(), "manifest.ssm.sig of "+st.String()) {
		t.Fatalf("unsigned image: %v, want ErrUnsigned naming manifest.ssm.sig", err)
	}
	sig, err := k.signer(t).Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := PutSignatures(ctx, st, keys, sig); err != nil {
		t.Fatal(err)
	}
	if who, err := VerifyStored(ctx, st, keys, manifest, trust); err != nil || who.Principals != "ops@example.com" {
		t.Fatalf("signed image: %+v, %v", who, err)
	}
	tampered := bytes.Clone(manifest)
	tampered[100] ^= 0x80
	if _, err := VerifyStored(ctx, st, keys, tampered, trust); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "manifest.ssm.sig of "+st.String()) {
		t.Fatalf("tampered manifest: %v, want ErrBadSignature naming manifest.ssm.sig", err)
	}

	// manifest.ssm.sig damaged and manifest.ssm.1.sig lost: the copy
	// beside manifest.ssm.2 still proves the manifest.
	put("manifest.ssm.sig", sig[:len(sig)/2])
	del("manifest.ssm.1.sig")
	if who, err := VerifyStored(ctx, st, keys, manifest, trust); err != nil || !bytes.Equal(who.Signature, sig) {
		t.Fatalf("one good signature left: %v", err)
	}
	// Without a trust set, the intact one is what copy carries along.
	if who, err := InspectStored(ctx, st, keys, manifest); err != nil || !bytes.Equal(who.Signature, sig) || who.Key != k.signer(t).String() {
		t.Fatalf("InspectStored: %+v, %v", who, err)
	}
	// With that one gone too, the damaged one is what is reported.
	del("manifest.ssm.2.sig")
	if _, err := VerifyStored(ctx, st, keys, manifest, trust); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("only a damaged signature: %v, want ErrBadSignature", err)
	}

	// Re-signed by someone else: untrusted, whichever copy is read.
	otherSig, err := other.signer(t).Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := PutSignatures(ctx, st, keys, otherSig); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyStored(ctx, st, keys, manifest, trust); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("other signer: %v, want ErrUntrusted", err)
	}
	// Inspect trusts nothing: it names the other key, and still refuses a
	// signature that does not match.
	if who, err := InspectStored(ctx, st, keys, manifest); err != nil || who.Key != other.signer(t).String() || who.Principals != "" {
		t.Fatalf("InspectStored of the other signer: %+v, %v", who, err)
	}
	if _, err := InspectStored(ctx, st, keys, tampered); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("InspectStored of a tampered manifest: %v, want ErrBadSignature", err)
	}
	if _, err := VerifyStored(ctx, st, keys, manifest, nil); err == nil {
		t.Fatal("VerifyStored with no trust set accepted the image")
	}

	// An oversized object is refused after reading at most
	// MaxSignatureSize+1 bytes of it.
	put("manifest.ssm.sig", bytes.Repeat([]byte("A"), 4<<20))
	if _, err := ReadSignature(ctx, st, "manifest.ssm"); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("4 MiB signature: %v", err)
	}
}

// TestReadSignatureBounds: an oversized signature object is refused
// after reading at most MaxSignatureSize+1 bytes, and a directory in
// its place is a bad signature, not a crash or an unsigned image.
func TestReadSignatureBounds(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	st, err := dir.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "manifest.ssm.sig"), bytes.Repeat([]byte("A"), 10<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSignature(ctx, st, "manifest.ssm"); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("10 MiB signature: %v", err)
	}
	if err := os.Mkdir(filepath.Join(root, "manifest.ssm.1.sig"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSignature(ctx, st, "manifest.ssm.1"); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("directory in place of a signature: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := os.WriteFile(filepath.Join(root, "manifest.ssm.2.sig"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSignature(cancelled, st, "manifest.ssm.2"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled read: %v", err)
	}
}
