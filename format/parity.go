package format

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/reedsolomon"
)

// Parity constants (spec §9).
const (
	// featureParity is the Requires entry of images with parity.
	featureParity = "parity-rs"
	// parityMatrix names the Reed-Solomon encoding matrix.
	parityMatrix = "vandermonde-gf256-0x11d"
	// DefaultRowSize is the default parity row: the unit of damage
	// location and repair within a shard. A stripe's parity shard is
	// its largest data segment rounded up to whole rows: at 256 KiB a
	// stripe of one 8 MiB frame per segment pays 3% more than M/K for
	// the rounding (at 1 MiB it paid 12.5%).
	DefaultRowSize = 256 << 10
	// DefaultParitySegmentSize is the default data segment size of parity
	// images: capture keeps M shards of this size in memory per stripe.
	DefaultParitySegmentSize = 64 << 20
	// noSegment marks an absent data shard in a short stripe.
	noSegment = ^uint32(0)
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Geometry is a parity scheme: K data shards and M parity shards per
// stripe, with rows of RowSize bytes.
type Geometry struct {
	K, M    int
	RowSize int
}

// Validate checks the geometry against the format's limits.
func (g Geometry) Validate() error {
	if g.K < 1 || g.M < 1 || g.K+g.M > 256 {
		return fmt.Errorf("format: parity %d+%d: need K ≥ 1, M ≥ 1 and K+M ≤ 256", g.K, g.M)
	}
	if g.RowSize < 4096 || g.RowSize > 64<<20 || g.RowSize&(g.RowSize-1) != 0 {
		return fmt.Errorf("format: parity row size %d: need a power of two from 4KiB to 64MiB", g.RowSize)
	}
	return nil
}

// Stripe returns the stripe segment id belongs to and its shard in it:
// data segment s·K+p is shard p of stripe s, parity segment s·M+j is
// shard K+j.
func (g Geometry) Stripe(id SegmentID) (stripe uint32, shard int) {
	if id.Kind == SegmentParity {
		return id.Number / uint32(g.M), g.K + int(id.Number%uint32(g.M))
	}
	return id.Number / uint32(g.K), int(id.Number % uint32(g.K))
}

// Shard returns the segment that holds shard i of a stripe (the inverse
// of Stripe): shards 0…K−1 are data segments, K…K+M−1 parity segments.
func (g Geometry) Shard(stripe uint32, i int) SegmentID {
	if i < g.K {
		return DataID(stripe*uint32(g.K) + uint32(i))
	}
	return ParityID(g.ParityNumber(stripe, i-g.K))
}

// ParityNumber returns the segment number of parity shard j of a stripe.
func (g Geometry) ParityNumber(stripe uint32, j int) uint32 { return stripe*uint32(g.M) + uint32(j) }

// NewCoder returns the Reed-Solomon coder the spec pins: klauspost's
// default Vandermonde-derived matrix, single-threaded (parallelism is the
// pipeline's).
func (g Geometry) NewCoder() (reedsolomon.Encoder, error) {
	return reedsolomon.New(g.K, g.M, reedsolomon.WithMaxGoroutines(1))
}

// ShardRef names one data shard of a stripe in a parity index.
type ShardRef struct {
	Number uint32 // data segment number, or ^0 for an absent shard
	Size   int64  // its size (0 when absent)
}

// Present reports whether the shard exists.
func (r ShardRef) Present() bool { return r.Number != noSegment }

// ParityIndex is the index of a parity segment (spec §9): the stripe's
// geometry, its data shards, the CRC-32C of every row of every shard, and
// the rows digest of every parity shard. Every parity segment of a stripe
// holds the same index but for J, so any intact one rebuilds the others'
// ([ParityIndex.Trailer]).
type ParityIndex struct {
	Stripe  uint32
	K, M, J int
	RowSize int
	Rows    int
	Data    []ShardRef // K entries
	CRC     [][]uint32 // K+M shards × Rows
	// RowsDigest holds, for each of the M parity shards, the BLAKE3-256 of
	// its rows (Rows × RowSize bytes, [NewRowsDigester]): RowsDigest[J] is
	// this segment's. It checks a whole shard read in order without
	// trusting the 32-bit row CRCs alone.
	RowsDigest []Hash
}

const parityIndexFixed = 16

// parityIndexLen returns the length of the parity index of a stripe of
// k+m shards of rows rows.
func parityIndexLen(k, m int, rows int64) int64 {
	return parityIndexFixed + 12*int64(k) + 4*int64(k+m)*rows + int64(len(Hash{}))*int64(m)
}

// CheckRows compares the rows digest of parity shard j, computed by the
// caller over the shard's rows in order ([NewRowsDigester]), with the one
// the index records. A mismatch wraps ErrChecksum and names the segment.
func (p *ParityIndex) CheckRows(j int, d Hash) error {
	if j < 0 || j >= len(p.RowsDigest) {
		return fmt.Errorf("format: parity shard %d of %d", j, len(p.RowsDigest))
	}
	if d != p.RowsDigest[j] {
		return fmt.Errorf("%w: the rows of parity segment %s do not match the rows digest in its index (BLAKE3 %x, want %x)",
			ErrChecksum, ParityID(p.number(j)).Key(), d[:8], p.RowsDigest[j][:8])
	}
	return nil
}

// marshal returns the index bytes.
func (p *ParityIndex) marshal() []byte {
	b := make([]byte, parityIndexFixed, parityIndexLen(p.K, p.M, int64(p.Rows)))
	binary.LittleEndian.PutUint32(b[0:], p.Stripe)
	b[4], b[5], b[6] = byte(p.K), byte(p.M), byte(p.J)
	binary.LittleEndian.PutUint32(b[8:], uint32(p.RowSize))
	binary.LittleEndian.PutUint32(b[12:], uint32(p.Rows))
	for _, d := range p.Data {
		b = binary.LittleEndian.AppendUint32(b, d.Number)
		b = binary.LittleEndian.AppendUint64(b, uint64(d.Size))
	}
	for _, shard := range p.CRC {
		for _, c := range shard {
			b = binary.LittleEndian.AppendUint32(b, c)
		}
	}
	for _, d := range p.RowsDigest {
		b = append(b, d[:]...)
	}
	return b
}

// ParseParityIndex decodes a parity index.
func parseParityIndex(b []byte) (*ParityIndex, error) {
	if len(b) < parityIndexFixed {
		return nil, corruptf("parity index is %d bytes", len(b))
	}
	p := &ParityIndex{Stripe: binary.LittleEndian.Uint32(b[0:]), K: int(b[4]), M: int(b[5]), J: int(b[6]),
		RowSize: int(binary.LittleEndian.Uint32(b[8:])), Rows: int(binary.LittleEndian.Uint32(b[12:]))}
	if b[7] != 0 {
		return nil, corruptf("parity index reserved byte not zero")
	}
	if err := (Geometry{p.K, p.M, p.RowSize}).Validate(); err != nil {
		return nil, corruptf("parity index: %v", err)
	}
	if p.J >= p.M {
		return nil, corruptf("parity index: shard %d of %d", p.J, p.M)
	}
	if want := parityIndexLen(p.K, p.M, int64(p.Rows)); int64(len(b)) != want {
		return nil, corruptf("parity index is %d bytes, its counts say %d", len(b), want)
	}
	b = b[parityIndexFixed:]
	p.Data = make([]ShardRef, p.K)
	for i := range p.Data {
		p.Data[i] = ShardRef{Number: binary.LittleEndian.Uint32(b), Size: int64(binary.LittleEndian.Uint64(b[4:]))}
		b = b[12:]
		if d := p.Data[i]; d.Size < 0 || d.Size > int64(p.Rows)*int64(p.RowSize) || (!d.Present() && d.Size != 0) {
			return nil, corruptf("parity index: data shard %d size %d", i, d.Size)
		}
	}
	p.CRC = make([][]uint32, p.K+p.M)
	for s := range p.CRC {
		p.CRC[s] = make([]uint32, p.Rows)
		for r := range p.CRC[s] {
			p.CRC[s][r] = binary.LittleEndian.Uint32(b)
			b = b[4:]
		}
	}
	p.RowsDigest = make([]Hash, p.M)
	for j := range p.RowsDigest {
		copy(p.RowsDigest[j][:], b)
		b = b[len(Hash{}):]
	}
	return p, nil
}

// stripeEncoder accumulates the parity of one stripe while its data
// segments stream past, using Reed-Solomon's linearity: each data byte
// contributes to the parity bytes at the same offset independently, so
// shards can be fed in any order and interleaved, in pieces (capture
// grows the K data segments of a stripe together). Memory is M × the
// largest shard. It is not safe for concurrent use.
type stripeEncoder struct {
	geo    Geometry
	coder  reedsolomon.Encoder
	parity [][]byte
	data   []ShardRef
	crc    [][]uint32 // data shards' row CRCs so far
	off    []int64    // bytes fed to each data shard
	rowCRC []uint32   // each data shard's CRC of its current row so far
	ps     [][]byte   // scratch: the parity slices one write updates
	zero   []byte
}

// newStripeEncoder returns an encoder for stripes of geometry g.
func newStripeEncoder(g Geometry) (*stripeEncoder, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	c, err := g.NewCoder()
	if err != nil {
		return nil, fmt.Errorf("format: reed-solomon: %w", err)
	}
	e := &stripeEncoder{geo: g, coder: c, parity: make([][]byte, g.M), ps: make([][]byte, g.M), zero: make([]byte, g.RowSize)}
	e.reset()
	return e, nil
}

// reserve sizes the parity buffers for shards of up to n bytes at once,
// so that they are allocated once, not grown as a stripe streams by.
func (e *stripeEncoder) reserve(n int64) {
	n = (n + int64(e.geo.RowSize) - 1) / int64(e.geo.RowSize) * int64(e.geo.RowSize)
	for j := range e.parity {
		if int64(cap(e.parity[j])) < n {
			b := make([]byte, len(e.parity[j]), n)
			copy(b, e.parity[j])
			e.parity[j] = b
		}
	}
}

// reset prepares for a new stripe, keeping the parity buffers.
func (e *stripeEncoder) reset() {
	for j := range e.parity {
		e.parity[j] = e.parity[j][:0]
	}
	e.data = make([]ShardRef, e.geo.K)
	for i := range e.data {
		e.data[i] = ShardRef{Number: noSegment}
	}
	e.crc = make([][]uint32, e.geo.K)
	e.off = make([]int64, e.geo.K)
	e.rowCRC = make([]uint32, e.geo.K)
}

// beginShard starts data shard pos (segment number n) of the stripe.
func (e *stripeEncoder) beginShard(pos int, n uint32) {
	e.off[pos], e.rowCRC[pos] = 0, 0
	e.data[pos] = ShardRef{Number: n}
}

// shard returns the writer that feeds the next bytes of data shard pos.
func (e *stripeEncoder) shard(pos int) io.Writer { return shardFeed{e, pos} }

// shardFeed feeds one data shard of a stripeEncoder.
type shardFeed struct {
	e   *stripeEncoder
	pos int
}

func (f shardFeed) Write(b []byte) (int, error) { return f.e.write(f.pos, b) }

// write feeds the next bytes of data shard pos.
func (e *stripeEncoder) write(pos int, b []byte) (int, error) {
	n := len(b)
	R := int64(e.geo.RowSize)
	start := e.off[pos]
	end := start + int64(n)
	for j := range e.parity {
		if int64(len(e.parity[j])) < end {
			e.parity[j] = growZero(e.parity[j], end)
		}
		e.ps[j] = e.parity[j][start:end]
	}
	if err := e.coder.EncodeIdx(b, pos, e.ps); err != nil {
		return 0, fmt.Errorf("format: parity: %w", err)
	}
	off, crc := start, e.rowCRC[pos]
	for len(b) > 0 {
		k := min(int(R-off%R), len(b))
		crc = crc32.Update(crc, castagnoli, b[:k])
		off += int64(k)
		b = b[k:]
		if off%R == 0 {
			e.crc[pos] = append(e.crc[pos], crc)
			crc = 0
		}
	}
	e.off[pos], e.rowCRC[pos] = off, crc
	return n, nil
}

// shardSize returns the bytes fed to data shard pos of this stripe.
func (e *stripeEncoder) shardSize(pos int) int64 { return e.data[pos].Size }

// endShard finishes data shard pos.
func (e *stripeEncoder) endShard(pos int) {
	R := int64(e.geo.RowSize)
	if rem := e.off[pos] % R; rem != 0 {
		e.crc[pos] = append(e.crc[pos], crc32.Update(e.rowCRC[pos], castagnoli, e.zero[:R-rem]))
	}
	e.data[pos].Size = e.off[pos]
}

func growZero(b []byte, n int64) []byte {
	if int64(cap(b)) >= n {
		old := len(b)
		b = b[:n]
		clear(b[old:])
		return b
	}
	nb := make([]byte, n, max(n, int64(cap(b))*5/4))
	copy(nb, b)
	return nb
}

// EncodeStripe computes the parity segments of stripe s again from its
// data segments: write streams each of them (by id, as the image stores
// it) to w, in turn. Each must be as long as the manifest says and the
// parity must match the manifest's parity index hashes, or the error is
// damage ([IsDamage]). Memory is M shards.
func (m *Manifest) EncodeStripe(s uint32, write func(id SegmentID, w io.Writer) error) ([]ParitySegment, error) {
	g, ok := m.Geometry()
	if !ok {
		return nil, fmt.Errorf("format: the image has no parity")
	}
	imageID, err := m.ImageID()
	if err != nil {
		return nil, err
	}
	e, err := newStripeEncoder(g)
	if err != nil {
		return nil, err
	}
	for p := range g.K {
		id := g.Shard(s, p)
		sum, ok := m.Summary(id)
		if !ok {
			break // a short last stripe
		}
		e.beginShard(p, id.Number)
		if err := write(id, e.shard(p)); err != nil {
			return nil, err
		}
		e.endShard(p)
		if size := e.shardSize(p); size != sum.Size {
			return nil, &SegmentError{ID: id, Err: corruptf("%d bytes, the manifest says %d", size, sum.Size)}
		}
	}
	segs := e.finish(s, imageID)
	for j := range segs {
		if want, ok := m.Summary(ParityID(segs[j].Number)); !ok || want.IndexHash != segs[j].summary().IndexHash {
			return nil, corruptf("recomputed parity of stripe %d does not match the manifest", s)
		}
	}
	return segs, nil
}

// ParitySegment is one finished parity segment.
type ParitySegment struct {
	Number  uint32
	Header  []byte // segment header
	Rows    []byte // the parity bytes, Rows × RowSize
	Index   *ParityIndex
	Trailer []byte // index bytes and footer
}

// Size returns the segment's total size.
func (s *ParitySegment) Size() int64 {
	return int64(len(s.Header) + len(s.Rows) + len(s.Trailer))
}

// summary returns the segment's manifest entry.
func (s *ParitySegment) summary() SegmentSummary {
	ib := s.Trailer[:len(s.Trailer)-FooterSize]
	return SegmentSummary{Number: s.Number, Kind: SegmentParity, Size: s.Size(), IndexHash: sha256.Sum256(ib)}
}

// finish completes the stripe's parity and returns its M parity segments.
// The returned Rows alias the encoder's buffers: write them out before the
// next reset.
func (e *stripeEncoder) finish(stripe uint32, imageID [16]byte) []ParitySegment {
	R := int64(e.geo.RowSize)
	var shard int64
	for _, d := range e.data {
		shard = max(shard, d.Size)
	}
	rows := int((shard + R - 1) / R)
	length := int64(rows) * R
	zeroCRC := crc32.Checksum(e.zero, castagnoli)
	crc := make([][]uint32, e.geo.K+e.geo.M)
	for i := range e.geo.K {
		c := e.crc[i]
		for len(c) < rows {
			c = append(c, zeroCRC)
		}
		crc[i] = c
	}
	digests := make([]Hash, e.geo.M)
	h := NewRowsDigester()
	for j := range e.parity {
		e.parity[j] = growZero(e.parity[j], length)
		c := make([]uint32, rows)
		h.Reset()
		// One pass over the finished rows: each row's CRC and its share
		// of the rows digest while it is in cache.
		for r := range rows {
			row := e.parity[j][int64(r)*R : int64(r+1)*R]
			c[r] = crc32.Checksum(row, castagnoli)
			_, _ = h.Write(row) // a hash never fails to write
		}
		crc[e.geo.K+j] = c
		digests[j] = SumDigest(h)
	}
	out := make([]ParitySegment, e.geo.M)
	for j := range out {
		n := e.geo.ParityNumber(stripe, j)
		idx := &ParityIndex{Stripe: stripe, K: e.geo.K, M: e.geo.M, J: j, RowSize: e.geo.RowSize, Rows: rows,
			Data: e.data, CRC: crc, RowsDigest: digests}
		ib := idx.marshal()
		f := footer{IndexOffset: SegmentHeaderSize + length, IndexLen: int64(len(ib)), IndexHash: sha256.Sum256(ib)}
		out[j] = ParitySegment{
			Number:  n,
			Header:  segmentHeader{Version: formatVersion, Kind: SegmentParity, Number: n, ImageID: imageID}.marshal(),
			Rows:    e.parity[j][:length],
			Index:   idx,
			Trailer: append(ib, f.marshal()...),
		}
	}
	return out
}

// RowCRC returns crc extended with b, by the CRC-32C the parity index
// records for every row of every shard: RowCRC(0, row) is a whole row's,
// and a row read in pieces is checked by feeding each result back in.
func RowCRC(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

// readParityIndex reads and checks the footer and index of a parity
// segment of the given size through r; want, if not zero, is the index hash
// the manifest records, and wantLen, when not negative, the index's length,
// required before it is allocated.
// Read failures are returned unwrapped, for the caller to classify.
func readParityIndex(r io.ReaderAt, size int64, want Hash, wantLen int64) (*ParityIndex, error) {
	if size < SegmentHeaderSize+FooterSize {
		return nil, corruptf("parity segment is %d bytes", size)
	}
	fb := make([]byte, FooterSize)
	if _, err := r.ReadAt(fb, size-FooterSize); err != nil {
		return nil, err
	}
	f, err := parseFooter(fb, size)
	if err != nil {
		return nil, err
	}
	if f.Frames != 0 || f.IndexLen > maxIndexLen || (wantLen >= 0 && f.IndexLen != wantLen) {
		return nil, corruptf("parity footer: %d frames, index %d bytes", f.Frames, f.IndexLen)
	}
	ib := make([]byte, f.IndexLen)
	if _, err := r.ReadAt(ib, f.IndexOffset); err != nil {
		return nil, err
	}
	h := sha256.Sum256(ib)
	if h != f.IndexHash || (want != Hash{} && h != want) {
		return nil, corruptf("parity index hash mismatch")
	}
	idx, err := parseParityIndex(ib)
	if err != nil {
		return nil, err
	}
	if f.IndexOffset != SegmentHeaderSize+idx.ShardLen() {
		return nil, corruptf("parity rows end at %d, index at %d", SegmentHeaderSize+idx.ShardLen(), f.IndexOffset)
	}
	return idx, nil
}

// Trailer returns the index and footer bytes of parity shard j of the
// stripe (p is any intact index of the stripe): with [ParityIndex.Header]
// and the shard's rows, the whole parity segment.
func (p *ParityIndex) Trailer(j int) []byte {
	c := *p
	c.J = j
	ib := c.marshal()
	f := footer{IndexOffset: SegmentHeaderSize + int64(c.Rows)*int64(c.RowSize), IndexLen: int64(len(ib)), IndexHash: sha256.Sum256(ib)}
	return append(ib, f.marshal()...)
}
