package format

import (
	"errors"
	"fmt"
	"io"
)

// ErrMissing is the cause of damage whose bytes are not there at all: a
// missing, truncated or non-regular segment or manifest file.
var ErrMissing = errors.New("format: data missing or truncated")

// SegmentChunks lists, in order, the indices of the chunks stored in each
// data segment, keyed by segment number.
func (m *Manifest) SegmentChunks() map[uint32][]uint64 {
	out := make(map[uint32][]uint64, len(m.Segments))
	for i, c := range m.Chunks {
		if c.Kind == KindStored {
			out[c.Segment] = append(out[c.Segment], uint64(i))
		}
	}
	return out
}

// Frame is one chunk's stored payload, as read from a segment.
type Frame struct {
	Index   uint64
	Codec   Codec
	Payload []byte
	// Stored is the frame's stored digest as read ([FrameDigest] of its
	// header and payload), when the reader computed it
	// ([SegmentScanner.Next] does); zero otherwise.
	Stored Hash
}

// SegmentScanner reads one data segment front to back from a stream,
// guided by the manifest: it knows where every frame must be, so damage to
// one frame is reported for that chunk and scanning goes on with the next.
// Payloads it returns are not yet verified against the chunk hash: pass
// them to [ChunkCodec.DecodeAt] with the manifest's hash. Their stored
// digests are checked against the segment index: by Next when the index
// was given up front ([SegmentScanner.UseIndex]), else by Finish, which
// reports mismatches of frames already returned ([SegmentScanner.LateDamage]).
type SegmentScanner struct {
	r       io.Reader
	m       *Manifest
	seg     SegmentSummary
	chunks  []uint64
	entries []IndexEntry // the segment's checked index, if given up front
	stored  []Hash       // stored digest of each frame Next returned intact
	late    []*ChunkError
	pos     int
	off     int64
	hdrErr  error
	eof     error // set once the stream ended early or failed
	// skipDigests: the reader checks every chunk against its chunk hash
	// instead (SkipStoredDigests).
	skipDigests bool
}

// SkipStoredDigests makes Next compute and check no stored digest
// (Frame.Stored stays zero), for a reader that opens every chunk and
// checks it against its chunk hash and block digests: a frame that
// decodes to its chunk hash is right, and its stored digest would prove
// nothing more, at the cost of hashing every stored byte again.
func (s *SegmentScanner) SkipStoredDigests() { s.skipDigests = true }

// NewSegmentScanner starts scanning data segment seg, whose stored chunks
// are chunks (from [Manifest.SegmentChunks]), from r positioned at the
// segment's first byte. It reads and checks the segment header.
func NewSegmentScanner(r io.Reader, m *Manifest, seg uint32, chunks []uint64) (*SegmentScanner, error) {
	sum, ok := m.dataSegment(seg)
	if !ok {
		return nil, fmt.Errorf("format: segment %d is not in the manifest", seg)
	}
	s := &SegmentScanner{r: r, m: m, seg: sum, chunks: chunks, stored: make([]Hash, len(chunks))}
	var hb [SegmentHeaderSize]byte
	if err := s.read(hb[:]); err != nil {
		return s, nil // every chunk will report the failure
	}
	id, _ := m.ImageID()
	// A damaged header does not stop us: the manifest locates the frames.
	s.hdrErr = checkSegmentHeader(hb[:], DataID(seg), id)
	return s, nil
}

// UseIndex gives the scanner the segment's index entries, as read and
// checked against the manifest beforehand ([Manifest.ReadIndexOf]), so that
// Next checks each frame's stored digest before returning it: a frame whose
// stored bytes differ from what was written is then damage of its chunk,
// without decoding it. Call it before the first Next.
func (s *SegmentScanner) UseIndex(entries []IndexEntry) error {
	if s.pos != 0 {
		return fmt.Errorf("format: segment %d: index given after scanning began", s.seg.Number)
	}
	if len(entries) != len(s.chunks) {
		return fmt.Errorf("format: segment %d: %d index entries for %d chunks", s.seg.Number, len(entries), len(s.chunks))
	}
	for k, e := range entries {
		if e.Index != s.chunks[k] {
			return fmt.Errorf("format: segment %d: index entry %d is of chunk %d, want %d", s.seg.Number, k, e.Index, s.chunks[k])
		}
	}
	s.entries = entries
	return nil
}

// HeaderErr reports damage to the segment header, if any.
func (s *SegmentScanner) HeaderErr() error { return s.hdrErr }

func (s *SegmentScanner) read(b []byte) error {
	if s.eof != nil {
		return s.eof
	}
	n, err := io.ReadFull(s.r, b)
	s.off += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%w: segment %d ends at byte %d (truncated)", ErrMissing, s.seg.Number, s.off)
		}
		s.eof = err
	}
	return err
}

// IOErr returns the stream error that ended scanning early, other than a
// plain truncation, so the caller can tell a network failure from damage.
func (s *SegmentScanner) IOErr() error {
	if s.eof != nil && !errors.Is(s.eof, ErrMissing) {
		return s.eof
	}
	return nil
}

// Next returns the next frame, reading its payload into buf (reused when
// large enough). It returns io.EOF after the last frame. A damaged or
// missing frame yields a *ChunkError for that chunk; scanning may go on.
func (s *SegmentScanner) Next(buf []byte) (Frame, []byte, error) {
	if s.pos >= len(s.chunks) {
		return Frame{}, buf, io.EOF
	}
	idx := s.chunks[s.pos]
	s.pos++
	c := s.m.Chunks[idx]
	off, length := s.m.ChunkRange(idx)
	cerr := func(err error) error {
		return &ChunkError{Index: idx, Offset: off, Length: length, Segment: s.seg.Number, Err: err}
	}
	n := int(c.FrameLen())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if s.off != c.Offset && s.eof == nil {
		return Frame{}, buf, cerr(corruptf("scanner at %d, frame at %d", s.off, c.Offset))
	}
	if err := s.read(buf); err != nil {
		return Frame{}, buf, cerr(err)
	}
	var d Hash
	if !s.skipDigests {
		d = FrameDigest(buf[:FrameHeaderSize], buf[FrameHeaderSize:])
		if s.entries != nil {
			if err := s.entries[s.pos-1].CheckStoredDigest(d); err != nil {
				return Frame{}, buf, cerr(err)
			}
		}
	}
	f, err := s.m.ParseFrame(idx, buf)
	if err != nil {
		return Frame{}, buf, cerr(err)
	}
	f.Stored = d
	s.stored[s.pos-1] = d
	return f, buf, nil
}

// Finish reads the rest of the segment, its index and footer, checks them
// against the manifest, and returns the index entries of the segment's
// chunks, in order. Call it after Next returned io.EOF.
func (s *SegmentScanner) Finish() ([]IndexEntry, error) {
	rest := s.seg.Size - s.off
	if s.eof != nil {
		return nil, s.eof
	}
	// The manifest says how long the index must be: check that before
	// allocating it, so a hostile segment size costs nothing.
	if want := s.m.indexLen(s.chunks) + FooterSize; rest != want || want > maxIndexLen+FooterSize {
		return nil, corruptf("segment %d: %d bytes left for index and footer, its chunks need %d", s.seg.Number, rest, want)
	}
	tail, base := make([]byte, rest), s.off
	if err := s.read(tail); err != nil {
		return nil, err
	}
	// The segment must end here.
	var one [1]byte
	if n, _ := s.r.Read(one[:]); n != 0 {
		return nil, corruptf("segment %d is longer than the manifest's %d bytes", s.seg.Number, s.seg.Size)
	}
	entries, err := s.m.checkIndex(tailAt{tail, base}, s.seg.Number, s.chunks)
	if err != nil {
		return nil, fmt.Errorf("segment %d: %w", s.seg.Number, err)
	}
	if s.entries == nil {
		for k, e := range entries {
			if d := s.stored[k]; d != (Hash{}) {
				if err := e.CheckStoredDigest(d); err != nil {
					off, length := s.m.ChunkRange(e.Index)
					s.late = append(s.late, &ChunkError{Index: e.Index, Offset: off, Length: length, Segment: s.seg.Number, Err: err})
				}
			}
		}
	}
	return entries, nil
}

// LateDamage returns, after a successful Finish, the chunks whose frames
// Next returned before the index was known (no [SegmentScanner.UseIndex])
// and whose stored digest the index then contradicted: each is damage of
// that chunk, as if Next had reported it. It is empty when UseIndex was
// called, since Next then checked every frame itself.
func (s *SegmentScanner) LateDamage() []*ChunkError { return s.late }

// tailAt serves the bytes b of a segment, which start at offset base, as
// an io.ReaderAt.
type tailAt struct {
	b    []byte
	base int64
}

// ReadAt reads at a segment offset; reads outside the bytes held are
// corruption: the footer pointed there.
func (t tailAt) ReadAt(p []byte, off int64) (int, error) {
	off -= t.base
	if off < 0 || off+int64(len(p)) > int64(len(t.b)) {
		return 0, corruptf("footer points outside the segment's index and footer")
	}
	return copy(p, t.b[off:]), nil
}
