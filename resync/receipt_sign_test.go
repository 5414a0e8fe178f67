package resync_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/seedship/seedship/resync"
	"github.com/seedship/seedship/sign"
	"github.com/seedship/seedship/verify"
)

// newSigner makes an ed25519 signer and the allowed_signers line of its
// public key.
func newSigner(t *testing.T) (*sign.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.NewSigner("test key", pem.EncodeToMemory(block), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, "ops@example.com " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

// TestLoadSignedReceipt: with a trust set, a receipt loads only with a
// signature of its exact bytes, for the receipt namespace, by a trusted
// key; each refusal is a one-line CheckError for CondReceiptSigned whose
// cause sign.Refused matches, except a signature file that cannot be
// read, which refuses nothing about the receipt. Without a trust set the
// signature is not read.
func TestLoadSignedReceipt(t *testing.T) {
	d := t.TempDir()
	image := verify.ReceiptImage{Location: "dir:/seed", ID: strings.Repeat("a", 32), ManifestSHA256: strings.Repeat("b", 64),
		Size: 1 << 20, Chunks: 1, SourceSHA256: strings.Repeat("c", 64)}
	receipt, err := receiptFor(image, verify.Target{Path: "/dev/loop3", Resolved: "/dev/loop3", Kind: verify.KindBlock, Size: 1 << 20}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	signer, line := newSigner(t)
	other, _ := newSigner(t)
	trust, err := sign.ParseTrust("allowed_signers", []byte(line+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	sigOf := func(s *sign.Signer, ns string, b []byte) []byte {
		sig, err := s.SignNamespace(b, ns)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	// write writes a receipt and, unless sig is nil, its signature.
	write := func(name string, b, sig []byte) string {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if sig != nil {
			if err := os.WriteFile(verify.ReceiptSignatureFile(p), sig, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	good := write("good.json", receipt, sigOf(signer, sign.ReceiptNamespace, receipt))
	r, who, err := resync.LoadSignedReceipt(good, trust)
	if err != nil || !r.Passed() || who == nil || who.Principals != "ops@example.com" {
		t.Fatalf("LoadSignedReceipt of a signed receipt: %v, %v, %v", r, who, err)
	}
	unsigned := write("unsigned.json", receipt, nil)
	if r, who, err := resync.LoadSignedReceipt(unsigned, nil); err != nil || !r.Passed() || who != nil {
		t.Fatalf("LoadSignedReceipt without trust: %v, %v, %v", r, who, err)
	}
	// Reformatted JSON that decodes to the same receipt is not the signed
	// receipt: the signature covers bytes, not meaning.
	reindented := bytes.ReplaceAll(receipt, []byte("\n  "), []byte("\n   "))
	sigDir := write("sigdir.json", receipt, nil)
	if err := os.Mkdir(verify.ReceiptSignatureFile(sigDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		path    string
		refused error // the sign sentinel, or nil for a signature that cannot be read
		names   []string
	}{
		{"unsigned", unsigned, sign.ErrUnsigned, []string{"unsigned.json", "not signed", "--sign-key"}},
		{"another key", write("other.json", receipt, sigOf(other, sign.ReceiptNamespace, receipt)), sign.ErrUntrusted,
			[]string{"other.json", "untrusted key", other.String()}},
		{"edited", write("edited.json", reindented, sigOf(signer, sign.ReceiptNamespace, receipt)), sign.ErrBadSignature,
			[]string{"edited.json", "does not match the receipt"}},
		{"a manifest's signature", write("manifest.json", receipt, sigOf(signer, sign.Namespace, receipt)), sign.ErrBadSignature,
			[]string{`namespace "seedship", not "seedship-receipt"`}},
		{"oversized signature", write("big.json", receipt, make([]byte, sign.MaxSignatureSize+100)), sign.ErrBadSignature,
			[]string{"larger than any signature"}},
		{"garbage signature", write("garbage.json", receipt, []byte("not a signature\n")), sign.ErrBadSignature,
			[]string{"does not start with"}},
		{"signature is a directory", sigDir, nil, []string{"sigdir.json.sig", "is not a regular file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, who, err := resync.LoadSignedReceipt(tc.path, trust)
			if r != nil || who != nil {
				t.Errorf("a refused receipt was returned: %v, %v", r, who)
			}
			wantCheck(t, err, resync.CondReceiptSigned, tc.names...)
			if tc.refused == nil {
				if sign.Refused(err) {
					t.Errorf("an unreadable signature file refuses the receipt as if it were checked: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.refused) || !sign.Refused(err) {
				t.Errorf("error %v: want it to match %v and sign.Refused", err, tc.refused)
			}
		})
	}
}
