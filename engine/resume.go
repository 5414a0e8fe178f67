package engine

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"time"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// CheckpointKey is where a running capture records how far it got (spec
// §7.1), from before its first segment is stored and after every stored
// group of data segments (a stripe, with parity), so that --resume can
// continue from there. Readers ignore
// it; a finished capture deletes it.
const CheckpointKey = format.CheckpointKey

// readCheckpoint reads and authenticates dst's checkpoint. Every error
// wraps ErrBadInput: nothing was written.
func readCheckpoint(ctx context.Context, st store.Store) (*format.Checkpoint, error) {
	info, err := st.Stat(ctx, CheckpointKey)
	if errors.Is(err, store.ErrNotExist) {
		if _, merr := st.Stat(ctx, format.ManifestKey); merr == nil {
			return nil, fmt.Errorf("%w: %s is a complete image: nothing to resume", ErrBadInput, st)
		}
		return nil, fmt.Errorf("%w: %s has no capture checkpoint (%s): nothing to resume; capture into an empty destination instead", ErrBadInput, st, CheckpointKey)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s in %s: %w", ErrBadInput, CheckpointKey, st, err)
	}
	damaged := func(err error) error {
		return fmt.Errorf("%w: %s in %s cannot be trusted: %w; capture again into an empty destination", ErrBadInput, CheckpointKey, st, err)
	}
	if info.Size > format.MaxCheckpointSize {
		return nil, damaged(fmt.Errorf("%d bytes, at most %d", info.Size, format.MaxCheckpointSize))
	}
	rc, err := st.Get(ctx, CheckpointKey, 0, info.Size)
	if err != nil {
		return nil, fmt.Errorf("%w: read %s in %s: %w", ErrBadInput, CheckpointKey, st, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, format.MaxCheckpointSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s in %s: %w", ErrBadInput, CheckpointKey, st, err)
	}
	ck, err := format.ParseCheckpoint(b)
	if err != nil {
		return nil, damaged(err)
	}
	return ck, nil
}

// writeCheckpoint stores ck; a capture writes one before its first
// segment and one after each stored segment.
func (c *capture) writeCheckpoint(ctx context.Context, ck *format.Checkpoint) error {
	if ck.SHA256State == nil {
		state, err := hashState(sha256.New())
		if err != nil {
			return err
		}
		ck.SHA256State = state
	}
	b, err := ck.Marshal()
	if err != nil {
		return err
	}
	if err := c.dst.Put(ctx, CheckpointKey, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("write %s to %s: %w", CheckpointKey, c.dst, err)
	}
	return nil
}

// adopt takes the checkpoint's options where opts leaves them zero and
// refuses ones that contradict it.
func (o *CaptureOptions) adopt(ck *format.Checkpoint) error {
	mismatch := func(name string, got, want any) error {
		return fmt.Errorf("%w: --resume with %s %v, but the interrupted capture used %v: drop the flag or give the same value", ErrBadInput, name, got, want)
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = ck.ChunkSize
	} else if o.ChunkSize != ck.ChunkSize {
		return mismatch("--chunk-size", o.ChunkSize, ck.ChunkSize)
	}
	if o.Level == 0 {
		o.Level = ck.Level
	} else if o.Level != ck.Level {
		return mismatch("--level", o.Level, ck.Level)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = ck.SegmentSize
	} else if o.SegmentSize != ck.SegmentSize {
		return mismatch("--segment-size", o.SegmentSize, ck.SegmentSize)
	}
	switch ckWidth := max(ck.Width, 1); {
	case o.Width == 0:
		o.Width = ck.Width
	case ck.Parity == nil && o.Width != ckWidth:
		return mismatch("width", o.Width, ckWidth)
	}
	switch {
	case o.DigestOnly && !ck.DigestOnly:
		return mismatch("--digest-only", true, false)
	default:
		o.DigestOnly = ck.DigestOnly
	}
	switch {
	case o.Parity == nil:
		o.Parity = ck.Parity
	case ck.Parity == nil || o.Parity.K != ck.Parity.K || o.Parity.M != ck.Parity.M:
		return mismatch("--parity", o.Parity, ck.Parity)
	default:
		o.Parity = ck.Parity
	}
	return nil
}

// checkSameSource refuses at once a source whose size or identity differs
// from the checkpoint's; [capture.proveSource] then proves that the
// captured part's bytes are the same.
func checkSameSource(ck *format.Checkpoint, src *Source) error {
	c, s := ck.Source, src.describe()
	if c.Size != s.Size || c.Kind != s.Kind || c.Serial != s.Serial || c.WWN != s.WWN {
		return fmt.Errorf("%w: source %s (%d bytes) is not the one the interrupted capture read (%s, %d bytes): resume with the same source",
			ErrBadInput, src.Path, s.Size, c.Path, c.Size)
	}
	return nil
}

// prepareResume prepares a resumed capture: it rebuilds the image's state from
// the stored segments and checks it against the checkpoint, proves that
// the source is the one captured so far, and only then removes what the
// interrupted run left past its checkpoint.
func (c *capture) prepareResume(ctx context.Context) (format.ResumeState, error) {
	rs, err := c.storedState(ctx)
	if err != nil {
		return rs, err
	}
	if err := c.proveSource(ctx, rs.Chunks); err != nil {
		return rs, err
	}
	// Leftovers of the interrupted run (temporary files, incomplete
	// multipart uploads, segments stored after the last checkpoint) take
	// space and would be mistaken for the resumed run's.
	if cl, ok := store.AsCleaner(c.dst); ok {
		if err := cl.RemoveIncomplete(ctx); err != nil {
			return rs, fmt.Errorf("remove the interrupted capture's incomplete uploads from %s: %w", c.dst, err)
		}
	}
	if err := c.removeStrays(ctx); err != nil {
		return rs, err
	}
	c.first = c.ck.Chunks
	return rs, nil
}

// removeStrays deletes the segments past the checkpoint: a run killed
// while a group was being written leaves its segments, stored or not,
// and a run killed between storing a group and checkpointing it leaves
// the whole group and its parity.
func (c *capture) removeStrays(ctx context.Context) error {
	parityKept := uint32(0)
	if g := c.ck.Parity; g != nil {
		parityKept = stripesOf(c.ck.Segments, g.K) * uint32(g.M)
	}
	var strays []string
	for _, prefix := range []string{"data/", "parity/"} {
		err := c.dst.List(ctx, prefix, func(i store.Info) error {
			id, ok := format.ParseKey(i.Key)
			if ok && (id.Kind == format.SegmentData && id.Number >= c.ck.Segments ||
				id.Kind == format.SegmentParity && id.Number >= parityKept) {
				strays = append(strays, i.Key)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list %s: %w", c.dst, err)
		}
	}
	for _, key := range strays {
		if err := c.dst.Delete(ctx, key); err != nil {
			return fmt.Errorf("remove %s (stored after the last checkpoint) from %s: %w", key, c.dst, err)
		}
	}
	return nil
}

// storedState rebuilds, from the stored segments, the chunk table and
// segment tables of the first ck.Segments data segments (whole groups,
// spec §5.5) and of their stripes' parity, reading each segment's header
// and index (small ranged reads), not its data. It trusts no count of the
// checkpoint over what is stored: the stored segments must be exactly the
// ones it was sealed with, each segment's chunks in increasing order, each
// group's chunks before the next group's, and its chunk count must be the
// one they end at, or past it only by zero chunks (which proveSource
// re-reads). A continued capture (one bay at the source) takes the
// segments its continuation records, on drives no longer attached, from
// it and reads only those stored since; the digest then covers both.
// Errors wrap ErrBadInput.
func (c *capture) storedState(ctx context.Context) (format.ResumeState, error) {
	var rs format.ResumeState
	ck := c.ck
	zeros := zeroHashes{chunkSize: ck.ChunkSize, size: ck.Source.Size, hasher: c.hasher()}
	width := uint32(max(ck.Width, 1))
	if ck.Parity != nil {
		width = uint32(ck.Parity.K)
	}
	// A checkpoint falls on a group boundary; only the image's last
	// group, closed when the source ended, may be short.
	if ck.Segments%width != 0 && ck.Chunks != zeros.chunks() {
		return rs, fmt.Errorf("%w: %s counts %d data segments, not whole groups of %d, before the end of the source: capture again into an empty destination",
			ErrBadInput, CheckpointKey, ck.Segments, width)
	}
	type storedChunk struct {
		index uint64
		entry format.ChunkEntry
	}
	var stored []storedChunk
	var groupEnd, groupMax uint64 // one past the highest chunk of the groups before this one, and of this one so far
	// A continued capture adopts the segments its continuation state
	// records (on drives no longer attached) and reads only the rest.
	first := uint32(0)
	if c.cont != nil {
		first = c.cont.ck.Segments
		rs.Segments = slices.Clone(c.cont.State.Segments)
		rs.Chunks = slices.Clone(c.cont.State.Chunks)
		groupEnd, groupMax = uint64(len(rs.Chunks)), uint64(len(rs.Chunks))
	}
	for n := first; n < ck.Segments; n++ {
		if err := ctx.Err(); err != nil {
			return rs, err
		}
		if n%width == 0 {
			groupEnd = groupMax
		}
		sum, entries, err := c.readDataIndex(ctx, n)
		if err != nil {
			return rs, err
		}
		for k, e := range entries {
			switch {
			case e.Index >= ck.Chunks:
				return rs, cannotResume(n, fmt.Errorf("chunk %d past the checkpoint's %d", e.Index, ck.Chunks))
			case k > 0 && e.Index <= entries[k-1].Index:
				return rs, cannotResume(n, fmt.Errorf("chunk %d out of order", e.Index))
			case e.Index < groupEnd:
				return rs, cannotResume(n, fmt.Errorf("chunk %d lies before the last chunk of an earlier group", e.Index))
			}
			groupMax = max(groupMax, e.Index+1)
			stored = append(stored, storedChunk{e.Index, format.ChunkEntry{Hash: e.Hash, Offset: e.Offset, Segment: n,
				PayloadLen: e.PayloadLen, Kind: format.KindStored, Codec: e.Codec}})
		}
		rs.Segments = append(rs.Segments, sum)
	}
	// The segments of a group interleave their chunks: the table is
	// built in chunk order, the gaps between stored chunks being zero
	// chunks (proveSource re-reads them).
	slices.SortFunc(stored, func(a, b storedChunk) int { return cmp.Compare(a.index, b.index) })
	for k, sc := range stored {
		if k > 0 && sc.index == stored[k-1].index {
			return rs, cannotResume(sc.entry.Segment, fmt.Errorf("chunk %d stored twice (also in %s)", sc.index, format.DataID(stored[k-1].entry.Segment).Key()))
		}
		rs.Chunks = zeros.fill(rs.Chunks, sc.index)
		rs.Chunks = append(rs.Chunks, sc.entry)
	}
	// The chunks after the last stored one up to the checkpoint's count
	// were read and found zero (a disk's free space at its end): a
	// checkpoint written once the last group was stored counts them.
	// They are not taken on trust: proveSource re-reads them with the
	// rest. The count was bounded by the source's size when the
	// checkpoint was parsed.
	if uint64(len(rs.Chunks)) < ck.Chunks && ck.Chunks <= zeros.chunks() {
		rs.Chunks = zeros.fill(rs.Chunks, ck.Chunks)
	}
	if uint64(len(rs.Chunks)) != ck.Chunks {
		return rs, fmt.Errorf("%w: %s counts %d chunks but the stored segments end at chunk %d: capture again into an empty destination",
			ErrBadInput, CheckpointKey, ck.Chunks, len(rs.Chunks))
	}
	parity, err := c.readParity(ctx, first)
	if err != nil {
		return rs, err
	}
	if c.cont != nil {
		parity = append(slices.Clone(c.cont.State.Parity), parity...)
	}
	rs.Parity = parity
	if format.StoredDigest(rs.Segments, rs.Parity) != ck.Stored {
		return rs, fmt.Errorf("%w: the stored segments of %s are not the ones %s was written for: capture again into an empty destination",
			ErrBadInput, c.dst, CheckpointKey)
	}
	return rs, nil
}

func cannotResume(n uint32, err error) error {
	return fmt.Errorf("%w: cannot resume: %s: %w; capture again into an empty destination", ErrBadInput, format.DataID(n).Key(), err)
}

// readDataIndex reads data segment n's summary and index.
func (c *capture) readDataIndex(ctx context.Context, n uint32) (format.SegmentSummary, []format.IndexEntry, error) {
	key := format.DataID(n).Key()
	info, err := c.dst.Stat(ctx, key)
	if err != nil {
		return format.SegmentSummary{}, nil, cannotResume(n, err)
	}
	sum, entries, err := format.ReadSummary(store.ReaderAt(ctx, c.dst, key), info.Size, format.DataID(n), c.ck.ImageID)
	if err != nil {
		return format.SegmentSummary{}, nil, cannotResume(n, err)
	}
	return sum, entries, nil
}

// stripesOf returns the stripes of k data segments that d stored data
// segments make: a checkpoint records whole stripes, and a last, short
// one only once the source has ended, with its parity.
func stripesOf(d uint32, k int) uint32 { return (d + uint32(k) - 1) / uint32(k) }

// readParity reads the summaries of the parity segments of the stripes
// of the stored data segments from data segment first on (a whole
// stripe: checkpoints fall on stripe boundaries).
func (c *capture) readParity(ctx context.Context, first uint32) ([]format.SegmentSummary, error) {
	g := c.ck.Parity
	if g == nil {
		return nil, nil
	}
	var out []format.SegmentSummary
	for s := stripesOf(first, g.K); s < stripesOf(c.ck.Segments, g.K); s++ {
		for j := range g.M {
			n := g.ParityNumber(s, j)
			key := format.ParityID(n).Key()
			info, err := c.dst.Stat(ctx, key)
			if err != nil {
				return nil, fmt.Errorf("%w: cannot resume: %s: %w; capture again into an empty destination", ErrBadInput, key, err)
			}
			sum, _, err := format.ReadSummary(store.ReaderAt(ctx, c.dst, key), info.Size, format.ParityID(n), c.ck.ImageID)
			if err != nil {
				return nil, fmt.Errorf("%w: cannot resume: %s: %w; capture again into an empty destination", ErrBadInput, key, err)
			}
			out = append(out, sum)
		}
	}
	return out, nil
}

// zeroHashes fills the chunk table's gaps (chunks no segment holds) with
// zero chunks, computing each length's hash once.
type zeroHashes struct {
	chunkSize int
	size      int64
	hasher    *format.Hasher // the image's: an encrypted image's table records 32 zero bytes (ZeroTableHash)
	last      format.Hash
	lastLen   int64
}

// chunks is the number of chunks of the whole source.
func (z *zeroHashes) chunks() uint64 {
	return uint64((z.size + int64(z.chunkSize) - 1) / int64(z.chunkSize))
}

func (z *zeroHashes) fill(chunks []format.ChunkEntry, upto uint64) []format.ChunkEntry {
	for i := uint64(len(chunks)); i < upto; i++ {
		n := min(int64(z.chunkSize), z.size-int64(i)*int64(z.chunkSize))
		if n != z.lastLen {
			z.last, z.lastLen = z.hasher.ZeroTableHash(int(n)), n
		}
		chunks = append(chunks, format.ChunkEntry{Hash: z.last, Kind: format.KindZero})
	}
	return chunks
}

// proveSource reads the part of the source already captured again, in
// parallel, and compares every chunk with the hash the stored segments
// (or, for zero chunks, the gaps between them) record; it also recomputes
// the whole-source SHA-256 state, which must equal the checkpoint's. A
// source that differs is refused (bad input), so a resumed image is never
// two sources spliced together.
func (c *capture) proveSource(ctx context.Context, chunks []format.ChunkEntry) error {
	start := time.Now()
	whole := sha256.New()
	p := &chunkPipeline{
		src: c.src.reader(), name: c.src.Path, size: c.size, chunkSize: c.opts.ChunkSize,
		first: 0, last: uint64(len(chunks)),
		// Half the capture's budget: these buffers are garbage, not yet
		// collected, when the capture's own are allocated.
		shape:   shapeFor(c.opts.ChunkSize, c.opts.Workers, false, captureMemory/2),
		process: hashChunk,
		hasher:  c.hasher(), // keyed for an encrypted capture
		sink: func(j *chunkJob) error {
			if j.ec.Hash != chunks[j.index].Hash {
				off := int64(j.index) * int64(c.opts.ChunkSize)
				return fmt.Errorf("%w: source %s differs from the one the interrupted capture read (chunk %d, bytes %d-%d): resume with the same source, or capture again into an empty destination",
					ErrBadInput, c.src.Path, j.index, off, off+int64(len(j.raw))-1)
			}
			whole.Write(j.raw)
			c.meter.Add(int64(len(j.raw)))
			return nil
		},
	}
	if len(chunks) > 0 {
		if err := p.run(ctx); err != nil {
			return err
		}
	}
	state, err := hashState(whole)
	if err != nil {
		return err
	}
	if !bytes.Equal(state, c.ck.SHA256State) {
		return fmt.Errorf("%w: the whole-source hash state in %s does not match the source: capture again into an empty destination", ErrBadInput, CheckpointKey)
	}
	c.whole = whole
	c.rehash = min(int64(len(chunks))*int64(c.opts.ChunkSize), c.size)
	c.rehashT = time.Since(start)
	return nil
}

func hashState(h hash.Hash) ([]byte, error) {
	return h.(encoding.BinaryMarshaler).MarshalBinary()
}
