package sign

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// ed25519Signer returns an in-memory ed25519 signer and its
// authorized_keys form, for tests that need no OpenSSH.
func ed25519Signer(t testing.TB) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey())))
}

// wireBlob is the SSHSIG blob of PROTOCOL.sshsig §2, to build malformed
// signatures field by field.
type wireBlob struct {
	Magic     [6]byte
	Version   uint32
	PublicKey string
	Namespace string
	Reserved  string
	Hash      string
	Signature string
}

// TestMalformedSignaturesRefused: every signature file that is not one
// well-formed signature of this manifest for namespace seedship is
// ErrBadSignature (or ErrUnsigned when there is none), never a panic.
func TestMalformedSignaturesRefused(t *testing.T) {
	manifest := []byte("a manifest")
	signer, pubLine := ed25519Signer(t)
	trust := trustOf(t, "ops@example.com "+pubLine)
	good, err := sshsig.Sign(bytes.NewReader(manifest), signer, sshsig.HashSHA512, Namespace)
	if err != nil {
		t.Fatal(err)
	}
	goodArmored := sshsig.Armor(good)
	if _, err := Verify(manifest, goodArmored, trust); err != nil {
		t.Fatalf("the good signature: %v", err)
	}
	var goodBlob wireBlob
	if err := ssh.Unmarshal(good.Marshal(), &goodBlob); err != nil {
		t.Fatal(err)
	}
	blob := func(edit func(*wireBlob)) []byte {
		b := goodBlob
		edit(&b)
		return armor(ssh.Marshal(b))
	}
	// A signature over the right signed data but with sha256 declared in
	// the blob and sha512 signed: the declared hash must be the signed one.
	sha256Sig, err := sshsig.Sign(bytes.NewReader(manifest), signer, sshsig.HashSHA256, Namespace)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(goodArmored), "\n")

	for _, tc := range []struct {
		name string
		sig  []byte
		want error
	}{
		{"nil", nil, ErrUnsigned},
		{"empty", []byte{}, ErrBadSignature},
		{"oversized", append(bytes.Clone(goodArmored), bytes.Repeat([]byte("\n"), MaxSignatureSize)...), ErrBadSignature},
		{"no armor", good.Marshal(), ErrBadSignature},
		{"leading text", append([]byte("x\n"), goodArmored...), ErrBadSignature},
		{"trailing text", append(bytes.Clone(goodArmored), "x\n"...), ErrBadSignature},
		{"two signatures", append(bytes.Clone(goodArmored), goodArmored...), ErrBadSignature},
		{"truncated in base64", goodArmored[:len(goodArmored)/2], ErrBadSignature},
		{"no end line", []byte(strings.Join(lines[:len(lines)-2], "\n") + "\n"), ErrBadSignature},
		{"base64 line dropped", []byte(strings.Join(append([]string{lines[0]}, lines[2:]...), "\n")), ErrBadSignature},
		{"bad base64", []byte(lines[0] + "\n!!!!\n" + lines[len(lines)-2] + "\n"), ErrBadSignature},
		{"PEM header", []byte(lines[0] + "\nProc-Type: 4,ENCRYPTED\n\n" + strings.Join(lines[1:], "\n")), ErrBadSignature},
		{"other PEM type", pem.EncodeToMemory(&pem.Block{Type: "SSH SIGNATURE X", Bytes: good.Marshal()}), ErrBadSignature},
		{"blob truncated", armor(good.Marshal()[:len(good.Marshal())-1]), ErrBadSignature},
		{"blob extended", armor(append(good.Marshal(), 0)), ErrBadSignature},
		{"bad magic", blob(func(b *wireBlob) { b.Magic[0] = 'X' }), ErrBadSignature},
		{"version 2", blob(func(b *wireBlob) { b.Version = 2 }), ErrBadSignature},
		{"other namespace", blob(func(b *wireBlob) { b.Namespace = "git" }), ErrBadSignature},
		{"empty namespace", blob(func(b *wireBlob) { b.Namespace = "" }), ErrBadSignature},
		{"hash md5", blob(func(b *wireBlob) { b.Hash = "md5" }), ErrBadSignature},
		{"hash swapped", blob(func(b *wireBlob) { b.Hash = "sha256" }), ErrBadSignature},
		{"sha256 blob, sha512 signature", blob(func(b *wireBlob) { b.Signature = string(ssh.Marshal(sha256Sig.Signature)) }), ErrBadSignature},
		{"bad public key", blob(func(b *wireBlob) { b.PublicKey = "garbage" }), ErrBadSignature},
		{"signature garbage", blob(func(b *wireBlob) { b.Signature = "garbage" }), ErrBadSignature},
		{"signature bit flipped", blob(func(b *wireBlob) {
			s := []byte(b.Signature)
			s[len(s)-1] ^= 1
			b.Signature = string(s)
		}), ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(manifest, tc.sig, trust)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("message is not one line: %q", err)
			}
		})
	}
	// Signed with sha256 (ssh-keygen -O hashalg=sha256), it is valid.
	if _, err := Verify(manifest, sshsig.Armor(sha256Sig), trust); err != nil {
		t.Fatalf("sha256 signature: %v", err)
	}
}

// TestSignatureByCertificateRefused: a signature whose key is an SSH
// certificate is refused by name, not matched against a plain key.
func TestSignatureByCertificateRefused(t *testing.T) {
	manifest := []byte("a manifest")
	ca, _ := ed25519Signer(t)
	user, pubLine := ed25519Signer(t)
	cert := &ssh.Certificate{Key: user.PublicKey(), CertType: ssh.UserCert, ValidPrincipals: []string{"ops"}, ValidBefore: ssh.CertTimeInfinity}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	certSigner, err := ssh.NewCertSigner(cert, user)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sshsig.Sign(bytes.NewReader(manifest), certSigner, sshsig.HashSHA512, Namespace)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(manifest, sshsig.Armor(sig), trustOf(t, "ops "+pubLine))
	if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Verify = %v, want ErrBadSignature naming the certificate", err)
	}
}

// TestSignerRefusesUnusableKeys: a missing, wrong or locked key is
// ErrBadKey with a message that names the key file and the fix.
func TestSignerRefusesUnusableKeys(t *testing.T) {
	locked := makeKey(t, "ed25519", "secret")
	open := makeKey(t, "ed25519", "")
	wrongPass := writeFile(t, "wrong", []byte("not the secret\n"))
	emptyPass := writeFile(t, "empty", []byte("\n"))
	dir := t.TempDir()
	for _, tc := range []struct {
		name, key, pass, want string
	}{
		{"missing key file", filepath.Join(dir, "nope"), "", "no such file"},
		{"a directory", dir, "", "directory"},
		{"public key given", open.pub, "", "not an OpenSSH private key"},
		{"locked, no passphrase", locked.priv, "", "protected by a passphrase"},
		{"wrong passphrase", locked.priv, wrongPass, "passphrase is wrong"},
		{"empty passphrase file", locked.priv, emptyPass, "is empty"},
		{"missing passphrase file", locked.priv, filepath.Join(dir, "nope"), "no such file"},
		{"oversized", writeFile(t, "big", bytes.Repeat([]byte("A"), MaxKeySize+1)), "", "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadSigner(tc.key, tc.pass)
			if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("LoadSigner = %v, want ErrBadKey naming %s and saying %q", err, tc.key, tc.want)
			}
		})
	}
	// An unencrypted key ignores a passphrase file it does not need.
	if _, err := LoadSigner(open.priv, wrongPass); err != nil {
		t.Fatalf("unencrypted key with a passphrase file: %v", err)
	}
}

// TestPassphraseFile: one trailing newline (LF or CRLF) is not part of
// the passphrase; anything else is.
func TestPassphraseFile(t *testing.T) {
	for _, tc := range []struct{ content, want string }{
		{"pass\n", "pass"},
		{"pass\r\n", "pass"},
		{"pass", "pass"},
		{"pass\n\n", "pass\n"},
		{" pass \n", " pass "},
		{"pass\r", "pass\r"},
	} {
		got, err := PassphraseFile(writeFile(t, "p", []byte(tc.content)))()
		if err != nil || string(got) != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}
}

// TestSignHasNoStateAcrossCalls: Sign with the same key signs each
// manifest on its own, and the package-level Sign matches Signer.Sign.
func TestSignHasNoStateAcrossCalls(t *testing.T) {
	k := makeKey(t, "ed25519", "")
	pemBytes, err := os.ReadFile(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	trust := trustOf(t, k.pubLine)
	for _, m := range [][]byte{[]byte("one"), []byte("two"), {}} {
		sig, err := Sign(m, pemBytes, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Verify(m, sig, trust); err != nil {
			t.Fatalf("%q: %v", m, err)
		}
		if _, err := Verify(append(bytes.Clone(m), 'x'), sig, trust); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("%q signature accepted for another manifest: %v", m, err)
		}
	}
}

// TestValidityBoundsAreInclusive pins the edges as OpenSSH has them: a
// key is valid at valid-after and at valid-before, not outside.
func TestValidityBoundsAreInclusive(t *testing.T) {
	manifest := []byte("m")
	signer, pubLine := ed25519Signer(t)
	s, err := sshsig.Sign(bytes.NewReader(manifest), signer, sshsig.HashSHA512, Namespace)
	if err != nil {
		t.Fatal(err)
	}
	sig := sshsig.Armor(s)
	trust := trustOf(t, `ops valid-after="20300101Z",valid-before="203001020304UTC" `+pubLine)
	after := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	before := time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)
	for _, tc := range []struct {
		at time.Time
		ok bool
	}{
		{after.Add(-time.Second), false},
		{after, true},
		{before, true},
		{before.Add(time.Second), false},
	} {
		_, err := trust.verifyAt(manifest, sig, tc.at)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrUntrusted)) {
			t.Errorf("at %s: %v, want ok=%v", tc.at, err, tc.ok)
		}
	}
}

// TestSeveralLinesForOneKey: the first line that accepts the key names
// the signer; lines that refuse it are named when none accepts.
func TestSeveralLinesForOneKey(t *testing.T) {
	manifest := []byte("m")
	signer, pubLine := ed25519Signer(t)
	_, otherLine := ed25519Signer(t)
	s, err := sshsig.Sign(bytes.NewReader(manifest), signer, sshsig.HashSHA512, Namespace)
	if err != nil {
		t.Fatal(err)
	}
	sig := sshsig.Armor(s)
	text := "git-only namespaces=\"git\" " + pubLine + "\nsomeone " + otherLine + "\nseed-ops,backup namespaces=\"seedship\" " + pubLine + "\n"
	who, err := Verify(manifest, sig, trustOf(t, text))
	if err != nil || who.Principals != "seed-ops,backup" || who.Line != 3 {
		t.Fatalf("Verify = %+v, %v; want seed-ops,backup from line 3", who, err)
	}
	_, err = Verify(manifest, sig, trustOf(t, "git-only namespaces=\"git\" "+pubLine+"\n"))
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), `line 1 allows it only for namespaces "git"`) {
		t.Fatalf("Verify = %v, want ErrUntrusted naming line 1", err)
	}
}

// TestMatchPatternList follows ssh_config(5) PATTERNS.
func TestMatchPatternList(t *testing.T) {
	for _, tc := range []struct {
		s, list string
		want    int
	}{
		{"seedship", "seedship", 1},
		{"seedship", "git,seedship", 1},
		{"seedship", "git", 0},
		{"seedship", "", 0},
		{"seedship", "*", 1},
		{"seedship", "seed*", 1},
		{"seedship", "*ship", 1},
		{"seedship", "s??dship", 1},
		{"seedship", "s?dship", 0},
		{"seedship", "*e*e*", 1},
		{"seedship", "!seedship,*", -1},
		{"seedship", "*,!seed*", -1},
		{"seedship", "!git,seedship", 1},
		{"seedship", "!git", 0},
		{"seedship", "seedship*", 1},
		{"seedship", "seedshi", 0},
		{"seedship", "seedshipx", 0},
		{"", "*", 1},
		{"", "", 1},
	} {
		if got := matchPatternList(tc.s, tc.list); got != tc.want {
			t.Errorf("matchPatternList(%q, %q) = %d, want %d", tc.s, tc.list, got, tc.want)
		}
	}
}

// TestParseTrust reads public key files and allowed_signers files, and
// names the line of anything it cannot read.
func TestParseTrust(t *testing.T) {
	_, k1 := ed25519Signer(t)
	_, k2 := ed25519Signer(t)
	k1Fields := strings.Join(strings.Fields(k1)[:2], " ")
	certLine := "ssh-ed25519-cert-v01@openssh.com " + base64.StdEncoding.EncodeToString([]byte("x"))

	type want struct {
		principals    string
		namespaces    string
		hasNamespaces bool
		line          int
	}
	for _, tc := range []struct {
		name, text string
		want       []want
		err        string // substring of the error; "" for none
	}{
		{name: "pub file", text: k1 + " ops@host\n", want: []want{{principals: "ops@host", line: 1}}},
		{name: "pub line without comment", text: k1Fields, want: []want{{line: 1}}},
		{name: "two pub lines", text: k1 + "\n" + k2 + "\n", want: []want{{line: 1}, {line: 2}}},
		{name: "comments and blanks", text: "# trusted\n\n   \n\t# indented comment\nops@example.com " + k1Fields + "\n", want: []want{{principals: "ops@example.com", line: 5}}},
		{name: "CRLF", text: "ops " + k1Fields + "\r\n# x\r\n", want: []want{{principals: "ops", line: 1}}},
		{name: "leading blanks", text: "  \tops " + k1Fields, want: []want{{principals: "ops", line: 1}}},
		{name: "several principals", text: "alice@example.com,bob@example.com,*@ops.example.com " + k1Fields, want: []want{{principals: "alice@example.com,bob@example.com,*@ops.example.com", line: 1}}},
		{name: "quoted principals", text: `"Ops Team,backup" ` + k1Fields, want: []want{{principals: "Ops Team,backup", line: 1}}},
		{name: "namespaces", text: `ops namespaces="seedship,git" ` + k1Fields, want: []want{{principals: "ops", namespaces: "seedship,git", hasNamespaces: true, line: 1}}},
		{name: "option keywords in any case", text: `ops Namespaces="seedship",VALID-AFTER="20200101" ` + k1Fields, want: []want{{principals: "ops", namespaces: "seedship", hasNamespaces: true, line: 1}}},
		{name: "quoted option with blank", text: `ops namespaces="a b,seedship" ` + k1Fields, want: []want{{principals: "ops", namespaces: "a b,seedship", hasNamespaces: true, line: 1}}},
		{name: "escaped quote", text: `ops namespaces="a\"b" ` + k1Fields, want: []want{{principals: "ops", namespaces: `a"b`, hasNamespaces: true, line: 1}}},
		{name: "times", text: `ops valid-after="20200101",valid-before="20991231235959Z" ` + k1Fields, want: []want{{principals: "ops", line: 1}}},
		{name: "key comment ignored", text: "ops " + k1Fields + " laptop key", want: []want{{principals: "ops", line: 1}}},

		{name: "byte order mark", text: "\ufeff" + k1, want: []want{{line: 1}}},
		{name: "a private key", text: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n", err: "it is a private key"},
		{name: "empty", text: "", err: "lists no keys"},
		{name: "only comments", text: "# nothing\n\n", err: "lists no keys"},
		{name: "principals only", text: "# c\nops\n", err: "line 2: unusable trust file: no key after the principals"},
		{name: "no key after options", text: `ops namespaces="seedship"`, err: "line 1: unusable trust file: no key after the options"},
		{name: "cert-authority", text: "ops cert-authority " + k1Fields, err: "line 1: unusable trust file: cert-authority is not supported"},
		{name: "cert-authority among options", text: `ops namespaces="seedship",cert-authority ` + k1Fields, err: "cert-authority is not supported"},
		{name: "unknown option", text: "ops no-touch-required " + k1Fields, err: `line 1: unusable trust file: unknown option "no-touch-required"`},
		{name: "unquoted value", text: "ops namespaces=seedship " + k1Fields, err: "needs a value in double quotes"},
		{name: "unclosed option quote", text: `ops namespaces="seedship ` + k1Fields, err: "quote is not closed"},
		{name: "unclosed principals quote", text: `"ops ` + k1Fields, err: "opening quote is not closed"},
		{name: "quote inside principals", text: `o"p"s ` + k1Fields, err: "quote inside the principals"},
		{name: "text after quoted principals", text: `"ops"x ` + k1Fields, err: "no blank after the quoted principals"},
		{name: "trailing comma", text: `ops namespaces="seedship", ` + k1Fields, err: "end with a comma"},
		{name: "junk after option", text: `ops namespaces="seedship"x ` + k1Fields, err: "unexpected"},
		{name: "twice namespaces", text: `ops namespaces="a",namespaces="b" ` + k1Fields, err: `more than one "namespaces"`},
		{name: "twice valid-after", text: `ops valid-after="20200101",valid-after="20200102" ` + k1Fields, err: `more than one "valid-after"`},
		{name: "bad time", text: `ops valid-after="2020-01-01" ` + k1Fields, err: "not a time"},
		{name: "impossible date", text: `ops valid-before="20201340" ` + k1Fields, err: "not a valid date"},
		{name: "before not after", text: `ops valid-after="20210101Z",valid-before="20200101Z" ` + k1Fields, err: "valid-before is not after valid-after"},
		{name: "bad base64", text: "ops ssh-ed25519 !!!!", err: "line 1: unusable trust file: ssh-ed25519 key: bad base64"},
		{name: "key of another type", text: "ops ssh-rsa " + strings.Fields(k1)[1], err: "the key is ssh-ed25519 but the line says ssh-rsa"},
		{name: "garbage key", text: "ops ssh-ed25519 " + base64.StdEncoding.EncodeToString([]byte("garbage")), err: "ssh-ed25519 key:"},
		{name: "unknown key type", text: "ops ssh-foo AAAA", err: `unknown option "ssh-foo"`},
		{name: "pub line missing key", text: "ssh-ed25519", err: "no key"},
		{name: "certificate line", text: certLine, err: "is a certificate"},
		{name: "DSA key", text: "ops ssh-dss AAAAB3NzaC1kc3M=", err: "DSA keys are not accepted"},
		{name: "bad line after good ones", text: "ops " + k1Fields + "\n\n# x\nbad\n", err: "line 4:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := ParseTrust("signers", []byte(tc.text))
			if tc.err != "" {
				if !errors.Is(err, ErrBadTrust) || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "trust file signers") {
					t.Fatalf("ParseTrust = %v, want ErrBadTrust naming the file and saying %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("message is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tr.Len() != len(tc.want) {
				t.Fatalf("%d entries, want %d", tr.Len(), len(tc.want))
			}
			for i, w := range tc.want {
				e := tr.entries[i]
				got := want{principals: e.principals, namespaces: e.namespaces, hasNamespaces: e.hasNamespaces, line: e.line}
				if got != w || e.key == nil || len(e.keyBytes) == 0 {
					t.Errorf("entry %d = %+v (key %v), want %+v", i, got, e.key != nil, w)
				}
			}
		})
	}
}

// TestParseTrustTimes pins the time forms and zones of valid-after and
// valid-before.
func TestParseTrustTimes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
	}{
		{"20300102", time.Date(2030, 1, 2, 0, 0, 0, 0, time.Local)},
		{"20300102Z", time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"20300102z", time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)},
		{"203001020304", time.Date(2030, 1, 2, 3, 4, 0, 0, time.Local)},
		{"203001020304UTC", time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)},
		{"20300102030405Z", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)},
	} {
		got, err := parseTime(tc.in)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "Z", "2030", "2030010", "203001020", "20300102030405060", "2030-1-02", "+0300102", "19691231Z", "20301301", "20300132", "203001022460"} {
		if got, err := parseTime(bad); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", bad, got)
		}
	}
}

// TestLoadTrustBounds: a trust file is read only up to MaxTrustSize.
func TestLoadTrustBounds(t *testing.T) {
	_, k := ed25519Signer(t)
	big := append([]byte(k+"\n"), bytes.Repeat([]byte("#\n"), MaxTrustSize/2)...)
	if _, err := LoadTrust(writeFile(t, "big", big)); !errors.Is(err, ErrBadTrust) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("LoadTrust of %d bytes = %v, want ErrBadTrust", len(big), err)
	}
	missing := filepath.Join(t.TempDir(), "none")
	if _, err := LoadTrust(missing); !errors.Is(err, ErrBadTrust) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("LoadTrust of a missing file = %v", err)
	}
}

// TestRSASHA1SignatureRefused: PROTOCOL.sshsig forbids the legacy
// RSA-SHA1 "ssh-rsa" signature algorithm; a signature made with it is
// refused even by a trusted RSA key, while rsa-sha2-512 from the same
// key is accepted.
func TestRSASHA1SignatureRefused(t *testing.T) {
	manifest := []byte("a manifest")
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	trust := trustOf(t, "ops "+string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	h := sha512.Sum512(manifest)
	signed := append([]byte("SSHSIG"), ssh.Marshal(struct{ Namespace, Reserved, Hash, H string }{Namespace, "", "sha512", string(h[:])})...)
	for _, tc := range []struct {
		algorithm string
		ok        bool
	}{
		{ssh.KeyAlgoRSA, false},
		{ssh.KeyAlgoRSASHA512, true},
		{ssh.KeyAlgoRSASHA256, true},
	} {
		sig, err := signer.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader, signed, tc.algorithm)
		if err != nil {
			t.Fatal(err)
		}
		blob := ssh.Marshal(wireBlob{Magic: [6]byte{'S', 'S', 'H', 'S', 'I', 'G'}, Version: 1, PublicKey: string(signer.PublicKey().Marshal()),
			Namespace: Namespace, Hash: "sha512", Signature: string(ssh.Marshal(sig))})
		_, err = Verify(manifest, armor(blob), trust)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBadSignature)) {
			t.Errorf("%s: Verify = %v, want ok=%v", tc.algorithm, err, tc.ok)
		}
	}
}
