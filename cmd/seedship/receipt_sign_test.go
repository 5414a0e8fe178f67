//go:build linux

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/sign"
	"github.com/seedship/seedship/verify"
)

// signedSeed is a source captured with the exec adapter and signed, its
// restored target, keys, and trust files.
type signedSeed struct {
	seeded
	key, otherKey  string // private keys: the trusted one and another
	pub            string // key's "keytype base64" public fields
	allowed        string // allowed_signers listing key (for every namespace)
	dir            string
	unsignedImage  string // the same source captured without --sign-key
	unsignedTarget string // its restored target
}

func newSignedSeed(t *testing.T) signedSeed {
	t.Helper()
	fp := newFakeProduct(t, "volume=r0/0")
	d := t.TempDir()
	key, pub := sshKey(t, d, "id_ed25519")
	otherKey, _ := sshKey(t, d, "other")
	s := signedSeed{seeded: seeded{fp: fp, data: randBytes(67, mib+4321), img: filepath.Join(d, "seed"),
		target: filepath.Join(d, "target.img"), receipt: filepath.Join(d, "target.receipt")},
		key: key, otherKey: otherKey, pub: pub, dir: d,
		allowed:       writeFile(t, filepath.Join(d, "allowed_signers"), []byte("ops@example.com "+pub+"\n")),
		unsignedImage: filepath.Join(d, "unsigned-seed"), unsignedTarget: filepath.Join(d, "unsigned-target.img")}
	s.src = writeFile(t, filepath.Join(d, "source.img"), s.data)
	for _, c := range []struct {
		img    string
		target string
		flags  []string
	}{{s.img, s.target, []string{"--sign-key", key}}, {s.unsignedImage, s.unsignedTarget, nil}} {
		args := append([]string{"--adapter", "exec", "--config", fp.config, "--chunk-size", "64KiB", "--quiet"}, c.flags...)
		if r := captureAdapterCLI(t, append(args, s.src, c.img)...); r.code != exitOK {
			t.Fatalf("capture with the exec adapter: %s", r)
		}
		must(t, "restore", "--quiet", c.img, c.target)
	}
	return s
}

// receiptOpenSSH runs ssh-keygen -Y verify on a receipt and the signature
// beside it, for namespace ns.
func receiptOpenSSH(t *testing.T, allowed, receipt, ns string) (string, bool) {
	t.Helper()
	cmd := exec.Command("ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "ops@example.com", "-n", ns, "-s", verify.ReceiptSignatureFile(receipt))
	cmd.Stdin = bytes.NewReader(readFile(t, receipt))
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// copyReceipt copies the receipt at from, and its signature if sig is
// not nil (sig's bytes, else from's), to a new path in dir.
func copyReceipt(t *testing.T, dir, name string, receipt, sig []byte) string {
	t.Helper()
	p := writeFile(t, filepath.Join(dir, name), receipt)
	if sig != nil {
		writeFile(t, verify.ReceiptSignatureFile(p), sig)
	}
	return p
}

// TestSignedReceipt: verify --receipt --sign-key writes the receipt and
// a detached signature of its bytes beside it, which ssh-keygen -Y verify
// accepts for namespace seedship-receipt and refuses for seedship; extend
// --trust accepts it, and refuses with exit 3, one line and without
// running the product, a receipt unsigned, signed by another key, edited
// after signing, or carrying a manifest's signature, and an image that is
// not signed; without --trust a signed receipt is accepted as before.
func TestSignedReceipt(t *testing.T) {
	t.Parallel()
	s := newSignedSeed(t)
	d := s.dir

	r := must(t, "verify", "--device", s.target, "--receipt", s.receipt, "--sign-key", s.key, s.img)
	sigPath := verify.ReceiptSignatureFile(s.receipt)
	if !strings.Contains(r.stdout, "receipt "+s.receipt+" written, signed by ssh-ed25519 SHA256:") || !strings.Contains(r.stdout, sigPath) {
		t.Errorf("verify does not say it signed the receipt: %s", r)
	}
	if !loadReceipt(t, s.receipt).Passed() {
		t.Fatal("the receipt of a matching target is no pass")
	}
	if out, ok := receiptOpenSSH(t, s.allowed, s.receipt, sign.ReceiptNamespace); !ok {
		t.Errorf("ssh-keygen -Y verify -n %s refused the receipt's signature: %s", sign.ReceiptNamespace, out)
	}
	if out, ok := receiptOpenSSH(t, s.allowed, s.receipt, sign.Namespace); ok {
		t.Errorf("ssh-keygen -Y verify -n %s accepted a receipt's signature as a manifest's: %s", sign.Namespace, out)
	}
	if names := keys(treeOf(t, d)); strings.Contains(strings.Join(names, " "), ".tmp-receipt") {
		t.Errorf("temporary files left: %q", names)
	}
	var out verifyJSON
	decodeJSON(t, must(t, "verify", "--json", "--device", s.target, "--receipt", s.receipt, "--sign-key", s.key, s.img), &out)
	if out.Receipt != s.receipt || out.ReceiptSignature != sigPath {
		t.Errorf("verify --json: receipt %q signature %q, want %q and %q", out.Receipt, out.ReceiptSignature, s.receipt, sigPath)
	}
	receipt, sig := readFile(t, s.receipt), readFile(t, sigPath)

	// Accepted under --trust, both signatures checked and reported.
	before := len(s.fp.calls(t))
	r = s.extend(t, exitOK, "--trust", s.allowed, "--receipt", s.receipt)
	for _, cond := range []string{"check ok: the image is signed by a trusted key (ops@example.com", "check ok: the receipt is signed by a trusted key (ops@example.com"} {
		if !strings.Contains(r.stderr, cond) {
			t.Errorf("extend --trust does not report %q: %s", cond, r)
		}
	}
	if !s.fp.ran(t, "extend") || len(s.fp.calls(t)) == before {
		t.Fatalf("extend --trust did not run the product's extend: %s", r)
	}
	var ej extendJSON
	decodeJSON(t, s.extend(t, exitOK, "--json", "--trust", s.allowed, "--receipt", s.receipt), &ej)
	if !strings.HasPrefix(ej.Signer, "ops@example.com (ssh-ed25519 ") || !strings.HasPrefix(ej.ReceiptSigner, "ops@example.com (ssh-ed25519 ") {
		t.Errorf("extend --json --trust: signer %q, receipt signer %q; want both ops@example.com", ej.Signer, ej.ReceiptSigner)
	}
	// Without --trust the signed receipt is accepted as before, and the
	// unchecked signature said to be unchecked.
	r = s.extend(t, exitOK, "--receipt", s.receipt)
	if !strings.Contains(r.stderr, "is not checked: give --trust") {
		t.Errorf("extend without --trust does not say the receipt's signature went unchecked: %s", r)
	}

	// The refusals.
	unsigned := filepath.Join(d, "unsigned.receipt")
	must(t, "verify", "--quiet", "--device", s.target, "--receipt", unsigned, s.img)
	otherSigned := filepath.Join(d, "other.receipt")
	must(t, "verify", "--quiet", "--device", s.target, "--receipt", otherSigned, "--sign-key", s.otherKey, s.img)
	edited := copyReceipt(t, d, "edited.receipt", bytes.Replace(receipt, []byte(`"host": "`), []byte(`"host": "x`), 1), sig)
	if bytes.Equal(readFile(t, edited), receipt) {
		t.Fatal("the edit changed nothing")
	}
	manifestSig := copyReceipt(t, d, "manifest-sig.receipt", receipt, readFile(t, filepath.Join(s.img, format.ManifestKey+".sig")))
	// A receipt for the unsigned image, signed by the trusted key.
	unsignedImageReceipt := filepath.Join(d, "unsigned-image.receipt")
	must(t, "verify", "--quiet", "--device", s.unsignedTarget, "--receipt", unsignedImageReceipt, "--sign-key", s.key, s.unsignedImage)
	// One key, trusted for manifests only.
	manifestsOnly := writeFile(t, filepath.Join(d, "manifest_signers"), []byte("ops@example.com namespaces=\"seedship\" "+s.pub+"\n"))
	badTrust := writeFile(t, filepath.Join(d, "bad_signers"), []byte("ops cert-authority "+s.pub+"\n"))

	for _, tc := range []struct {
		name   string
		img    string
		target string
		flags  []string
		code   int
		names  []string
	}{
		{"unsigned receipt", s.img, s.target, []string{"--trust", s.allowed, "--receipt", unsigned}, exitIntegrity,
			[]string{"the receipt is signed by a trusted key", unsigned, "not signed", "--sign-key"}},
		{"receipt signed by another key", s.img, s.target, []string{"--trust", s.allowed, "--receipt", otherSigned}, exitIntegrity,
			[]string{"the receipt is signed by a trusted key", otherSigned, "untrusted key", s.allowed}},
		{"receipt edited after signing", s.img, s.target, []string{"--trust", s.allowed, "--receipt", edited}, exitIntegrity,
			[]string{"the receipt is signed by a trusted key", edited, "does not match the receipt"}},
		{"manifest signature as the receipt's", s.img, s.target, []string{"--trust", s.allowed, "--receipt", manifestSig}, exitIntegrity,
			[]string{"the receipt is signed by a trusted key", `namespace "seedship", not "seedship-receipt"`}},
		{"unsigned image", s.unsignedImage, s.unsignedTarget, []string{"--trust", s.allowed, "--receipt", unsignedImageReceipt}, exitIntegrity,
			[]string{"the image is signed by a trusted key", "not signed"}},
		{"unsigned image, no receipt", s.unsignedImage, s.unsignedTarget, []string{"--trust", s.allowed}, exitIntegrity,
			[]string{"the image is signed by a trusted key", "not signed"}},
		{"key trusted for manifests only", s.img, s.target, []string{"--trust", manifestsOnly, "--receipt", s.receipt}, exitIntegrity,
			[]string{"the receipt is signed by a trusted key", `allows it only for namespaces "seedship"`}},
		{"unusable trust file", s.img, s.target, []string{"--trust", badTrust, "--receipt", s.receipt}, exitUsage,
			[]string{badTrust, "cert-authority"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.fp.calls(t))
			targetBefore := readFile(t, tc.target)
			r := s.extendOf(t, tc.code, tc.img, tc.target, tc.flags...)
			errorLine(t, r, tc.names...)
			if calls := s.fp.calls(t)[before:]; len(calls) != 0 {
				t.Errorf("the product ran after a refused signature: %q", calls)
			}
			if !bytes.Equal(readFile(t, tc.target), targetBefore) {
				t.Errorf("a refused extend changed the target")
			}
		})
	}
	// The same receipts pass without --trust (but for the edited one,
	// whose edit only touched the host): the refusals above are the
	// signatures', not the receipts'.
	for _, p := range []string{unsigned, otherSigned, manifestSig} {
		s.extend(t, exitOK, "--receipt", p)
	}
}

// TestSignedReceiptOfFailure: a failed read-back's receipt is signed too
// (it is evidence either way), and a later unsigned receipt at the same
// path removes the signature that no longer matches it.
func TestSignedReceiptOfFailure(t *testing.T) {
	t.Parallel()
	im := newImage(t)
	d := t.TempDir()
	key, pub := sshKey(t, d, "id_ed25519")
	allowed := writeFile(t, filepath.Join(d, "allowed_signers"), []byte("ops@example.com "+pub+"\n"))
	target := filepath.Join(d, "target.img")
	must(t, "restore", "--quiet", im.img, target)
	flipFileByte(t, target, int64(mib+3))
	path := filepath.Join(d, "target.receipt")
	r := expect(t, exitIntegrity, "verify", "--device", target, "--receipt", path, "--sign-key", key, im.img)
	errorLine(t, r, "chunk(s) differ", "receipt "+path+" written, signed by")
	if rc := loadReceipt(t, path); rc.Passed() || !rc.Result.Differs {
		t.Errorf("receipt of a differing target: %+v", rc.Result)
	}
	if out, ok := receiptOpenSSH(t, allowed, path, sign.ReceiptNamespace); !ok {
		t.Errorf("ssh-keygen -Y verify refused the failed receipt's signature: %s", out)
	}
	must(t, "restore", "--quiet", im.img, target)
	must(t, "verify", "--quiet", "--device", target, "--receipt", path, im.img)
	absent(t, verify.ReceiptSignatureFile(path), "an unsigned receipt must not keep an older receipt's signature")
	if !loadReceipt(t, path).Passed() {
		t.Error("the unsigned receipt of the restored target is no pass")
	}
}

// TestSignedReceiptBadInput: an unusable --sign-key or passphrase, or
// --sign-key without a receipt, is refused with exit 2 and one line before
// the device is read back (a missing device is not even looked at), and
// nothing is written: no receipt, no signature, no temporary file.
func TestSignedReceiptBadInput(t *testing.T) {
	t.Parallel()
	im := newImage(t)
	d := t.TempDir()
	key, _ := sshKey(t, d, "id_ed25519")
	locked := filepath.Join(d, "locked")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "right horse", "-f", locked).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	wrongPass := writeFile(t, filepath.Join(d, "wrong.pass"), []byte("battery staple\n"))
	target := writeFile(t, filepath.Join(d, "target.img"), im.data)
	missingTarget := filepath.Join(d, "no-such-target")
	receipt := filepath.Join(d, "out", "target.receipt")
	if err := os.MkdirAll(filepath.Dir(receipt), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		dev   string
		names []string
	}{
		{"missing key", []string{"--receipt", receipt, "--sign-key", filepath.Join(d, "missing")}, missingTarget, []string{"missing", "unusable signing key"}},
		{"public key", []string{"--receipt", receipt, "--sign-key", key + ".pub"}, missingTarget, []string{"not an OpenSSH private key"}},
		{"locked key without passphrase", []string{"--receipt", receipt, "--sign-key", locked}, missingTarget, []string{locked, "passphrase"}},
		{"wrong passphrase", []string{"--receipt", receipt, "--sign-key", locked, "--sign-passphrase-file", wrongPass}, missingTarget, []string{locked, "passphrase is wrong"}},
		{"passphrase without key", []string{"--receipt", receipt, "--sign-passphrase-file", wrongPass}, target, []string{"--sign-key"}},
		{"sign-key without receipt", []string{"--sign-key", key}, target, []string{"--sign-key signs the restore receipt", "--receipt FILE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := treeOf(t, d)
			args := append([]string{"verify", "--device", tc.dev}, tc.flags...)
			oneLineError(t, expect(t, exitUsage, append(args, im.img)...), tc.names...)
			if after := treeOf(t, d); !mapsEqual(before, after) {
				t.Errorf("a refused verify changed %s: %q -> %q", d, keys(before), keys(after))
			}
		})
	}
	absent(t, receipt, "nothing is written on bad input")
	absent(t, verify.ReceiptSignatureFile(receipt), "nothing is written on bad input")
}
