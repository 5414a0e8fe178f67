package sign

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests run the real OpenSSH ssh-keygen (Debian's openssh-client):
// keys it makes are what operators use, and ssh-keygen -Y verify is how
// anyone without seedship checks a seed.

// sshKeygen runs ssh-keygen with args and stdin, returning its combined
// output and whether it exited 0.
func sshKeygen(t *testing.T, stdin []byte, args ...string) (string, bool) {
	t.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen not found (install openssh-client): %v", err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("ssh-keygen %s: %v", strings.Join(args, " "), err)
	}
	return string(out), err == nil
}

// testKey is a key pair made by ssh-keygen.
type testKey struct {
	priv, pub string // file paths
	pubLine   string // the .pub file's line
	pass      string // passphrase, or ""
}

// makeKey makes a key pair with ssh-keygen -t typ in a new directory.
func makeKey(t *testing.T, typ, pass string, extra ...string) testKey {
	t.Helper()
	priv := filepath.Join(t.TempDir(), "id_"+typ)
	args := append([]string{"-q", "-t", typ, "-N", pass, "-C", "ops@example.com", "-f", priv}, extra...)
	if out, ok := sshKeygen(t, nil, args...); !ok {
		t.Fatalf("ssh-keygen -t %s: %s", typ, out)
	}
	pubLine, err := os.ReadFile(priv + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv: priv, pub: priv + ".pub", pubLine: strings.TrimSpace(string(pubLine)), pass: pass}
}

// keyFields returns "keytype base64" of the key's public line.
func (k testKey) keyFields() string {
	f := strings.Fields(k.pubLine)
	return f[0] + " " + f[1]
}

// signer loads the key with our code.
func (k testKey) signer(t *testing.T) *Signer {
	t.Helper()
	passFile := ""
	if k.pass != "" {
		passFile = filepath.Join(t.TempDir(), "pass")
		if err := os.WriteFile(passFile, []byte(k.pass+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := LoadSigner(k.priv, passFile)
	if err != nil {
		t.Fatalf("LoadSigner: %v", err)
	}
	return s
}

// writeFile writes b to a new file named name and returns its path.
func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// opensshVerify runs ssh-keygen -Y verify on manifest and sig with the
// allowed_signers text, for identity id and namespace ns.
func opensshVerify(t *testing.T, allowed, id, ns string, manifest, sig []byte) (string, bool) {
	t.Helper()
	return sshKeygen(t, manifest, "-Y", "verify", "-f", writeFile(t, "allowed_signers", []byte(allowed)),
		"-I", id, "-n", ns, "-s", writeFile(t, "manifest.ssm.sig", sig))
}

// opensshSign signs manifest with ssh-keygen -Y sign and returns the
// signature file's bytes.
func opensshSign(t *testing.T, k testKey, ns string, manifest []byte) []byte {
	t.Helper()
	m := writeFile(t, "manifest.ssm", manifest)
	if out, ok := sshKeygen(t, nil, "-Y", "sign", "-f", k.priv, "-n", ns, m); !ok {
		t.Fatalf("ssh-keygen -Y sign: %s", out)
	}
	sig, err := os.ReadFile(m + ".sig")
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// testManifest returns the bytes of a real version-2 manifest.
func testManifest(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../testdata/vectors/basic/image/manifest.ssm")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func trustOf(t *testing.T, text string) *Trust {
	t.Helper()
	tr, err := ParseTrust("allowed_signers", []byte(text))
	if err != nil {
		t.Fatalf("ParseTrust: %v", err)
	}
	return tr
}

// TestOpenSSHInterop signs with our code and checks with ssh-keygen, and
// signs with ssh-keygen and checks with ours, for each key kind an
// operator may have.
func TestOpenSSHInterop(t *testing.T) {
	manifest := testManifest(t)
	for _, tc := range []struct {
		typ, pass string
		extra     []string
	}{
		{typ: "ed25519"},
		{typ: "ed25519", pass: "correct horse battery staple"},
		{typ: "ecdsa", extra: []string{"-b", "256"}},
		{typ: "ecdsa", extra: []string{"-b", "521"}},
		{typ: "rsa", extra: []string{"-b", "3072"}},
		{typ: "rsa", pass: "rsa passphrase", extra: []string{"-b", "2048", "-m", "PEM"}},
	} {
		name := tc.typ + strings.Join(tc.extra, "")
		if tc.pass != "" {
			name += "-passphrase"
		}
		t.Run(name, func(t *testing.T) {
			k := makeKey(t, tc.typ, tc.pass, tc.extra...)
			allowed := `ops@example.com namespaces="seedship" ` + k.keyFields() + "\n"

			sig, err := k.signer(t).Sign(manifest)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(sig, []byte("-----BEGIN SSH SIGNATURE-----\n")) {
				t.Fatalf("signature does not start with the armor line:\n%s", sig)
			}
			who, err := Verify(manifest, sig, trustOf(t, allowed))
			if err != nil {
				t.Fatalf("Verify of our signature: %v", err)
			}
			if who.Principals != "ops@example.com" || !strings.HasPrefix(who.Key, strings.Fields(k.pubLine)[0]+" SHA256:") || who.Line != 1 {
				t.Fatalf("Verify returned %+v", who)
			}
			if out, ok := opensshVerify(t, allowed, "ops@example.com", "seedship", manifest, sig); !ok || !strings.Contains(out, `Good "seedship" signature for ops@example.com`) {
				t.Fatalf("ssh-keygen -Y verify refused our signature: %s", out)
			}
			// The public key file itself is a trust file too.
			pubTrust, err := LoadTrust(k.pub)
			if err != nil {
				t.Fatal(err)
			}
			if who, err := Verify(manifest, sig, pubTrust); err != nil || who.Principals != "ops@example.com" {
				t.Fatalf("Verify with the .pub file: %v, %+v", err, who)
			}

			if tc.pass != "" {
				return // ssh-keygen -Y sign would prompt for the passphrase
			}
			theirs := opensshSign(t, k, "seedship", manifest)
			// Ed25519 and RSA (PKCS #1 v1.5) signatures are deterministic:
			// the files are then the same byte for byte.
			if tc.typ != "ecdsa" && !bytes.Equal(sig, theirs) {
				t.Errorf("our signature file differs from ssh-keygen's:\n%s\nwant:\n%s", sig, theirs)
			}
			if who, err := Verify(manifest, theirs, trustOf(t, allowed)); err != nil || who.Principals != "ops@example.com" {
				t.Fatalf("Verify of ssh-keygen's signature: %v, %+v", err, who)
			}
		})
	}
}

// TestTamperedManifestRefused flips one byte anywhere in the manifest:
// both we and ssh-keygen refuse the signature.
func TestTamperedManifestRefused(t *testing.T) {
	manifest := testManifest(t)
	k := makeKey(t, "ed25519", "")
	allowed := "ops@example.com " + k.keyFields() + "\n"
	trust := trustOf(t, allowed)
	sig, err := k.signer(t).Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, at := range []int{0, 40, len(manifest) / 2, len(manifest) - 41, len(manifest) - 1} {
		tampered := bytes.Clone(manifest)
		tampered[at] ^= 0x01
		if _, err := Verify(tampered, sig, trust); !errors.Is(err, ErrBadSignature) {
			t.Errorf("byte %d flipped: Verify = %v, want ErrBadSignature", at, err)
		}
		if out, ok := opensshVerify(t, allowed, "ops@example.com", "seedship", tampered, sig); ok {
			t.Errorf("byte %d flipped: ssh-keygen -Y verify accepted it: %s", at, out)
		}
	}
	for _, tampered := range [][]byte{manifest[:len(manifest)-1], append(bytes.Clone(manifest), 0)} {
		if _, err := Verify(tampered, sig, trust); !errors.Is(err, ErrBadSignature) {
			t.Errorf("manifest of %d bytes: Verify = %v, want ErrBadSignature", len(tampered), err)
		}
	}
	// The untampered manifest still verifies: the refusals above are the
	// flipped bytes', not a broken check.
	if _, err := Verify(manifest, sig, trust); err != nil {
		t.Fatal(err)
	}
}

// TestWrongNamespaceRefused: a signature ssh-keygen made for another
// namespace is never a seed's.
func TestWrongNamespaceRefused(t *testing.T) {
	manifest := testManifest(t)
	k := makeKey(t, "ed25519", "")
	sig := opensshSign(t, k, "other", manifest)
	_, err := Verify(manifest, sig, trustOf(t, "ops@example.com "+k.keyFields()))
	if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), `namespace "other"`) {
		t.Fatalf("Verify = %v, want ErrBadSignature naming namespace other", err)
	}
	if out, ok := opensshVerify(t, "ops@example.com "+k.keyFields()+"\n", "ops@example.com", "seedship", manifest, sig); ok {
		t.Fatalf("ssh-keygen accepted a signature for namespace other: %s", out)
	}
}

// TestOtherKeyUntrusted: a valid signature by a key the trust file does
// not list is ErrUntrusted, for us and for ssh-keygen.
func TestOtherKeyUntrusted(t *testing.T) {
	manifest := testManifest(t)
	trusted, other := makeKey(t, "ed25519", ""), makeKey(t, "ed25519", "")
	allowed := "ops@example.com " + trusted.keyFields() + "\n"
	sig, err := other.signer(t).Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(manifest, sig, trustOf(t, allowed))
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), other.signer(t).String()) {
		t.Fatalf("Verify = %v, want ErrUntrusted naming %s", err, other.signer(t))
	}
	if out, ok := opensshVerify(t, allowed, "ops@example.com", "seedship", manifest, sig); ok {
		t.Fatalf("ssh-keygen accepted another key: %s", out)
	}
}

// TestTrustOptionsAgreeWithOpenSSH: namespaces, valid-after and
// valid-before accept and refuse as ssh-keygen -Y verify does.
func TestTrustOptionsAgreeWithOpenSSH(t *testing.T) {
	manifest := testManifest(t)
	k := makeKey(t, "ed25519", "")
	sig, err := k.signer(t).Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-48*time.Hour).UTC().Format("20060102") + "Z"
	future := time.Now().Add(48*time.Hour).UTC().Format("20060102") + "Z"
	for _, tc := range []struct {
		options string
		ok      bool
	}{
		{``, true},
		{`namespaces="seedship"`, true},
		{`namespaces="git,seedship"`, true},
		{`namespaces="seed*"`, true},
		{`NAMESPACES="*"`, true},
		{`namespaces="git"`, false},
		{`namespaces="!seedship,*"`, false},
		{`namespaces=""`, false},
		{`valid-after="` + past + `"`, true},
		{`valid-after="` + future + `"`, false},
		{`valid-before="` + future + `"`, true},
		{`valid-before="` + past + `"`, false},
		{`valid-after="` + past + `",valid-before="` + future + `",namespaces="seedship"`, true},
	} {
		allowed := "ops@example.com " + tc.options + " " + k.keyFields() + "\n"
		_, err := Verify(manifest, sig, trustOf(t, allowed))
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrUntrusted)) {
			t.Errorf("options %s: Verify = %v, want ok=%v (else ErrUntrusted)", tc.options, err, tc.ok)
		}
		if out, ok := opensshVerify(t, allowed, "ops@example.com", "seedship", manifest, sig); ok != tc.ok {
			t.Errorf("options %s: ssh-keygen ok=%v, want %v: %s", tc.options, ok, tc.ok, out)
		}
	}
}
