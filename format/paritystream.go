package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// number returns the parity segment number of shard j of the stripe
// idx describes.
func (p *ParityIndex) number(j int) uint32 { return p.Stripe*uint32(p.M) + uint32(j) }

// Header returns the segment header of parity shard j of the stripe.
func (p *ParityIndex) Header(imageID [16]byte, j int) []byte {
	return segmentHeader{Version: formatVersion, Kind: SegmentParity, Number: p.number(j), ImageID: imageID}.marshal()
}

// ShardLen returns the bytes of one shard of the stripe: rows × row size.
func (p *ParityIndex) ShardLen() int64 { return int64(p.Rows) * int64(p.RowSize) }

// SegmentSize returns the size of each of the stripe's parity segments.
func (p *ParityIndex) SegmentSize() int64 {
	return SegmentHeaderSize + p.ShardLen() + int64(len(p.marshal())) + FooterSize
}

// Slice locates row r of shard i of the stripe (data shards 0 … K−1, then
// parity shards): the segment that holds it, the offset of the row's
// first byte in that segment, and how many of its bytes the segment holds
// (0 to RowSize; the rest of the row reads as zeros, past the end of a
// data segment or for a data shard absent from a short stripe).
func (p *ParityIndex) Slice(i, r int) (id SegmentID, off, n int64) {
	rowOff := int64(r) * int64(p.RowSize)
	if i >= p.K {
		return ParityID(p.number(i - p.K)), SegmentHeaderSize + rowOff, int64(p.RowSize)
	}
	d := p.Data[i]
	if !d.Present() || rowOff >= d.Size {
		return DataID(d.Number), rowOff, 0
	}
	return DataID(d.Number), rowOff, min(int64(p.RowSize), d.Size-rowOff)
}

// RowsOf returns the rows of a shard that bytes [off, off+n) touch.
func rowsOf(off, n int64, rowSize int) []int {
	if n <= 0 {
		return nil
	}
	var rows []int
	for r := off / int64(rowSize); r*int64(rowSize) < off+n; r++ {
		rows = append(rows, int(r))
	}
	return rows
}

// ChunkRows returns where stored chunk i lies in a parity image: its
// stripe, its shard in the stripe, and the rows its frame touches.
func (m *Manifest) ChunkRows(i uint64) (stripe uint32, shard int, rows []int) {
	g, _ := m.Geometry()
	c := m.Chunks[i]
	stripe, shard = g.Stripe(DataID(c.Segment))
	return stripe, shard, rowsOf(c.Offset, c.FrameLen(), g.RowSize)
}

// FrameFromRows assembles the frame of stored chunk i from rows of its
// data shard: row(r) returns row r's bytes, or false when it does not
// have them. It returns false if any row the frame touches is missing.
func (m *Manifest) FrameFromRows(i uint64, row func(r int) ([]byte, bool)) ([]byte, bool) {
	g, _ := m.Geometry()
	c := m.Chunks[i]
	R := int64(g.RowSize)
	frame := make([]byte, c.FrameLen())
	for o := int64(0); o < int64(len(frame)); {
		abs := c.Offset + o
		b, ok := row(int(abs / R))
		if !ok || int64(len(b)) != R {
			return nil, false
		}
		o += int64(copy(frame[o:], b[abs%R:]))
	}
	return frame, true
}

// ParseFrame checks a frame read from its segment (FrameHeaderSize + P
// bytes) against the manifest's entry for chunk i and returns its payload,
// not yet verified against the chunk hash.
func (m *Manifest) ParseFrame(i uint64, frame []byte) (Frame, error) {
	c := m.Chunks[i]
	if c.Kind != KindStored {
		return Frame{}, fmt.Errorf("format: chunk %d is not stored", i)
	}
	if int64(len(frame)) != c.FrameLen() {
		return Frame{}, corruptf("frame of chunk %d is %d bytes, want %d", i, len(frame), c.FrameLen())
	}
	fh, err := parseFrameHeader(frame)
	if err != nil {
		return Frame{}, err
	}
	_, length := m.ChunkRange(i)
	if fh.Index != i || fh.Codec != c.Codec || fh.PayloadLen != c.PayloadLen || int64(fh.RawLen) != length {
		return Frame{}, corruptf("frame header (chunk %d, %s, %d bytes) disagrees with the manifest", fh.Index, fh.Codec, fh.PayloadLen)
	}
	return Frame{Index: i, Codec: c.Codec, Payload: frame[FrameHeaderSize:]}, nil
}

// CheckParityStream reads parity shard idx.J of its stripe from r, from
// the segment's first byte to its last, and checks it: the header against
// the shard's kind, number and imageID, every row against its CRC-32C in
// idx, and the index and footer against idx's encoding, with nothing after
// them. idx is the stripe's parity index as read beforehand (and checked
// against the manifest). An intact segment gives nil; damage gives a
// *SegmentError whose Rows lists the damaged rows (empty when only the
// header or trailer is damaged: a rewrite fixes it and no row is lost);
// a read failure other than a short stream is returned as it is.
func CheckParityStream(r io.Reader, imageID [16]byte, idx *ParityIndex) error {
	id := ParityID(idx.number(idx.J))
	var problems []string
	hb := make([]byte, SegmentHeaderSize)
	if err := readFull(r, hb); err != nil {
		return truncatedParity(err, id, allRows(idx.Rows))
	}
	if err := checkSegmentHeader(hb, id, imageID); err != nil {
		problems = append(problems, fmt.Sprintf("header: %v", err))
	}
	bad := []int{}
	row := make([]byte, idx.RowSize)
	want := idx.CRC[idx.K+idx.J]
	digest := NewRowsDigester()
	for ri := range idx.Rows {
		if err := readFull(r, row); err != nil {
			return truncatedParity(err, id, append(bad, allRows(idx.Rows)[ri:]...))
		}
		_, _ = digest.Write(row) // a hash never fails to write
		if RowCRC(0, row) != want[ri] {
			bad = append(bad, ri)
		}
	}
	if len(bad) > 0 {
		problems = append(problems, fmt.Sprintf("%d row(s) fail their CRC-32C", len(bad)))
	}
	if err := idx.CheckRows(idx.J, SumDigest(digest)); err != nil && len(bad) == 0 {
		// Every row passed its CRC, yet the rows are not what was
		// written: which row differs is unknown, so all are suspect.
		problems = append(problems, "the rows fail the segment's rows digest (BLAKE3) though every row passes its CRC-32C")
		bad = nil
	}
	trailer := idx.Trailer(idx.J)
	tail := make([]byte, len(trailer)+1)
	n, err := io.ReadFull(r, tail)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return err
	}
	if n != len(trailer) || !bytes.Equal(tail[:n], trailer) {
		problems = append(problems, "index or footer differs from the stripe's index, or the segment has extra bytes")
	}
	if len(problems) == 0 {
		return nil
	}
	return &SegmentError{ID: id, Rows: bad, Err: corruptf("%s", joinProblems(problems))}
}

func joinProblems(p []string) string {
	var b bytes.Buffer
	for i, s := range p {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s)
	}
	return b.String()
}

// readFull is io.ReadFull that reports a short stream as io.ErrUnexpectedEOF.
func readFull(r io.Reader, b []byte) error {
	_, err := io.ReadFull(r, b)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// truncatedParity turns a short read into damage of the given rows; any
// other read error is returned as it is.
func truncatedParity(err error, id SegmentID, rows []int) error {
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	return &SegmentError{ID: id, Rows: rows, Err: fmt.Errorf("%w: parity segment ends early", ErrMissing)}
}

func allRows(n int) []int {
	rows := make([]int, n)
	for i := range rows {
		rows[i] = i
	}
	return rows
}

// stripeRows returns the rows of stripe s: its largest data segment's
// size in rows.
func (m *Manifest) stripeRows(s uint32) int64 {
	g, _ := m.Geometry()
	var size int64
	for p := range g.K {
		if sum, ok := m.dataSegment(s*uint32(g.K) + uint32(p)); ok {
			size = max(size, sum.Size)
		}
	}
	return (size + int64(g.RowSize) - 1) / int64(g.RowSize)
}

// ReadParityIndexOf reads the index of parity segment n through r and
// checks it against the manifest: the segment size, the index length the
// stripe's geometry gives (before allocating it), the index hash, and the
// stripe and shard it names. Damage is a *SegmentError.
func (m *Manifest) ReadParityIndexOf(r io.ReaderAt, n uint32) (*ParityIndex, error) {
	id := ParityID(n)
	sum, ok := m.paritySegment(n)
	g, hasParity := m.Geometry()
	if !ok || !hasParity {
		return nil, fmt.Errorf("format: parity segment %d is not in the manifest", n)
	}
	stripe, j := n/uint32(g.M), int(n%uint32(g.M))
	rows := m.stripeRows(stripe)
	wantLen := parityIndexLen(g.K, g.M, rows)
	if sum.Size != SegmentHeaderSize+rows*int64(g.RowSize)+wantLen+FooterSize {
		return nil, &SegmentError{ID: id, Err: corruptf("the manifest's size %d does not fit %d rows of its stripe", sum.Size, rows)}
	}
	idx, err := readParityIndex(r, sum.Size, sum.IndexHash, wantLen)
	if err != nil && !IsDamage(err) {
		return nil, err // a read failure: the caller classifies it
	}
	if err == nil && (idx.Stripe != stripe || idx.J != j || idx.K != g.K || idx.M != g.M || idx.RowSize != g.RowSize || int64(idx.Rows) != rows) {
		err = corruptf("parity index names stripe %d shard %d of %d+%d, want stripe %d shard %d of %d+%d", idx.Stripe, idx.J, idx.K, idx.M, stripe, j, g.K, g.M)
	}
	if err != nil {
		return nil, &SegmentError{ID: id, Err: err}
	}
	return idx, nil
}

// ReadIndexOf reads the index of data segment n through r and checks it
// against the manifest: the index length its chunks need (before
// allocating it), the index hash, and every entry. Damage is a
// *SegmentError.
func (m *Manifest) ReadIndexOf(r io.ReaderAt, n uint32, chunks []uint64) ([]IndexEntry, error) {
	id := DataID(n)
	sum, ok := m.dataSegment(n)
	if !ok {
		return nil, fmt.Errorf("format: data segment %d is not in the manifest", n)
	}
	wantLen := m.indexLen(chunks)
	if wantLen > maxIndexLen {
		return nil, &SegmentError{ID: id, Err: fmt.Errorf("%w: an index of %d bytes, over %d", ErrTooLarge, wantLen, maxIndexLen)}
	}
	if sum.Size < SegmentHeaderSize+wantLen+FooterSize {
		return nil, &SegmentError{ID: id, Err: corruptf("the manifest's size %d cannot hold an index of %d bytes", sum.Size, wantLen)}
	}
	entries, err := m.checkIndex(r, n, chunks)
	if err != nil && !IsDamage(err) {
		return nil, err // a read failure: the caller classifies it
	}
	if err != nil {
		return nil, &SegmentError{ID: id, Err: err}
	}
	return entries, nil
}

// checkIndex reads the footer and index of data segment n through r and
// checks them against the manifest: length (before allocating), hash,
// frame count and every entry. Read failures are returned unwrapped.
func (m *Manifest) checkIndex(r io.ReaderAt, n uint32, chunks []uint64) ([]IndexEntry, error) {
	sum, _ := m.dataSegment(n)
	f, entries, err := readSegmentIndex(r, sum.Size, m.indexLen(chunks))
	if err != nil {
		return nil, err
	}
	if f.IndexHash != sum.IndexHash || f.Frames != sum.Frames {
		return nil, corruptf("index hash or frame count differs from the manifest")
	}
	return entries, m.checkEntries(n, chunks, entries)
}

// checkEntries compares a data segment's index entries with the manifest.
func (m *Manifest) checkEntries(n uint32, chunks []uint64, entries []IndexEntry) error {
	if len(entries) != len(chunks) {
		return corruptf("segment %d: index has %d entries, the manifest %d chunks", n, len(entries), len(chunks))
	}
	for i, e := range entries {
		c := m.Chunks[chunks[i]]
		_, length := m.ChunkRange(chunks[i])
		if e.Index != chunks[i] || e.Hash != c.Hash || e.Offset != c.Offset || e.PayloadLen != c.PayloadLen || e.Codec != c.Codec || int64(e.RawLen) != length {
			return corruptf("segment %d: index entry %d disagrees with the manifest", n, i)
		}
	}
	return nil
}

// CheckBlocks compares the block digests computed from a chunk's data
// with those its segment index records.
func CheckBlocks(got, want []BlockDigest) error {
	if len(got) != len(want) {
		return corruptf("%d block digests in the index, the data has %d blocks", len(want), len(got))
	}
	for k := range got {
		if got[k] != want[k] {
			return corruptf("block %d's digest in the segment index does not match the data", k)
		}
	}
	return nil
}
