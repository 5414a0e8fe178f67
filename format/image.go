package format

import (
	"encoding/hex"
	"fmt"
	"io"
	"slices"
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

	cur  *SegmentWriter
	curW io.WriteCloser

	geo         Geometry
	enc         *StripeEncoder // nil without parity
	writeParity func(*ParitySegment) error
	parity      []SegmentSummary
	parityBytes int64
	pending     bool // the stripe encoder holds shards not yet flushed
	reserved    bool // the stripe encoder's buffers are sized
	onSegment   func(SegmentSummary, uint64) error
	next        uint32
	err         error
	closed      bool
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

// SetParity makes the writer compute Reed-Solomon parity of geometry g
// over its data segments (spec §9) and hand each finished parity segment to
// write, after the stripe's data segments are stored and before the next
// stripe's first one begins. Call it before the first Add.
func (w *ImageWriter) SetParity(g Geometry, write func(*ParitySegment) error) error {
	enc, err := NewStripeEncoder(g)
	if err != nil {
		return err
	}
	if w.next != 0 || w.cur != nil {
		return fmt.Errorf("format: SetParity after the first segment")
	}
	w.geo, w.enc, w.writeParity = g, enc, write
	return nil
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
	if w.enc != nil && !w.reserved {
		// A shard is at most the segment size, one more frame, the
		// index of its frames and the footer: size the parity buffers
		// once, so they are never regrown (and the old ones left to
		// the collector) while a stripe streams by.
		frame := int64(FrameHeaderSize + ec.RawLen)
		entry := int64(indexEntryFixed + NumBlocks(ec.RawLen)*BlockDigestLen)
		w.enc.Reserve(w.segmentSize + frame + MaxFramesPerSegment*entry + FooterSize)
		w.reserved = true
	}
	if w.cur == nil {
		key := SegmentKey(w.next)
		wc, err := w.create(key)
		if err != nil {
			w.err = fmt.Errorf("format: create %s: %w", key, err)
			return w.err
		}
		w.curW = wc
		var sw io.Writer = wc
		if w.enc != nil {
			_, pos := w.geo.Stripe(w.next)
			if pos == 0 {
				w.enc.Reset()
			}
			w.enc.BeginShard(pos, w.next)
			w.pending = true
			sw = io.MultiWriter(wc, w.enc)
		}
		w.cur = NewSegmentWriter(sw, w.next, w.imageID)
		w.next++
	}
	off, err := w.cur.WriteChunk(index, ec)
	if err != nil {
		w.err = err
		return err
	}
	w.chunks = append(w.chunks, ChunkEntry{Hash: ec.Hash, Offset: off, Segment: w.cur.number,
		PayloadLen: uint32(len(ec.Payload)), Kind: KindStored, Codec: ec.Codec})
	// A segment closes at the segment size, or at MaxFramesPerSegment
	// frames, so that its index (held in memory until it is written)
	// stays small however well the chunks compress.
	if w.cur.Size() >= w.segmentSize || w.cur.frames >= MaxFramesPerSegment {
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
	if w.enc != nil {
		w.enc.EndShard()
		if _, pos := w.geo.Stripe(sum.Number); pos == w.geo.K-1 {
			if err := w.flushStripe(); err != nil {
				return err
			}
		}
	}
	if w.onSegment != nil {
		return w.onSegment(sum, uint64(len(w.chunks)))
	}
	return nil
}

// OnSegment registers fn, called after each data segment (and, when it
// completes a stripe, the stripe's parity) is stored, with the segment's
// summary and the number of chunks recorded so far. A capture uses it to
// checkpoint progress for resuming.
func (w *ImageWriter) OnSegment(fn func(sum SegmentSummary, chunks uint64) error) { w.onSegment = fn }

// ResumeState is what a resumed capture recovers from stored segments:
// the chunk table up to the last stored segment's last chunk, the data
// segments, and the parity segments of complete stripes.
type ResumeState struct {
	Chunks   []ChunkEntry
	Segments []SegmentSummary
	Parity   []SegmentSummary
}

// Resume continues an interrupted image: it adopts st, so that the next
// Add is chunk len(st.Chunks) and the next segment follows the last one.
// For parity images, read must return the stored data segments of the
// last, incomplete stripe, which are fed to the parity encoder again. Call
// it once, after SetParity and before the first Add.
func (w *ImageWriter) Resume(st ResumeState, read func(n uint32) (io.ReadCloser, error)) error {
	if len(w.chunks) != 0 || w.next != 0 {
		return fmt.Errorf("format: Resume after Add")
	}
	for i, s := range st.Segments {
		if s.Number != uint32(i) {
			return fmt.Errorf("format: resume: segment %d numbered %d", i, s.Number)
		}
		w.stored += s.Size
	}
	for _, c := range st.Chunks {
		if c.Kind == KindZero {
			w.zeros++
		}
	}
	for _, p := range st.Parity {
		w.parityBytes += p.Size
	}
	w.chunks = append(w.chunks, st.Chunks...)
	w.segments = append(w.segments, st.Segments...)
	w.parity = append(w.parity, st.Parity...)
	w.next = uint32(len(st.Segments))
	if w.enc == nil || w.next == 0 {
		return nil
	}
	stripe, pos := w.geo.Stripe(w.next)
	if pos == 0 {
		return nil // the last stored segment completed its stripe
	}
	w.enc.Reset()
	for p := range pos {
		n := stripe*uint32(w.geo.K) + uint32(p)
		rc, err := read(n)
		if err != nil {
			return fmt.Errorf("format: resume: read %s: %w", SegmentKey(n), err)
		}
		w.enc.BeginShard(p, n)
		k, err := io.Copy(w.enc, rc)
		rc.Close()
		if err == nil && k != st.Segments[n].Size {
			err = fmt.Errorf("%d bytes, want %d", k, st.Segments[n].Size)
		}
		if err != nil {
			return fmt.Errorf("format: resume: read %s: %w", SegmentKey(n), err)
		}
		w.enc.EndShard()
	}
	w.pending = true
	return nil
}

// flushStripe finishes the current stripe's parity and writes it out.
func (w *ImageWriter) flushStripe() error {
	stripe, _ := w.geo.Stripe(w.segments[len(w.segments)-1].Number)
	segs := w.enc.Finish(stripe, w.imageID)
	for i := range segs {
		if err := w.writeParity(&segs[i]); err != nil {
			return fmt.Errorf("format: write %s: %w", ParityKey(segs[i].Number), err)
		}
		sum := segs[i].Summary()
		w.parity = append(w.parity, sum)
		w.parityBytes += sum.Size
	}
	w.pending = false
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
	if w.err == nil && w.enc != nil && w.pending {
		w.err = w.flushStripe() // the last, short stripe
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
	if w.enc != nil {
		hdr.Parity = &Parity{Data: w.geo.K, Parity: w.geo.M, RowSize: w.geo.RowSize, Matrix: ParityMatrix}
		hdr.ParityBytes = w.parityBytes
		if !slices.Contains(hdr.Requires, FeatureParity) {
			hdr.Requires = append(hdr.Requires, FeatureParity)
		}
	}
	m := &Manifest{Header: hdr, Chunks: w.chunks, Segments: w.segments, Parity: w.parity}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("format: built an invalid manifest (a bug): %w", err)
	}
	return m, nil
}
