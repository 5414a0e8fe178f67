package format

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// Sizes of the fixed segment structures (spec: "Segment files").
const (
	SegmentHeaderSize = 32
	FrameHeaderSize   = 24
	FooterSize        = 64
	indexEntryFixed   = 60
)

// Segment kinds, recorded in the segment header and the manifest.
const (
	SegmentData   uint8 = 0
	SegmentParity uint8 = 1
)

// SegmentKey returns the store key of data segment n.
func SegmentKey(n uint32) string { return fmt.Sprintf("data/%08d.seg", n) }

// SegmentHeader is the first SegmentHeaderSize bytes of a segment.
type SegmentHeader struct {
	Version uint16
	Kind    uint8
	Number  uint32
	ImageID [16]byte
}

// Marshal returns the header's bytes.
func (h SegmentHeader) Marshal() []byte {
	b := make([]byte, SegmentHeaderSize)
	copy(b, segmentMagic[:])
	binary.LittleEndian.PutUint16(b[8:], h.Version)
	binary.LittleEndian.PutUint16(b[10:], uint16(h.Kind))
	binary.LittleEndian.PutUint32(b[12:], h.Number)
	copy(b[16:], h.ImageID[:])
	return b
}

// ParseSegmentHeader decodes a segment header.
func ParseSegmentHeader(b []byte) (SegmentHeader, error) {
	var h SegmentHeader
	if len(b) < SegmentHeaderSize {
		return h, corruptf("segment header is %d bytes, want %d", len(b), SegmentHeaderSize)
	}
	if [8]byte(b[:8]) != segmentMagic {
		return h, fmt.Errorf("%w: bad segment magic", ErrFormat)
	}
	h.Version = binary.LittleEndian.Uint16(b[8:])
	if h.Version != Version {
		return h, fmt.Errorf("%w: segment version %d, this seedship reads %d", ErrVersion, h.Version, Version)
	}
	kind := binary.LittleEndian.Uint16(b[10:])
	if kind > uint16(SegmentParity) {
		return h, corruptf("segment kind %d", kind)
	}
	h.Kind = uint8(kind)
	h.Number = binary.LittleEndian.Uint32(b[12:])
	copy(h.ImageID[:], b[16:32])
	return h, nil
}

// FrameHeader precedes every chunk payload in a data segment.
type FrameHeader struct {
	Codec      Codec
	Index      uint64 // chunk index
	PayloadLen uint32
	RawLen     uint32
}

func (f FrameHeader) put(b []byte) {
	copy(b, frameMagic[:])
	b[4] = byte(f.Codec)
	b[5], b[6], b[7] = 0, 0, 0
	binary.LittleEndian.PutUint64(b[8:], f.Index)
	binary.LittleEndian.PutUint32(b[16:], f.PayloadLen)
	binary.LittleEndian.PutUint32(b[20:], f.RawLen)
}

// ParseFrameHeader decodes a frame header and checks its bounds.
func ParseFrameHeader(b []byte) (FrameHeader, error) {
	var f FrameHeader
	if len(b) < FrameHeaderSize {
		return f, corruptf("frame header is %d bytes, want %d", len(b), FrameHeaderSize)
	}
	if [4]byte(b[:4]) != frameMagic {
		return f, corruptf("bad frame magic %q", b[:4])
	}
	f.Codec = Codec(b[4])
	if !f.Codec.Valid() {
		return f, corruptf("frame codec %d", b[4])
	}
	if b[5]|b[6]|b[7] != 0 {
		return f, corruptf("frame reserved bytes not zero")
	}
	f.Index = binary.LittleEndian.Uint64(b[8:])
	f.PayloadLen = binary.LittleEndian.Uint32(b[16:])
	f.RawLen = binary.LittleEndian.Uint32(b[20:])
	if f.RawLen == 0 || f.RawLen > MaxChunkSize {
		return f, fmt.Errorf("%w: frame raw length %d", ErrTooLarge, f.RawLen)
	}
	if f.PayloadLen > maxPayload(int(f.RawLen)) {
		return f, fmt.Errorf("%w: frame payload length %d for %d raw bytes", ErrTooLarge, f.PayloadLen, f.RawLen)
	}
	if f.Codec == CodecRaw && f.PayloadLen != f.RawLen {
		return f, corruptf("raw frame payload %d != raw length %d", f.PayloadLen, f.RawLen)
	}
	return f, nil
}

// maxPayload bounds a stored payload: the writer stores raw whenever zstd
// would not save 1/64, so a zstd payload is always shorter than raw.
func maxPayload(rawLen int) uint32 { return uint32(rawLen) }

// IndexEntry describes one frame in a segment's trailing index.
type IndexEntry struct {
	Index      uint64 // chunk index
	Offset     int64  // offset of the frame header in the segment
	PayloadLen uint32
	RawLen     uint32
	Codec      Codec
	Hash       Hash
	Blocks     []BlockDigest
}

func (e *IndexEntry) size() int { return indexEntryFixed + len(e.Blocks)*BlockDigestLen }

func (e *IndexEntry) appendTo(b []byte) []byte {
	var fixed [indexEntryFixed]byte
	binary.LittleEndian.PutUint64(fixed[0:], e.Index)
	binary.LittleEndian.PutUint64(fixed[8:], uint64(e.Offset))
	binary.LittleEndian.PutUint32(fixed[16:], e.PayloadLen)
	binary.LittleEndian.PutUint32(fixed[20:], e.RawLen)
	fixed[24] = byte(e.Codec)
	binary.LittleEndian.PutUint16(fixed[26:], uint16(len(e.Blocks)))
	copy(fixed[28:], e.Hash[:])
	b = append(b, fixed[:]...)
	for _, d := range e.Blocks {
		b = append(b, d[:]...)
	}
	return b
}

// Footer is the last FooterSize bytes of a segment; it locates and
// authenticates the index.
type Footer struct {
	IndexOffset int64
	IndexLen    int64
	Frames      uint32
	IndexHash   Hash // SHA-256 of the index bytes
}

// Marshal returns the footer's bytes.
func (f Footer) Marshal() []byte {
	b := make([]byte, FooterSize)
	binary.LittleEndian.PutUint64(b[0:], uint64(f.IndexOffset))
	binary.LittleEndian.PutUint64(b[8:], uint64(f.IndexLen))
	binary.LittleEndian.PutUint32(b[16:], f.Frames)
	copy(b[24:], f.IndexHash[:])
	copy(b[56:], segmentEndMagic[:])
	return b
}

// ParseFooter decodes a footer and checks it against the segment size.
func ParseFooter(b []byte, segmentSize int64) (Footer, error) {
	var f Footer
	if len(b) != FooterSize {
		return f, corruptf("footer is %d bytes, want %d", len(b), FooterSize)
	}
	if [8]byte(b[56:]) != segmentEndMagic {
		return f, corruptf("bad segment footer magic (truncated segment?)")
	}
	f.IndexOffset = int64(binary.LittleEndian.Uint64(b[0:]))
	f.IndexLen = int64(binary.LittleEndian.Uint64(b[8:]))
	f.Frames = binary.LittleEndian.Uint32(b[16:])
	if binary.LittleEndian.Uint32(b[20:]) != 0 {
		return f, corruptf("footer reserved bytes not zero")
	}
	copy(f.IndexHash[:], b[24:56])
	if f.IndexOffset < SegmentHeaderSize || f.IndexLen < 0 ||
		f.IndexOffset > segmentSize || f.IndexLen != segmentSize-FooterSize-f.IndexOffset {
		return f, corruptf("footer places index at %d+%d in a %d-byte segment", f.IndexOffset, f.IndexLen, segmentSize)
	}
	if int64(f.Frames)*indexEntryFixed > f.IndexLen {
		return f, corruptf("footer claims %d frames in a %d-byte index", f.Frames, f.IndexLen)
	}
	return f, nil
}

// ParseIndex decodes a segment index of frames entries, checking that the
// entries are in increasing offset order and lie before indexOffset.
func ParseIndex(b []byte, frames uint32, indexOffset int64) ([]IndexEntry, error) {
	if int64(frames)*indexEntryFixed > int64(len(b)) {
		return nil, corruptf("index of %d bytes cannot hold %d frames", len(b), frames)
	}
	out := make([]IndexEntry, 0, frames)
	next := int64(SegmentHeaderSize)
	for i := uint32(0); i < frames; i++ {
		if len(b) < indexEntryFixed {
			return nil, corruptf("index entry %d truncated", i)
		}
		e := IndexEntry{
			Index:      binary.LittleEndian.Uint64(b[0:]),
			Offset:     int64(binary.LittleEndian.Uint64(b[8:])),
			PayloadLen: binary.LittleEndian.Uint32(b[16:]),
			RawLen:     binary.LittleEndian.Uint32(b[20:]),
			Codec:      Codec(b[24]),
		}
		if b[25] != 0 {
			return nil, corruptf("index entry %d reserved byte not zero", i)
		}
		nb := int(binary.LittleEndian.Uint16(b[26:]))
		copy(e.Hash[:], b[28:60])
		b = b[indexEntryFixed:]
		if e.RawLen == 0 || e.RawLen > MaxChunkSize || nb != NumBlocks(int(e.RawLen)) {
			return nil, corruptf("index entry %d: raw length %d with %d blocks", i, e.RawLen, nb)
		}
		if !e.Codec.Valid() {
			return nil, corruptf("index entry %d: codec %d", i, e.Codec)
		}
		if e.Offset != next || e.PayloadLen > maxPayload(int(e.RawLen)) {
			return nil, corruptf("index entry %d: frame at %d (+%d), expected at %d", i, e.Offset, e.PayloadLen, next)
		}
		next = e.Offset + FrameHeaderSize + int64(e.PayloadLen)
		if next > indexOffset {
			return nil, corruptf("index entry %d: frame runs past the index", i)
		}
		if len(b) < nb*BlockDigestLen {
			return nil, corruptf("index entry %d: block digests truncated", i)
		}
		e.Blocks = make([]BlockDigest, nb)
		for j := range e.Blocks {
			copy(e.Blocks[j][:], b[j*BlockDigestLen:])
		}
		b = b[nb*BlockDigestLen:]
		out = append(out, e)
	}
	if len(b) != 0 {
		return nil, corruptf("%d stray bytes after the index", len(b))
	}
	if next != indexOffset {
		return nil, corruptf("frames end at %d but the index starts at %d", next, indexOffset)
	}
	return out, nil
}

// ReadSegmentIndex reads and checks the footer and index of a segment of
// the given size through r.
func ReadSegmentIndex(r io.ReaderAt, size int64) (Footer, []IndexEntry, error) {
	if size < SegmentHeaderSize+FooterSize {
		return Footer{}, nil, corruptf("segment is %d bytes, shorter than header and footer", size)
	}
	fb := make([]byte, FooterSize)
	if _, err := r.ReadAt(fb, size-FooterSize); err != nil {
		return Footer{}, nil, fmt.Errorf("format: read footer: %w", err)
	}
	f, err := ParseFooter(fb, size)
	if err != nil {
		return f, nil, err
	}
	if f.IndexLen > MaxManifestSize {
		return f, nil, fmt.Errorf("%w: index of %d bytes", ErrTooLarge, f.IndexLen)
	}
	ib := make([]byte, f.IndexLen)
	if _, err := r.ReadAt(ib, f.IndexOffset); err != nil {
		return f, nil, fmt.Errorf("format: read index: %w", err)
	}
	if sha256.Sum256(ib) != f.IndexHash {
		return f, nil, corruptf("segment index hash mismatch")
	}
	entries, err := ParseIndex(ib, f.Frames, f.IndexOffset)
	return f, entries, err
}

// SegmentSummary is what a closed segment contributes to the manifest.
type SegmentSummary struct {
	Number    uint32
	Kind      uint8
	Size      int64
	Frames    uint32
	IndexHash Hash
}

// SegmentWriter appends chunk frames to one data segment. It writes only
// forward, so w may be a pipe to an upload. The first error is sticky.
// It is not safe for concurrent use.
type SegmentWriter struct {
	w      io.Writer
	number uint32
	off    int64
	index  []byte
	frames uint32
	hdr    [FrameHeaderSize]byte
	err    error
	closed bool
}

// NewSegmentWriter writes the header of data segment number to w.
func NewSegmentWriter(w io.Writer, number uint32, imageID [16]byte) *SegmentWriter {
	s := &SegmentWriter{w: w, number: number}
	s.write(SegmentHeader{Version: Version, Kind: SegmentData, Number: number, ImageID: imageID}.Marshal())
	return s
}

func (s *SegmentWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	n, err := s.w.Write(b)
	s.off += int64(n)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		s.err = fmt.Errorf("format: write segment %d: %w", s.number, err)
	}
}

// Size returns the bytes written so far.
func (s *SegmentWriter) Size() int64 { return s.off }

// WriteChunk appends a frame for a stored chunk and returns the frame's
// offset. Zero chunks are not stored and must not be passed here.
func (s *SegmentWriter) WriteChunk(index uint64, ec *EncodedChunk) (int64, error) {
	if s.closed {
		return 0, ErrWriterClosed
	}
	if s.err != nil {
		return 0, s.err
	}
	if ec.Zero {
		return 0, fmt.Errorf("format: zero chunk %d has no frame", index)
	}
	off := s.off
	FrameHeader{Codec: ec.Codec, Index: index, PayloadLen: uint32(len(ec.Payload)), RawLen: uint32(ec.RawLen)}.put(s.hdr[:])
	s.write(s.hdr[:])
	s.write(ec.Payload)
	e := IndexEntry{Index: index, Offset: off, PayloadLen: uint32(len(ec.Payload)), RawLen: uint32(ec.RawLen),
		Codec: ec.Codec, Hash: ec.Hash, Blocks: ec.Blocks}
	s.index = e.appendTo(s.index)
	s.frames++
	return off, s.err
}

// Close writes the index and footer. It does not close the underlying
// writer.
func (s *SegmentWriter) Close() (SegmentSummary, error) {
	if s.closed {
		return SegmentSummary{}, ErrWriterClosed
	}
	s.closed = true
	f := Footer{IndexOffset: s.off, IndexLen: int64(len(s.index)), Frames: s.frames, IndexHash: sha256.Sum256(s.index)}
	s.write(s.index)
	s.write(f.Marshal())
	return SegmentSummary{Number: s.number, Kind: SegmentData, Size: s.off, Frames: s.frames, IndexHash: f.IndexHash}, s.err
}
