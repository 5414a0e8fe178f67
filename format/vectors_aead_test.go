package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The encrypted test vector of spec §11.8: format/testdata/aead holds the
// source, the image written from it under seal's vector root key
// (00 01 … 1f) and image ID, its root key wrapped for
// testdata/seal/identity-1.txt and identity-2.txt, and vector.json with
// what a reader must find. Nonces come from a fixed source (testNonces)
// and chunks are stored raw (codec 0x81), so the image's bytes are
// reproducible: TestAEADVector rebuilds it and compares every byte.
// Regenerate with: go test ./format -run TestAEADVector -update

const aeadVectorDir = "testdata/aead"

// aeadVector is vector.json.
type aeadVector struct {
	Description    string            `json:"description"`
	RootKey        string            `json:"root_key"`
	ImageID        string            `json:"image_id"`
	Identity       string            `json:"identity"`
	ChunkSize      int               `json:"chunk_size"`
	SourceSHA256   string            `json:"source_sha256"`
	ManifestSHA256 string            `json:"manifest_sha256"`
	ManifestMAC    string            `json:"manifest_mac"`
	Metadata       string            `json:"metadata_plaintext"` // what encryption.metadata seals, byte for byte
	Chunks         []aeadVectorChunk `json:"chunks"`
}

type aeadVectorChunk struct {
	Kind    string `json:"kind"`
	Codec   int    `json:"codec,omitempty"`
	Hash    string `json:"hash"` // keyed chunk digest; zero chunks: the table's 32 zero bytes
	Segment uint32 `json:"segment,omitempty"`
	Offset  int64  `json:"offset,omitempty"`
	Payload uint32 `json:"payload_len,omitempty"`
	Nonce   string `json:"nonce,omitempty"` // first 12 bytes of the sealed payload
}

// aeadVectorSource is the vector's source: a text chunk, a zero chunk,
// a chunk of byte j = j mod 251, and a short last chunk.
func aeadVectorSource() []byte {
	const c = MinChunkSize
	src := make([]byte, 3*c+1000)
	for j := range c {
		src[j] = "seedship aead vector "[j%21]
	}
	for j := 2 * c; j < len(src); j++ {
		src[j] = byte(j % 251)
	}
	return src
}

func TestAEADVector(t *testing.T) {
	src := aeadVectorSource()
	img := buildEncrypted(t, src, MinChunkSize, 0, MinSegmentSize, testNonces())
	files := map[string][]byte{"source.bin": src, "image/" + ManifestKey: img.mb}
	for k, b := range img.segs {
		files["image/"+k] = b.Bytes()
	}
	if *update {
		writeAEADVector(t, img, src, files)
	}
	// The writer reproduces the stored image byte for byte.
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(aeadVectorDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the writer no longer produces the vector's bytes", name)
		}
	}
	// A reader opens the stored image with identity-1 and gets the source.
	var v aeadVector
	vb, err := os.ReadFile(filepath.Join(aeadVectorDir, "vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(vb, &v); err != nil {
		t.Fatal(err)
	}
	mb, err := os.ReadFile(filepath.Join(aeadVectorDir, "image", ManifestKey))
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(m.Hash[:]) != v.ManifestSHA256 || hex.EncodeToString(mb[len(mb)-40:len(mb)-8]) != v.ManifestMAC {
		t.Fatal("manifest hash or MAC differ from vector.json")
	}
	k, err := OpenKeys(&m.Header, testIdentities(t, "identity-1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unseal(k); err != nil {
		t.Fatal(err)
	}
	if m.Header.SHA256 != v.SourceSHA256 {
		t.Fatalf("unsealed sha256 %s, vector %s", m.Header.SHA256, v.SourceSHA256)
	}
	sealed, err := m.Header.Encryption.sealedMetadata()
	if err != nil {
		t.Fatal(err)
	}
	if meta, err := k.OpenMetadata(1, sealed); err != nil || string(meta) != v.Metadata {
		t.Fatalf("sealed metadata %q (%v), vector %q", meta, err, v.Metadata)
	}
	segs := memSegments{}
	for _, s := range m.SegmentIDs() {
		b, err := os.ReadFile(filepath.Join(aeadVectorDir, "image", s.Key()))
		if err != nil {
			t.Fatal(err)
		}
		segs[s.Key()] = bytes.NewBuffer(b)
	}
	got, errs := readEncrypted(t, m, segs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	wantSrc, err := os.ReadFile(filepath.Join(aeadVectorDir, "source.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wantSrc) {
		t.Fatal("the vector's image does not restore its source")
	}
	if !slices.Equal(aeadVectorChunks(m, segs), v.Chunks) {
		t.Fatal("chunk table differs from vector.json")
	}
}

func aeadVectorChunks(m *Manifest, segs memSegments) []aeadVectorChunk {
	var out []aeadVectorChunk
	for _, c := range m.Chunks {
		vc := aeadVectorChunk{Kind: c.Kind.String(), Hash: hex.EncodeToString(c.Hash[:])}
		if c.Kind == KindStored {
			vc.Codec, vc.Segment, vc.Offset, vc.Payload = int(c.Codec), c.Segment, c.Offset, c.PayloadLen
			seg := segs[DataID(c.Segment).Key()].Bytes()
			vc.Nonce = hex.EncodeToString(seg[c.Offset+FrameHeaderSize : c.Offset+FrameHeaderSize+12])
		}
		out = append(out, vc)
	}
	return out
}

func writeAEADVector(t *testing.T, img encryptedImage, src []byte, files map[string][]byte) {
	t.Helper()
	if err := os.RemoveAll(aeadVectorDir); err != nil {
		t.Fatal(err)
	}
	for name, b := range files {
		p := filepath.Join(aeadVectorDir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(src)
	h := img.m.Header
	meta, err := json.Marshal(manifestSecrets{SHA256: h.SHA256, Source: h.Source, CaptureStart: h.CaptureStart, CaptureEnd: h.CaptureEnd, Resync: h.Resync})
	if err != nil {
		t.Fatal(err)
	}
	v := aeadVector{
		Description: "an encrypted image (spec §11): root key 00..1f wrapped for testdata/seal/identity-1.txt and identity-2.txt " +
			"(the wrapped copy is testdata/seal/wrapped-x25519.age), chunks of 64 KiB stored sealed raw (codec 0x81), " +
			"nonces from a fixed test-only source (each is the first 12 bytes of its sealed payload)",
		RootKey: hex.EncodeToString(vectorRoot[:]), ImageID: hex.EncodeToString(vectorImageID[:]), Identity: "../../../testdata/seal/identity-1.txt",
		ChunkSize: MinChunkSize, SourceSHA256: hex.EncodeToString(sum[:]), ManifestSHA256: hex.EncodeToString(img.m.Hash[:]),
		ManifestMAC: hex.EncodeToString(img.mb[len(img.mb)-40 : len(img.mb)-8]), Metadata: string(meta),
		Chunks: aeadVectorChunks(img.m, img.segs),
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(aeadVectorDir, "vector.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}
