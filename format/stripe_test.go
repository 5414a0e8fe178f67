package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// discardSegments is a SegmentCreator that keeps only each segment's size.
type discardSegments map[string]*countWriter

type countWriter struct{ n int64 }

func (c *countWriter) Write(b []byte) (int, error) { c.n += int64(len(b)); return len(b), nil }
func (c *countWriter) Close() error                { return nil }

func (d discardSegments) create(key string) (io.WriteCloser, error) {
	w := &countWriter{}
	d[key] = w
	return w, nil
}

// syntheticImage writes chunks of chunk bytes whose payload lengths
// payload(i) gives (0: a zero chunk; chunk: stored raw) through an
// ImageWriter with geometry g (nil: none) and width, and returns the
// manifest. Payload bytes are arbitrary: the writer does not look at them.
func syntheticImage(t testing.TB, n, chunk int, segSize int64, g *Geometry, width int, payload func(i int) int) *Manifest {
	t.Helper()
	segs := discardSegments{}
	w, err := NewImageWriter(segs.create, [16]byte{5}, segSize, uint64(n))
	if err != nil {
		t.Fatal(err)
	}
	if g != nil {
		if err := w.SetParity(*g, func(*ParitySegment) error { return nil }); err != nil {
			t.Fatal(err)
		}
	} else if err := w.SetWidth(width); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, chunk)
	blocks := make([]BlockDigest, NumBlocks(chunk))
	for i := range n {
		p := payload(i)
		ec := EncodedChunk{RawLen: chunk, Blocks: blocks}
		switch {
		case p == 0:
			ec.Zero, ec.Hash = true, ZeroChunkHash(chunk)
		case p >= chunk:
			ec.Codec, ec.Payload = CodecRaw, buf
		default:
			ec.Codec, ec.Payload = CodecZstd, buf[:p]
		}
		if !ec.Zero {
			binary.LittleEndian.PutUint64(ec.Hash[:], uint64(i)+1)
		}
		if err := w.Add(&ec); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Finish(Header{Size: int64(n) * int64(chunk), ChunkSize: chunk, SHA256: strings.Repeat("0", 64)})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Segments {
		if got := segs[DataID(s.Number).Key()].n; got != s.Size {
			t.Fatalf("segment %d: wrote %d bytes, the manifest says %d", s.Number, got, s.Size)
		}
	}
	return m
}

// TestGroupPlacement: the segments of a group end within one frame (and
// its index entry) of each other, each holds whole frames in increasing
// chunk order, a group's chunks precede the next group's, a short last
// group holds one frame per segment, and the manifest round-trips.
func TestGroupPlacement(t *testing.T) {
	const chunk = MinChunkSize
	maxFrame := int64(FrameHeaderSize + chunk + indexEntryFixed + 8*NumBlocks(chunk))
	for _, tc := range []struct {
		name   string
		n      int
		g      *Geometry
		width  int
		segSz  int64
		seed   uint64
		sparse bool // a third of the chunks zero
	}{
		{"width 1", 60, nil, 1, 256 << 10, 1, false},
		{"width 3", 61, nil, 3, 256 << 10, 2, true},
		{"width 4, one short group", 2, nil, 4, 256 << 10, 3, false},
		{"parity 4+2", 97, &Geometry{K: 4, M: 2, RowSize: 4096}, 0, 256 << 10, 4, true},
		{"parity 3+1 short stripe", 3*9 + 2, &Geometry{K: 3, M: 1, RowSize: 4096}, 0, 128 << 10, 5, false},
		{"parity 10+2", 233, &Geometry{K: 10, M: 2, RowSize: 4096}, 0, 200 << 10, 6, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(tc.seed, 9))
			m := syntheticImage(t, tc.n, chunk, tc.segSz, tc.g, tc.width, func(i int) int {
				if tc.sparse && r.IntN(3) == 0 {
					return 0
				}
				return 1 + r.IntN(chunk)
			})
			G := m.GroupWidth()
			groups := map[int][]SegmentSummary{}
			for _, s := range m.Segments {
				groups[int(s.Number)/G] = append(groups[int(s.Number)/G], s)
			}
			for gi, segs := range groups {
				lo, hi := segs[0].Size, segs[0].Size
				for _, s := range segs {
					lo, hi = min(lo, s.Size), max(hi, s.Size)
				}
				if hi-lo > maxFrame {
					t.Errorf("group %d: segments of %d to %d bytes differ by more than one frame", gi, lo, hi)
				}
				if len(segs) < G && gi != len(groups)-1 {
					t.Errorf("group %d of %d segments is not the last", gi, len(segs))
				}
			}
			lastGroup, next := -1, map[uint32]int64{}
			for i, c := range m.Chunks {
				if c.Kind != KindStored {
					continue
				}
				g := int(c.Segment) / G
				if g < lastGroup {
					t.Fatalf("chunk %d in group %d after group %d", i, g, lastGroup)
				}
				lastGroup = g
				want, ok := next[c.Segment]
				if !ok {
					want = SegmentHeaderSize
				}
				if c.Offset != want {
					t.Fatalf("chunk %d at %d of segment %d, want %d", i, c.Offset, c.Segment, want)
				}
				next[c.Segment] = c.Offset + c.FrameLen()
			}
			mb, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeManifest(mb); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestGroupValidation: a manifest that breaks a rule of §5.5 is refused.
func TestGroupValidation(t *testing.T) {
	base := func() *Manifest {
		r := rand.New(rand.NewPCG(8, 8))
		return syntheticImage(t, 40, MinChunkSize, 128<<10, &Geometry{K: 3, M: 1, RowSize: 4096}, 0, func(int) int { return 1 + r.IntN(MinChunkSize) })
	}
	firstIn := func(m *Manifest, seg uint32) int {
		for i, c := range m.Chunks {
			if c.Kind == KindStored && c.Segment == seg {
				return i
			}
		}
		t.Fatalf("no chunk in segment %d", seg)
		return 0
	}
	for _, tc := range []struct {
		name   string
		mutate func(m *Manifest)
	}{
		{"a chunk of a later group placed first", func(m *Manifest) {
			// Swap the first chunks of segment 0 and of segment 3
			// (the next stripe): the table's order would put group 1
			// before group 0.
			a, b := firstIn(m, 0), firstIn(m, 3)
			m.Chunks[a], m.Chunks[b] = m.Chunks[b], m.Chunks[a]
		}},
		{"width in a parity image", func(m *Manifest) { m.Header.Width = 3 }},
		{"frames out of place within a segment", func(m *Manifest) {
			i := firstIn(m, 1)
			m.Chunks[i].Offset += 1
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.mutate(m)
			if err := m.validate(); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("validate: %v, want corrupt", err)
			}
		})
	}
	// A short last group whose segments hold more than one frame each
	// could not have been written by the placement rule.
	// 16 frames of about 21 KB fill a group of four 64 KiB segments; two
	// more begin a short last group.
	m := syntheticImage(t, 18, MinChunkSize, 64<<10, nil, 4, func(int) int { return 21000 })
	if len(m.Segments) != 6 {
		t.Fatalf("want a short last group, got %d segments", len(m.Segments))
	}
	m.Header.Width = 8
	if err := m.validate(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("validate with a width the segments do not fit: %v, want corrupt", err)
	}
}

// TestVersionRefusal: a manifest or segment of an older format version (2,
// before the stored digests and encryption, or 1) is refused with one line
// that names both versions and what to do; a newer one asks for an upgrade.
func TestVersionRefusal(t *testing.T) {
	m := syntheticImage(t, 3, MinChunkSize, 1<<20, nil, 1, func(int) int { return 500 })
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range []uint16{2, 1} {
		b := bytes.Clone(mb)
		b[8] = byte(old)
		_, err = DecodeManifest(b)
		want := fmt.Sprintf("image format version %d, made by an older seedship; this seedship reads version 3: capture it again (or restore it with the seedship that made it)", old)
		if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("version %d manifest: %v", old, err)
		}
		hdr := segmentHeader{Version: old, Kind: SegmentData, Number: 0, ImageID: [16]byte{5}}.marshal()
		if _, err := parseSegmentHeader(hdr); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), fmt.Sprintf("version %d, made by an older seedship", old)) {
			t.Fatalf("version %d segment header: %v", old, err)
		}
	}
	hdr := segmentHeader{Version: 4, Kind: SegmentData}.marshal()
	if _, err := parseSegmentHeader(hdr); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), "newer seedship") {
		t.Fatalf("version 4 segment header: %v", err)
	}
}

// parityBound is what the placement rule guarantees a parity image's
// parity costs at most (spec §5.5): M/K of the data, plus per stripe M
// times (K−1)/K of the largest frame with its index entry, one row of
// rounding, the parity segment's header, footer and index.
func parityBound(m *Manifest) int64 {
	g, _ := m.Geometry()
	F := int64(FrameHeaderSize + m.Header.ChunkSize + indexEntryFixed + 8*NumBlocks(m.Header.ChunkSize))
	var bound int64
	for s := range m.Stripes() {
		var data int64
		for p := range g.K {
			if sum, ok := m.dataSegment(uint32(s*g.K + p)); ok {
				data += sum.Size
			}
		}
		rows := m.stripeRows(uint32(s))
		idx := parityIndexFixed + 12*int64(g.K) + 4*int64(g.K+g.M)*rows + 32*int64(g.M)
		bound += int64(g.M)*data/int64(g.K) + int64(g.M)*(int64(g.K-1)*F/int64(g.K)+int64(g.RowSize)+SegmentHeaderSize+FooterSize+idx)
	}
	return bound
}

// overheadThreshold is the stored size from which the bound of spec §5.5
// keeps one stripe's parity within M/K + 5% of its data, whatever the
// frames: 20 × M × ((K−1)/K × F + R), F the largest frame with its index
// entry (8 MiB chunks) and R the row size.
func overheadThreshold(g Geometry, chunk int) int64 {
	F := int64(FrameHeaderSize + chunk + indexEntryFixed + 8*NumBlocks(chunk))
	return 20 * int64(g.M) * (int64(g.K-1)*F/int64(g.K) + int64(g.RowSize))
}

// TestParityOverhead: whatever the sizes and order of the frames (an
// adversarial order included) parity never costs more than the bound of
// spec §5.5; so it costs at most M/K + 5% of the stored data for images
// of at least overheadThreshold stored (250 MiB for 4+2, 112 MiB for 3+1,
// 298 MiB for 10+2 at 8 MiB chunks), and for smaller ones whose frames
// fill the segments of their stripe evenly (here: K, 2K … incompressible
// chunks). At the defaults capture uses: 8 MiB chunks, 64 MiB segments,
// 256 KiB rows.
func TestParityOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes parity over a few GiB")
	}
	const chunk = DefaultChunkSize
	const segSize = DefaultParitySegmentSize
	type pattern struct {
		name        string
		payload     func(r *rand.Rand) int
		adversarial bool
	}
	patterns := []pattern{
		{"incompressible", func(r *rand.Rand) int { return chunk }, false},
		{"text-like", func(r *rand.Rand) int { return chunk/4 + r.IntN(chunk/8) }, false},
		{"mixed disk", func(r *rand.Rand) int {
			switch r.IntN(4) {
			case 0:
				return 0
			case 1:
				return chunk
			case 2:
				return chunk/3 + r.IntN(chunk/3)
			}
			return 1 + r.IntN(chunk/20)
		}, false},
		// Small frames first, then three whole incompressible ones: the
		// last frames land on already-full segments one by one, the
		// worst spread the placement allows.
		{"adversarial", func(r *rand.Rand) int { return chunk / 32 }, true},
	}
	for _, geo := range []Geometry{{K: 4, M: 2}, {K: 3, M: 1}, {K: 10, M: 2}} {
		geo.RowSize = DefaultRowSize
		for _, stored := range []int{geo.K, 2 * geo.K, 3 * geo.K, 40} { // stored 8 MiB chunks' worth
			for _, p := range patterns {
				name := fmt.Sprintf("%d+%d/%dx8MiB/%s", geo.K, geo.M, stored, p.name)
				t.Run(name, func(t *testing.T) {
					r := rand.New(rand.NewPCG(uint64(stored), uint64(geo.K)))
					var sizes []int
					var total int64
					for total < int64(stored)*chunk {
						n := p.payload(r)
						sizes = append(sizes, n)
						total += int64(n)
						if p.adversarial && total >= int64(stored-3)*chunk {
							sizes = append(sizes, chunk, chunk, chunk)
							total += 3 * chunk
						}
					}
					g := geo
					m := syntheticImage(t, len(sizes), chunk, segSize, &g, 0, func(i int) int { return sizes[i] })
					h := m.Header
					over := float64(h.ParityBytes) / float64(h.StoredBytes)
					nominal := float64(geo.M) / float64(geo.K)
					t.Logf("%d data segments, %d stripes: parity %d / stored %d = %.4f (M/K %.4f)", len(m.Segments), m.Stripes(), h.ParityBytes, h.StoredBytes, over, nominal)
					if b := parityBound(m); h.ParityBytes > b {
						t.Errorf("parity %d bytes over the bound %d", h.ParityBytes, b)
					}
					even := p.name == "incompressible" && stored%geo.K == 0
					if (even || h.StoredBytes >= overheadThreshold(geo, chunk)) && over > nominal+0.05 {
						t.Errorf("parity overhead %.4f over M/K + 5%% = %.4f", over, nominal+0.05)
					}
				})
			}
		}
	}
}
