package seal

import (
	"errors"
	"strings"
	"testing"

	"filippo.io/age"
)

const (
	pub1  = "age1wwtd0x0nw63k9ay2gxzhtctm73d3t3csp4fm547ml3c4vy88cprssvd9hn" // testdata/seal/identity-1.txt
	pub2  = "age1twhaejs024wk8nsgujw08dn9l2pgezxtwyha6crjrlk98ylza4nquq3zqt" // identity-2.txt
	priv1 = "AGE-SECRET-KEY-1CYSTZUF5XMXM2LZQ3NVRWPKMC2C8RPS02U85FJ36W7NNTVM6YGLSQKSE00"
)

func TestParseRecipientsFile(t *testing.T) {
	tests := []struct {
		name, file string
		want       []string // recipients, or nil for an error
		errHas     string
	}{
		{"one", pub1 + "\n", []string{pub1}, ""},
		{"comments, blanks, CRLF, spaces, no final newline", "# ops team\r\n\r\n  " + pub1 + "  \r\n# backup\n" + pub2, []string{pub1, pub2}, ""},
		{"empty", "", nil, "no recipients"},
		{"only comments", "# nobody\n\n", nil, "no recipients"},
		{"private key", "# oops\n" + priv1 + "\n", nil, "line 2: this is a private key"},
		{"ssh key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl user@host\n", nil, "line 1: SSH public keys are not supported"},
		{"bad checksum", pub1[:len(pub1)-1] + "x\n", nil, "line 1: not a valid age recipient"},
		{"garbage", pub1 + "\nhello\n", nil, "line 2: not an age recipient"},
		{"not utf-8", "\xff\xfe\n", nil, "not UTF-8"},
		{"too large", strings.Repeat("#", maxKeyFile+1), nil, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRecipientsFile("team.txt", strings.NewReader(tc.file))
			if tc.want == nil {
				if !errors.Is(err, ErrBadKeyFile) || !strings.Contains(err.Error(), tc.errHas) || !strings.HasPrefix(err.Error(), "team.txt") || strings.Contains(err.Error(), "\n") {
					t.Fatalf("got %v, want a one-line ErrBadKeyFile naming team.txt and %q", err, tc.errHas)
				}
				if strings.Contains(err.Error(), "AGE-SECRET-KEY") {
					t.Fatal("the error quotes a private key")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range got {
				names = append(names, r.String())
			}
			if strings.Join(names, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, want %v", names, tc.want)
			}
		})
	}
}

func TestParseRecipient(t *testing.T) {
	if r, err := ParseRecipient("--recipient", pub2); err != nil || r.String() != pub2 {
		t.Fatalf("got %v, %v", r, err)
	}
	if _, err := ParseRecipient("--recipient", priv1); !errors.Is(err, ErrBadKeyFile) || !strings.HasPrefix(err.Error(), "--recipient: this is a private key") {
		t.Fatalf("got %v", err)
	}
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := ParseRecipient("--recipient", pq.Recipient().String()); err != nil || !strings.HasPrefix(r.String(), "age1pq1") {
		t.Fatalf("post-quantum recipient: %v, %v", r, err)
	}
}

func TestParseIdentitiesFile(t *testing.T) {
	tests := []struct {
		name, file string
		n          int
		errHas     string
	}{
		{"age-keygen file", "# created: 2026-12-03T11:50:27Z\n# public key: " + pub1 + "\n" + priv1 + "\n", 1, ""},
		{"two keys", priv1 + "\n\n" + priv1 + "\r\n", 2, ""},
		{"public key", pub1 + "\n", 0, "line 1: this is a public key"},
		{"ssh private key", "-----BEGIN OPENSSH PRIVATE KEY-----\n", 0, "line 1: SSH and passphrase-protected identities"},
		{"bad key", priv1[:len(priv1)-2] + "\n", 0, "line 1: not a valid age identity"},
		{"empty", "\n# nothing\n", 0, "no identities"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := ParseIdentitiesFile("key.txt", strings.NewReader(tc.file))
			if tc.errHas != "" {
				if !errors.Is(err, ErrBadKeyFile) || !strings.Contains(err.Error(), tc.errHas) || strings.Contains(err.Error(), "AGE-SECRET-KEY-1") {
					t.Fatalf("got %v, want ErrBadKeyFile with %q and no key", err, tc.errHas)
				}
				return
			}
			if err != nil || len(ids) != tc.n {
				t.Fatalf("got %d identities, %v; want %d", len(ids), err, tc.n)
			}
		})
	}
}

func TestReadPassphraseFile(t *testing.T) {
	for file, want := range map[string]string{
		"s3cret\n":        "s3cret",
		"s3cret":          "s3cret",
		"two words \r\nx": "two words ",
		"\nsecond line":   "",
		"":                "",
	} {
		got, err := ReadPassphraseFile("pass.txt", strings.NewReader(file))
		if want == "" {
			if !errors.Is(err, ErrBadKeyFile) {
				t.Fatalf("%q: got %q, %v; want ErrBadKeyFile", file, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Fatalf("%q: got %q, %v; want %q", file, got, err, want)
		}
	}
}

// TestUnwrapRefusesCostlyScrypt: a wrapped key whose scrypt work factor
// is above the limit is refused, not computed.
func TestUnwrapRefusesCostlyScrypt(t *testing.T) {
	saved := scryptWorkFactor
	scryptWorkFactor = saved + 2
	wrapped, err := Wrap(NewRootKey(), nil, "pw")
	scryptWorkFactor = saved
	if err != nil {
		t.Fatal(err)
	}
	id, err := PassphraseIdentity("pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Unwrap(wrapped, []age.Identity{id}); !errors.Is(err, ErrWrappedKey) {
		t.Fatalf("got %v, want ErrWrappedKey", err)
	}
}

// FuzzParseRecipientsFile: any input gives recipients or a one-line
// ErrBadKeyFile that never quotes a private key, and never panics.
func FuzzParseRecipientsFile(f *testing.F) {
	for _, s := range []string{pub1 + "\n", "# c\n" + pub1 + "\r\n" + pub2, priv1, "ssh-rsa AAAA", "age1", "age1pq1qqqq", "\xff", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		recs, err := ParseRecipientsFile("f", strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, ErrBadKeyFile) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not a one-line ErrBadKeyFile", err)
			}
			if strings.Contains(err.Error(), "AGE-SECRET-KEY") {
				t.Fatal("error quotes a private key")
			}
			return
		}
		if len(recs) == 0 {
			t.Fatal("no error and no recipients")
		}
		for _, r := range recs {
			if !strings.Contains(s, r.String()) && !strings.Contains(strings.ToLower(s), r.String()) {
				t.Fatalf("recipient %s is not in the file", r)
			}
		}
	})
}

// FuzzParseIdentitiesFile: the same for identities files.
func FuzzParseIdentitiesFile(f *testing.F) {
	for _, s := range []string{priv1 + "\n", "# created\n# public key: " + pub1 + "\n" + priv1, pub1, "-----BEGIN", "AGE-SECRET-KEY-PQ-1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := ParseIdentitiesFile("f", strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, ErrBadKeyFile) || strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "AGE-SECRET-KEY") {
				t.Fatalf("error %q is not a one-line ErrBadKeyFile without a key", err)
			}
			return
		}
		if len(ids) == 0 {
			t.Fatal("no error and no identities")
		}
	})
}
