package format

import (
	"bytes"
	"errors"
	"testing"
)

// parityFixture builds a small parity image with a short last stripe.
func parityFixture(t *testing.T) (*Manifest, memSegments, map[string][]byte, Geometry) {
	t.Helper()
	g := Geometry{K: 3, M: 2, RowSize: 4096}
	src := testSource(36*MinChunkSize+333, MinChunkSize, 5)
	m, segs, par := buildParityImage(t, src, MinChunkSize, 100<<10, g)
	if len(m.Segments)%g.K == 0 || m.Stripes() < 2 {
		t.Fatalf("want a short last stripe and 2+ stripes, got %d data segments", len(m.Segments))
	}
	return m, segs, par, g
}

// TestParityTrailerRebuildsEveryParitySegment: repair writes parity
// segments from any intact index with ParityIndex.Trailer and a fresh header; the
// result must be the captured segment byte for byte.
func TestParityTrailerRebuildsEveryParitySegment(t *testing.T) {
	m, _, par, g := parityFixture(t)
	id, err := m.ImageID()
	if err != nil {
		t.Fatal(err)
	}
	for s := range uint32(m.Stripes()) {
		for from := range g.M {
			sum := m.Parity[g.ParityNumber(s, from)]
			b := par[ParityID(sum.Number).Key()]
			idx, err := readParityIndex(bytes.NewReader(b), int64(len(b)), sum.IndexHash, -1)
			if err != nil {
				t.Fatal(err)
			}
			for j := range g.M {
				n := g.ParityNumber(s, j)
				want := par[ParityID(n).Key()]
				rows := int64(idx.Rows) * int64(idx.RowSize)
				hdr := segmentHeader{Version: formatVersion, Kind: SegmentParity, Number: n, ImageID: id}.marshal()
				got := append(append(hdr, want[SegmentHeaderSize:SegmentHeaderSize+rows]...), idx.Trailer(j)...)
				if !bytes.Equal(got, want) {
					t.Errorf("stripe %d: parity %d rebuilt from the index of parity %d differs from the capture", s, j, from)
				}
			}
		}
	}
}

// TestReadParityIndexRejectsEveryTrailerFlip flips every bit of a parity
// segment's index and footer: each must be refused.
func TestReadParityIndexRejectsEveryTrailerFlip(t *testing.T) {
	m, _, par, g := parityFixture(t)
	last := uint32(m.Stripes() - 1) // the short stripe
	sum := m.Parity[g.ParityNumber(last, 1)]
	b := bytes.Clone(par[ParityID(sum.Number).Key()])
	idx, err := readParityIndex(bytes.NewReader(b), int64(len(b)), sum.IndexHash, -1)
	if err != nil {
		t.Fatal(err)
	}
	absent := 0
	for _, d := range idx.Data {
		if !d.Present() {
			absent++
		}
	}
	if absent == 0 {
		t.Fatalf("last stripe index lists no absent shard: %+v", idx.Data)
	}
	start := SegmentHeaderSize + idx.Rows*idx.RowSize
	for off := start; off < len(b); off++ {
		for bit := range 8 {
			b[off] ^= 1 << bit
			_, err := readParityIndex(bytes.NewReader(b), int64(len(b)), sum.IndexHash, -1)
			b[off] ^= 1 << bit
			if err == nil {
				t.Fatalf("flip of bit %d at byte %d (trailer starts at %d) accepted", bit, off, start)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("flip at byte %d: %v, want ErrCorrupt", off, err)
			}
		}
	}
	// Without the manifest's hash the footer's own hash still protects
	// the index.
	ib := start + 20
	b[ib] ^= 1
	if _, err := readParityIndex(bytes.NewReader(b), int64(len(b)), Hash{}, -1); err == nil {
		t.Errorf("index flip accepted without the manifest's hash")
	}
	b[ib] ^= 1
	// Truncated or grown by one byte: refused.
	for _, bb := range [][]byte{b[:len(b)-1], append(bytes.Clone(b), 0)} {
		if _, err := readParityIndex(bytes.NewReader(bb), int64(len(bb)), sum.IndexHash, -1); err == nil {
			t.Errorf("%d-byte parity segment (want %d) accepted", len(bb), len(b))
		}
	}
}

func TestParseParityIndexRoundTripAndLimits(t *testing.T) {
	idx := &ParityIndex{Stripe: 7, K: 3, M: 2, J: 1, RowSize: 4096, Rows: 2,
		Data:       []ShardRef{{Number: 21, Size: 8000}, {Number: 22, Size: 5000}, {Number: noSegment}},
		CRC:        [][]uint32{{1, 2}, {3, 4}, {5, 6}, {7, 8}, {9, 10}},
		RowsDigest: []Hash{{1, 2, 3}, {4, 5, 6}}}
	b := idx.marshal()
	got, err := parseParityIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.marshal(), b) || got.Stripe != 7 || got.J != 1 || got.Data[2].Present() || !got.Data[0].Present() ||
		got.RowsDigest[1] != (Hash{4, 5, 6}) || !bytes.Equal(b[len(b)-64:len(b)-61], []byte{1, 2, 3}) {
		t.Errorf("round trip: %+v", got)
	}
	bad := func(name string, mut func([]byte) []byte) {
		t.Helper()
		if _, err := parseParityIndex(mut(bytes.Clone(b))); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
	bad("short", func(b []byte) []byte { return b[:len(b)-1] })
	bad("long", func(b []byte) []byte { return append(b, 0) })
	bad("reserved", func(b []byte) []byte { b[7] = 1; return b })
	bad("j ≥ m", func(b []byte) []byte { b[6] = 2; return b })
	bad("k = 0", func(b []byte) []byte { b[4] = 0; return b })
	bad("row size not a power of two", func(b []byte) []byte { b[8] = 1; return b })
	bad("shard larger than the rows", func(b []byte) []byte { b[16+4] = 0xFF; b[16+5] = 0xFF; return b })
	bad("absent shard with a size", func(b []byte) []byte { b[16+24+4] = 1; return b })
}

// TestReconstructRowLimits: a row with M erasures anywhere is rebuilt
// exactly; with M+1 it fails.
func TestReconstructRowLimits(t *testing.T) {
	g := Geometry{K: 4, M: 2, RowSize: 4096}
	coder, err := g.NewCoder()
	if err != nil {
		t.Fatal(err)
	}
	src := testSource(4*4096, MinChunkSize, 3)
	shards := make([][]byte, g.K+g.M)
	for i := range g.K {
		shards[i] = src[i*4096 : (i+1)*4096]
	}
	for j := range g.M {
		shards[g.K+j] = make([]byte, 4096)
	}
	if err := coder.Encode(shards); err != nil {
		t.Fatal(err)
	}
	for a := range g.K + g.M {
		for b := a + 1; b < g.K+g.M; b++ {
			row := make([][]byte, len(shards))
			for i := range row {
				row[i] = bytes.Clone(shards[i])
			}
			row[a], row[b] = nil, nil
			if err := coder.Reconstruct(row); err != nil {
				t.Fatalf("erasures %d,%d: %v", a, b, err)
			}
			for i := range row {
				if !bytes.Equal(row[i], shards[i]) || RowCRC(0, row[i]) != RowCRC(0, shards[i]) {
					t.Fatalf("erasures %d,%d: shard %d rebuilt wrong", a, b, i)
				}
			}
		}
	}
	row := make([][]byte, len(shards))
	copy(row, shards)
	row[0], row[1], row[g.K] = nil, nil, nil
	if err := coder.Reconstruct(row); err == nil {
		t.Errorf("M+1 erasures rebuilt")
	}
}
