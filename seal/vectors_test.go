package seal

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
)

var update = flag.Bool("update", false, "rewrite testdata/seal/vectors.json and the wrapped keys from the code (then check them with independent tools: spec §11.8)")

// The fixed inputs of the vectors (spec §11.8).
var (
	vectorRoot       = RootKey(seq(0x00, 32))
	vectorImageID    = [16]byte(mustHex("5eed5eed00112233445566778899aabb"))
	vectorPassphrase = "seedship test vector passphrase"
)

// vectorFile is testdata/seal/vectors.json.
type vectorFile struct {
	Comment  string            `json:"comment"`
	RootKey  string            `json:"root_key"`
	ImageID  string            `json:"image_id"`
	Keys     map[string]string `json:"keys"`
	Chunks   []chunkVector     `json:"chunks"`
	Digests  []digestVector    `json:"digests"`
	Metadata aeadVector        `json:"metadata"`
	Manifest macVector         `json:"manifest_mac"`
	Wrapped  []wrappedVector   `json:"wrapped"`
}

type chunkVector struct {
	Index     uint64 `json:"index"`
	Codec     byte   `json:"codec"`
	RawLen    uint32 `json:"raw_len"`
	Plaintext string `json:"plaintext"`
	Nonce     string `json:"nonce"`
	AD        string `json:"ad"`
	Sealed    string `json:"sealed"`
}

type aeadVector struct {
	Plaintext string `json:"plaintext"`
	Nonce     string `json:"nonce"`
	AD        string `json:"ad"`
	Sealed    string `json:"sealed"`
}

type digestVector struct {
	Index        uint64   `json:"index"`
	Length       int      `json:"length"`
	Pattern      string   `json:"pattern"`
	ChunkDigest  string   `json:"chunk_digest"`
	BlockDigests []string `json:"block_digests"`
	FullBlock0   string   `json:"block_0_full_digest"`
}

type macVector struct {
	Body string `json:"body"`
	MAC  string `json:"mac"`
}

type wrappedVector struct {
	File       string   `json:"file"`
	Identities []string `json:"identities,omitempty"`
	Passphrase string   `json:"passphrase,omitempty"`
}

func seq(start byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// pattern is the digest vectors' source: byte j is j mod 251.
func pattern(n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(j % 251)
	}
	return b
}

// computeVectors computes every vector from the fixed inputs.
func computeVectors(t *testing.T) vectorFile {
	t.Helper()
	k, err := DeriveKeys(vectorRoot, vectorImageID)
	if err != nil {
		t.Fatal(err)
	}
	chunkKey, metaKey := derive(vectorRoot, vectorImageID[:], labelChunkAEAD), derive(vectorRoot, vectorImageID[:], labelMetadataAEAD)
	v := vectorFile{
		Comment: "seedship encryption test vectors, spec/FORMAT.md §11.8; all hex; inputs are public test values",
		RootKey: hex.EncodeToString(vectorRoot[:]),
		ImageID: hex.EncodeToString(vectorImageID[:]),
		Keys: map[string]string{
			labelChunkAEAD:    hex.EncodeToString(chunkKey[:]),
			labelMetadataAEAD: hex.EncodeToString(metaKey[:]),
			labelManifestMAC:  hex.EncodeToString(k.manifestMAC[:]),
			labelBlockDigest:  hex.EncodeToString(k.blockDigest[:]),
			labelChunkDigest:  hex.EncodeToString(k.chunkDigest[:]),
		},
	}
	for _, c := range []struct {
		index uint64
		codec byte
		raw   uint32
		pt    []byte
		nonce []byte
	}{
		{0, 0x81, 45, []byte("seedship test vector: chunk 0, stored raw.\n\x00\xff"), seq(0x00, 12)},
		{1, 0x83, 8 << 20, []byte("(pretend zstd frame of chunk 1)"), seq(0xA0, 12)},
	} {
		ad := ChunkAD{ImageID: vectorImageID, Index: c.index, Codec: c.codec, RawLen: c.raw}
		adb := ad.bytes()
		sealed := k.sealChunk(nil, c.pt, ad, bytes.NewReader(c.nonce))
		v.Chunks = append(v.Chunks, chunkVector{c.index, c.codec, c.raw, hex.EncodeToString(c.pt), hex.EncodeToString(c.nonce), hex.EncodeToString(adb[:]), hex.EncodeToString(sealed)})
	}
	d := k.NewDigester()
	for _, c := range []struct {
		index uint64
		n     int
	}{{0, 3}, {5, 3*BlockSize + 100}} {
		raw := pattern(c.n)
		blocks := make([][BlockDigestLen]byte, (c.n+BlockSize-1)/BlockSize)
		h := d.Chunk(raw, c.index, blocks)
		dv := digestVector{Index: c.index, Length: c.n, Pattern: "byte j = j mod 251", ChunkDigest: hex.EncodeToString(h[:])}
		for _, b := range blocks {
			dv.BlockDigests = append(dv.BlockDigests, hex.EncodeToString(b[:]))
		}
		// The full d_0, so that an independent reader can check the leaf
		// and the root separately (b3sum --keyed).
		d.block.Reset()
		_, _ = d.block.Write(raw[:min(c.n, BlockSize)])
		_, _ = d.block.Write(append(le64(c.index), 0, 0, 0, 0))
		dv.FullBlock0 = hex.EncodeToString(d.block.Sum(nil))
		v.Digests = append(v.Digests, dv)
	}
	meta := []byte(`{"sha256":"` + hex.EncodeToString(seq(0x10, 32)) + `","source":{"path":"/dev/test","serial":"TEST-SERIAL"}}`)
	mnonce := seq(0x40, 12)
	v.Metadata = aeadVector{hex.EncodeToString(meta), hex.EncodeToString(mnonce), hex.EncodeToString(k.metadataAD(ManifestMetadata)), hex.EncodeToString(k.sealMetadata(ManifestMetadata, meta, bytes.NewReader(mnonce)))}
	body := []byte("SSHIPMAN: a manifest body stands here in the test vector")
	mac := k.ManifestMAC(body)
	v.Manifest = macVector{hex.EncodeToString(body), hex.EncodeToString(mac[:])}
	v.Wrapped = []wrappedVector{
		{File: "wrapped-x25519.age", Identities: []string{"identity-1.txt", "identity-2.txt"}},
		{File: "wrapped-passphrase.age", Passphrase: vectorPassphrase},
	}
	return v
}

func le64(n uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(n >> (8 * i))
	}
	return b
}

// TestVectors checks the code against testdata/seal/vectors.json, and
// that the wrapped keys there (age files, made once) open with the test
// identities and the test passphrase to the vectors' root key.
func TestVectors(t *testing.T) {
	got := computeVectors(t)
	path := filepath.Join(vectorDir, "vectors.json")
	if *update {
		writeVectors(t, got)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want vectorFile
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	gj, _ := json.MarshalIndent(got, "", "  ")
	wj, _ := json.MarshalIndent(want, "", "  ")
	if !bytes.Equal(gj, wj) {
		t.Fatalf("the code no longer produces testdata/seal/vectors.json:\ngot\n%s", gj)
	}
	// The sealed vectors open, to their plaintext.
	k, err := DeriveKeys(vectorRoot, vectorImageID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range want.Chunks {
		pt, err := k.OpenChunk(nil, mustHex(c.Sealed), ChunkAD{vectorImageID, c.Index, c.Codec, c.RawLen})
		if err != nil || hex.EncodeToString(pt) != c.Plaintext {
			t.Fatalf("chunk %d vector does not open: %v", c.Index, err)
		}
	}
	if pt, err := k.OpenMetadata(ManifestMetadata, mustHex(want.Metadata.Sealed)); err != nil || hex.EncodeToString(pt) != want.Metadata.Plaintext {
		t.Fatalf("metadata vector does not open: %v", err)
	}
	scryptWorkFactor = ScryptWorkFactor // the passphrase vector is made at the real factor
	defer func() { scryptWorkFactor = 10 }()
	for _, w := range want.Wrapped {
		armored, err := os.ReadFile(filepath.Join(vectorDir, w.File))
		if err != nil {
			t.Fatal(err)
		}
		var idsets [][]age.Identity
		for _, name := range w.Identities {
			idsets = append(idsets, testIdentities(t, name))
		}
		if w.Passphrase != "" {
			p, err := PassphraseIdentity(w.Passphrase)
			if err != nil {
				t.Fatal(err)
			}
			idsets = append(idsets, []age.Identity{p})
		}
		for _, ids := range idsets {
			root, err := Unwrap([]string{string(armored)}, ids)
			if err != nil || root != vectorRoot {
				t.Fatalf("%s: %v (or another key)", w.File, err)
			}
		}
	}
}

func writeVectors(t *testing.T, v vectorFile) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vectorDir, "vectors.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	scryptWorkFactor = ScryptWorkFactor
	defer func() { scryptWorkFactor = 10 }()
	r1, r2 := recipientOf(t, testIdentities(t, "identity-1.txt")), recipientOf(t, testIdentities(t, "identity-2.txt"))
	x, err := Wrap(vectorRoot, []Recipient{r1, r2}, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Wrap(vectorRoot, nil, vectorPassphrase)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"wrapped-x25519.age": x[0], "wrapped-passphrase.age": p[0]} {
		if err := os.WriteFile(filepath.Join(vectorDir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
