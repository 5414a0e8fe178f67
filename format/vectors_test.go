package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test vectors of spec/FORMAT.md live in ../testdata/vectors. Each
// vector.json states what a reader must find; images were written once by
// this package (zstd output is not reproducible across encoder versions, so
// the stored bytes are fixtures and only decoded content is compared).
// Regenerate with: go test ./format -run TestVectors -update

var update = flag.Bool("update", false, "rewrite testdata/vectors")

const vectorDir = "../testdata/vectors"

type vectorChunk struct {
	Kind       string `json:"kind"`
	Hash       string `json:"hash"`
	Segment    uint32 `json:"segment"`
	Offset     int64  `json:"offset"`
	PayloadLen uint32 `json:"payload_len"`
	Codec      string `json:"codec,omitempty"`
	// Stored is the frame's stored digest from the segment index (hex):
	// BLAKE3-256 of its header and payload, what b3sum prints for them.
	Stored string `json:"stored,omitempty"`
	// Blocks are the 8-byte block digests from the segment index (hex).
	Blocks []string `json:"blocks,omitempty"`
}

type vectorMutation struct {
	Key      string `json:"key"`
	Offset   int64  `json:"offset,omitempty"`
	Xor      byte   `json:"xor,omitempty"`
	Truncate *int64 `json:"truncate,omitempty"`
	Delete   bool   `json:"delete,omitempty"`
}

type vector struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// For a corrupt vector: the clean vector it starts from, what to
	// change, and what a reader must report.
	Base      string          `json:"base,omitempty"`
	Mutate    *vectorMutation `json:"mutate,omitempty"`
	ExpectErr string          `json:"expect_error,omitempty"` // "corrupt", "format", "version", "checksum", "missing"
	BadChunks []uint64        `json:"bad_chunks,omitempty"`

	Size           int64   `json:"size,omitempty"`
	ChunkSize      int     `json:"chunk_size,omitempty"`
	SHA256         string  `json:"sha256,omitempty"`
	ManifestSHA256 string  `json:"manifest_sha256,omitempty"`
	ZeroChunks     uint64  `json:"zero_chunks,omitempty"`
	StoredBytes    int64   `json:"stored_bytes,omitempty"`
	Segments       []int64 `json:"segment_sizes,omitempty"`
	Parity         *Parity `json:"parity,omitempty"`
	ParitySegments []int64 `json:"parity_segment_sizes,omitempty"`
	// ParityRows is, per parity segment, the rows digest its index
	// records (hex): BLAKE3-256 of its rows.
	ParityRows []string      `json:"parity_rows_digests,omitempty"`
	Chunks     []vectorChunk `json:"chunks,omitempty"`
}

type vectorSpec struct {
	name, desc string
	size       int
	chunk      int
	segSize    int64
	gen        func(size, chunk int) []byte
	parity     *Geometry
	width      int // data segments grown together without parity (0: one)
}

var cleanVectors = []vectorSpec{
	{"basic", "64 KiB chunks: zero, random, text, zero, ... and a short last chunk", 5*65536 + 123, MinChunkSize, 1 << 20,
		func(size, chunk int) []byte { return testSource(size, chunk, 11) }, nil, 0},
	{"empty", "a zero-length source: no chunks, no segments", 0, MinChunkSize, 1 << 20,
		func(size, chunk int) []byte { return nil }, nil, 0},
	{"one-byte", "a one-byte source (0x2a)", 1, MinChunkSize, 1 << 20,
		func(size, chunk int) []byte { return []byte{42} }, nil, 0},
	{"all-zero", "three zero chunks: nothing stored", 3 * MinChunkSize, MinChunkSize, 1 << 20,
		func(size, chunk int) []byte { return make([]byte, size) }, nil, 0},
	{"parity", "Reed-Solomon 2+1 parity, 4 KiB rows, over 64 KiB segments; the last stripe is short", 12*MinChunkSize + 999, MinChunkSize, 64 << 10,
		func(size, chunk int) []byte {
			b := testSource(size, chunk, 17)
			r := rand.New(rand.NewPCG(17, 2))
			for i := 5 * chunk; i < 7*chunk; i++ {
				b[i] = byte(r.Uint32())
			}
			return b
		}, &Geometry{K: 2, M: 1, RowSize: 4096}, 0},
	{"x86", "machine-code-like chunks: CALL/JMP displacements stored with the x86 filter (codec 3)", 4*MinChunkSize + 4321, MinChunkSize, 1 << 20,
		func(size, chunk int) []byte {
			r := rand.New(rand.NewPCG(86, 86))
			targets := []uint32{0x1000, 0x2340, 0x8000, 0x10000, 0x3F000}
			b := make([]byte, size)
			for i := 0; i < size; {
				if size-i >= 5 && r.IntN(3) == 0 {
					b[i] = 0xE8 + byte(r.IntN(2))
					binary.LittleEndian.PutUint32(b[i+1:], targets[r.IntN(len(targets))]-uint32(i+5))
					i += 5
					continue
				}
				b[i] = []byte{0x48, 0x89, 0xC7, 0x8B, 0x45, 0xF8, 0x31, 0xC0, 0xC3, 0x90}[r.IntN(10)]
				i++
			}
			return b
		}, nil, 0},
	{"multi-segment", "incompressible chunks stored raw across two 1 MiB segments", 32 * MinChunkSize, MinChunkSize, 1 << 20,
		func(size, chunk int) []byte {
			b := testSource(size, chunk, 5)
			r := make([]byte, size)
			rng := rand.New(rand.NewPCG(6, 1))
			for i := range r {
				r[i] = byte(rng.Uint32())
			}
			for off := 0; off < size; off += chunk {
				if (off/chunk)%3 != 0 {
					copy(b[off:off+chunk], r[off:off+chunk])
				}
			}
			return b
		}, nil, 0},
	{"parity-balanced", "Reed-Solomon 3+2 parity, 4 KiB rows, 128 KiB segments: each stripe's three data segments grow together (every frame to the shortest), ending within one frame of each other, so its parity costs about 2/3 of its data; the last stripe ends early, its segments shorter than the segment size", 20*MinChunkSize + 4097, MinChunkSize, 128 << 10,
		func(size, chunk int) []byte {
			b := testSource(size, chunk, 23)
			r := rand.New(rand.NewPCG(23, 3))
			for i := 0; i < size; i++ {
				if (i/chunk)%4 == 1 {
					b[i] = byte(r.Uint32())
				}
			}
			return b
		}, &Geometry{K: 3, M: 2, RowSize: 4096}, 0},
	{"width", "no parity, three data segments grown together (width 3, spec §5.5), 256 KiB segments", 16*MinChunkSize + 100, MinChunkSize, 256 << 10,
		func(size, chunk int) []byte { return testSource(size, chunk, 31) }, nil, 3},
}

var corruptVectors = []vector{
	{Name: "corrupt-payload", Base: "basic", Description: "one byte of chunk 2's payload flipped",
		Mutate: &vectorMutation{Key: "data/00000000.seg", Offset: -1, Xor: 0x01}, ExpectErr: "checksum", BadChunks: []uint64{2}},
	{Name: "corrupt-frame-header", Base: "basic", Description: "frame magic of chunk 1 damaged",
		Mutate: &vectorMutation{Key: "data/00000000.seg", Offset: 32, Xor: 0xff}, ExpectErr: "corrupt", BadChunks: []uint64{1}},
	{Name: "truncated-segment", Base: "multi-segment", Description: "data segment 1 cut after its first frame",
		Mutate: &vectorMutation{Key: "data/00000001.seg", Truncate: ptr(int64(32 + 24 + 65536 + 10))}, ExpectErr: "missing"},
	{Name: "missing-segment", Base: "multi-segment", Description: "data segment 0 deleted",
		Mutate: &vectorMutation{Key: "data/00000000.seg", Delete: true}, ExpectErr: "missing"},
	{Name: "manifest-bitflip", Base: "basic", Description: "one bit of the chunk table flipped",
		Mutate: &vectorMutation{Key: "manifest.ssm", Offset: -100, Xor: 0x04}, ExpectErr: "corrupt"},
	{Name: "manifest-truncated", Base: "basic", Description: "manifest missing its last byte",
		Mutate: &vectorMutation{Key: "manifest.ssm", Truncate: ptr(int64(-1))}, ExpectErr: "corrupt"},
	{Name: "manifest-version", Base: "basic", Description: "manifest version field set to 2 (an older seedship's image)",
		Mutate: &vectorMutation{Key: "manifest.ssm", Offset: 8, Xor: 0x01}, ExpectErr: "version"},
	{Name: "not-a-manifest", Base: "basic", Description: "manifest magic replaced",
		Mutate: &vectorMutation{Key: "manifest.ssm", Offset: 0, Xor: 0x20}, ExpectErr: "format"},
}

func ptr[T any](v T) *T { return &v }

func writeVector(t *testing.T, vs vectorSpec) {
	src := vs.gen(vs.size, vs.chunk)
	dir := filepath.Join(vectorDir, vs.name)
	os.RemoveAll(dir)
	codec, _ := NewChunkCodec(3, 1, MaxChunkSize)
	defer codec.Close()
	segs := memSegments{}
	w, err := NewImageWriter(segs.create, vectorID(vs.name), vs.segSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	if vs.width > 1 {
		must(t, w.SetWidth(vs.width))
	}
	if vs.parity != nil {
		must(t, w.SetParity(*vs.parity, func(ps *ParitySegment) error {
			segs[ParityID(ps.Number).Key()] = bytes.NewBuffer(append(append(bytes.Clone(ps.Header), ps.Rows...), ps.Trailer...))
			return nil
		}))
	}
	blocks := make([]BlockDigest, vs.chunk/blockSize)
	for off := 0; off < len(src); off += vs.chunk {
		ec := codec.EncodeAt(uint64(off/vs.chunk), src[off:min(off+vs.chunk, len(src))], nil, blocks)
		if err := w.Add(&ec); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(src)
	ts := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	m, err := w.Finish(Header{Tool: "seedship test vectors", Size: int64(len(src)), ChunkSize: vs.chunk,
		SHA256: hex.EncodeToString(sum[:]), Compression: Compression{Codec: "zstd", Level: 3},
		Source: Source{Path: "source.bin", Kind: "file", Size: int64(len(src))}, CaptureStart: ts, CaptureEnd: ts})
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := m.Marshal()
	must(t, os.MkdirAll(filepath.Join(dir, "image", "data"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "image", "parity"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "source.bin"), src, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "image", ManifestKey), mb, 0o644))
	for _, k := range m.CopyKeys() { // spec §9.5: parity images carry M copies
		must(t, os.WriteFile(filepath.Join(dir, "image", k), mb, 0o644))
	}
	for k, b := range segs {
		must(t, os.WriteFile(filepath.Join(dir, "image", k), b.Bytes(), 0o644))
	}
	v := describe(t, vs.name, vs.desc, m, segs)
	jb, _ := json.MarshalIndent(v, "", "  ")
	must(t, os.WriteFile(filepath.Join(dir, "vector.json"), append(jb, '\n'), 0o644))
}

// vectorID derives a fixed image ID from the vector's name.
func vectorID(name string) [16]byte {
	h := sha256.Sum256([]byte("seedship test vector " + name))
	return [16]byte(h[:16])
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// describe lists what a reader must find in an image.
func describe(t *testing.T, name, desc string, m *Manifest, segs memSegments) vector {
	v := vector{Name: name, Description: desc, Size: m.Header.Size, ChunkSize: m.Header.ChunkSize, SHA256: m.Header.SHA256,
		ManifestSHA256: hex.EncodeToString(m.Hash[:]), ZeroChunks: m.Header.ZeroChunks, StoredBytes: m.Header.StoredBytes,
		Parity: m.Header.Parity}
	for _, p := range m.Parity {
		v.ParitySegments = append(v.ParitySegments, p.Size)
		b := segs[ParityID(p.Number).Key()].Bytes()
		idx, err := readParityIndex(bytes.NewReader(b), int64(len(b)), p.IndexHash, -1)
		if err != nil {
			t.Fatal(err)
		}
		v.ParityRows = append(v.ParityRows, hex.EncodeToString(idx.RowsDigest[idx.J][:]))
	}
	blocks := map[uint64][]BlockDigest{}
	stored := map[uint64]Hash{}
	for _, s := range m.Segments {
		v.Segments = append(v.Segments, s.Size)
		b := segs[DataID(s.Number).Key()].Bytes()
		_, entries, err := readDataIndex(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			blocks[e.Index] = e.Blocks
			stored[e.Index] = e.Stored
			if err := e.CheckStored(b[e.Offset : e.Offset+FrameHeaderSize+int64(e.PayloadLen)]); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, c := range m.Chunks {
		vc := vectorChunk{Kind: c.Kind.String(), Hash: hex.EncodeToString(c.Hash[:])}
		if c.Kind == KindStored {
			vc.Segment, vc.Offset, vc.PayloadLen, vc.Codec = c.Segment, c.Offset, c.PayloadLen, c.Codec.String()
			d := stored[uint64(i)]
			vc.Stored = hex.EncodeToString(d[:])
			for _, d := range blocks[uint64(i)] {
				vc.Blocks = append(vc.Blocks, hex.EncodeToString(d[:]))
			}
		}
		v.Chunks = append(v.Chunks, vc)
	}
	return v
}

// loadImage reads a vector's image directory into memory.
func loadImage(t *testing.T, dir string) map[string][]byte {
	files := map[string][]byte{}
	root := filepath.Join(dir, "image")
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func asSegments(files map[string][]byte) memSegments {
	segs := memSegments{}
	for k, b := range files {
		if strings.HasPrefix(k, "data/") || strings.HasPrefix(k, "parity/") {
			segs[k] = bytes.NewBuffer(b)
		}
	}
	return segs
}

func TestVectors(t *testing.T) {
	if *update {
		// Fixtures are written once: zstd output is not reproducible
		// across encoder versions, so existing vectors are kept (remove
		// a vector's directory to write it again).
		for _, vs := range cleanVectors {
			if _, err := os.Stat(filepath.Join(vectorDir, vs.name)); err == nil {
				continue
			}
			writeVector(t, vs)
		}
		for _, cv := range corruptVectors {
			dir := filepath.Join(vectorDir, cv.Name)
			os.RemoveAll(dir)
			must(t, os.MkdirAll(dir, 0o755))
			if cv.Mutate.Offset == -1 { // the middle of chunk 2's payload
				var base vector
				b, _ := os.ReadFile(filepath.Join(vectorDir, cv.Base, "vector.json"))
				must(t, json.Unmarshal(b, &base))
				c := base.Chunks[2]
				cv.Mutate.Offset = c.Offset + FrameHeaderSize + int64(c.PayloadLen)/2
			}
			jb, _ := json.MarshalIndent(cv, "", "  ")
			must(t, os.WriteFile(filepath.Join(dir, "vector.json"), append(jb, '\n'), 0o644))
		}
	}
	ents, err := os.ReadDir(vectorDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue // README.md
		}
		t.Run(e.Name(), func(t *testing.T) {
			var v vector
			b, err := os.ReadFile(filepath.Join(vectorDir, e.Name(), "vector.json"))
			must(t, err)
			must(t, json.Unmarshal(b, &v))
			if v.Base == "" {
				checkCleanVector(t, filepath.Join(vectorDir, e.Name()), v)
			} else {
				checkCorruptVector(t, v)
			}
		})
	}
}

func checkCleanVector(t *testing.T, dir string, v vector) {
	files := loadImage(t, dir)
	src, err := os.ReadFile(filepath.Join(dir, "source.bin"))
	must(t, err)
	m, err := DecodeManifest(files[ManifestKey])
	must(t, err)
	for _, k := range m.CopyKeys() {
		if !bytes.Equal(files[k], files[ManifestKey]) {
			t.Fatalf("%s is not a copy of the manifest (spec §9.5)", k)
		}
	}
	segs := asSegments(files)
	got := describe(t, v.Name, v.Description, m, segs)
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(v)
	if !bytes.Equal(gj, wj) {
		t.Fatalf("decoded image differs from vector.json:\n got %s\nwant %s", gj, wj)
	}
	sum := sha256.Sum256(src)
	if hex.EncodeToString(sum[:]) != v.SHA256 {
		t.Fatal("source.bin does not hash to sha256")
	}
	out, errs := restoreImage(t, m, segs)
	if len(errs) > 0 || !bytes.Equal(out, src) {
		t.Fatalf("restore: %v (equal %v)", errs, bytes.Equal(out, src))
	}
	if g, ok := m.Geometry(); ok {
		checkVectorParity(t, m, g, segs)
	}
	// Hashes recomputed from the source match the table.
	for i := range m.Chunks {
		off, length := m.ChunkRange(uint64(i))
		if ChunkHash(src[off:off+length], nil) != m.Chunks[i].Hash {
			t.Fatalf("chunk %d hash", i)
		}
	}
}

func checkCorruptVector(t *testing.T, v vector) {
	files := loadImage(t, filepath.Join(vectorDir, v.Base))
	mu := v.Mutate
	b, ok := files[mu.Key]
	if !ok {
		t.Fatalf("base has no %s", mu.Key)
	}
	b = bytes.Clone(b)
	switch {
	case mu.Delete:
		delete(files, mu.Key)
	case mu.Truncate != nil:
		n := *mu.Truncate
		if n < 0 {
			n += int64(len(b))
		}
		files[mu.Key] = b[:n]
	default:
		off := mu.Offset
		if off < 0 {
			off += int64(len(b))
		}
		b[off] ^= mu.Xor
		files[mu.Key] = b
	}
	want := map[string]error{"corrupt": ErrCorrupt, "format": ErrFormat, "version": ErrVersion, "checksum": ErrChecksum, "missing": ErrMissing}[v.ExpectErr]
	m, err := DecodeManifest(files[ManifestKey])
	if mu.Key == ManifestKey {
		if !errors.Is(err, want) {
			t.Fatalf("manifest: got %v, want %v", err, want)
		}
		return
	}
	must(t, err)
	_, errs := restoreImage(t, m, asSegments(files))
	var bad []uint64
	found := false
	for _, e := range errs {
		if errors.Is(e, want) {
			found = true
		}
		var ce *ChunkError
		if errors.As(e, &ce) {
			bad = append(bad, ce.Index)
		}
	}
	if !found {
		t.Fatalf("want an error wrapping %v, got %v", want, errs)
	}
	if v.BadChunks != nil && !equalU64(bad, v.BadChunks) {
		t.Fatalf("bad chunks %v, want %v", bad, v.BadChunks)
	}
}

func equalU64(a, b []uint64) bool {
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

var _ = io.EOF

// checkVectorParity rebuilds every data segment of every stripe from the
// others and the parity, row by row, as the spec describes.
func checkVectorParity(t *testing.T, m *Manifest, g Geometry, segs memSegments) {
	coder, _ := g.NewCoder()
	for s := 0; s < m.Stripes(); s++ {
		pb := segs[ParityID(g.ParityNumber(uint32(s), 0)).Key()].Bytes()
		idx, err := readParityIndex(bytes.NewReader(pb), int64(len(pb)), m.Parity[s*g.M].IndexHash, -1)
		must(t, err)
		for j := range g.M {
			// Each parity segment's rows against the rows digest that
			// every index of the stripe records for it.
			pb := segs[ParityID(g.ParityNumber(uint32(s), j)).Key()].Bytes()
			h := NewRowsDigester()
			h.Write(pb[SegmentHeaderSize : SegmentHeaderSize+idx.ShardLen()])
			must(t, idx.CheckRows(j, SumDigest(h)))
		}
		shard := func(i int) []byte {
			b := make([]byte, idx.Rows*idx.RowSize)
			if i < g.K {
				if d := idx.Data[i]; d.Present() {
					copy(b, segs[DataID(d.Number).Key()].Bytes())
				}
				return b
			}
			copy(b, segs[ParityID(g.ParityNumber(uint32(s), i-g.K)).Key()].Bytes()[SegmentHeaderSize:])
			return b
		}
		for lose := range g.K + g.M {
			for r := range idx.Rows {
				row := make([][]byte, g.K+g.M)
				for i := range row {
					row[i] = shard(i)[r*idx.RowSize : (r+1)*idx.RowSize]
					if RowCRC(0, row[i]) != idx.CRC[i][r] {
						t.Fatalf("stripe %d shard %d row %d CRC", s, i, r)
					}
				}
				want := row[lose]
				row[lose] = nil
				must(t, coder.Reconstruct(row))
				if !bytes.Equal(row[lose], want) {
					t.Fatalf("stripe %d: shard %d row %d not rebuilt", s, lose, r)
				}
			}
		}
	}
}
