package seal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzUnwrap: a hostile image's wrapped keys never panic Unwrap, never
// unwrap without the identity, and fail with one of the two sentinels.
func FuzzUnwrap(f *testing.F) {
	for _, name := range []string{"wrapped-x25519.age", "wrapped-passphrase.age"} {
		b, err := os.ReadFile(filepath.Join(vectorDir, name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("-----BEGIN AGE ENCRYPTED FILE-----\n-----END AGE ENCRYPTED FILE-----\n")
	f.Add("age-encryption.org/v1\n-> scrypt AAAAAAAAAAAAAAAAAAAAAA 30\nAAAA\n--- AAAA\n")
	ids := testIdentities(f, "identity-2.txt")
	f.Fuzz(func(t *testing.T, s string) {
		root, err := Unwrap([]string{s}, ids)
		if err == nil {
			// Only a file wrapped for identity-2 opens: the vector's.
			if root != vectorRoot {
				t.Fatalf("unwrapped a key %x from a file not wrapped for the identity", root)
			}
			return
		}
		if !errors.Is(err, ErrWrappedKey) && !errors.Is(err, ErrNoIdentity) {
			t.Fatalf("error %v matches neither ErrWrappedKey nor ErrNoIdentity", err)
		}
	})
}

// FuzzOpenChunk: arbitrary bytes never open as a chunk and never panic.
func FuzzOpenChunk(f *testing.F) {
	k := testKeys(f, vectorRoot, 1)
	ad := ChunkAD{ImageID: k.ImageID(), Index: 2, Codec: 0x83, RawLen: 100}
	f.Add(k.SealChunk(nil, []byte("a payload"), ad))
	f.Add([]byte{})
	f.Add(make([]byte, Overhead))
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := k.OpenChunk(nil, b, ad)
		if err == nil && string(out) != "a payload" {
			t.Fatalf("%x opened to %q", b, out)
		}
		if err != nil && (!errors.Is(err, ErrAuthentication) || out != nil) {
			t.Fatalf("got %v, %d bytes", err, len(out))
		}
	})
}
