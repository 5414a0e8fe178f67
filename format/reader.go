package format

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// ErrMissing is the cause in a [ChunkError] for a chunk whose bytes are
// not there at all (missing or truncated segment).
var ErrMissing = errors.New("format: chunk data missing")

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
}

// SegmentScanner reads one data segment front to back from a stream,
// guided by the manifest: it knows where every frame must be, so damage to
// one frame is reported for that chunk and scanning goes on with the next.
// Payloads it returns are not yet verified: pass them to
// [ChunkCodec.Decode] with the manifest's hash.
type SegmentScanner struct {
	r      io.Reader
	m      *Manifest
	seg    SegmentSummary
	chunks []uint64
	pos    int
	off    int64
	hdrErr error
	eof    error // set once the stream ended early or failed
}

// NewSegmentScanner starts scanning data segment seg, whose stored chunks
// are chunks (from [Manifest.SegmentChunks]), from r positioned at the
// segment's first byte. It reads and checks the segment header.
func NewSegmentScanner(r io.Reader, m *Manifest, seg uint32, chunks []uint64) (*SegmentScanner, error) {
	sum, ok := m.Segment(seg)
	if !ok {
		return nil, fmt.Errorf("format: segment %d is not in the manifest", seg)
	}
	s := &SegmentScanner{r: r, m: m, seg: sum, chunks: chunks}
	var hb [SegmentHeaderSize]byte
	if err := s.read(hb[:]); err != nil {
		return s, nil // every chunk will report the failure
	}
	h, err := ParseSegmentHeader(hb[:])
	if err == nil {
		id, _ := m.ImageID()
		if h.Kind != SegmentData || h.Number != seg || h.ImageID != id {
			err = corruptf("segment header names segment %d of image %x, want segment %d of image %x", h.Number, h.ImageID, seg, id)
		}
	}
	// A damaged header does not stop us: the manifest locates the frames.
	s.hdrErr = err
	return s, nil
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
	fh, err := ParseFrameHeader(buf)
	if err != nil {
		return Frame{}, buf, cerr(err)
	}
	if fh.Index != idx || fh.Codec != c.Codec || fh.PayloadLen != c.PayloadLen || int64(fh.RawLen) != length {
		return Frame{}, buf, cerr(corruptf("frame header (chunk %d, %s, %d bytes) disagrees with the manifest", fh.Index, fh.Codec, fh.PayloadLen))
	}
	return Frame{Index: idx, Codec: c.Codec, Payload: buf[FrameHeaderSize:]}, buf, nil
}

// Finish reads the rest of the segment, its index and footer, and checks
// them against the manifest. Call it after Next returned io.EOF.
func (s *SegmentScanner) Finish() error {
	rest := s.seg.Size - s.off
	if s.eof != nil {
		return s.eof
	}
	if rest < FooterSize {
		return corruptf("segment %d: %d bytes left for index and footer", s.seg.Number, rest)
	}
	tail := make([]byte, rest)
	if err := s.read(tail); err != nil {
		return err
	}
	// The segment must end here.
	var one [1]byte
	if n, _ := s.r.Read(one[:]); n != 0 {
		return corruptf("segment %d is longer than the manifest's %d bytes", s.seg.Number, s.seg.Size)
	}
	f, err := ParseFooter(tail[len(tail)-FooterSize:], s.seg.Size)
	if err != nil {
		return fmt.Errorf("segment %d: %w", s.seg.Number, err)
	}
	ib := tail[:len(tail)-FooterSize]
	if h := sha256.Sum256(ib); h != f.IndexHash || h != s.seg.IndexHash || f.Frames != s.seg.Frames {
		return corruptf("segment %d: index does not match the manifest", s.seg.Number)
	}
	entries, err := ParseIndex(ib, f.Frames, f.IndexOffset)
	if err != nil {
		return fmt.Errorf("segment %d: %w", s.seg.Number, err)
	}
	for i, e := range entries {
		c := s.m.Chunks[s.chunks[i]]
		if e.Index != s.chunks[i] || e.Hash != c.Hash || e.Offset != c.Offset || e.PayloadLen != c.PayloadLen || e.Codec != c.Codec {
			return corruptf("segment %d: index entry %d disagrees with the manifest", s.seg.Number, i)
		}
	}
	return nil
}

// ReadFrame reads and checks the frame of stored chunk idx from a segment
// through r; it returns the payload (not yet verified against the hash).
func ReadFrame(r io.ReaderAt, m *Manifest, idx uint64) (Frame, error) {
	c := m.Chunks[idx]
	if c.Kind != KindStored {
		return Frame{}, fmt.Errorf("format: chunk %d is not stored", idx)
	}
	buf := make([]byte, c.FrameLen())
	if _, err := r.ReadAt(buf, c.Offset); err != nil {
		return Frame{}, err
	}
	fh, err := ParseFrameHeader(buf)
	if err != nil {
		return Frame{}, err
	}
	_, length := m.ChunkRange(idx)
	if fh.Index != idx || fh.Codec != c.Codec || fh.PayloadLen != c.PayloadLen || int64(fh.RawLen) != length {
		return Frame{}, corruptf("frame header disagrees with the manifest")
	}
	return Frame{Index: idx, Codec: c.Codec, Payload: buf[FrameHeaderSize:]}, nil
}
