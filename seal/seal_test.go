package seal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"filippo.io/age/armor"
)

func TestMain(m *testing.M) {
	// Wrapping and unwrapping with scrypt at 2^18 costs seconds on a
	// loaded machine; the rules are the same at 2^10. TestVectors opens a
	// passphrase vector made at the real factor.
	scryptWorkFactor = 10
	os.Exit(m.Run())
}

// vectorDir is testdata/seal/ at the repository root.
var vectorDir = filepath.Join("..", "testdata", "seal")

func testIdentities(t testing.TB, name string) []age.Identity {
	t.Helper()
	f, err := os.Open(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, err := ParseIdentitiesFile(name, f)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func recipientOf(t *testing.T, ids []age.Identity) Recipient {
	t.Helper()
	return ids[0].(*age.X25519Identity).Recipient()
}

func testKeys(t testing.TB, root RootKey, id byte) *Keys {
	t.Helper()
	k, err := DeriveKeys(root, [16]byte{id, 0xAA})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestWrapUnwrap(t *testing.T) {
	id1, id2 := testIdentities(t, "identity-1.txt"), testIdentities(t, "identity-2.txt")
	other, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	pass, err := PassphraseIdentity("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	wrongPass, err := PassphraseIdentity("incorrect horse")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		recipients []Recipient
		passphrase string
		ids        []age.Identity
		wantErr    error
		wantCopies int
	}{
		{"one recipient", []Recipient{recipientOf(t, id1)}, "", id1, nil, 1},
		{"two recipients, first identity", []Recipient{recipientOf(t, id1), recipientOf(t, id2)}, "", id1, nil, 1},
		{"two recipients, second identity", []Recipient{recipientOf(t, id1), recipientOf(t, id2)}, "", id2, nil, 1},
		{"two identities given, one matches", []Recipient{recipientOf(t, id2)}, "", []age.Identity{other, id2[0]}, nil, 1},
		{"passphrase", nil, "correct horse battery staple", []age.Identity{pass}, nil, 1},
		{"recipient and passphrase, by passphrase", []Recipient{recipientOf(t, id1)}, "correct horse battery staple", []age.Identity{pass}, nil, 2},
		{"recipient and passphrase, by identity", []Recipient{recipientOf(t, id1)}, "correct horse battery staple", id1, nil, 2},
		{"wrong identity", []Recipient{recipientOf(t, id1)}, "", []age.Identity{other}, ErrNoIdentity, 1},
		{"no identity", []Recipient{recipientOf(t, id1)}, "", nil, ErrNoIdentity, 1},
		{"wrong passphrase", nil, "correct horse battery staple", []age.Identity{wrongPass}, ErrNoIdentity, 1},
		{"identity for a passphrase image", nil, "correct horse battery staple", id1, ErrNoIdentity, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := NewRootKey()
			wrapped, err := Wrap(root, tc.recipients, tc.passphrase)
			if err != nil {
				t.Fatal(err)
			}
			if len(wrapped) != tc.wantCopies {
				t.Fatalf("%d wrapped copies, want %d", len(wrapped), tc.wantCopies)
			}
			for _, w := range wrapped {
				if !strings.HasPrefix(w, "-----BEGIN AGE ENCRYPTED FILE-----\n") {
					t.Fatalf("wrapped key is not an armored age file:\n%s", w)
				}
				if strings.Contains(w, hex.EncodeToString(root[:])) {
					t.Fatal("wrapped key holds the root key in hex")
				}
			}
			got, err := Unwrap(wrapped, tc.ids)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Unwrap error %v, want %v", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "give the age-keygen identity file") {
					t.Fatalf("want a one-line error naming the fix, got %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != root {
				t.Fatal("unwrapped another key")
			}
		})
	}
}

func TestWrapNothing(t *testing.T) {
	if _, err := Wrap(NewRootKey(), nil, ""); !errors.Is(err, ErrNoRecipients) {
		t.Fatalf("got %v, want ErrNoRecipients", err)
	}
}

func TestUnwrapMalformed(t *testing.T) {
	id1 := testIdentities(t, "identity-1.txt")
	good, err := Wrap(NewRootKey(), []Recipient{recipientOf(t, id1)}, "")
	if err != nil {
		t.Fatal(err)
	}
	// A valid age file of 31 bytes: well-formed age, not a root key.
	var short bytes.Buffer
	w, err := age.Encrypt(&short, recipientOf(t, id1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 31)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	flipped := []byte(good[0])
	flipped[len(flipped)/2] ^= 0x01 // inside the base64 body
	for name, wrapped := range map[string][]string{
		"not age":       {"hello"},
		"flipped byte":  {string(flipped)},
		"short key":     {armorOf(t, short.Bytes())},
		"too many keys": make([]string, MaxWrappedKeys+1),
		"none":          nil,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Unwrap(wrapped, id1); !errors.Is(err, ErrWrappedKey) && !errors.Is(err, ErrNoIdentity) {
				t.Fatalf("got %v, want ErrWrappedKey", err)
			} else if name != "flipped byte" && !errors.Is(err, ErrWrappedKey) {
				t.Fatalf("got %v, want ErrWrappedKey", err)
			}
		})
	}
}

func armorOf(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	if _, err := aw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := aw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestSealOpenRoundTrip(t *testing.T) {
	k := testKeys(t, NewRootKey(), 1)
	for _, n := range []int{0, 1, 100, 65536, 8 << 20} {
		pt := bytes.Repeat([]byte{0x5A, 0x01, 0xFE}, n/3+1)[:n]
		ad := ChunkAD{ImageID: k.ImageID(), Index: 7, Codec: 0x83, RawLen: uint32(n) + 5}
		sealed := k.SealChunk([]byte("prefix"), pt, ad)
		if !bytes.HasPrefix(sealed, []byte("prefix")) || len(sealed) != 6+n+Overhead {
			t.Fatalf("size %d: sealed is %d bytes, want prefix + %d", n, len(sealed), n+Overhead)
		}
		got, err := k.OpenChunk(nil, sealed[6:], ad)
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("size %d: opened other bytes", n)
		}
	}
}

// TestTamperEveryBit flips each bit of a small sealed payload in turn:
// every one must fail, naming the chunk.
func TestTamperEveryBit(t *testing.T) {
	k := testKeys(t, NewRootKey(), 1)
	ad := ChunkAD{ImageID: k.ImageID(), Index: 41, Codec: 0x82, RawLen: 4096}
	sealed := k.SealChunk(nil, []byte("a small payload, sixty-four bytes long, to flip bit by bit ....."), ad)
	for i := range sealed {
		for bit := range 8 {
			bad := bytes.Clone(sealed)
			bad[i] ^= 1 << bit
			out, err := k.OpenChunk(nil, bad, ad)
			var ce *ChunkError
			if !errors.As(err, &ce) || ce.Index != 41 || !errors.Is(err, ErrAuthentication) || out != nil {
				t.Fatalf("byte %d bit %d: got %v, %d bytes; want a ChunkError for chunk 41", i, bit, err, len(out))
			}
		}
	}
	for n := range len(sealed) {
		if _, err := k.OpenChunk(nil, sealed[:n], ad); !errors.Is(err, ErrAuthentication) {
			t.Fatalf("truncated to %d bytes: got %v", n, err)
		}
	}
	if _, err := k.OpenChunk(nil, append(bytes.Clone(sealed), 0), ad); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("extended by a byte: got %v", err)
	}
}

// TestADBinding: a payload opens only at its own place in its own image.
func TestADBinding(t *testing.T) {
	root := NewRootKey()
	k := testKeys(t, root, 1)
	sameRootOtherImage := testKeys(t, root, 2)
	otherRoot := testKeys(t, NewRootKey(), 1)
	ad := ChunkAD{ImageID: k.ImageID(), Index: 3, Codec: 0x83, RawLen: 8 << 20}
	sealed := k.SealChunk(nil, []byte("chunk three's compressed bytes"), ad)
	tests := []struct {
		name string
		keys *Keys
		ad   ChunkAD
	}{
		{"other index (reordered or swapped)", k, ChunkAD{ad.ImageID, 4, ad.Codec, ad.RawLen}},
		{"other codec", k, ChunkAD{ad.ImageID, ad.Index, 0x81, ad.RawLen}},
		{"other raw length", k, ChunkAD{ad.ImageID, ad.Index, ad.Codec, ad.RawLen - 1}},
		{"other image id in the AD", k, ChunkAD{[16]byte{9}, ad.Index, ad.Codec, ad.RawLen}},
		{"another image under the same root key", sameRootOtherImage, ChunkAD{sameRootOtherImage.ImageID(), ad.Index, ad.Codec, ad.RawLen}},
		{"another image's root key", otherRoot, ad},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.keys.OpenChunk(nil, sealed, tc.ad); !errors.Is(err, ErrAuthentication) {
				t.Fatalf("got %v, want ErrAuthentication", err)
			}
		})
	}
	if _, err := k.OpenChunk(nil, sealed, ad); err != nil {
		t.Fatalf("the right AD fails: %v", err)
	}
}

func TestSealChunkOtherImagePanics(t *testing.T) {
	k := testKeys(t, NewRootKey(), 1)
	defer func() {
		if recover() == nil {
			t.Fatal("SealChunk with another image's ID did not panic")
		}
	}()
	k.SealChunk(nil, []byte("x"), ChunkAD{ImageID: [16]byte{2}})
}

// TestNonceUnique seals the same chunk again and again, as resumed
// captures would: no nonce, hence no ciphertext, repeats.
func TestNonceUnique(t *testing.T) {
	k := testKeys(t, NewRootKey(), 1)
	ad := ChunkAD{ImageID: k.ImageID(), Index: 0, Codec: 0x81, RawLen: 16}
	pt := make([]byte, 16)
	const n = 1 << 16
	nonces := make(map[[NonceSize]byte]bool, n)
	cts := make(map[string]bool, n)
	buf := make([]byte, 0, 16+Overhead)
	for range n {
		s := k.SealChunk(buf[:0], pt, ad)
		nonce := [NonceSize]byte(s[:NonceSize])
		if nonces[nonce] || cts[string(s[NonceSize:])] {
			t.Fatalf("nonce %x or its ciphertext repeated after %d seals", nonce, len(nonces))
		}
		nonces[nonce], cts[string(s[NonceSize:])] = true, true
	}
}

// TestNoPlaintextInSealed: a marker in the plaintext, its SHA-256 and
// the plaintext block digests appear in neither the sealed chunk, the
// sealed metadata nor the keyed digests.
func TestNoPlaintextInSealed(t *testing.T) {
	k := testKeys(t, NewRootKey(), 1)
	marker := []byte("SEEDSHIP-MARKER-7f3a9c")
	pt := bytes.Repeat(marker, 3*BlockSize/len(marker))
	sum := sha256.Sum256(pt)
	block := sha256.Sum256(pt[:BlockSize])
	var blocks [4][BlockDigestLen]byte
	var out []byte
	out = k.SealChunk(out, pt, ChunkAD{ImageID: k.ImageID(), Index: 1, Codec: 0x81, RawLen: uint32(len(pt))})
	out = append(out, k.SealMetadata(ManifestMetadata, []byte(`{"sha256":"`+hex.EncodeToString(sum[:])+`","source":{"path":"`+string(marker)+`"}}`))...)
	h := k.NewDigester().Chunk(pt, 1, blocks[:])
	out = append(out, h[:]...)
	for _, b := range blocks {
		out = append(out, b[:]...)
	}
	for name, needle := range map[string][]byte{
		"marker":              marker,
		"sha256 (binary)":     sum[:],
		"sha256 (hex)":        []byte(hex.EncodeToString(sum[:])),
		"plain block digest":  block[:BlockDigestLen],
		"plain block sha-256": block[:],
	} {
		if bytes.Contains(out, needle) {
			t.Errorf("the sealed output holds the %s", name)
		}
	}
}

func TestMetadata(t *testing.T) {
	root := NewRootKey()
	k := testKeys(t, root, 1)
	pt := []byte(`{"sha256":"00","source":{"path":"/dev/sda","serial":"S1"}}`)
	sealed := k.SealMetadata(ManifestMetadata, pt)
	got, err := k.OpenMetadata(ManifestMetadata, sealed)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("round trip: %v, %q", err, got)
	}
	bad := bytes.Clone(sealed)
	bad[len(bad)-1] ^= 0x80
	if _, err := k.OpenMetadata(ManifestMetadata, bad); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("tampered: %v", err)
	}
	if _, err := testKeys(t, root, 2).OpenMetadata(ManifestMetadata, sealed); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("another image: %v", err)
	}
	if _, err := k.OpenMetadata(ManifestMetadata, sealed[:Overhead-1]); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("short: %v", err)
	}
	// A chunk payload is not metadata, though both are AES-256-GCM.
	chunk := k.SealChunk(nil, pt, ChunkAD{ImageID: k.ImageID()})
	if _, err := k.OpenMetadata(ManifestMetadata, chunk); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("a chunk opened as metadata: %v", err)
	}
	if _, err := k.OpenMetadata(CheckpointMetadata, sealed); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("manifest metadata opened as a checkpoint's: %v", err)
	}
}

func TestManifestMAC(t *testing.T) {
	root := NewRootKey()
	k := testKeys(t, root, 1)
	body := bytes.Repeat([]byte("manifest body "), 1000)
	mac := k.ManifestMAC(body)
	if err := k.CheckManifestMAC(body, mac[:]); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, len(body) / 2, len(body) - 1} {
		bad := bytes.Clone(body)
		bad[i] ^= 1
		if err := k.CheckManifestMAC(bad, mac[:]); !errors.Is(err, ErrAuthentication) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	if err := testKeys(t, root, 2).CheckManifestMAC(body, mac[:]); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("another image's key: %v", err)
	}
	if err := k.CheckManifestMAC(body, mac[:31]); !errors.Is(err, ErrAuthentication) {
		t.Fatalf("short MAC: %v", err)
	}
}

func TestDeriveKeysDistinct(t *testing.T) {
	k := testKeys(t, RootKey{1}, 1)
	seen := map[[KeySize]byte]string{}
	for name, key := range map[string][KeySize]byte{"manifest mac": k.manifestMAC, "block digest": k.blockDigest, "chunk digest": k.chunkDigest} {
		if other, ok := seen[key]; ok {
			t.Fatalf("%s and %s keys are equal", name, other)
		}
		seen[key] = name
	}
	// The digest keys are per root key, the others per image.
	k2 := testKeys(t, RootKey{1}, 2)
	if k2.blockDigest != k.blockDigest || k2.chunkDigest != k.chunkDigest {
		t.Fatal("digest keys differ between images of one root key")
	}
	if k2.manifestMAC == k.manifestMAC {
		t.Fatal("manifest MAC key is the same for two images")
	}
}

func TestDigester(t *testing.T) {
	root := NewRootKey()
	d := testKeys(t, root, 1).NewDigester()
	raw := make([]byte, 3*BlockSize+100)
	for i := range raw {
		raw[i] = byte(i * 7)
	}
	blocks := make([][BlockDigestLen]byte, 4)
	h := d.Chunk(raw, 5, blocks)
	if again := d.Chunk(raw, 5, nil); again != h {
		t.Fatal("a Digester is not deterministic across calls")
	}
	if fresh := testKeys(t, root, 9).NewDigester().Chunk(raw, 5, nil); fresh != h {
		t.Fatal("another image of the same root key digests differently")
	}
	if other := testKeys(t, NewRootKey(), 1).NewDigester().Chunk(raw, 5, nil); other == h {
		t.Fatal("another root key gives the same digest")
	}
	if d.Chunk(raw, 6, nil) == h {
		t.Fatal("the chunk index is not bound")
	}
	if d.Chunk(raw[:len(raw)-1], 5, nil) == h {
		t.Fatal("a byte shorter chunk gives the same digest")
	}
	// DigestChunk fills a slice of another [8]byte type the same way.
	type blockDigest [BlockDigestLen]byte
	own := make([]blockDigest, 4)
	if DigestChunk(d, raw, 5, own) != h {
		t.Fatal("DigestChunk and Chunk disagree")
	}
	for i := range own {
		if own[i] != blockDigest(blocks[i]) {
			t.Fatalf("block %d: DigestChunk and Chunk disagree", i)
		}
	}
	// Equal blocks at different places digest differently (no equality leak).
	same := bytes.Repeat(raw[:BlockSize], 2)
	two := make([][BlockDigestLen]byte, 2)
	d.Chunk(same, 5, two)
	if two[0] == two[1] {
		t.Fatal("equal blocks at two places have equal digests")
	}
	// Changing one byte changes only its block's digest.
	changed := bytes.Clone(raw)
	changed[2*BlockSize+9] ^= 1
	cb := make([][BlockDigestLen]byte, 4)
	if d.Chunk(changed, 5, cb) == h {
		t.Fatal("a changed byte keeps the chunk digest")
	}
	for i := range cb {
		if (cb[i] != blocks[i]) != (i == 2) {
			t.Fatalf("block %d: digest changed=%v after a change in block 2", i, cb[i] != blocks[i])
		}
	}
}
