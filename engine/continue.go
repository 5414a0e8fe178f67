package engine

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// One bay at the source: a capture whose destination (a courier volume
// set) is full keeps, on the source host, what continuing needs without
// the full drives: the checkpoint and the chunk table rows and segment
// summaries of everything stored so far, which is what the final
// manifest needs of those segments. The next run writes to the new drive
// alone and adopts that state instead of re-reading the segments from the
// drives that have left.

// Continuation is the state a capture stopped on full volumes continues
// from without them. It is bound to the image and to exactly the segments
// stored so far: its checkpoint is sealed (spec §7.1) and records
// [format.StoredDigest] of the summaries it holds, which [ParseContinuation]
// and [Continuation.check] recompute. The chunk hashes it holds are proven
// again when the capture continues, as every resumed capture proves the
// part of the source captured so far (the source is re-read and compared).
type Continuation struct {
	// Checkpoint is the sealed checkpoint of the segments stored so far.
	Checkpoint []byte
	// State is their chunk table and data and parity segment summaries.
	State format.ResumeState

	ck *format.Checkpoint
}

// maxContinuationRows bounds the encoded rows [ParseContinuation] reads:
// the chunk table capture builds is at most maxChunkTable in memory, and
// its gob encoding is no larger; segment summaries add little.
const maxContinuationRows = maxChunkTable + 64<<20

// ImageID is the image's ID, hex, as the checkpoint records it.
func (ct *Continuation) ImageID() string { return hex.EncodeToString(ct.ck.ImageID[:]) }

// Stored is the number of data segments stored so far.
func (ct *Continuation) Stored() uint32 { return ct.ck.Segments }

// Done is the number of source bytes captured so far (whole chunks).
func (ct *Continuation) Done() int64 {
	return min(int64(ct.ck.Chunks)*int64(ct.ck.ChunkSize), ct.ck.Source.Size)
}

// Source is the captured source as the checkpoint describes it.
func (ct *Continuation) Source() format.Source { return ct.ck.Source }

// ParityPerData is the parity geometry's M and K (0 and 1 without parity).
func (ct *Continuation) ParityPerData() (m, k int) {
	if g := ct.ck.Parity; g != nil {
		return g.M, g.K
	}
	return 0, 1
}

// ChunkSize is the capture's chunk size.
func (ct *Continuation) ChunkSize() int { return ct.ck.ChunkSize }

// StoredBytes is what the segments stored so far hold, data and parity.
func (ct *Continuation) StoredBytes() int64 {
	var n int64
	for _, s := range ct.State.Segments {
		n += s.Size
	}
	for _, s := range ct.State.Parity {
		n += s.Size
	}
	return n
}

// Rows encodes the state's chunk table and segment summaries (gob: the
// encoding follows the Go types, not the on-disk index layout).
func (ct *Continuation) Rows() ([]byte, error) {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&ct.State); err != nil {
		return nil, fmt.Errorf("encode the continuation state: %w", err)
	}
	return b.Bytes(), nil
}

// ParseContinuation decodes a continuation from its sealed checkpoint and
// its rows (as [Continuation.Rows] encoded them) and checks that they
// belong together. Errors wrap ErrBadInput: nothing was written.
func ParseContinuation(checkpoint, rows []byte) (*Continuation, error) {
	ck, err := format.ParseCheckpoint(checkpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: its checkpoint cannot be trusted: %w", ErrBadInput, err)
	}
	if len(rows) > maxContinuationRows {
		return nil, fmt.Errorf("%w: %d bytes of rows, at most %d", ErrBadInput, len(rows), maxContinuationRows)
	}
	ct := &Continuation{Checkpoint: slices.Clone(checkpoint), ck: ck}
	if err := gob.NewDecoder(bytes.NewReader(rows)).Decode(&ct.State); err != nil {
		return nil, fmt.Errorf("%w: its rows cannot be read: %w", ErrBadInput, err)
	}
	if err := ct.check(); err != nil {
		return nil, err
	}
	return ct, nil
}

// check proves that the state is the one the checkpoint was sealed for:
// the counts, the numbering of the segments, and the stored-segment
// digest over their summaries.
func (ct *Continuation) check() error {
	ck, rs := ct.ck, ct.State
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrBadInput}, args...)...)
	}
	if uint64(len(rs.Chunks)) != ck.Chunks || uint32(len(rs.Segments)) != ck.Segments {
		return bad("it holds %d chunks in %d data segments, its checkpoint %d in %d", len(rs.Chunks), len(rs.Segments), ck.Chunks, ck.Segments)
	}
	wantParity := 0
	if g := ck.Parity; g != nil {
		wantParity = int(stripesOf(ck.Segments, g.K)) * g.M
	}
	if len(rs.Parity) != wantParity {
		return bad("it holds %d parity segment summaries, its checkpoint's stripes %d", len(rs.Parity), wantParity)
	}
	for i, s := range rs.Segments {
		if s.Kind != format.SegmentData || s.Number != uint32(i) {
			return bad("data segment summary %d is numbered %d", i, s.Number)
		}
	}
	for i, e := range rs.Chunks {
		if e.Kind == format.KindStored && e.Segment >= ck.Segments {
			return bad("chunk %d lies in data segment %d, past the %d stored", i, e.Segment, ck.Segments)
		}
	}
	if format.StoredDigest(rs.Segments, rs.Parity) != ck.Stored {
		return bad("its segment summaries are not the ones its checkpoint was sealed for (stored-segment digest differs)")
	}
	return nil
}

// currentCheckpoint is the checkpoint a continued capture goes on from:
// dst's, once the new drive holds one (the continuation was itself
// interrupted after storing a group), else the continuation's. dst's must
// be of the same image and not behind the continuation.
func (c *capture) currentCheckpoint(ctx context.Context) (*format.Checkpoint, error) {
	if _, err := c.dst.Stat(ctx, CheckpointKey); errors.Is(err, store.ErrNotExist) {
		ck := *c.cont.ck
		return &ck, nil
	}
	ck, err := readCheckpoint(ctx, c.dst)
	if err != nil {
		return nil, err
	}
	if ck.ImageID != c.cont.ck.ImageID || ck.Segments < c.cont.ck.Segments || ck.Chunks < c.cont.ck.Chunks {
		return nil, fmt.Errorf("%w: %s in %s (image %x, %d data segments) does not continue the continuation state (image %x, %d data segments): give an empty drive",
			ErrBadInput, CheckpointKey, c.dst, ck.ImageID, ck.Segments, c.cont.ck.ImageID, c.cont.ck.Segments)
	}
	return ck, nil
}

// ContinueCapture continues, into dst (the new drives only), a capture
// whose earlier segments are on drives no longer attached, from cont: as
// [Capture] with opts.Resume, but the segments cont records are adopted
// from it instead of being read from dst. The source is proven to be the
// one captured so far, as every resumed capture does. Errors as
// [Capture]'s.
func ContinueCapture(ctx context.Context, source *Source, dst store.Store, opts CaptureOptions, cont *Continuation) (*CaptureResult, error) {
	if cont == nil || cont.ck == nil {
		return nil, fmt.Errorf("%w: continue a capture: no continuation state", ErrBadInput)
	}
	unlock, err := lockImage(ctx, dst, "capture")
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := planContinue(ctx, source, dst, opts, cont)
	if err != nil {
		return nil, err
	}
	res, err := c.run(ctx)
	return res, c.classify(ctx, err)
}

// planContinue is planCapture for a continued capture. It writes
// nothing; every error wraps ErrBadInput.
func planContinue(ctx context.Context, src *Source, dst store.Store, opts CaptureOptions, cont *Continuation) (*capture, error) {
	opts.Resume = true
	c := &capture{src: src, dst: dst, resume: true, size: src.Info.Size, cont: cont}
	ck, err := c.currentCheckpoint(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.resumeFrom(ck, src, &opts); err != nil {
		return nil, err
	}
	if err := c.setOptions(opts); err != nil {
		return nil, err
	}
	return c, nil
}

// SuspendCapture records what a capture into dst that stopped (its
// volumes full) needs to continue onto new drives without dst: it reads
// dst's checkpoint (or, when dst holds none yet, prior's), rebuilds the
// state of the segments stored so far (from prior for those before it,
// reading the indexes of the rest from dst) and checks it against the
// checkpoint, and removes from dst what the stopped run stored past its
// checkpoint, which a later run writes again elsewhere. prior is nil for
// a capture that had all its drives attached. Errors wrap ErrBadInput
// when the stored state cannot be trusted.
func SuspendCapture(ctx context.Context, dst store.Store, prior *Continuation) (*Continuation, error) {
	unlock, err := lockImage(ctx, dst, "capture")
	if err != nil {
		return nil, err
	}
	defer unlock()
	c := &capture{dst: dst, cont: prior}
	if prior != nil {
		c.ck, err = c.currentCheckpoint(ctx)
	} else {
		c.ck, err = readCheckpoint(ctx, dst)
	}
	if err != nil {
		return nil, err
	}
	// An encrypted capture's checkpoint is opened with the resume key
	// this host keeps, and sealed again below.
	if c.keys, err = openCheckpoint(c.ck, CaptureOptions{}); err != nil {
		return nil, err
	}
	rs, err := c.storedState(ctx)
	if err != nil {
		return nil, err
	}
	if cl, ok := store.AsCleaner(dst); ok {
		if err := cl.RemoveIncomplete(ctx); err != nil {
			return nil, fmt.Errorf("remove the stopped capture's incomplete uploads from %s: %w", dst, err)
		}
	}
	if err := c.removeStrays(ctx); err != nil {
		return nil, err
	}
	b, err := c.marshalCheckpoint(c.ck)
	if err != nil {
		return nil, err
	}
	ck, err := format.ParseCheckpoint(b)
	if err != nil {
		return nil, err
	}
	return &Continuation{Checkpoint: b, State: rs, ck: ck}, nil
}
