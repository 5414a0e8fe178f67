package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/seedship/seedship/seal"
)

// The fixed public inputs of seal's test vectors (spec §11.8).
var (
	vectorRoot    = seal.RootKey{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31}
	vectorImageID = [16]byte{0x5e, 0xed, 0x5e, 0xed, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb}
)

const sealTestdata = "../testdata/seal/"

func testKeys(t testing.TB, root seal.RootKey, id [16]byte) *seal.Keys {
	t.Helper()
	k, err := seal.DeriveKeys(root, id)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testIdentities(t testing.TB, name string) []age.Identity {
	t.Helper()
	f, err := os.Open(sealTestdata + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, err := seal.ParseIdentitiesFile(name, f)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// testEncryption is the encryption object of the vector root key wrapped
// for identity-1 and identity-2 (the wrapped copy in testdata/seal).
func testEncryption(t testing.TB) *Encryption {
	t.Helper()
	w, err := os.ReadFile(sealTestdata + "wrapped-x25519.age")
	if err != nil {
		t.Fatal(err)
	}
	return &Encryption{Scheme: EncryptionScheme, AEAD: EncryptionAEAD, KDF: EncryptionKDF, WrappedKeys: []string{string(w)},
		Recipients: []string{"age1wwtd0x0nw63k9ay2gxzhtctm73d3t3csp4fm547ml3c4vy88cprssvd9hn"}}
}

// testNonces is a reproducible source of sealing nonces, for test
// vectors and fuzz seeds only: sealing real data with it would repeat
// nonces.
func testNonces() io.Reader {
	return rand.NewChaCha8([32]byte([]byte("seedship aead test vector nonces")))
}

// secretSource is a source whose identity must not show in an encrypted image.
var secretSource = Source{Path: "/dev/disk/by-id/wwn-0xMARKERPATH", Kind: "block", Size: 0, SectorSize: 512,
	Serial: "MARKERSERIAL", WWN: "0xMARKERWWN", Model: "MARKERMODEL", ByID: []string{"ata-MARKERBYID"}, Host: "markerhost.example"}

// encryptedImage is an encrypted image in memory and what made it.
type encryptedImage struct {
	m    *Manifest // as the writer finished it
	segs memSegments
	mb   []byte // the manifest's bytes
	keys *seal.Keys
}

// buildEncrypted captures src into an encrypted image under the vector
// keys. nonces, if not nil, makes the bytes reproducible.
func buildEncrypted(t testing.TB, src []byte, chunk, level int, segSize int64, nonces io.Reader) encryptedImage {
	t.Helper()
	k := testKeys(t, vectorRoot, vectorImageID)
	codec, err := NewChunkCodec(level, 2, chunk)
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	codec.SetKeys(k)
	codec.nonces = nonces
	segs := memSegments{}
	w, err := NewImageWriter(segs.create, vectorImageID, segSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetKeys(k); err != nil {
		t.Fatal(err)
	}
	blocks := make([]BlockDigest, chunk/blockSize+1)
	dst := make([]byte, 0, chunk+SealOverhead)
	for i, off := uint64(0), 0; off < len(src); i, off = i+1, off+chunk {
		ec := codec.EncodeAt(i, src[off:min(off+chunk, len(src))], dst, blocks)
		if err := w.Add(&ec); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(src)
	source := secretSource
	source.Size = int64(len(src))
	m, err := w.Finish(Header{Size: int64(len(src)), ChunkSize: chunk, SHA256: hex.EncodeToString(sum[:]), Tool: "seedship test",
		Compression: Compression{Codec: "zstd", Level: level}, Source: source, Encryption: testEncryption(t),
		CaptureStart: time.Unix(1, 0).UTC(), CaptureEnd: time.Unix(2, 0).UTC(), Resync: json.RawMessage(`{"adapter":"MARKERRESYNC"}`)})
	if err != nil {
		t.Fatal(err)
	}
	m.nonces = nonces
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return encryptedImage{m: m, segs: segs, mb: mb, keys: k}
}

// readEncrypted reads every chunk of an unsealed manifest's image back
// through a keyed codec.
func readEncrypted(t testing.TB, m *Manifest, segs memSegments) ([]byte, []error) {
	t.Helper()
	codec, _ := NewChunkCodec(0, 1, m.Header.ChunkSize)
	codec.SetKeys(m.Keys())
	out := make([]byte, m.Header.Size)
	var errs []error
	for seg, chunks := range m.SegmentChunks() {
		sc, err := NewSegmentScanner(bytes.NewReader(segs[DataID(seg).Key()].Bytes()), m, seg, chunks)
		if err != nil {
			t.Fatal(err)
		}
		var buf []byte
		for {
			var f Frame
			f, buf, err = sc.Next(buf)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			off, length := m.ChunkRange(f.Index)
			raw, err := codec.DecodeAt(f.Index, f.Codec, f.Payload, int(length), m.Chunks[f.Index].Hash, nil, nil)
			if err != nil {
				errs = append(errs, &ChunkError{Index: f.Index, Err: err})
				continue
			}
			copy(out[off:], raw)
		}
	}
	for i, c := range m.Chunks {
		if c.Kind == KindZero && c.Hash != (Hash{}) {
			errs = append(errs, corruptf("zero chunk %d has table hash %x", i, c.Hash[:8]))
		}
	}
	return out, errs
}

func TestEncryptedImageRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name         string
		size, chunk  int
		level        int
		wantSealedAs []Codec
	}{
		{"raw", 3<<20 + 7, MinChunkSize, 0, []Codec{CodecRaw | CodecSealed}},
		{"zstd", 5<<20 + 12345, 1 << 20, 3, []Codec{CodecZstdX86 | CodecSealed, CodecRaw | CodecSealed}},
		{"one byte", 1, 1 << 20, 3, []Codec{CodecRaw | CodecSealed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := testSource(tc.size, tc.chunk, 11)
			if tc.size == 1 {
				src[0] = 42
			}
			img := buildEncrypted(t, src, tc.chunk, tc.level, MinSegmentSize, nil)
			m, err := DecodeManifest(img.mb)
			if err != nil {
				t.Fatal(err)
			}
			if !m.Encrypted() || m.Unsealed() || m.Hasher() != nil || m.Header.SHA256 != "" || m.Header.Source.Serial != "" {
				t.Fatalf("read without keys: encrypted %v unsealed %v sha256 %q source %+v", m.Encrypted(), m.Unsealed(), m.Header.SHA256, m.Header.Source)
			}
			if m.Header.Source.Kind != "block" || m.Header.Source.Size != int64(len(src)) || m.Header.Source.SectorSize != 512 {
				t.Fatalf("clear source %+v", m.Header.Source)
			}
			if m.Hash != img.m.Hash {
				t.Fatal("manifest hash differs from the writer's")
			}
			k, err := OpenKeys(&m.Header, testIdentities(t, "identity-2.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Unseal(k); err != nil {
				t.Fatal(err)
			}
			h := m.Header
			if h.SHA256 != img.m.Header.SHA256 || h.Source.Serial != secretSource.Serial || h.Source.Path != secretSource.Path ||
				!h.CaptureEnd.Equal(time.Unix(2, 0)) || string(h.Resync) != `{"adapter":"MARKERRESYNC"}` {
				t.Fatalf("unsealed header %+v", h)
			}
			if m.Hasher() == nil || !m.Hasher().Keyed() || m.Header.ChunkHash != ChunkHashKeyed {
				t.Fatal("no keyed hasher after Unseal")
			}
			for i, c := range m.Chunks {
				if c.Kind == KindStored && !containsCodec(tc.wantSealedAs, c.Codec) {
					t.Fatalf("chunk %d stored as %s", i, c.Codec)
				}
			}
			got, errs := readEncrypted(t, m, img.segs)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if !bytes.Equal(got, src) {
				t.Fatal("restored bytes differ")
			}
		})
	}
}

func containsCodec(cs []Codec, c Codec) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}

// reTrailer recomputes the SHA-256 of an edited manifest, as anyone
// without the key can; the MAC it leaves alone.
func reTrailer(b []byte) []byte {
	t := manifestTrailerSize
	if binary.LittleEndian.Uint16(b[10:])&manifestFlagKeyed != 0 {
		t = keyedTrailerSize
	}
	body := b[:len(b)-t]
	h := sha256.Sum256(body)
	copy(b[len(body):], h[:])
	return b
}

// TestEncryptedManifestTamper flips each bit-7 and bit-0 of every byte of
// an encrypted manifest, recomputing its SHA-256 as a forger without the
// key would: every edit is refused, by DecodeManifest or by Unseal's MAC.
func TestEncryptedManifestTamper(t *testing.T) {
	img := buildEncrypted(t, testSource(1<<20+5, MinChunkSize, 3), MinChunkSize, 3, MinSegmentSize, nil)
	k := img.keys
	if _, err := DecodeManifest(img.mb); err != nil {
		t.Fatal(err)
	}
	macAt := len(img.mb) - keyedTrailerSize + 32
	reachedMAC := 0
	for off := range img.mb {
		if off >= len(img.mb)-keyedTrailerSize && off < macAt {
			continue // the SHA-256 itself: recomputed below anyway
		}
		for _, bit := range []byte{0x01, 0x80} {
			b := bytes.Clone(img.mb)
			b[off] ^= bit
			if off < len(img.mb)-keyedTrailerSize {
				reTrailer(b)
			}
			m, err := DecodeManifest(b)
			if err != nil {
				continue
			}
			reachedMAC++
			err = m.Unseal(k)
			if err == nil {
				t.Fatalf("byte %d ^ %#x: unsealed", off, bit)
			}
			if !errors.Is(err, ErrChecksum) || !IsDamage(err) {
				t.Fatalf("byte %d ^ %#x: %v, want ErrChecksum", off, bit, err)
			}
			if m.Unsealed() || m.Header.SHA256 != "" {
				t.Fatalf("byte %d: a failed Unseal changed the manifest", off)
			}
		}
	}
	// Most edits of the tables and the MAC pass every keyless check:
	// only the MAC catches them.
	if reachedMAC < (len(img.m.Chunks)*chunkEntrySize)/2 {
		t.Fatalf("only %d edits reached the MAC", reachedMAC)
	}
}

func TestEncryptedManifestWrongKey(t *testing.T) {
	img := buildEncrypted(t, testSource(300000, MinChunkSize, 5), MinChunkSize, 0, MinSegmentSize, nil)
	other := vectorRoot
	other[0] ^= 1
	otherID := vectorImageID
	otherID[15] ^= 1
	for _, tc := range []struct {
		name string
		keys *seal.Keys
	}{
		{"other root key", testKeys(t, other, vectorImageID)},
		{"keys of another image", testKeys(t, vectorRoot, otherID)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeManifest(img.mb)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Unseal(tc.keys); !errors.Is(err, ErrChecksum) {
				t.Fatalf("Unseal: %v, want ErrChecksum", err)
			}
		})
	}
	m, _ := DecodeManifest(img.mb)
	ids := []age.Identity{mustX25519(t)}
	if _, err := OpenKeys(&m.Header, ids); !errors.Is(err, ErrNoKey) || !errors.Is(err, seal.ErrNoIdentity) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("OpenKeys with a stranger's identity: %v, want one line matching ErrNoKey", err)
	}
	if _, err := OpenKeys(&m.Header, nil); !errors.Is(err, ErrNoKey) {
		t.Fatalf("OpenKeys without identities: %v", err)
	}
	bad := m.Header
	e := *bad.Encryption
	e.WrappedKeys = []string{"-----BEGIN AGE ENCRYPTED FILE-----\nbm90IGFuIGFnZSBmaWxl\n-----END AGE ENCRYPTED FILE-----\n"}
	bad.Encryption = &e
	if _, err := OpenKeys(&bad, testIdentities(t, "identity-1.txt")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenKeys of a damaged wrapped key: %v, want ErrCorrupt", err)
	}
}

func mustX25519(t testing.TB) *age.X25519Identity {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestEncryptedManifestDisagreement: a manifest whose clear source shape
// differs from its sealed one is corrupt even with a valid MAC (a
// writer's bug, or a key holder's forgery).
func TestEncryptedManifestDisagreement(t *testing.T) {
	img := buildEncrypted(t, testSource(300000, MinChunkSize, 5), MinChunkSize, 0, MinSegmentSize, nil)
	for _, tc := range []struct {
		name string
		edit func(*Header)
	}{
		{"sector size", func(h *Header) { h.Source.SectorSize = 4096 }},
		{"kind", func(h *Header) { h.Source.Kind = "file" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr, err := img.m.sealHeader()
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(&hdr)
			b, err := img.m.encode(hdr)
			if err != nil {
				t.Fatal(err)
			}
			m, err := DecodeManifest(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Unseal(img.keys); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Unseal: %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestEncryptedManifestRefused: structures a keyless reader refuses.
func TestEncryptedManifestRefused(t *testing.T) {
	img := buildEncrypted(t, testSource(300000, MinChunkSize, 5), MinChunkSize, 0, MinSegmentSize, nil)
	for _, tc := range []struct {
		name string
		edit func(*Header)
		want error
	}{
		{"sha256 in the clear", func(h *Header) { h.SHA256 = strings.Repeat("a", 64) }, ErrCorrupt},
		{"serial in the clear", func(h *Header) { h.Source.Serial = "S" }, ErrCorrupt},
		{"times in the clear", func(h *Header) { h.CaptureStart = time.Unix(5, 0) }, ErrCorrupt},
		{"no encryption object", func(h *Header) { h.Encryption = nil }, ErrCorrupt},
		{"plain chunk hash", func(h *Header) { h.ChunkHash = ChunkHashPlain }, ErrCorrupt},
		{"other scheme", func(h *Header) { e := *h.Encryption; e.Scheme = "seedship-aead-2"; h.Encryption = &e }, ErrVersion},
		{"no wrapped keys", func(h *Header) { e := *h.Encryption; e.WrappedKeys = nil; h.Encryption = &e }, ErrCorrupt},
		{"metadata not base64", func(h *Header) { e := *h.Encryption; e.Metadata = "!"; h.Encryption = &e }, ErrCorrupt},
		{"digest-only", func(h *Header) { h.Requires = append(h.Requires, FeatureDigestOnly) }, ErrVersion},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr, err := img.m.sealHeader()
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(&hdr)
			b, err := img.m.encode(hdr)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeManifest(b); !errors.Is(err, tc.want) {
				t.Fatalf("DecodeManifest: %v, want %v", err, tc.want)
			}
		})
	}
	// The flag and the feature come together.
	b := bytes.Clone(img.mb)
	b[10] = 0
	if _, err := DecodeManifest(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("keyed manifest without its flag: %v", err)
	}
	b[10] = 2
	if _, _, err := ReadManifestBytes(bytes.NewReader(b)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown flag: %v", err)
	}
	// A keyless reader cannot write it back, and a writer needs keys.
	m, _ := DecodeManifest(img.mb)
	if _, err := m.Marshal(); err == nil {
		t.Fatal("Marshal of an encrypted manifest without keys succeeded")
	}
	if err := m.SetKeys(img.keys); err == nil {
		t.Fatal("SetKeys on a manifest read from an image succeeded")
	}
}

// TestEncryptedImageHidesSecrets is the marker test at the format level:
// the manifest and segments of an encrypted image hold neither a marker
// placed in the source, nor the source's SHA-256 (hex or binary), nor
// its path, serial or host, nor any plaintext chunk hash or block digest.
func TestEncryptedImageHidesSecrets(t *testing.T) {
	const chunk = MinChunkSize
	src := testSource(20*chunk+999, chunk, 9)
	marker := []byte("SEEDSHIP-SECRET-MARKER-0123456789")
	for off := chunk / 2; off+len(marker) < len(src); off += 3 * chunk {
		copy(src[off:], marker)
	}
	for _, level := range []int{0, 3} {
		img := buildEncrypted(t, src, chunk, level, MinSegmentSize, nil)
		sum := sha256.Sum256(src)
		secrets := map[string][]byte{
			"marker": marker, "sha256 hex": []byte(hex.EncodeToString(sum[:])), "sha256": sum[:],
			"path": []byte("MARKERPATH"), "serial": []byte("MARKERSERIAL"), "wwn": []byte("MARKERWWN"), "model": []byte("MARKERMODEL"),
			"by-id": []byte("MARKERBYID"), "host": []byte("markerhost"), "resync": []byte("MARKERRESYNC"),
		}
		blocks := make([]BlockDigest, NumBlocks(chunk))
		for i, off := 0, 0; off < len(src); i, off = i+1, off+chunk {
			raw := src[off:min(off+chunk, len(src))]
			h := ChunkHash(raw, blocks)
			secrets["plaintext chunk hash "+string(rune('0'+i%10))] = h[:]
			for j, d := range blocks[:NumBlocks(len(raw))] {
				if d != zeroBlockDigest {
					secrets["plaintext block digest "+hex.EncodeToString(d[:])+" "+string(rune('0'+j%10))] = d[:]
				}
			}
		}
		files := map[string][]byte{ManifestKey: img.mb}
		for k, b := range img.segs {
			files[k] = b.Bytes()
		}
		for name, b := range files {
			for what, s := range secrets {
				if bytes.Contains(b, s) {
					t.Errorf("level %d: %s holds the %s", level, name, what)
				}
			}
		}
	}
}

// TestEncodeDecodeAt round-trips a chunk through every codec, keyed and
// not, and checks the codec byte a keyed codec writes.
func TestEncodeDecodeAt(t *testing.T) {
	k := testKeys(t, vectorRoot, vectorImageID)
	text := testSource(3*MinChunkSize, MinChunkSize, 1)[2*MinChunkSize:]
	random := testSource(2*MinChunkSize, MinChunkSize, 1)[MinChunkSize:]
	for _, tc := range []struct {
		name      string
		level     int
		keyed     bool
		raw       []byte
		wantCodec Codec
	}{
		{"plain raw", 0, false, text, CodecRaw},
		{"plain zstd-x86", 3, false, text, CodecZstdX86},
		{"plain incompressible", 3, false, random, CodecRaw},
		{"sealed raw", 0, true, text, CodecRaw | CodecSealed},
		{"sealed zstd-x86", 3, true, text, CodecZstdX86 | CodecSealed},
		{"sealed incompressible", 3, true, random, CodecRaw | CodecSealed},
		{"sealed short", 3, true, text[:1000], CodecZstdX86 | CodecSealed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewChunkCodec(tc.level, 1, MinChunkSize)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tc.keyed {
				c.SetKeys(k)
			}
			blocks := make([]BlockDigest, 1)
			ec := c.EncodeAt(7, tc.raw, nil, blocks)
			if ec.Codec != tc.wantCodec || ec.Zero {
				t.Fatalf("codec %s, want %s", ec.Codec, tc.wantCodec)
			}
			if tc.keyed && !PayloadLenOK(ec.Codec, uint32(len(ec.Payload)), int64(len(tc.raw))) {
				t.Fatalf("sealed payload of %d bytes for %d", len(ec.Payload), len(tc.raw))
			}
			if want := c.Hasher().Chunk(7, tc.raw, nil); ec.Hash != want {
				t.Fatal("EncodeAt's hash is not the hasher's")
			}
			got := make([]BlockDigest, 1)
			raw, err := c.DecodeAt(7, ec.Codec, ec.Payload, len(tc.raw), ec.Hash, nil, got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(raw, tc.raw) || got[0] != blocks[0] {
				t.Fatal("decoded bytes or block digests differ")
			}
		})
	}
	// Codec 0x82 (plain zstd, sealed) is not written but must be read.
	c, _ := NewChunkCodec(3, 1, MinChunkSize)
	defer c.Close()
	c.SetKeys(k)
	z := c.enc.EncodeAll(text, nil)
	ad := seal.ChunkAD{ImageID: vectorImageID, Index: 2, Codec: byte(CodecZstd | CodecSealed), RawLen: uint32(len(text))}
	p := k.SealChunk(nil, z, ad)
	raw, err := c.DecodeAt(2, CodecZstd|CodecSealed, p, len(text), c.Hasher().Chunk(2, text, nil), nil, nil)
	if err != nil || !bytes.Equal(raw, text) {
		t.Fatalf("sealed zstd: %v", err)
	}
}

// TestSealedPayloadMisplaced: a sealed payload opened at another index,
// with another codec or length, from another image under the same root
// key, or with a flipped bit anywhere fails authentication, before
// anything is decompressed.
func TestSealedPayloadMisplaced(t *testing.T) {
	k := testKeys(t, vectorRoot, vectorImageID)
	otherID := vectorImageID
	otherID[0] ^= 0xff
	kOther := testKeys(t, vectorRoot, otherID)
	text := testSource(3*MinChunkSize, MinChunkSize, 1)[2*MinChunkSize:]
	c, _ := NewChunkCodec(3, 1, MinChunkSize)
	defer c.Close()
	c.SetKeys(k)
	co, _ := NewChunkCodec(3, 1, MinChunkSize)
	defer co.Close()
	co.SetKeys(kOther)
	ec1 := c.EncodeAt(1, text, nil, make([]BlockDigest, 1))
	ec2 := c.EncodeAt(2, text, nil, make([]BlockDigest, 1))
	ecOther := co.EncodeAt(1, text, nil, make([]BlockDigest, 1))
	if ec1.Hash == ec2.Hash {
		t.Fatal("keyed hashes do not depend on the index")
	}
	L := len(text)
	type try struct {
		name    string
		index   uint64
		codec   Codec
		payload []byte
		rawLen  int
		want    Hash
	}
	tries := []try{
		{"chunk 2's payload at chunk 1", 1, ec2.Codec, ec2.Payload, L, ec1.Hash},
		{"chunk 1's payload at chunk 2", 2, ec1.Codec, ec1.Payload, L, ec2.Hash},
		{"another image's payload", 1, ecOther.Codec, ecOther.Payload, L, ec1.Hash},
		{"another codec byte", 1, CodecZstd | CodecSealed, ec1.Payload, L, ec1.Hash},
		{"another raw length", 1, ec1.Codec, ec1.Payload, L - 1, ec1.Hash},
		{"truncated", 1, ec1.Codec, ec1.Payload[:len(ec1.Payload)-1], L, ec1.Hash},
	}
	for _, off := range []int{0, 11, 12, len(ec1.Payload) / 2, len(ec1.Payload) - 17, len(ec1.Payload) - 1} {
		p := bytes.Clone(ec1.Payload)
		p[off] ^= 0x10
		tries = append(tries, try{"bit flipped at " + string(rune('0'+off%10)), 1, ec1.Codec, p, L, ec1.Hash})
	}
	for _, tc := range tries {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.DecodeAt(tc.index, tc.codec, tc.payload, tc.rawLen, tc.want, nil, nil)
			if !errors.Is(err, ErrChecksum) || !errors.Is(err, seal.ErrAuthentication) || !IsDamage(err) {
				t.Fatalf("DecodeAt: %v, want an authentication failure (ErrChecksum)", err)
			}
		})
	}
}

// TestCodecRefusesMixing: a keyed codec never makes or reads an unsealed
// payload, an unkeyed one never a sealed one, and the image writer takes
// only chunks of its own kind.
func TestCodecRefusesMixing(t *testing.T) {
	k := testKeys(t, vectorRoot, vectorImageID)
	text := testSource(3*MinChunkSize, MinChunkSize, 1)[2*MinChunkSize:]
	keyed, _ := NewChunkCodec(3, 1, MinChunkSize)
	defer keyed.Close()
	keyed.SetKeys(k)
	plain, _ := NewChunkCodec(3, 1, MinChunkSize)
	defer plain.Close()
	blocks := make([]BlockDigest, 1)
	sealed := keyed.EncodeAt(0, text, nil, blocks)
	unsealed := plain.EncodeAt(0, text, nil, blocks)

	if _, err := keyed.DecodeAt(0, unsealed.Codec, unsealed.Payload, len(text), unsealed.Hash, nil, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("keyed codec decoding an unsealed payload: %v", err)
	}
	if _, err := plain.DecodeAt(0, sealed.Codec, sealed.Payload, len(text), sealed.Hash, nil, nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("plain codec decoding a sealed payload: %v", err)
	}
	if _, err := keyed.DigestChunkAt(0, text, blocks); err == nil {
		t.Error("keyed DigestChunkAt succeeded")
	}

	newWriter := func(withKeys bool) *ImageWriter {
		w, err := NewImageWriter(memSegments{}.create, vectorImageID, MinSegmentSize, 0)
		if err != nil {
			t.Fatal(err)
		}
		if withKeys {
			if err := w.SetKeys(k); err != nil {
				t.Fatal(err)
			}
		}
		return w
	}
	for _, tc := range []struct {
		name  string
		keyed bool
		ec    EncodedChunk
	}{
		{"unsealed chunk into an encrypted image", true, unsealed},
		{"sealed chunk into a plain image", false, sealed},
	} {
		if err := newWriter(tc.keyed).Add(&tc.ec); err == nil {
			t.Errorf("%s: Add succeeded", tc.name)
		}
	}
	otherID := vectorImageID
	otherID[3] ^= 1
	if err := newWriter(false).SetKeys(testKeys(t, vectorRoot, otherID)); err == nil {
		t.Error("SetKeys with another image's keys succeeded")
	}
	// Digest-only and encryption are refused together.
	w := newWriter(true)
	if _, err := w.Finish(Header{Requires: []string{FeatureDigestOnly}, Encryption: testEncryption(t), SHA256: strings.Repeat("0", 64), ChunkSize: MinChunkSize}); !errors.Is(err, errDigestOnlyAEAD) {
		t.Errorf("digest-only encrypted Finish: %v", err)
	}
	// An encrypted image needs its encryption object.
	if _, err := newWriter(true).Finish(Header{SHA256: strings.Repeat("0", 64), ChunkSize: MinChunkSize}); err == nil {
		t.Error("Finish of an encrypted image without an encryption object succeeded")
	}
}

func TestHasher(t *testing.T) {
	k := testKeys(t, vectorRoot, vectorImageID)
	keyed := NewKeyedHasher(k)
	for _, n := range []int{1, blockSize, blockSize + 3, 2 << 20} {
		zeros := make([]byte, n)
		for _, h := range []*Hasher{PlainHasher(), keyed} {
			b1, b2 := make([]BlockDigest, NumBlocks(n)), make([]BlockDigest, NumBlocks(n))
			if h.Zero(5, n, b1) != h.Chunk(5, zeros, b2) || !slicesEqual(b1, b2) {
				t.Fatalf("%s: Zero(%d) differs from Chunk of zeros", h.Name(), n)
			}
		}
		if PlainHasher().Chunk(3, zeros, nil) != ZeroChunkHash(n) || keyed.Chunk(3, zeros, nil) == keyed.Chunk(4, zeros, nil) {
			t.Fatal("plain hash depends on the index, or keyed one does not")
		}
	}
	if keyed.ZeroTableHash(100) != (Hash{}) || PlainHasher().ZeroTableHash(100) != ZeroChunkHash(100) {
		t.Fatal("zero table hashes")
	}
	// The keyed hasher is the seal digester (spec §11.4), for any caller.
	raw := testSource(3*blockSize+1, blockSize, 2)
	want := k.NewDigester().Chunk(raw, 9, nil)
	if keyed.Chunk(9, raw, nil) != Hash(want) {
		t.Fatal("keyed hasher differs from seal.Digester")
	}
}

func slicesEqual(a, b []BlockDigest) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEncryptedCheckpoint(t *testing.T) {
	k := testKeys(t, vectorRoot, vectorImageID)
	c := testCheckpoint()
	c.ImageID = vectorImageID
	c.Source = secretSource
	c.Source.Size = 10 << 20
	c.SHA256State = []byte("MARKERSTATE")
	c.WrappedKeys = testEncryption(t).WrappedKeys
	if _, err := c.Marshal(); err == nil {
		t.Fatal("plain Marshal of an encrypted capture's checkpoint succeeded")
	}
	b, err := c.MarshalSealed(k)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"MARKER", "markerhost", base64Of("MARKERSTATE")} {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("sealed checkpoint shows %q", s)
		}
	}
	got, err := ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Encrypted() || got.SHA256State != nil || got.Source.Serial != "" || got.Source.Size != c.Source.Size {
		t.Fatalf("parsed without keys: %+v", got)
	}
	keys, err := got.OpenKeys(testIdentities(t, "identity-1.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Unseal(keys); err != nil {
		t.Fatal(err)
	}
	if string(got.SHA256State) != "MARKERSTATE" || got.Source.Serial != secretSource.Serial || got.Source.Host != secretSource.Host {
		t.Fatalf("unsealed: %+v", got)
	}

	// The sealed object of another capture, resealed by a forger without
	// the key, fails authentication.
	other := *c
	other.SHA256State = []byte("other")
	ob, _ := other.MarshalSealed(k)
	var j, oj checkpointJSON
	_ = json.Unmarshal(b, &j)
	_ = json.Unmarshal(ob, &oj)
	j.Sealed = oj.Sealed[:len(oj.Sealed)-1]
	j.Sealed = append(j.Sealed, oj.Sealed[len(oj.Sealed)-1]^1)
	seal1, _ := checkpointSeal(c.ImageID, j)
	j.Seal = hex.EncodeToString(seal1[:])
	forged, _ := json.Marshal(j)
	fc, err := ParseCheckpoint(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := fc.Unseal(k); !errors.Is(err, ErrChecksum) {
		t.Fatalf("forged sealed object: %v", err)
	}
	if _, err := fc.OpenKeys([]age.Identity{mustX25519(t)}); !errors.Is(err, ErrNoKey) {
		t.Fatalf("stranger's identity: %v", err)
	}
	// An encrypted checkpoint with the state in the clear is corrupt.
	j.SHA256State = []byte("x")
	seal2, _ := checkpointSeal(c.ImageID, j)
	j.Seal = hex.EncodeToString(seal2[:])
	leaky, _ := json.Marshal(j)
	if _, err := ParseCheckpoint(leaky); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("state in the clear: %v", err)
	}
}

func base64Of(s string) string {
	b, _ := json.Marshal([]byte(s))
	return strings.Trim(string(b), `"`)
}

// FuzzUnsealManifest: whatever the bytes, decoding and unsealing never
// panic, and a manifest that unseals under the vector keys is
// byte-for-byte one the writer made (no forgery without the key).
func FuzzUnsealManifest(f *testing.F) {
	// Fixed nonces: the fuzzing workers rebuild the same bytes.
	img := buildEncrypted(f, testSource(3*MinChunkSize+5, MinChunkSize, 3), MinChunkSize, 0, MinSegmentSize, testNonces())
	f.Add(img.mb)
	k := img.keys
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil || !m.Encrypted() {
			return
		}
		if err := m.Unseal(k); err != nil {
			if !IsDamage(err) {
				t.Fatalf("Unseal error is not damage: %v", err)
			}
			return
		}
		if !bytes.Equal(b, img.mb) {
			t.Fatal("a manifest other than the writer's unsealed")
		}
	})
}

// FuzzSealedCheckpoint: an encrypted checkpoint's parse and unseal never
// panic, and only the writer's sealed object opens.
func FuzzSealedCheckpoint(f *testing.F) {
	k := testKeys(f, vectorRoot, vectorImageID)
	c := testCheckpoint()
	c.ImageID = vectorImageID
	c.WrappedKeys = []string{"w"}
	b, err := c.MarshalSealed(k)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseCheckpoint(b)
		if err != nil || !got.Encrypted() {
			return
		}
		if err := got.Unseal(k); err == nil && string(got.SHA256State) != string(c.SHA256State) {
			t.Fatal("a forged sealed object opened")
		}
	})
}

// FuzzUnsealMetadata: whatever a key holder seals as a manifest's
// metadata (the MAC then holds), Unseal never panics, and it succeeds only
// with a well-formed sha256 and a source that agrees with the clear one.
func FuzzUnsealMetadata(f *testing.F) {
	img := buildEncrypted(f, testSource(2*MinChunkSize+5, MinChunkSize, 3), MinChunkSize, 0, MinSegmentSize, testNonces())
	f.Add([]byte(`{"sha256":"` + img.m.Header.SHA256 + `","source":{"kind":"block","size":131077,"sector_size":512}}`))
	f.Add([]byte(`{"sha256":"` + strings.ToUpper(img.m.Header.SHA256) + `","source":{"kind":"block","size":131077,"sector_size":512}}`))
	f.Add([]byte(`{"source":{"kind":"file","size":1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, meta []byte) {
		hdr, err := img.m.sealHeader()
		if err != nil {
			t.Fatal(err)
		}
		e := *hdr.Encryption
		e.Metadata = base64.StdEncoding.EncodeToString(img.keys.SealMetadata(seal.ManifestMetadata, meta))
		hdr.Encryption = &e
		b, err := img.m.encode(hdr)
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeManifest(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Unseal(img.keys); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("hostile metadata: %v, want ErrCorrupt", err)
			}
			return
		}
		if !isLowerHex(m.Header.SHA256, 32) || sourceShape(m.Header.Source) != sourceShape(hdr.Source) {
			t.Fatalf("unsealed bad metadata: %+v", m.Header)
		}
	})
}

// TestNewEncryptionOpenKeys: a root key wrapped by NewEncryption for two
// recipients opens with either identity and gives the image's keys.
func TestNewEncryptionOpenKeys(t *testing.T) {
	a, b := mustX25519(t), mustX25519(t)
	root := seal.NewRootKey()
	e, err := NewEncryption(root, []seal.Recipient{a.Recipient(), b.Recipient()}, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(e.WrappedKeys) != 1 || len(e.Recipients) != 2 || e.Recipients[1] != b.Recipient().String() || e.Passphrase {
		t.Fatalf("encryption object %+v", e)
	}
	if err := e.validate(); err != nil {
		t.Fatal(err)
	}
	h := &Header{ImageID: hex.EncodeToString(vectorImageID[:]), Encryption: e}
	want := testKeys(t, root, vectorImageID).ManifestMAC([]byte("body"))
	for _, id := range []age.Identity{a, b} {
		k, err := OpenKeys(h, []age.Identity{mustX25519(t), id})
		if err != nil {
			t.Fatal(err)
		}
		if k.ImageID() != vectorImageID || k.ManifestMAC([]byte("body")) != want {
			t.Fatal("OpenKeys derived other keys")
		}
	}
	if _, err := NewEncryption(root, nil, ""); err == nil {
		t.Fatal("NewEncryption without recipients succeeded")
	}
	if _, err := OpenKeys(&Header{ImageID: h.ImageID}, []age.Identity{a}); err == nil {
		t.Fatal("OpenKeys of an image without encryption succeeded")
	}
}
