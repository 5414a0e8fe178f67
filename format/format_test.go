package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// memSegments collects segments written through an ImageWriter.
type memSegments map[string]*bytes.Buffer

type bufCloser struct{ *bytes.Buffer }

func (bufCloser) Close() error { return nil }

func (m memSegments) create(key string) (io.WriteCloser, error) {
	b := new(bytes.Buffer)
	m[key] = b
	return bufCloser{b}, nil
}

// testSource returns size bytes with zero, random and text regions.
func testSource(size, chunk int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, size)
	for off := 0; off < size; off += chunk {
		end := min(off+chunk, size)
		switch (off / chunk) % 3 {
		case 0: // zero
		case 1:
			for i := off; i < end; i++ {
				b[i] = byte(r.Uint32())
			}
		case 2:
			for i := off; i < end; i++ {
				b[i] = "seedship text "[i%14]
			}
		}
	}
	return b
}

// buildImage captures src into memory segments.
func buildImage(t testing.TB, src []byte, chunk int, segSize int64) (*Manifest, memSegments, []byte) {
	t.Helper()
	codec, err := NewChunkCodec(3, 2, MaxChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	segs := memSegments{}
	id := [16]byte{1, 2, 3}
	w, err := NewImageWriter(segs.create, id, segSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	blocks := make([]BlockDigest, chunk/blockSize+1)
	for off := 0; off < len(src); off += chunk {
		raw := src[off:min(off+chunk, len(src))]
		ec := codec.EncodeAt(uint64(off/chunk), raw, nil, blocks)
		if err := w.Add(&ec); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(src)
	m, err := w.Finish(Header{Size: int64(len(src)), ChunkSize: chunk, SHA256: hex.EncodeToString(sum[:]),
		Compression: Compression{Codec: "zstd", Level: 3}, CaptureStart: time.Unix(1, 0).UTC(), CaptureEnd: time.Unix(2, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return m, segs, mb
}

// restoreImage reads back every chunk by scanning segments.
func restoreImage(t testing.TB, m *Manifest, segs memSegments) ([]byte, []error) {
	codec, _ := NewChunkCodec(0, 1, MaxChunkSize)
	out := make([]byte, m.Header.Size)
	var errs []error
	for seg, chunks := range m.SegmentChunks() {
		sb := segs[DataID(seg).Key()]
		var r io.Reader = bytes.NewReader(nil)
		if sb != nil {
			r = bytes.NewReader(sb.Bytes())
		}
		sc, err := NewSegmentScanner(r, m, seg, chunks)
		if err != nil {
			t.Fatal(err)
		}
		if herr := sc.HeaderErr(); herr != nil && sb != nil {
			errs = append(errs, herr)
		}
		var buf []byte
		for {
			var f Frame
			var err error
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
		if _, err := sc.Finish(); err != nil {
			errs = append(errs, err)
		}
		// A frame whose stored bytes are damaged but that decoded to its
		// hash anyway is damage too; one report per chunk.
		for _, ce := range sc.LateDamage() {
			if !slices.ContainsFunc(errs, func(e error) bool {
				var c *ChunkError
				return errors.As(e, &c) && c.Index == ce.Index
			}) {
				errs = append(errs, ce)
			}
		}
	}
	return out, errs
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		size  int
		chunk int
	}{
		{"empty", 0, 1 << 20},
		{"one byte", 1, 1 << 20},
		{"unaligned", 5<<20 + 12345, 1 << 20},
		{"small chunks", 3<<20 + 7, MinChunkSize},
		{"one chunk", 1 << 20, 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := testSource(tc.size, tc.chunk, 7)
			if tc.size == 1 {
				src[0] = 42
			}
			m, segs, mb := buildImage(t, src, tc.chunk, MinSegmentSize)
			m2, err := DecodeManifest(mb)
			if err != nil {
				t.Fatal(err)
			}
			if m2.Hash != m.Hash || len(m2.Chunks) != len(m.Chunks) || m2.Header.Chunks != m.Header.Chunks {
				t.Fatalf("manifest did not round trip")
			}
			got, errs := restoreImage(t, m2, segs)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if !bytes.Equal(got, src) {
				t.Fatal("restored bytes differ")
			}
		})
	}
}

func TestDamageIsLocated(t *testing.T) {
	chunk := 1 << 20
	src := testSource(6<<20, chunk, 3)
	m, segs, _ := buildImage(t, src, chunk, 1<<30)
	// Flip a byte inside the payload of chunk 4 (text, stored zstd).
	c := m.Chunks[4]
	if c.Kind != KindStored {
		t.Fatalf("chunk 4 is %v", c.Kind)
	}
	seg := segs[DataID(c.Segment).Key()].Bytes()
	seg[c.Offset+FrameHeaderSize+int64(c.PayloadLen)/2] ^= 0x40
	_, errs := restoreImage(t, m, segs)
	if len(errs) != 1 {
		t.Fatalf("want 1 error, got %v", errs)
	}
	var ce *ChunkError
	if !errors.As(errs[0], &ce) || ce.Index != 4 {
		t.Fatalf("want ChunkError for chunk 4, got %v", errs[0])
	}
}

func TestTruncatedSegment(t *testing.T) {
	chunk := 1 << 20
	src := testSource(6<<20, chunk, 3)
	m, segs, _ := buildImage(t, src, chunk, 1<<30)
	b := segs[DataID(0).Key()]
	b.Truncate(int(m.Chunks[4].Offset) + 10)
	_, errs := restoreImage(t, m, segs)
	// chunks 4 and 5 are lost, and Finish reports the truncation.
	var lost []uint64
	for _, err := range errs {
		var ce *ChunkError
		if errors.As(err, &ce) {
			if !errors.Is(err, ErrMissing) {
				t.Errorf("chunk %d: want ErrMissing, got %v", ce.Index, err)
			}
			lost = append(lost, ce.Index)
		}
	}
	if len(lost) != 2 || lost[0] != 4 || lost[1] != 5 {
		t.Fatalf("lost %v, want [4 5] (errors %v)", lost, errs)
	}
}

func TestManifestDamage(t *testing.T) {
	src := testSource(3<<20, 1<<20, 1)
	_, _, mb := buildImage(t, src, 1<<20, 1<<30)
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"bit flip in table", func(b []byte) []byte { b[len(b)-100] ^= 1; return b }, ErrCorrupt},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, ErrCorrupt},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrFormat},
		{"future version", func(b []byte) []byte { b[8] = 9; return b }, ErrVersion},
		{"empty", func(b []byte) []byte { return nil }, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(bytes.Clone(mb))
			if _, err := DecodeManifest(b); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestRequiresUnknownFeature(t *testing.T) {
	src := testSource(1<<20, 1<<20, 1)
	m, _, _ := buildImage(t, src, 1<<20, 1<<30)
	m.Header.Requires = []string{"time-travel"}
	if _, err := m.Marshal(); !errors.Is(err, ErrVersion) {
		t.Fatalf("got %v", err)
	}
}

func TestChunkHashTree(t *testing.T) {
	raw := testSource(blockSize*3+5, blockSize, 9)
	var digests []byte
	for off := 0; off < len(raw); off += blockSize {
		d := sha256.Sum256(raw[off:min(off+blockSize, len(raw))])
		digests = append(digests, d[:]...)
	}
	want := sha256.Sum256(digests)
	blocks := make([]BlockDigest, 4)
	if got := ChunkHash(raw, blocks); got != want {
		t.Fatal("chunk hash is not SHA-256 over block SHA-256s")
	}
	if ZeroChunkHash(blockSize*2+3) != ChunkHash(make([]byte, blockSize*2+3), nil) {
		t.Fatal("ZeroChunkHash disagrees with ChunkHash of zeros")
	}
}

func TestSegmentIndexReadAt(t *testing.T) {
	src := testSource(5<<20, 1<<20, 5)
	m, segs, _ := buildImage(t, src, 1<<20, 1<<30)
	b := segs[DataID(0).Key()].Bytes()
	f, entries, err := readDataIndex(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Frames != m.Segments[0].Frames || len(entries) != int(f.Frames) {
		t.Fatalf("frames %d, entries %d", f.Frames, len(entries))
	}
	for _, e := range entries {
		c := m.Chunks[e.Index]
		fr, err := m.ParseFrame(e.Index, b[c.Offset:c.Offset+c.FrameLen()])
		if err != nil || fr.Index != e.Index {
			t.Fatal(err)
		}
		if len(e.Blocks) != 16 {
			t.Fatalf("blocks %d", len(e.Blocks))
		}
	}
}

// TestSegmentFrameLimit checks that chunks compressing to a few bytes do
// not pile up in one segment: a segment closes at maxFramesPerSegment
// frames, so its in-memory index stays bounded whatever the device size.
func TestSegmentFrameLimit(t *testing.T) {
	codec, _ := NewChunkCodec(3, 1, MinChunkSize)
	defer codec.Close()
	segs := memSegments{}
	w, err := NewImageWriter(segs.create, [16]byte{1}, 1<<30, 0)
	if err != nil {
		t.Fatal(err)
	}
	raw := bytes.Repeat([]byte("a very compressible chunk "), MinChunkSize/26+1)[:MinChunkSize]
	blocks := make([]BlockDigest, 1)
	n := maxFramesPerSegment + 10
	for i := range n {
		ec := codec.EncodeAt(uint64(i), raw, nil, blocks)
		if err := w.Add(&ec); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Finish(Header{Size: int64(n) * MinChunkSize, ChunkSize: MinChunkSize, SHA256: strings.Repeat("0", 64)})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Segments) != 2 || m.Segments[0].Frames != maxFramesPerSegment || m.Segments[1].Frames != 10 {
		t.Fatalf("segments %+v; want %d frames, then 10", m.Segments, maxFramesPerSegment)
	}
}
