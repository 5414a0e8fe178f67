package format

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/zeebo/blake3"
)

// Sizes of the fixed segment structures (spec: "Segment files").
const (
	SegmentHeaderSize = 32
	FrameHeaderSize   = 24
	FooterSize        = 64
	// indexEntryFixed is an index entry without its block digests: the
	// fields up to the chunk hash (60 bytes) and the stored digest (32).
	indexEntryFixed = 92
	// maxIndexLen bounds a segment's index for readers: the writer's
	// 4,096-frame limit keeps a data segment's at most 4,096 × (92 + 8 ×
	// 1,024) bytes (33.9 MB, 32.4 MiB) at 64 MiB chunks, and the
	// capture's parity memory limit keeps a parity segment's (4·(K+M)
	// bytes a row) far smaller.
	maxIndexLen = 64 << 20
)

// segmentHeader is the first SegmentHeaderSize bytes of a segment.
type segmentHeader struct {
	Version uint16
	Kind    SegmentKind
	Number  uint32
	ImageID [16]byte
}

// marshal returns the header's bytes.
func (h segmentHeader) marshal() []byte {
	b := make([]byte, SegmentHeaderSize)
	copy(b, segmentMagic[:])
	binary.LittleEndian.PutUint16(b[8:], h.Version)
	binary.LittleEndian.PutUint16(b[10:], uint16(h.Kind))
	binary.LittleEndian.PutUint32(b[12:], h.Number)
	copy(b[16:], h.ImageID[:])
	return b
}

// parseSegmentHeader decodes a segment header.
func parseSegmentHeader(b []byte) (segmentHeader, error) {
	var h segmentHeader
	if len(b) < SegmentHeaderSize {
		return h, corruptf("segment header is %d bytes, want %d", len(b), SegmentHeaderSize)
	}
	if [8]byte(b[:8]) != segmentMagic {
		return h, fmt.Errorf("%w: bad segment magic", ErrFormat)
	}
	h.Version = binary.LittleEndian.Uint16(b[8:])
	if h.Version != formatVersion {
		return h, versionError(int(h.Version))
	}
	kind := binary.LittleEndian.Uint16(b[10:])
	if kind > uint16(SegmentParity) {
		return h, corruptf("segment kind %d", kind)
	}
	h.Kind = SegmentKind(kind)
	h.Number = binary.LittleEndian.Uint32(b[12:])
	copy(h.ImageID[:], b[16:32])
	return h, nil
}

// checkSegmentHeader parses a segment header and checks that it names
// segment id of the image imageID. It is the one check of a segment
// header's identity.
func checkSegmentHeader(b []byte, id SegmentID, imageID [16]byte) error {
	h, err := parseSegmentHeader(b)
	if err != nil {
		return err
	}
	if h.Kind != id.Kind || h.Number != id.Number || h.ImageID != imageID {
		return corruptf("segment header names %s of image %x, want %s of image %x",
			SegmentID{h.Kind, h.Number}.Key(), h.ImageID, id.Key(), imageID)
	}
	return nil
}

// FrameHeader precedes every chunk payload in a data segment.
type frameHeader struct {
	Codec      Codec
	Index      uint64 // chunk index
	PayloadLen uint32
	RawLen     uint32
}

func (f frameHeader) put(b []byte) {
	copy(b, frameMagic[:])
	b[4] = byte(f.Codec)
	b[5], b[6], b[7] = 0, 0, 0
	binary.LittleEndian.PutUint64(b[8:], f.Index)
	binary.LittleEndian.PutUint32(b[16:], f.PayloadLen)
	binary.LittleEndian.PutUint32(b[20:], f.RawLen)
}

// ParseFrameHeader decodes a frame header and checks its bounds.
func parseFrameHeader(b []byte) (frameHeader, error) {
	var f frameHeader
	if len(b) < FrameHeaderSize {
		return f, corruptf("frame header is %d bytes, want %d", len(b), FrameHeaderSize)
	}
	if [4]byte(b[:4]) != frameMagic {
		return f, corruptf("bad frame magic %q", b[:4])
	}
	f.Codec = Codec(b[4])
	if !f.Codec.valid() {
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
	if int64(f.PayloadLen) > int64(f.RawLen)+SealOverhead {
		return f, fmt.Errorf("%w: frame payload length %d for %d raw bytes", ErrTooLarge, f.PayloadLen, f.RawLen)
	}
	if !PayloadLenOK(f.Codec, f.PayloadLen, int64(f.RawLen)) {
		return f, corruptf("%s frame payload of %d bytes for %d raw bytes", f.Codec, f.PayloadLen, f.RawLen)
	}
	return f, nil
}

// IndexEntry describes one frame in a segment's trailing index.
type IndexEntry struct {
	Index      uint64 // chunk index
	Offset     int64  // offset of the frame header in the segment
	PayloadLen uint32
	RawLen     uint32
	Codec      Codec
	Hash       Hash // the chunk hash H, as in the manifest
	// Stored is the frame's stored digest, [FrameDigest] of its header and
	// payload as written: with the index authenticated by the manifest, it
	// lets anyone check the stored bytes without decoding them.
	Stored Hash
	Blocks []BlockDigest
}

func (e *IndexEntry) appendTo(b []byte) []byte {
	var fixed [indexEntryFixed]byte
	binary.LittleEndian.PutUint64(fixed[0:], e.Index)
	binary.LittleEndian.PutUint64(fixed[8:], uint64(e.Offset))
	binary.LittleEndian.PutUint32(fixed[16:], e.PayloadLen)
	binary.LittleEndian.PutUint32(fixed[20:], e.RawLen)
	fixed[24] = byte(e.Codec)
	binary.LittleEndian.PutUint16(fixed[26:], uint16(len(e.Blocks)))
	copy(fixed[28:], e.Hash[:])
	copy(fixed[60:], e.Stored[:])
	b = append(b, fixed[:]...)
	for _, d := range e.Blocks {
		b = append(b, d[:]...)
	}
	return b
}

// Footer is the last FooterSize bytes of a segment; it locates and
// authenticates the index.
type footer struct {
	IndexOffset int64
	IndexLen    int64
	Frames      uint32
	IndexHash   Hash // SHA-256 of the index bytes
}

// Marshal returns the footer's bytes.
func (f footer) marshal() []byte {
	b := make([]byte, FooterSize)
	binary.LittleEndian.PutUint64(b[0:], uint64(f.IndexOffset))
	binary.LittleEndian.PutUint64(b[8:], uint64(f.IndexLen))
	binary.LittleEndian.PutUint32(b[16:], f.Frames)
	copy(b[24:], f.IndexHash[:])
	copy(b[56:], segmentEndMagic[:])
	return b
}

// ParseFooter decodes a footer and checks it against the segment size.
func parseFooter(b []byte, segmentSize int64) (footer, error) {
	var f footer
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
func parseIndex(b []byte, frames uint32, indexOffset int64) ([]IndexEntry, error) {
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
		copy(e.Stored[:], b[60:92])
		b = b[indexEntryFixed:]
		if e.RawLen == 0 || e.RawLen > MaxChunkSize || nb != NumBlocks(int(e.RawLen)) {
			return nil, corruptf("index entry %d: raw length %d with %d blocks", i, e.RawLen, nb)
		}
		if !e.Codec.valid() {
			return nil, corruptf("index entry %d: codec %d", i, e.Codec)
		}
		if !PayloadLenOK(e.Codec, e.PayloadLen, int64(e.RawLen)) {
			return nil, corruptf("index entry %d: %s payload of %d bytes for %d raw bytes", i, e.Codec, e.PayloadLen, e.RawLen)
		}
		if e.Offset != next {
			return nil, corruptf("index entry %d: frame at %d (+%d), expected at %d", i, e.Offset, e.PayloadLen, next)
		}
		next = e.Offset + FrameHeaderSize + int64(e.PayloadLen)
		if next > indexOffset {
			return nil, corruptf("index entry %d: frame runs past the index", i)
		}
		if len(b) < nb*blockDigestLen {
			return nil, corruptf("index entry %d: block digests truncated", i)
		}
		e.Blocks = make([]BlockDigest, nb)
		for j := range e.Blocks {
			copy(e.Blocks[j][:], b[j*blockDigestLen:])
		}
		b = b[nb*blockDigestLen:]
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

// ReadSummary reads and checks segment id of the image imageID, stored as
// size bytes in r: its header names id and imageID, and its footer and
// index are intact. It returns the manifest entry the segment's own bytes
// give and, for a data segment, its index entries in chunk order. It is
// how a resumed capture adopts the segments an earlier run wrote. An error
// from r stays in the returned error's chain.
func ReadSummary(r io.ReaderAt, size int64, id SegmentID, imageID [16]byte) (SegmentSummary, []IndexEntry, error) {
	hb := make([]byte, SegmentHeaderSize)
	if _, err := r.ReadAt(hb, 0); err != nil {
		return SegmentSummary{}, nil, fmt.Errorf("format: read the header of %s: %w", id.Key(), err)
	}
	if err := checkSegmentHeader(hb, id, imageID); err != nil {
		return SegmentSummary{}, nil, err
	}
	if id.Kind == SegmentParity {
		idx, err := readParityIndex(r, size, Hash{}, -1)
		if err != nil {
			return SegmentSummary{}, nil, err
		}
		return SegmentSummary{Number: id.Number, Kind: SegmentParity, Size: size, IndexHash: sha256.Sum256(idx.marshal())}, nil, nil
	}
	f, entries, err := readDataIndex(r, size)
	if err != nil {
		return SegmentSummary{}, nil, err
	}
	return SegmentSummary{Number: id.Number, Kind: SegmentData, Size: size, Frames: f.Frames, IndexHash: f.IndexHash}, entries, nil
}

// ReadImageID reads the header of segment id through r and returns the ID
// of the image it belongs to. A header that is not one of segment id is
// damage: a *SegmentError ([IsDamage]). Errors from r are returned
// wrapped with %w.
func ReadImageID(r io.ReaderAt, id SegmentID) ([16]byte, error) {
	hb := make([]byte, SegmentHeaderSize)
	if _, err := r.ReadAt(hb, 0); err != nil {
		return [16]byte{}, fmt.Errorf("format: read the header of %s: %w", id.Key(), err)
	}
	h, err := parseSegmentHeader(hb)
	if err == nil {
		err = checkSegmentHeader(hb, id, h.ImageID)
	}
	if err != nil {
		return [16]byte{}, &SegmentError{ID: id, Err: err}
	}
	return h.ImageID, nil
}

// readDataIndex reads and checks the footer and index of a data segment of
// the given size through r.
func readDataIndex(r io.ReaderAt, size int64) (footer, []IndexEntry, error) {
	f, entries, err := readSegmentIndex(r, size, -1)
	if err != nil && !IsDamage(err) {
		err = fmt.Errorf("format: read segment index: %w", err)
	}
	return f, entries, err
}

// readSegmentIndex is readDataIndex that, when wantLen is not negative,
// also requires the index to be wantLen bytes, before allocating it. Read
// failures are returned unwrapped, for the caller to classify.
func readSegmentIndex(r io.ReaderAt, size, wantLen int64) (footer, []IndexEntry, error) {
	if size < SegmentHeaderSize+FooterSize {
		return footer{}, nil, corruptf("segment is %d bytes, shorter than header and footer", size)
	}
	fb := make([]byte, FooterSize)
	if _, err := r.ReadAt(fb, size-FooterSize); err != nil {
		return footer{}, nil, err
	}
	f, err := parseFooter(fb, size)
	if err != nil {
		return f, nil, err
	}
	if f.IndexLen > maxIndexLen {
		return f, nil, fmt.Errorf("%w: index of %d bytes, over %d", ErrTooLarge, f.IndexLen, maxIndexLen)
	}
	if wantLen >= 0 && f.IndexLen != wantLen {
		return f, nil, corruptf("index of %d bytes, its chunks need %d", f.IndexLen, wantLen)
	}
	ib := make([]byte, f.IndexLen)
	if _, err := r.ReadAt(ib, f.IndexOffset); err != nil {
		return f, nil, err
	}
	if sha256.Sum256(ib) != f.IndexHash {
		return f, nil, corruptf("segment index hash mismatch")
	}
	entries, err := parseIndex(ib, f.Frames, f.IndexOffset)
	return f, entries, err
}

// SegmentSummary is what a closed segment contributes to the manifest.
type SegmentSummary struct {
	Number    uint32
	Kind      SegmentKind
	Size      int64
	Frames    uint32
	IndexHash Hash
}

// segmentWriter appends chunk frames to one data segment. It writes only
// forward, so w may be a pipe to an upload. The first error is sticky.
// It is not safe for concurrent use.
type segmentWriter struct {
	w      io.Writer
	number uint32
	off    int64
	index  []byte
	frames uint32
	hdr    [FrameHeaderSize]byte
	digest *blake3.Hasher // each frame's stored digest, as it is written
	err    error
	closed bool
}

// newSegmentWriter writes the header of data segment number to w.
func newSegmentWriter(w io.Writer, number uint32, imageID [16]byte) *segmentWriter {
	s := &segmentWriter{w: w, number: number, digest: blake3.New()}
	s.write(segmentHeader{Version: formatVersion, Kind: SegmentData, Number: number, ImageID: imageID}.marshal())
	return s
}

func (s *segmentWriter) write(b []byte) {
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

// size returns the bytes written so far.
func (s *segmentWriter) size() int64 { return s.off }

// writeChunk appends a frame for a stored chunk and returns the frame's
// offset. Zero chunks are not stored and must not be passed here.
func (s *segmentWriter) writeChunk(index uint64, ec *EncodedChunk) (int64, error) {
	if s.closed {
		return 0, errWriterClosed
	}
	if s.err != nil {
		return 0, s.err
	}
	if ec.Zero {
		return 0, fmt.Errorf("format: zero chunk %d has no frame", index)
	}
	off := s.off
	frameHeader{Codec: ec.Codec, Index: index, PayloadLen: uint32(len(ec.Payload)), RawLen: uint32(ec.RawLen)}.put(s.hdr[:])
	s.write(s.hdr[:])
	s.write(ec.Payload)
	s.digest.Reset()
	_, _ = s.digest.Write(s.hdr[:]) // a hash never fails to write
	_, _ = s.digest.Write(ec.Payload)
	e := IndexEntry{Index: index, Offset: off, PayloadLen: uint32(len(ec.Payload)), RawLen: uint32(ec.RawLen),
		Codec: ec.Codec, Hash: ec.Hash, Blocks: ec.Blocks}
	s.digest.Sum(e.Stored[:0])
	s.index = e.appendTo(s.index)
	s.frames++
	return off, s.err
}

// close writes the index and footer. It does not close the underlying
// writer.
func (s *segmentWriter) close() (SegmentSummary, error) {
	if s.closed {
		return SegmentSummary{}, errWriterClosed
	}
	s.closed = true
	f := footer{IndexOffset: s.off, IndexLen: int64(len(s.index)), Frames: s.frames, IndexHash: sha256.Sum256(s.index)}
	s.write(s.index)
	s.write(f.marshal())
	return SegmentSummary{Number: s.number, Kind: SegmentData, Size: s.off, Frames: s.frames, IndexHash: f.IndexHash}, s.err
}
