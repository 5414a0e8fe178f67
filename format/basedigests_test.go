package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"testing"
)

func digestsOf(n int, seed byte) []BlockDigest {
	out := make([]BlockDigest, n)
	for k := range out {
		for j := range out[k] {
			out[k][j] = seed + byte(k*8+j)
		}
	}
	return out
}

func TestBaseBlocks(t *testing.T) {
	const B = blockSize
	tests := []struct {
		name string
		hdr  BaseDigestsHeader
		i    uint64
		want int
	}{
		{"same size, 64 KiB chunks", BaseDigestsHeader{B, 10 * B, 10 * B}, 3, 1},
		{"same size, 256 KiB chunks", BaseDigestsHeader{4 * B, 10 * B, 10 * B}, 1, 4},
		{"short last chunk", BaseDigestsHeader{4 * B, 10 * B, 10 * B}, 2, 2},
		{"short last block", BaseDigestsHeader{4 * B, 9*B + 100, 9*B + 100}, 2, 2},
		{"grown: chunk past the base", BaseDigestsHeader{B, 20 * B, 10 * B}, 12, 0},
		{"grown: chunk across the base's end", BaseDigestsHeader{4 * B, 20 * B, 10 * B}, 2, 2},
		{"grown: base ends inside a block", BaseDigestsHeader{4 * B, 20 * B, 9*B + 1}, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.hdr.BaseBlocks(tt.i); got != tt.want {
				t.Fatalf("BaseBlocks(%d) = %d, want %d", tt.i, got, tt.want)
			}
		})
	}
}

func TestBaseDigestsRoundTrip(t *testing.T) {
	hdr := BaseDigestsHeader{ChunkSize: 4 * blockSize, Size: 20 * blockSize, BaseSize: 9*blockSize + 7}
	entries := []BaseDigestsEntry{{0, digestsOf(4, 1)}, {2, digestsOf(2, 9)}, {4, nil}}
	b, err := EncodeBaseDigests(hdr, entries)
	if err != nil {
		t.Fatal(err)
	}
	if want := BaseDigestsHeaderSize + 3*baseDigestsEntrySize + 6*8 + BaseDigestsTrailerSize; len(b) != want {
		t.Fatalf("table is %d bytes, want %d", len(b), want)
	}
	r, err := NewBaseDigestsReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r.Header() != hdr {
		t.Fatalf("header %+v, want %+v", r.Header(), hdr)
	}
	for _, want := range entries {
		e, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.Chunk != want.Chunk || len(e.Blocks) != len(want.Blocks) {
			t.Fatalf("entry %+v, want %+v", e, want)
		}
		for k := range e.Blocks {
			if e.Blocks[k] != want.Blocks[k] {
				t.Fatalf("chunk %d block %d: %x, want %x", e.Chunk, k, e.Blocks[k], want.Blocks[k])
			}
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last entry: %v, want io.EOF", err)
	}
	if r.Sum() != Hash(sha256.Sum256(b)) {
		t.Fatal("Sum is not the SHA-256 of the table")
	}
}

func TestBaseDigestsWriterRefuses(t *testing.T) {
	hdr := BaseDigestsHeader{ChunkSize: blockSize, Size: 4 * blockSize, BaseSize: 4 * blockSize}
	tests := []struct {
		name string
		add  func(w *BaseDigestsWriter) error
	}{
		{"out of order", func(w *BaseDigestsWriter) error {
			if err := w.Add(2, digestsOf(1, 0)); err != nil {
				return nil
			}
			return w.Add(1, digestsOf(1, 0))
		}},
		{"repeated", func(w *BaseDigestsWriter) error {
			if err := w.Add(2, digestsOf(1, 0)); err != nil {
				return nil
			}
			return w.Add(2, digestsOf(1, 0))
		}},
		{"past the end", func(w *BaseDigestsWriter) error { return w.Add(4, digestsOf(1, 0)) }},
		{"wrong digest count", func(w *BaseDigestsWriter) error { return w.Add(0, digestsOf(2, 0)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewBaseDigestsWriter(io.Discard, hdr)
			if err != nil {
				t.Fatal(err)
			}
			if tt.add(w) == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := NewBaseDigestsWriter(io.Discard, BaseDigestsHeader{ChunkSize: blockSize, Size: blockSize, BaseSize: 2 * blockSize}); err == nil {
		t.Fatal("a base larger than the delta was accepted")
	}
}

// TestBaseDigestsReaderRefuses mutates a valid table: every mutation must
// be refused (as damage, or as not a table), never read as another table.
func TestBaseDigestsReaderRefuses(t *testing.T) {
	hdr := BaseDigestsHeader{ChunkSize: 2 * blockSize, Size: 8 * blockSize, BaseSize: 8 * blockSize}
	good, err := EncodeBaseDigests(hdr, []BaseDigestsEntry{{1, digestsOf(2, 1)}, {3, digestsOf(2, 5)}})
	if err != nil {
		t.Fatal(err)
	}
	e1 := BaseDigestsHeaderSize // first entry
	e2 := e1 + baseDigestsEntrySize + 16
	tr := len(good) - BaseDigestsTrailerSize
	put64 := func(off int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint64(b[off:], v); return b }
	}
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
	}
	tests := []struct {
		name   string
		mutate func([]byte) []byte
		want   error
	}{
		{"bad magic", func(b []byte) []byte { b[0] ^= 1; return b }, ErrFormat},
		{"version 2", func(b []byte) []byte { b[8] = 2; return b }, ErrVersion},
		{"reserved header", func(b []byte) []byte { b[33] = 1; return b }, ErrCorrupt},
		{"chunk size not a power of two", put32(12, 3*blockSize), ErrCorrupt},
		{"base larger than the delta", put64(24, 9*blockSize), ErrCorrupt},
		{"huge size", put64(16, 1<<63), ErrCorrupt},
		{"entry out of order", put64(e2, 1), ErrCorrupt},
		{"entry past the last chunk", put64(e2, 4), ErrCorrupt},
		{"entry with too many digests", put32(e1+8, 1<<30), ErrCorrupt},
		{"entry reserved", put32(e1+12, 1), ErrCorrupt},
		{"trailer count", put64(tr+8, 3), ErrCorrupt},
		{"trailer mark", func(b []byte) []byte { b[len(b)-1] ^= 1; return b }, ErrCorrupt},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, ErrMissing},
		{"no trailer", func(b []byte) []byte { return b[:tr] }, ErrMissing},
		{"truncated header", func(b []byte) []byte { return b[:10] }, ErrMissing},
		{"bytes after the trailer", func(b []byte) []byte { return append(b, 0) }, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mutate(bytes.Clone(good))
			err := readAllBaseDigests(b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	if err := readAllBaseDigests(good); err != nil {
		t.Fatalf("the unmutated table: %v", err)
	}
}

// readAllBaseDigests reads a whole table, returning nil only if it is
// valid to its end.
func readAllBaseDigests(b []byte) error {
	r, err := NewBaseDigestsReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	for {
		if _, err := r.Next(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// FuzzBaseDigests feeds arbitrary bytes to the reader: it must never
// panic or allocate past an entry's bound, and a table it reads to the
// end must encode back to the same bytes.
func FuzzBaseDigests(f *testing.F) {
	hdr := BaseDigestsHeader{ChunkSize: 2 * blockSize, Size: 8*blockSize + 5, BaseSize: 7 * blockSize}
	good, err := EncodeBaseDigests(hdr, []BaseDigestsEntry{{0, digestsOf(2, 1)}, {3, digestsOf(1, 3)}, {4, nil}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	keyed, err := EncodeKeyedBaseDigests(hdr, 4*blockSize, []BaseDigestsEntry{{0, digestsOf(2, 1)}, {3, digestsOf(1, 3)}, {4, nil}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(keyed)
	f.Add(good[:BaseDigestsHeaderSize])
	f.Add([]byte(baseDigestsMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewBaseDigestsReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		var entries []BaseDigestsEntry
		for {
			e, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return
			}
			if len(e.Blocks) > MaxChunkSize/blockSize {
				t.Fatalf("entry with %d digests", len(e.Blocks))
			}
			entries = append(entries, BaseDigestsEntry{e.Chunk, append([]BlockDigest(nil), e.Blocks...)})
		}
		var again []byte
		if bc := r.BaseChunkSize(); bc != 0 {
			again, err = EncodeKeyedBaseDigests(r.Header(), bc, entries)
		} else {
			again, err = EncodeBaseDigests(r.Header(), entries)
		}
		if err != nil {
			t.Fatalf("a table the reader accepted does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("a table the reader accepted encodes to other bytes")
		}
	})
}

func TestWalkBaseDigests(t *testing.T) {
	hdr := BaseDigestsHeader{ChunkSize: blockSize, Size: 4 * blockSize, BaseSize: 4 * blockSize}
	m := &Manifest{Header: Header{ChunkSize: blockSize, Size: 4 * blockSize, Base: &Base{}},
		Chunks: []ChunkEntry{{Kind: KindBase}, {Kind: KindStored}, {Kind: KindBase}, {Kind: KindZero}}}
	table := func(entries ...BaseDigestsEntry) []byte {
		b, err := EncodeBaseDigests(hdr, entries)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := table(BaseDigestsEntry{1, digestsOf(1, 1)}, BaseDigestsEntry{3, digestsOf(1, 3)})
	sum := sha256.Sum256(good)
	tests := []struct {
		name   string
		table  []byte
		sum    [32]byte
		want   error
		chunks []uint64
	}{
		{"matches", good, sum, nil, []uint64{1, 3}},
		{"hash differs", good, sha256.Sum256(nil), ErrChecksum, []uint64{1, 3}},
		{"entry missing", table(BaseDigestsEntry{1, digestsOf(1, 1)}), sum, ErrCorrupt, []uint64{1}},
		{"entry for a base chunk", table(BaseDigestsEntry{0, digestsOf(1, 1)}, BaseDigestsEntry{1, digestsOf(1, 1)}, BaseDigestsEntry{3, digestsOf(1, 3)}), sum, ErrCorrupt, nil},
		{"other geometry", func() []byte {
			b, _ := EncodeBaseDigests(BaseDigestsHeader{ChunkSize: 2 * blockSize, Size: 4 * blockSize, BaseSize: 4 * blockSize}, nil)
			return b
		}(), sum, ErrCorrupt, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.Header.Base.DigestsSHA256 = hex.EncodeToString(tt.sum[:])
			br, err := NewBaseDigestsReader(bytes.NewReader(tt.table))
			if err != nil {
				t.Fatal(err)
			}
			var seen []uint64
			err = WalkBaseDigests(br, m, func(e BaseDigestsEntry) error { seen = append(seen, e.Chunk); return nil })
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("WalkBaseDigests: %v, want %v", err, tt.want)
			}
			if fmt.Sprint(seen) != fmt.Sprint(tt.chunks) {
				t.Errorf("entries seen %v, want %v", seen, tt.chunks)
			}
		})
	}
}
