package format

import (
	"encoding/hex"
	"fmt"
	"io"
	"slices"
)

// SegmentCreator opens the destination of a new data segment under key.
// Close on the returned writer ends the segment. A creator may store
// segments synchronously (Close then reports whether the segment was
// stored completely and durably) or in the background (a capture's
// uploader: Close then reports only failures of earlier segments, and the
// creator itself says when every segment has arrived).
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

	cur  *segmentWriter
	curW io.WriteCloser

	geo         Geometry
	enc         *stripeEncoder // nil without parity
	writeParity func(*ParitySegment) error
	parity      []SegmentSummary
	parityBytes int64
	pending     bool // the stripe encoder holds shards not yet flushed
	reserved    bool // the stripe encoder's buffers are sized
	onSegment   func(SegmentDone) error
	digest      storedDigest
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

// ParityShardSize is the most a data segment of an image with the given
// segment and chunk sizes holds, and so the size of each parity
// accumulator: the segment size, one more frame, the index of its frames
// and the footer.
func ParityShardSize(segmentSize int64, chunkSize int) int64 {
	frame := int64(FrameHeaderSize + chunkSize)
	entry := int64(indexEntryFixed + NumBlocks(chunkSize)*blockDigestLen)
	return segmentSize + frame + maxFramesPerSegment*entry + FooterSize
}

// SetParity makes the writer compute Reed-Solomon parity of geometry g
// over its data segments (spec §9) and hand each finished parity segment to
// write, once the stripe's last data segment is closed and before the next
// stripe's first one begins. Call it before the first Add.
func (w *ImageWriter) SetParity(g Geometry, write func(*ParitySegment) error) error {
	enc, err := newStripeEncoder(g)
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
		return errWriterClosed
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
		w.enc.reserve(ParityShardSize(w.segmentSize, ec.RawLen))
		w.reserved = true
	}
	if w.cur == nil {
		key := DataID(w.next).Key()
		wc, err := w.create(key)
		if err != nil {
			w.err = fmt.Errorf("format: create %s: %w", key, err)
			return w.err
		}
		w.curW = wc
		var sw io.Writer = wc
		if w.enc != nil {
			_, pos := w.geo.Stripe(DataID(w.next))
			if pos == 0 {
				w.enc.reset()
			}
			w.enc.beginShard(pos, w.next)
			w.pending = true
			sw = io.MultiWriter(wc, w.enc)
		}
		w.cur = newSegmentWriter(sw, w.next, w.imageID)
		w.next++
	}
	off, err := w.cur.writeChunk(index, ec)
	if err != nil {
		w.err = err
		return err
	}
	w.chunks = append(w.chunks, ChunkEntry{Hash: ec.Hash, Offset: off, Segment: w.cur.number,
		PayloadLen: uint32(len(ec.Payload)), Kind: KindStored, Codec: ec.Codec})
	// A segment closes at the segment size, or at maxFramesPerSegment
	// frames, so that its index (held in memory until it is written)
	// stays small however well the chunks compress.
	if w.cur.size() >= w.segmentSize || w.cur.frames >= maxFramesPerSegment {
		w.err = w.closeSegment()
	}
	return w.err
}

// AddBase records the next chunk as unchanged from the base image (delta
// images, kind KindBase): nothing is stored, hash is the chunk's hash.
func (w *ImageWriter) AddBase(hash Hash) error {
	if w.closed {
		return errWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	w.chunks = append(w.chunks, ChunkEntry{Hash: hash, Kind: KindBase})
	return nil
}

func (w *ImageWriter) closeSegment() error {
	sum, err := w.cur.close()
	if cerr := w.curW.Close(); err == nil {
		err = cerr
	}
	w.cur, w.curW = nil, nil
	if err != nil {
		return fmt.Errorf("format: close %s: %w", DataID(sum.Number).Key(), err)
	}
	w.segments = append(w.segments, sum)
	w.digest.add(sum)
	w.stored += sum.Size
	if w.enc != nil {
		w.enc.endShard()
		if _, pos := w.geo.Stripe(DataID(sum.Number)); pos == w.geo.K-1 {
			if err := w.flushStripe(); err != nil {
				return err
			}
		}
	}
	if w.onSegment != nil {
		return w.onSegment(SegmentDone{Segment: sum, Chunks: uint64(len(w.chunks)), Stored: w.digest.sum()})
	}
	return nil
}

// SegmentDone describes the image after a data segment was closed.
type SegmentDone struct {
	Segment SegmentSummary // the segment just closed
	Chunks  uint64         // chunks recorded so far; the last is the segment's last frame
	// Stored is [StoredDigest] of the data segments closed so far and of
	// the parity segments written so far.
	Stored Hash
}

// OnSegment registers fn, called after each data segment is closed (its
// writer's Close returned) and, when it completes a stripe, after the
// stripe's parity segments were handed to the parity writer. With a
// creator that stores in the background the segment may still be in
// flight: a capture's checkpoint waits for it before recording it.
func (w *ImageWriter) OnSegment(fn func(SegmentDone) error) { w.onSegment = fn }

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
		if s.Number != uint32(i) || s.Kind != SegmentData {
			return fmt.Errorf("format: resume: segment %d numbered %d", i, s.Number)
		}
		w.stored += s.Size
		w.digest.add(s)
	}
	for _, c := range st.Chunks {
		if c.Kind == KindZero {
			w.zeros++
		}
	}
	for _, p := range st.Parity {
		w.parityBytes += p.Size
		w.digest.add(p)
	}
	w.chunks = append(w.chunks, st.Chunks...)
	w.segments = append(w.segments, st.Segments...)
	w.parity = append(w.parity, st.Parity...)
	w.next = uint32(len(st.Segments))
	if w.enc == nil || w.next == 0 {
		return nil
	}
	stripe, pos := w.geo.Stripe(DataID(w.next))
	if pos == 0 {
		return nil // the last stored segment completed its stripe
	}
	w.enc.reset()
	for p := range pos {
		n := stripe*uint32(w.geo.K) + uint32(p)
		rc, err := read(n)
		if err != nil {
			return fmt.Errorf("format: resume: read %s: %w", DataID(n).Key(), err)
		}
		w.enc.beginShard(p, n)
		k, err := io.Copy(w.enc, rc)
		rc.Close()
		if err == nil && k != st.Segments[n].Size {
			err = fmt.Errorf("%d bytes, want %d", k, st.Segments[n].Size)
		}
		if err != nil {
			return fmt.Errorf("format: resume: read %s: %w", DataID(n).Key(), err)
		}
		w.enc.endShard()
	}
	w.pending = true
	return nil
}

// flushStripe finishes the current stripe's parity and writes it out.
func (w *ImageWriter) flushStripe() error {
	stripe, _ := w.geo.Stripe(DataID(w.segments[len(w.segments)-1].Number))
	segs := w.enc.finish(stripe, w.imageID)
	for i := range segs {
		if err := w.writeParity(&segs[i]); err != nil {
			return fmt.Errorf("format: write %s: %w", ParityID(segs[i].Number).Key(), err)
		}
		sum := segs[i].summary()
		w.parity = append(w.parity, sum)
		w.digest.add(sum)
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
		_ = aw.CloseWithError(cause) // the cause is already known
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
		return nil, errWriterClosed
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
	hdr.Format, hdr.Version = "seedship", formatVersion
	hdr.ImageID = hex.EncodeToString(w.imageID[:])
	hdr.BlockSize, hdr.BlockDigestLen, hdr.ChunkHash = blockSize, blockDigestLen, "sha256-tree"
	hdr.SegmentSize = w.segmentSize
	hdr.Chunks, hdr.ZeroChunks, hdr.StoredBytes = uint64(len(w.chunks)), w.zeros, w.stored
	if w.enc != nil {
		hdr.Parity = &Parity{Data: w.geo.K, Parity: w.geo.M, RowSize: w.geo.RowSize, Matrix: parityMatrix}
		hdr.ParityBytes = w.parityBytes
		if !slices.Contains(hdr.Requires, featureParity) {
			hdr.Requires = append(hdr.Requires, featureParity)
		}
	}
	m := &Manifest{Header: hdr, Chunks: w.chunks, Segments: w.segments, Parity: w.parity}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("format: built an invalid manifest (a bug): %w", err)
	}
	return m, nil
}
