package sign

import (
	"bytes"
	"os"
	"testing"
)

// TestVector pins the signature format with a fixed key (testdata/vector,
// a test key and nothing else): manifest.ssm.sig there was written by
// OpenSSH's ssh-keygen -Y sign -n seedship. Ed25519 signing is
// deterministic, so Sign must produce the same file byte for byte, and
// Verify, and ssh-keygen -Y verify, must accept it.
func TestVector(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile("testdata/vector/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	manifest, key, golden := read("manifest.ssm"), read("id_ed25519"), read("manifest.ssm.sig")
	sig, err := Sign(manifest, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sig, golden) {
		t.Fatalf("Sign differs from ssh-keygen -Y sign:\n%s\nwant:\n%s", sig, golden)
	}
	trust, err := LoadTrust("testdata/vector/allowed_signers")
	if err != nil {
		t.Fatal(err)
	}
	who, err := Verify(manifest, golden, trust)
	if err != nil || who.Principals != "test-vector@seedship.invalid" || who.Key != "ssh-ed25519 SHA256:IOADiOxsQ5Z1QjwE8aSmUWaujFhjpgVSTO83GS2ZiA0" {
		t.Fatalf("Verify = %+v, %v", who, err)
	}
	if out, ok := opensshVerify(t, string(read("allowed_signers")), "test-vector@seedship.invalid", "seedship", manifest, golden); !ok {
		t.Fatalf("ssh-keygen -Y verify: %s", out)
	}
}
