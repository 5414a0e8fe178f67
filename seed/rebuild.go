package seed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/seedship/seedship/format"
)

// SegmentSink receives the bytes of one rebuilt segment, front to back.
// *store.PipeWriter (from store.PutPipe) is one: the segment replaces the
// damaged one atomically when Close succeeds, and CloseWithError discards
// it.
type SegmentSink interface {
	io.Writer
	// Close ends a complete segment and reports whether it was stored.
	Close() error
	// CloseWithError abandons the segment: nothing is stored.
	CloseWithError(err error) error
}

// RebuildSegments rebuilds from parity every segment that damage reports
// damaged or missing, streaming each into the sink create returns for it
// (size is the segment's full size). Each surviving segment of an affected
// stripe is read once. Every rebuilt segment is checked as it streams, as
// by [Image.CheckStream] (a data segment's frames against the stored
// digests of its rebuilt index, and its chunks opened when the image can
// be opened; a parity segment's rows against their CRCs and rows digest),
// so it needs no key, and a segment that fails is abandoned
// (CloseWithError) and its stripe reported not Repairable, with the cause
// in Err. Segments of stripes beyond repair are abandoned or never
// begun. It never writes to the image itself: the caller's sinks decide
// where the bytes go. The returned statuses say what was rebuilt; the
// caller verifies the image again afterwards.
func (im *Image) RebuildSegments(ctx context.Context, damage []Damage, create func(id format.SegmentID, size int64) SegmentSink) ([]StripeStatus, error) {
	g, ok := im.m.Geometry()
	if !ok {
		return nil, nil
	}
	rw := &rewriter{im: im, g: g, create: create, checked: im.checkedSinks(create), open: map[int]*shardSink{}}
	statuses, err := im.walkStripes(ctx, damage, true, stripeHooks{row: rw.row, done: rw.done, regen: rw.regen})
	if err != nil {
		rw.abortAll(err)
	}
	return statuses, err
}

// shardSink streams one rebuilt shard into its sink.
type shardSink struct {
	id   format.SegmentID
	sink SegmentSink
	size int64 // bytes of shard to write (data: segment size; parity: rows)
	off  int64
}

func (w *shardSink) row(b []byte) error {
	n := min(int64(len(b)), w.size-w.off)
	if n <= 0 {
		return nil
	}
	_, err := w.sink.Write(b[:n])
	w.off += n
	return err
}

// rewriter holds the sinks of the stripe being rebuilt.
type rewriter struct {
	im     *Image
	g      format.Geometry
	create func(format.SegmentID, int64) SegmentSink
	// checked is create with each sink checked as it streams: for
	// segments rebuilt from parity rows. Regenerated parity needs no
	// such check: Reencode compared it with the manifest.
	checked func(id format.SegmentID, size int64, idx *format.ParityIndex) SegmentSink
	open    map[int]*shardSink // by shard position
}

func (rw *rewriter) abortAll(err error) {
	for k, w := range rw.open {
		_ = w.sink.CloseWithError(err)
		delete(rw.open, k)
	}
}

func (rw *rewriter) row(s uint32, idx *format.ParityIndex, sd shardDamage, r int, shards [][]byte, _ []bool) error {
	for shard := range sd {
		w := rw.open[shard]
		if w == nil {
			if r != 0 {
				continue // an earlier row was lost: this shard cannot be rewritten
			}
			var err error
			if w, err = rw.begin(s, idx, shard); err != nil {
				return err
			}
			rw.open[shard] = w
		}
		if err := w.row(shards[shard]); err != nil {
			return fmt.Errorf("rewrite %s: %w", w.id.Key(), err)
		}
	}
	return nil
}

// begin opens the sink of one shard and writes what precedes its rows.
func (rw *rewriter) begin(s uint32, idx *format.ParityIndex, shard int) (*shardSink, error) {
	id := rw.g.Shard(s, shard)
	if shard < rw.g.K {
		size := idx.Data[shard].Size
		return &shardSink{id: id, sink: rw.checked(id, size, idx), size: size}, nil
	}
	j := shard - rw.g.K
	w := &shardSink{id: id, size: idx.ShardLen(), sink: rw.checked(id, idx.SegmentSize(), idx)}
	if _, err := w.sink.Write(idx.Header(rw.im.id, j)); err != nil {
		_ = w.sink.CloseWithError(err)
		return nil, fmt.Errorf("rewrite %s: %w", id.Key(), err)
	}
	return w, nil
}

func (rw *rewriter) done(ss *StripeStatus, idx *format.ParityIndex) error {
	if !ss.Repairable {
		rw.abortAll(fmt.Errorf("stripe %d is beyond repair", ss.Stripe))
		return nil
	}
	for _, shard := range slices.Sorted(maps.Keys(rw.open)) {
		w := rw.open[shard]
		var err error
		if shard >= rw.g.K {
			_, err = w.sink.Write(idx.Trailer(shard - rw.g.K))
		}
		if err == nil {
			err = w.sink.Close()
		} else {
			_ = w.sink.CloseWithError(err)
		}
		delete(rw.open, shard)
		var bad *rebuiltDamage
		if errors.As(err, &bad) {
			// Parity rebuilt something that is not the segment
			// written: leave the damaged one as it is.
			ss.Repairable = false
			ss.Err = errors.Join(ss.Err, bad.err)
			continue
		}
		if err != nil {
			rw.abortAll(err)
			return fmt.Errorf("rewrite %s: %w", w.id.Key(), err)
		}
	}
	return nil
}

func (rw *rewriter) regen(ss *StripeStatus, segs []format.ParitySegment, sd shardDamage) error {
	for shard := range sd {
		ps := segs[shard-rw.g.K]
		id := format.ParityID(ps.Number)
		sink := rw.create(id, ps.Size())
		for _, b := range [][]byte{ps.Header, ps.Rows, ps.Trailer} {
			if _, err := sink.Write(b); err != nil {
				_ = sink.CloseWithError(err)
				return fmt.Errorf("rewrite %s: %w", id.Key(), err)
			}
		}
		if err := sink.Close(); err != nil {
			return fmt.Errorf("rewrite %s: %w", id.Key(), err)
		}
	}
	return nil
}

// Reencode computes the parity segments of stripe s again from its data
// segments, which must be intact (each is checked as it streams, as by
// [Image.CheckStream]); the result must match the manifest's parity
// index hashes. It holds M shards in memory.
func (im *Image) Reencode(ctx context.Context, s uint32) ([]format.ParitySegment, error) {
	return im.m.EncodeStripe(s, func(id format.SegmentID, w io.Writer) error {
		return im.CopySegment(ctx, id, w)
	})
}

// rebuiltDamage is a rebuilt segment that failed its check: its sink was
// abandoned.
type rebuiltDamage struct{ err error }

func (e *rebuiltDamage) Error() string { return e.err.Error() }
func (e *rebuiltDamage) Unwrap() error { return e.err }

// checkedSinks wraps create so that every sink's bytes are also checked,
// as they stream, as by CheckStream (a parity segment against idx, the
// stripe's parity index the rebuild used, read once), and the sink is
// stored (Close) only if they pass.
func (im *Image) checkedSinks(create func(format.SegmentID, int64) SegmentSink) func(format.SegmentID, int64, *format.ParityIndex) SegmentSink {
	return func(id format.SegmentID, size int64, idx *format.ParityIndex) SegmentSink {
		pr, pw := io.Pipe()
		res := make(chan error, 1)
		go func() {
			var err error
			if id.Kind == format.SegmentParity {
				err = im.checkParityWith(id, pr, idx)
			} else {
				err = im.checkDataStream(id, bufio.NewReaderSize(pr, 1<<20))
			}
			// Keep reading what the rebuild writes after a
			// failure, so it is not blocked; the verdict stands.
			_, _ = io.Copy(io.Discard, pr)
			res <- err
		}()
		return &checkedSink{id: id, sink: create(id, size), pw: pw, res: res}
	}
}

// checkedSink tees a rebuilt segment into its sink and its checker.
type checkedSink struct {
	id   format.SegmentID
	sink SegmentSink
	pw   *io.PipeWriter
	res  chan error
	err  error // the checker's verdict, once known
	done bool
}

func (c *checkedSink) Write(b []byte) (int, error) {
	n, err := c.sink.Write(b)
	if err != nil {
		return n, err
	}
	if _, err := c.pw.Write(b); err != nil {
		return n, fmt.Errorf("check %s: %w", c.id.Key(), err)
	}
	return n, nil
}

func (c *checkedSink) verdict(closeErr error) error {
	if !c.done {
		c.pw.CloseWithError(closeErr)
		c.err, c.done = <-c.res, true
	}
	return c.err
}

// Close stores the segment if its check passed, and abandons it
// otherwise with a *rebuiltDamage (when it is damage) or the checker's
// operational error.
func (c *checkedSink) Close() error {
	err := c.verdict(nil)
	if err == nil {
		return c.sink.Close()
	}
	_ = c.sink.CloseWithError(err)
	if format.IsDamage(err) {
		return &rebuiltDamage{fmt.Errorf("%s rebuilt from parity fails its check, left as it was: %w", c.id.Key(), err)}
	}
	return fmt.Errorf("check %s rebuilt from parity: %w", c.id.Key(), err)
}

func (c *checkedSink) CloseWithError(err error) error {
	_ = c.verdict(err)
	return c.sink.CloseWithError(err)
}
