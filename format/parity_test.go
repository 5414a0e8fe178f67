package format

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// buildParityImage captures src with parity into memory.
func buildParityImage(t testing.TB, src []byte, chunk int, segSize int64, g Geometry) (*Manifest, memSegments, map[string][]byte) {
	t.Helper()
	codec, _ := NewChunkCodec(3, 1, MaxChunkSize)
	defer codec.Close()
	segs := memSegments{}
	par := map[string][]byte{}
	w, err := NewImageWriter(segs.create, [16]byte{9}, segSize, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetParity(g, func(ps *ParitySegment) error {
		par[ParityID(ps.Number).Key()] = append(append(bytes.Clone(ps.Header), ps.Rows...), ps.Trailer...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	blocks := make([]BlockDigest, chunk/blockSize+1)
	for off := 0; off < len(src); off += chunk {
		ec := codec.EncodeAt(uint64(off/chunk), src[off:min(off+chunk, len(src))], nil, blocks)
		if err := w.Add(&ec); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Finish(Header{Size: int64(len(src)), ChunkSize: chunk, SHA256: string(bytes.Repeat([]byte("0"), 64))})
	if err != nil {
		t.Fatal(err)
	}
	return m, segs, par
}

func TestParityMatchesFullEncode(t *testing.T) {
	g := Geometry{K: 3, M: 2, RowSize: 4096}
	// 40 chunks make full stripes whose last one has short segments;
	// 37 leave a last stripe of fewer frames than K, so of fewer
	// segments.
	for _, n := range []int{40, 37} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			src := testSource(n*MinChunkSize+77, MinChunkSize, 21)
			m, segs, par := buildParityImage(t, src, MinChunkSize, 100<<10, g)
			if len(m.Segments) < 4 || (n == 37) == (len(m.Segments)%g.K == 0) {
				t.Fatalf("%d chunks: got %d data segments", n, len(m.Segments))
			}
			checkParityMatchesFullEncode(t, g, m, segs, par)
		})
	}
}

func checkParityMatchesFullEncode(t *testing.T, g Geometry, m *Manifest, segs memSegments, par map[string][]byte) {
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m2, err := DecodeManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	if len(m2.Parity) != m.Stripes()*g.M || m2.Header.Parity == nil {
		t.Fatalf("parity segments %d, stripes %d", len(m2.Parity), m.Stripes())
	}
	coder, _ := g.NewCoder()
	for s := 0; s < m.Stripes(); s++ {
		pb := par[ParityID(g.ParityNumber(uint32(s), 0)).Key()]
		idx, err := readParityIndex(bytes.NewReader(pb), int64(len(pb)), m2.Parity[s*g.M].IndexHash, -1)
		if err != nil {
			t.Fatal(err)
		}
		L := idx.Rows * idx.RowSize
		shards := make([][]byte, g.K+g.M)
		for i := range g.K {
			shards[i] = make([]byte, L)
			if d := idx.Data[i]; d.Present() {
				copy(shards[i], segs[DataID(d.Number).Key()].Bytes())
			}
		}
		for j := range g.M {
			b := par[ParityID(g.ParityNumber(uint32(s), j)).Key()]
			shards[g.K+j] = b[SegmentHeaderSize : SegmentHeaderSize+L]
		}
		if ok, err := coder.Verify(shards); !ok || err != nil {
			t.Fatalf("stripe %d: streamed parity differs from a full encode (%v)", s, err)
		}
		for i, sh := range shards {
			for r := range idx.Rows {
				if RowCRC(0, sh[r*idx.RowSize:(r+1)*idx.RowSize]) != idx.CRC[i][r] {
					t.Fatalf("stripe %d shard %d row %d: CRC table wrong", s, i, r)
				}
			}
		}
		// Lose M shards and rebuild them row by row.
		for r := range idx.Rows {
			row := make([][]byte, g.K+g.M)
			for i := range row {
				row[i] = bytes.Clone(shards[i][r*idx.RowSize : (r+1)*idx.RowSize])
			}
			want0, want1 := row[0], row[g.K]
			row[0], row[g.K] = nil, nil
			if err := coder.Reconstruct(row); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(row[0], want0) || !bytes.Equal(row[g.K], want1) {
				t.Fatalf("row %d not rebuilt", r)
			}
		}
	}
}

func TestRowsOf(t *testing.T) {
	for _, tc := range []struct {
		off, n int64
		row    int
		want   []int
	}{
		{0, 0, 4096, nil},
		{0, 1, 4096, []int{0}},
		{0, 4096, 4096, []int{0}},
		{0, 4097, 4096, []int{0, 1}},
		{4095, 2, 4096, []int{0, 1}},
		{4096, 4096, 4096, []int{1}},
		{100, 3 * 4096, 4096, []int{0, 1, 2, 3}},
	} {
		if got := rowsOf(tc.off, tc.n, tc.row); !slices.Equal(got, tc.want) {
			t.Errorf("RowsOf(%d, %d, %d) = %v, want %v", tc.off, tc.n, tc.row, got, tc.want)
		}
	}
}
