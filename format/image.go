package format

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/seedship/seedship/seal"
)

// SegmentCreator opens the destination of a new data segment under key.
// Close on the returned writer ends the segment. A creator may store
// segments synchronously (Close then reports whether the segment was
// stored completely and durably) or in the background (a capture's
// uploader: Close then reports only failures of earlier segments, and the
// creator itself says when every segment has arrived).
type SegmentCreator func(key string) (io.WriteCloser, error)

// ImageWriter lays encoded chunks, in index order, into data segments
// and builds the manifest's tables. Segments are written in *groups* of
// width G (spec §5.5): the K data segments of a parity stripe, or the W
// segments a capture grows together without parity (1 by default: one
// segment at a time). Each stored chunk's frame goes to the group's
// segment that is shortest so far (ties: the lowest position), so the
// segments of a group grow together and end within one frame of each
// other; the group closes once each of its segments holds the segment
// size, or its segments hold 4,096 frames together. It is not safe for
// concurrent use; its first error is sticky. The caller writes the
// manifest (last, atomically) from the result of [ImageWriter.Finish].
type ImageWriter struct {
	create      SegmentCreator
	imageID     [16]byte
	segmentSize int64

	chunks   []ChunkEntry
	segments []SegmentSummary
	zeros    uint64
	stored   int64

	width      int            // G, segments per group
	group      []*openSegment // the current group's segments by position; nil until its first frame
	groupStart uint32         // number of the current group's first segment
	frames     int            // frames in the current group
	ended      bool           // a resumed image whose last group was closed short: no more frames

	geo         Geometry
	enc         *stripeEncoder // nil without parity
	writeParity func(*ParitySegment) error
	parityConc  bool // writeParity may run for a stripe's parity segments at once
	parity      []SegmentSummary
	parityBytes int64
	reserved    bool // the stripe encoder's buffers are sized
	onSegment   func(SegmentDone) error
	digest      storedDigest
	keys        *seal.Keys // an encrypted image (SetKeys)
	err         error
	closed      bool
}

// openSegment is a data segment of the current group being written.
type openSegment struct {
	sw *segmentWriter
	wc io.WriteCloser
}

// fill is how far the segment has grown: the bytes it would have if it
// were closed now, less the footer (header, frames and index entries).
func (o *openSegment) fill() int64 { return o.sw.size() + int64(len(o.sw.index)) }

// NewImageWriter returns a writer for an image with the given ID whose data
// segments close once they hold segmentSize bytes. expectChunks, if known,
// sizes the chunk table up front.
func NewImageWriter(create SegmentCreator, imageID [16]byte, segmentSize int64, expectChunks uint64) (*ImageWriter, error) {
	if segmentSize < MinSegmentSize {
		return nil, fmt.Errorf("format: segment size %d below minimum %d", segmentSize, MinSegmentSize)
	}
	return &ImageWriter{create: create, imageID: imageID, segmentSize: segmentSize, width: 1, group: make([]*openSegment, 1),
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

// MaxGroupWidth bounds the width of a group of data segments without
// parity (SetWidth): as many as a stripe may hold.
const MaxGroupWidth = 255

// SetWidth makes the writer grow w data segments together (an image
// without parity spread over w volumes, written in parallel). The default
// is 1. Call it before the first Add; SetParity sets the width to K.
func (w *ImageWriter) SetWidth(width int) error {
	if width < 1 || width > MaxGroupWidth {
		return fmt.Errorf("format: group width %d: use 1 to %d", width, MaxGroupWidth)
	}
	if len(w.segments) != 0 || w.groupOpen() {
		return fmt.Errorf("format: SetWidth after the first segment")
	}
	if w.enc != nil && width != w.geo.K {
		return fmt.Errorf("format: group width %d with parity %d+%d: a parity image's groups are its stripes", width, w.geo.K, w.geo.M)
	}
	w.width, w.group = width, make([]*openSegment, width)
	return nil
}

// SetParity makes the writer compute Reed-Solomon parity of geometry g
// over its data segments (spec §9), growing the K data segments of each
// stripe together, and hand each finished parity segment to write, once
// the stripe's data segments are closed and before the next stripe's
// first one begins. Call it before the first Add.
func (w *ImageWriter) SetParity(g Geometry, write func(*ParitySegment) error) error {
	enc, err := newStripeEncoder(g)
	if err != nil {
		return err
	}
	if len(w.segments) != 0 || w.groupOpen() {
		return fmt.Errorf("format: SetParity after the first segment")
	}
	w.geo, w.enc, w.writeParity = g, enc, write
	w.width, w.group = g.K, make([]*openSegment, g.K)
	return nil
}

// SetKeys makes the image an encrypted one (feature "aead", spec §11)
// with keys k, which must be the image's (derived for its ID): Add then
// accepts only sealed chunks (from a codec given the same keys, through
// EncodeAt) and records zero chunks with 32 zero bytes as H, and Finish
// returns a manifest that marshals sealed and MACed with k (its header
// must carry the encryption object, NewEncryption). Call it before the
// first Add.
func (w *ImageWriter) SetKeys(k *seal.Keys) error {
	if k.ImageID() != w.imageID {
		return fmt.Errorf("format: keys of image %x for the writer of image %x", k.ImageID(), w.imageID)
	}
	if len(w.chunks) != 0 {
		return fmt.Errorf("format: SetKeys after the first chunk")
	}
	w.keys = k
	return nil
}

// ConcurrentParityWrites says that the write function given to
// SetParity is safe to call concurrently: the M parity segments of a
// stripe are then handed over at once, so that storing them (M files,
// each up to a segment's size, while the capture waits: their buffers
// are the next stripe's) takes the time of one, not of M.
func (w *ImageWriter) ConcurrentParityWrites() { w.parityConc = true }

// groupOpen reports whether the current group has a segment.
func (w *ImageWriter) groupOpen() bool { return w.group[0] != nil }

// place returns the position the next frame goes to: the shortest
// segment of the group, an absent one counting as empty; ties go to the
// lowest position.
func (w *ImageWriter) place() int {
	best, bestFill := 0, int64(-1)
	for p, o := range w.group {
		var f int64
		if o != nil {
			f = o.fill()
		}
		if bestFill < 0 || f < bestFill {
			best, bestFill = p, f
		}
	}
	return best
}

// groupFull reports whether the current group closes: each of its
// segments holds the segment size, or they hold maxFramesPerSegment
// frames together (so the indexes held in memory stay small however well
// the chunks compress).
func (w *ImageWriter) groupFull() bool {
	if w.frames >= maxFramesPerSegment {
		return true
	}
	for _, o := range w.group {
		if o == nil || o.fill() < w.segmentSize {
			return false
		}
	}
	return true
}

// Add records the next chunk. A stored chunk's frame is appended to the
// shortest segment of the current group; a zero chunk only gets a table
// entry.
func (w *ImageWriter) Add(ec *EncodedChunk) error {
	if w.closed {
		return errWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	index := uint64(len(w.chunks))
	if ec.Zero {
		h := ec.Hash
		if w.keys != nil {
			h = Hash{} // spec §11.4: the kind says it is zero
		}
		w.chunks = append(w.chunks, ChunkEntry{Hash: h, Kind: KindZero})
		w.zeros++
		return nil
	}
	if ec.Codec.Sealed() != (w.keys != nil) {
		w.err = fmt.Errorf("format: chunk %d has codec %s, but the image is %sencrypted: a codec with the image's keys (SetKeys) encodes its chunks",
			index, ec.Codec, map[bool]string{true: "", false: "not "}[w.keys != nil])
		return w.err
	}
	if w.ended {
		w.err = fmt.Errorf("format: chunk %d stored after the image's last group was closed", index)
		return w.err
	}
	if w.enc != nil && !w.reserved {
		// A shard is at most the segment size, one more frame, the
		// index of its frames and the footer: size the parity buffers
		// once, so they are never regrown (and the old ones left to
		// the collector) while a stripe streams by.
		w.enc.reserve(ParityShardSize(w.segmentSize, ec.RawLen))
		w.reserved = true
	}
	p := w.place()
	o := w.group[p]
	if o == nil {
		var err error
		if o, err = w.openSegment(p); err != nil {
			w.err = err
			return err
		}
	}
	off, err := o.sw.writeChunk(index, ec)
	if err != nil {
		w.err = err
		return err
	}
	w.chunks = append(w.chunks, ChunkEntry{Hash: ec.Hash, Offset: off, Segment: o.sw.number,
		PayloadLen: uint32(len(ec.Payload)), Kind: KindStored, Codec: ec.Codec})
	w.frames++
	if w.groupFull() {
		w.err = w.closeGroup()
	}
	return w.err
}

// openSegment begins the data segment at position p of the current group.
func (w *ImageWriter) openSegment(p int) (*openSegment, error) {
	n := w.groupStart + uint32(p)
	if n > maxSegmentNumber {
		return nil, fmt.Errorf("format: data segment %d: more than %d segments", n, maxSegmentNumber+1)
	}
	key := DataID(n).Key()
	wc, err := w.create(key)
	if err != nil {
		return nil, fmt.Errorf("format: create %s: %w", key, err)
	}
	var sw io.Writer = wc
	if w.enc != nil {
		w.enc.beginShard(p, n)
		sw = io.MultiWriter(wc, w.enc.shard(p))
	}
	o := &openSegment{sw: newSegmentWriter(sw, n, w.imageID), wc: wc}
	w.group[p] = o
	return o, nil
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

// closeGroup closes the current group's segments in position order,
// writes the stripe's parity, and reports the closed group to the
// OnSegment function.
func (w *ImageWriter) closeGroup() error {
	for p, o := range w.group {
		if o == nil {
			continue
		}
		sum, err := o.sw.close()
		if cerr := o.wc.Close(); err == nil {
			err = cerr
		}
		w.group[p] = nil
		if err != nil {
			return fmt.Errorf("format: close %s: %w", DataID(o.sw.number).Key(), err)
		}
		w.segments = append(w.segments, sum)
		w.digest.add(sum)
		w.stored += sum.Size
		if w.enc != nil {
			w.enc.endShard(p)
		}
	}
	last := w.segments[len(w.segments)-1]
	if w.enc != nil {
		if err := w.flushStripe(w.groupStart / uint32(w.geo.K)); err != nil {
			return err
		}
	}
	w.groupStart += uint32(w.width)
	w.frames = 0
	if w.onSegment != nil {
		return w.onSegment(SegmentDone{Segment: last, Chunks: uint64(len(w.chunks)), Stored: w.digest.sum()})
	}
	return nil
}

// SegmentDone describes the image after a group of data segments (a
// stripe, with parity) was closed.
type SegmentDone struct {
	Segment SegmentSummary // the group's last segment, the highest numbered so far
	Chunks  uint64         // chunks recorded so far; the last is the group's last frame
	// Stored is [StoredDigest] of the data segments closed so far and of
	// the parity segments written so far.
	Stored Hash
}

// OnSegment registers fn, called after each group of data segments is
// closed (their writers' Close returned) and, with parity, after the
// stripe's parity segments were handed to the parity writer. With a
// creator that stores in the background the segment may still be in
// flight: a capture's checkpoint waits for it before recording it.
func (w *ImageWriter) OnSegment(fn func(SegmentDone) error) { w.onSegment = fn }

// ResumeState is what a resumed capture recovers from stored segments:
// the chunk table up to the last stored group's last chunk, the data
// segments of the complete groups, and their parity segments.
type ResumeState struct {
	Chunks   []ChunkEntry
	Segments []SegmentSummary
	Parity   []SegmentSummary
}

// Resume continues an interrupted image: it adopts st, so that the next
// Add is chunk len(st.Chunks) and the next group follows the last one.
// st must end at a group boundary (a checkpoint is written only there);
// a last group of fewer segments than the width was the image's end, so
// no frame may follow it. Call it once, after SetParity or SetWidth and
// before the first Add.
func (w *ImageWriter) Resume(st ResumeState) error {
	if len(w.chunks) != 0 || len(w.segments) != 0 || w.groupOpen() {
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
	d := len(st.Segments)
	w.groupStart = uint32((d + w.width - 1) / w.width * w.width)
	w.ended = d%w.width != 0
	return nil
}

// flushStripe finishes stripe's parity, writes it out and prepares the
// encoder for the next stripe.
func (w *ImageWriter) flushStripe(stripe uint32) error {
	segs := w.enc.finish(stripe, w.imageID)
	errs := make([]error, len(segs))
	if w.parityConc {
		var wg sync.WaitGroup
		for i := range segs {
			wg.Go(func() { errs[i] = w.writeParity(&segs[i]) })
		}
		wg.Wait()
	}
	for i := range segs {
		if !w.parityConc {
			errs[i] = w.writeParity(&segs[i])
		}
		if errs[i] != nil {
			return fmt.Errorf("format: write %s: %w", ParityID(segs[i].Number).Key(), errs[i])
		}
		sum := segs[i].summary()
		w.parity = append(w.parity, sum)
		w.digest.add(sum)
		w.parityBytes += sum.Size
	}
	w.enc.reset()
	return nil
}

// Abort abandons the unfinished segments of the current group: each
// writer that has a CloseWithError method (as *io.PipeWriter does) gets
// it called, so the store discards the partial object; others are left
// unclosed. It returns the sticky error.
func (w *ImageWriter) Abort(cause error) error {
	for p, o := range w.group {
		if o == nil {
			continue
		}
		if aw, ok := o.wc.(interface{ CloseWithError(error) error }); ok {
			_ = aw.CloseWithError(cause) // the cause is already known
		}
		w.group[p] = nil
	}
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
	if w.err == nil && w.groupOpen() {
		w.err = w.closeGroup() // the last group, and its stripe's parity
	}
	w.closed = true
	if w.err != nil {
		return nil, w.err
	}
	hdr.Format, hdr.Version = "seedship", formatVersion
	hdr.ImageID = hex.EncodeToString(w.imageID[:])
	hdr.BlockSize, hdr.BlockDigestLen, hdr.ChunkHash = blockSize, blockDigestLen, ChunkHashPlain
	if w.keys != nil {
		if hdr.Encryption == nil {
			return nil, fmt.Errorf("format: an encrypted image's header needs its encryption object (NewEncryption)")
		}
		hdr.ChunkHash = ChunkHashKeyed
		if !slices.Contains(hdr.Requires, FeatureAEAD) {
			hdr.Requires = append(hdr.Requires, FeatureAEAD)
		}
	}
	hdr.SegmentSize = w.segmentSize
	if w.enc == nil && w.width > 1 {
		hdr.Width = w.width
	}
	hdr.Chunks, hdr.ZeroChunks, hdr.StoredBytes = uint64(len(w.chunks)), w.zeros, w.stored
	if w.enc != nil {
		hdr.Parity = &Parity{Data: w.geo.K, Parity: w.geo.M, RowSize: w.geo.RowSize, Matrix: parityMatrix}
		hdr.ParityBytes = w.parityBytes
		if !slices.Contains(hdr.Requires, featureParity) {
			hdr.Requires = append(hdr.Requires, featureParity)
		}
	}
	m := &Manifest{Header: hdr, Chunks: w.chunks, Segments: w.segments, Parity: w.parity}
	if w.keys != nil {
		if err := m.SetKeys(w.keys); err != nil {
			return nil, err
		}
	}
	if err := m.validate(); err != nil {
		if errors.Is(err, errDigestOnlyAEAD) {
			return nil, err
		}
		return nil, fmt.Errorf("format: built an invalid manifest (a bug): %w", err)
	}
	return m, nil
}
