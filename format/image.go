package format

import (
	"encoding/hex"
	"fmt"
	"io"
)

// SegmentCreator opens the destination of a new data segment under key.
// Close on the returned writer must report whether the segment was stored
// completely and durably.
type SegmentCreator func(key string) (io.WriteCloser, error)

// ImageWriter lays encoded chunks, in index order, into data segments,
// starting a new segment once the current one reaches the segment size,
// and builds the manifest's tables. It is not safe for concurrent use; its
// first error is sticky. The caller writes the manifest (last, atomically)
// from the result of [ImageWriter.Finish].
type ImageWriter struct {
	create      SegmentCreator
	imageID     [16]byte
	segmentSize int64

	chunks   []ChunkEntry
	segments []SegmentSummary
	zeros    uint64
	stored   int64

	cur    *SegmentWriter
	curW   io.WriteCloser
	next   uint32
	err    error
	closed bool
}

// NewImageWriter returns a writer for an image with the given ID whose data
// segments close once they hold segmentSize bytes. expectChunks, if known,
// sizes the chunk table up front.
func NewImageWriter(create SegmentCreator, imageID [16]byte, segmentSize int64, expectChunks uint64) (*ImageWriter, error) {
	if segmentSize < MinSegmentSize {
		return nil, fmt.Errorf("format: segment size %d below minimum %d", segmentSize, MinSegmentSize)
	}
	return &ImageWriter{create: create, imageID: imageID, segmentSize: segmentSize,
		chunks: make([]ChunkEntry, 0, min(expectChunks, 1<<24))}, nil
}

// Add records the next chunk. Stored chunks are appended to the current
// segment; zero chunks only get a table entry.
func (w *ImageWriter) Add(ec *EncodedChunk) error {
	if w.closed {
		return ErrWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	index := uint64(len(w.chunks))
	if ec.Zero {
		w.chunks = append(w.chunks, ChunkEntry{Hash: ec.Hash, Kind: KindZero})
		w.zeros++
		return nil
	}
	if w.cur == nil {
		key := SegmentKey(w.next)
		wc, err := w.create(key)
		if err != nil {
			w.err = fmt.Errorf("format: create %s: %w", key, err)
			return w.err
		}
		w.curW = wc
		w.cur = NewSegmentWriter(wc, w.next, w.imageID)
		w.next++
	}
	off, err := w.cur.WriteChunk(index, ec)
	if err != nil {
		w.err = err
		return err
	}
	w.chunks = append(w.chunks, ChunkEntry{Hash: ec.Hash, Offset: off, Segment: w.cur.number,
		PayloadLen: uint32(len(ec.Payload)), Kind: KindStored, Codec: ec.Codec})
	if w.cur.Size() >= w.segmentSize {
		w.err = w.closeSegment()
	}
	return w.err
}

func (w *ImageWriter) closeSegment() error {
	sum, err := w.cur.Close()
	if cerr := w.curW.Close(); err == nil {
		err = cerr
	}
	w.cur, w.curW = nil, nil
	if err != nil {
		return fmt.Errorf("format: close %s: %w", SegmentKey(sum.Number), err)
	}
	w.segments = append(w.segments, sum)
	w.stored += sum.Size
	return nil
}

// Abort abandons an unfinished segment: if its writer has a
// CloseWithError method (as *io.PipeWriter does) that is called, so the
// store discards the partial object; otherwise it is left unclosed. It
// returns the sticky error.
func (w *ImageWriter) Abort(cause error) error {
	if aw, ok := w.curW.(interface{ CloseWithError(error) error }); ok {
		aw.CloseWithError(cause)
	}
	w.cur, w.curW = nil, nil
	w.closed = true
	return w.err
}

// Finish closes the last segment and returns a manifest whose tables and
// counts are filled in; hdr supplies the rest of the metadata (source,
// times, whole-source SHA-256). The manifest is checked before it is
// returned.
func (w *ImageWriter) Finish(hdr Header) (*Manifest, error) {
	if w.closed {
		return nil, ErrWriterClosed
	}
	if w.err == nil && w.cur != nil {
		w.err = w.closeSegment()
	}
	w.closed = true
	if w.err != nil {
		return nil, w.err
	}
	hdr.Format, hdr.Version = "seedship", Version
	hdr.ImageID = hex.EncodeToString(w.imageID[:])
	hdr.BlockSize, hdr.BlockDigestLen, hdr.ChunkHash = BlockSize, BlockDigestLen, "sha256-tree"
	hdr.SegmentSize = w.segmentSize
	hdr.Chunks, hdr.ZeroChunks, hdr.StoredBytes = uint64(len(w.chunks)), w.zeros, w.stored
	m := &Manifest{Header: hdr, Chunks: w.chunks, Segments: w.segments}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("format: built an invalid manifest (a bug): %w", err)
	}
	return m, nil
}
