package seed_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store/storetest/memstore"
)

// putCloser stores a segment in a memstore when it is closed.
type putCloser struct {
	bytes.Buffer
	st  *memstore.Store
	key string
}

func (p *putCloser) Close() error { p.st.SetObject(p.key, p.Bytes()); return nil }

// testSource returns n bytes of chunks that are zero, random or text, in
// turn, so an image has zero, raw and compressed chunks.
func testSource(n, chunk int, seedv uint64) []byte {
	r := rand.New(rand.NewPCG(seedv, 7))
	b := make([]byte, n)
	for off := 0; off < n; off += chunk {
		end := min(off+chunk, n)
		switch (off / chunk) % 3 {
		case 1:
			for i := off; i < end; i++ {
				b[i] = byte(r.Uint32())
			}
		case 2:
			for i := off; i < end; i++ {
				b[i] = "seedship test text "[i%19]
			}
		}
	}
	return b
}

// testImage is an image written into a memory store.
type testImage struct {
	st  *memstore.Store
	m   *format.Manifest
	mb  []byte
	src []byte
}

// build writes src as an image (chunk size, segment size, optional parity)
// into a new memory store, manifest copies included.
func build(t testing.TB, src []byte, chunk int, segSize int64, geo *format.Geometry) testImage {
	t.Helper()
	return buildImage(t, src, chunk, segSize, geo, nil)
}

// encryption is what an encrypted test image is made with: its root key,
// wrapped for ids' recipients.
type encryption struct {
	root seal.RootKey
	enc  *format.Encryption
	keys *seal.Keys
}

// newIdentity returns a fresh age identity and its recipient.
func newIdentity(t testing.TB) (*age.X25519Identity, seal.Recipient) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	r, err := seal.ParseRecipient("test", id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	return id, r
}

// buildEncrypted writes src as an image encrypted for a new identity,
// which it returns.
func buildEncrypted(t testing.TB, src []byte, chunk int, segSize int64, geo *format.Geometry) (testImage, age.Identity) {
	t.Helper()
	id, r := newIdentity(t)
	root := seal.NewRootKey()
	enc, err := format.NewEncryption(root, []seal.Recipient{r}, "")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := seal.DeriveKeys(root, imageID(src))
	if err != nil {
		t.Fatal(err)
	}
	return buildImage(t, src, chunk, segSize, geo, &encryption{root: root, enc: enc, keys: keys}), id
}

// buildImage is build, encrypted when e is not nil.
func buildImage(t testing.TB, src []byte, chunk int, segSize int64, geo *format.Geometry, e *encryption) testImage {
	t.Helper()
	st := memstore.New()
	codec, err := format.NewChunkCodec(3, 1, chunk)
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	w, err := format.NewImageWriter(func(key string) (io.WriteCloser, error) {
		return &putCloser{st: st, key: key}, nil
	}, imageID(src), segSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	if e != nil {
		codec.SetKeys(e.keys)
		if err := w.SetKeys(e.keys); err != nil {
			t.Fatal(err)
		}
	}
	if geo != nil {
		err := w.SetParity(*geo, func(ps *format.ParitySegment) error {
			st.SetObject(format.ParityID(ps.Number).Key(), append(append(bytes.Clone(ps.Header), ps.Rows...), ps.Trailer...))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	blocks := make([]format.BlockDigest, format.NumBlocks(chunk))
	for off := 0; off < len(src); off += chunk {
		ec := codec.EncodeAt(uint64(off/chunk), src[off:min(off+chunk, len(src))], nil, blocks)
		if err := w.Add(&ec); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(src)
	ts := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	hdr := format.Header{Tool: "seed test", Size: int64(len(src)), ChunkSize: chunk, SHA256: hex.EncodeToString(sum[:]),
		Compression: format.Compression{Codec: "zstd", Level: 3}, Source: format.Source{Path: "src", Kind: "file", Size: int64(len(src))},
		CaptureStart: ts, CaptureEnd: ts}
	if e != nil {
		hdr.Encryption = e.enc
	}
	m, err := w.Finish(hdr)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(m.CopyKeys(), format.ManifestKey) {
		st.SetObject(k, mb)
	}
	return testImage{st: st, m: m, mb: mb, src: src}
}

// small is an image of 24 chunks of 64 KiB over segments of 256 KiB.
func small(t testing.TB) testImage {
	return build(t, testSource(24*65536+777, 65536, 1), 65536, 256<<10, nil)
}

// withParity is an image of 40 chunks of 64 KiB with 2+1 parity over
// 128 KiB segments, 4 KiB rows.
func withParity(t testing.TB) testImage {
	return build(t, testSource(40*65536+333, 65536, 2), 65536, 128<<10, &format.Geometry{K: 2, M: 1, RowSize: 4096})
}

func open(t testing.TB, st *memstore.Store) *seed.Image {
	t.Helper()
	im, err := seed.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// readAll reads the whole image and returns the restored bytes and the
// damage found.
func readAll(t testing.TB, im *seed.Image, opts seed.ReadOptions) ([]byte, []seed.Damage, error) {
	t.Helper()
	m := im.Manifest()
	out := make([]byte, m.Header.Size)
	var damage []seed.Damage
	if !opts.Transport && !im.Locked() {
		// A transport check (asked for, or of a locked image) opens no
		// chunk: out stays zero.
		opts.OnChunk = func(i uint64, raw []byte) error {
			off, _ := m.ChunkRange(i)
			copy(out[off:], raw)
			return nil
		}
	}
	var mu sync.Mutex
	opts.OnDamage = func(d seed.Damage) error { mu.Lock(); damage = append(damage, d); mu.Unlock(); return nil }
	_, err := im.Read(context.Background(), opts)
	return out, damage, err
}

// flip xors one byte of an object.
func flip(t testing.TB, st *memstore.Store, key string, off int64) {
	t.Helper()
	b, ok := st.Object(key)
	if !ok {
		t.Fatalf("no %s", key)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x40
	st.SetObject(key, b)
}

// craftDigest changes the first block digest of chunk i in the index of
// data segment n and makes the footer and the manifest agree with the
// changed index, as a crafted image would: every hash matches, only the
// digest is wrong.
func craftDigest(t testing.TB, ti testImage, n uint32, i uint64) {
	t.Helper()
	craftIndex(t, ti, n, i, 92)
}

// craftIndex changes the byte at offset field of chunk i's entry in the
// index of data segment n (60: its stored digest; 92: its first block
// digest) and makes the footer and the manifest agree, as craftDigest.
func craftIndex(t testing.TB, ti testImage, n uint32, i uint64, field int64) {
	t.Helper()
	key := format.DataID(n).Key()
	b, _ := ti.st.Object(key)
	id, _ := ti.m.ImageID()
	_, entries, err := format.ReadSummary(bytes.NewReader(b), int64(len(b)), format.DataID(n), id)
	if err != nil {
		t.Fatal(err)
	}
	// The index is the entries back to back (92 bytes and the block
	// digests each), just before the footer.
	entryLen := func(e format.IndexEntry) int64 { return 92 + int64(len(e.Blocks)*len(format.BlockDigest{})) }
	indexLen := int64(0)
	for _, e := range entries {
		indexLen += entryLen(e)
	}
	indexOffset := int64(len(b)) - format.FooterSize - indexLen
	at := indexOffset
	for _, e := range entries {
		if e.Index == i {
			break
		}
		at += entryLen(e)
	}
	b[at+field] ^= 0x01
	h := sha256.Sum256(b[indexOffset : indexOffset+indexLen])
	copy(b[len(b)-format.FooterSize+24:], h[:])
	ti.st.SetObject(key, b)
	for k := range ti.m.Segments {
		if ti.m.Segments[k].Number == n {
			ti.m.Segments[k].IndexHash = h
		}
	}
	mb, err := ti.m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(ti.m.CopyKeys(), format.ManifestKey) {
		ti.st.SetObject(k, mb)
	}
}

// imageID derives an image ID from the source, so images of different
// sources differ.
func imageID(src []byte) [16]byte {
	h := sha256.Sum256(src)
	return [16]byte(h[:16])
}
