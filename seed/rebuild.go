package seed

import (
	"context"
	"fmt"
	"io"

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
// stripe is read once. Segments of stripes beyond repair are abandoned
// (CloseWithError) or never begun. It never writes to the image itself:
// the caller's sinks decide where the bytes go. The returned statuses say
// what was rebuilt; the caller verifies the image again afterwards.
func (im *Image) RebuildSegments(ctx context.Context, damage []Damage, create func(id format.SegmentID, size int64) SegmentSink) ([]StripeStatus, error) {
	g, ok := im.m.Geometry()
	if !ok {
		return nil, nil
	}
	rw := &rewriter{im: im, g: g, create: create, open: map[int]*shardSink{}}
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
	open   map[int]*shardSink // by shard position
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
		return &shardSink{id: id, sink: rw.create(id, size), size: size}, nil
	}
	j := shard - rw.g.K
	w := &shardSink{id: id, size: idx.ShardLen(), sink: rw.create(id, idx.SegmentSize())}
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
	for shard, w := range rw.open {
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
