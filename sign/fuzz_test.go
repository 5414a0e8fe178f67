package sign

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// FuzzVerifySignature feeds hostile signature files to Verify: it never
// panics, every refusal is one of the three sentinels on one line, and an
// acceptance names the one trusted key.
func FuzzVerifySignature(f *testing.F) {
	manifest := []byte("SSHIPMAN fuzz manifest")
	signer, pubLine := ed25519Signer(f)
	trust, err := ParseTrust("fuzz", []byte("ops "+pubLine))
	if err != nil {
		f.Fatal(err)
	}
	s, err := sshsig.Sign(bytes.NewReader(manifest), signer, sshsig.HashSHA512, Namespace)
	if err != nil {
		f.Fatal(err)
	}
	good := sshsig.Armor(s)
	f.Add(good)
	f.Add(good[:len(good)-30])
	f.Add(armor(s.Marshal()[:40]))
	f.Add([]byte(armorBegin + "\n-----END SSH SIGNATURE-----\n"))
	f.Add([]byte{})
	want := describeKey(signer.PublicKey())
	f.Fuzz(func(t *testing.T, sig []byte) {
		who, err := Verify(manifest, sig, trust)
		if err != nil {
			if !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrUntrusted) && !errors.Is(err, ErrUnsigned) {
				t.Fatalf("unclassified error: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("message is not one line: %q", err)
			}
			return
		}
		if who.Key != want || who.Principals != "ops" {
			t.Fatalf("accepted as %+v", who)
		}
	})
}

// FuzzParseTrust feeds hostile trust files to ParseTrust: it never
// panics, refuses with ErrBadTrust on one line, and every accepted entry
// has a key and a line number within the file.
func FuzzParseTrust(f *testing.F) {
	_, pubLine := ed25519Signer(f)
	fields := strings.Join(strings.Fields(pubLine)[:2], " ")
	for _, seed := range []string{
		pubLine + " ops@host\n",
		"# c\n\nops@example.com " + fields + "\n",
		`"a b,c" namespaces="seedship",valid-after="20200101Z",valid-before="209901011200" ` + fields,
		`ops namespaces="a\"b" ` + fields,
		"ops cert-authority " + fields,
		`ops namespaces="x ` + fields,
		"ops\r\n" + fields + "\r\n",
		// A key blob whose inner type is hostile text: parsers quote it.
		"ops ssh-ed25519 " + base64.StdEncoding.EncodeToString(ssh.Marshal(struct{ T string }{"ssh-ed\n=4\xd3"})),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := ParseTrust("fuzz", data)
		if err != nil {
			if !errors.Is(err, ErrBadTrust) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("bad refusal: %q", err)
			}
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		if tr.Len() == 0 {
			t.Fatal("accepted with no keys")
		}
		for _, e := range tr.entries {
			if e.key == nil || len(e.keyBytes) == 0 || e.line < 1 || e.line > lines {
				t.Fatalf("entry %+v", e)
			}
		}
	})
}
