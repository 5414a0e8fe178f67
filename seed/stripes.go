package seed

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/seedship/seedship/format"
)

// stripeHooks receive the results of walking the damaged stripes; any may
// be nil.
type stripeHooks struct {
	// row receives each rebuilt row of a stripe.
	row func(stripe uint32, idx *format.ParityIndex, sd shardDamage, row int, shards [][]byte, rebuilt []bool) error
	// done is called after a stripe's rows were walked.
	done func(ss *StripeStatus, idx *format.ParityIndex) error
	// regen receives freshly computed parity segments of a stripe whose
	// parity alone was damaged and whose every parity index was lost.
	regen func(ss *StripeStatus, segs []format.ParitySegment, sd shardDamage) error
}

// walkStripes examines every stripe with damage and rebuilds its damaged
// rows (all rows of a damaged shard when whole is set) into the hooks.
func (im *Image) walkStripes(ctx context.Context, damage []Damage, whole bool, h stripeHooks) ([]StripeStatus, error) {
	g, ok := im.m.Geometry()
	if !ok {
		return nil, nil
	}
	plan := stripePlan(im.m, g, damage, whole)
	bad := map[uint64]bool{}
	for _, d := range damage {
		if d.IsChunk {
			bad[d.Chunk] = true
		}
	}
	var out []StripeStatus
	for _, s := range slices.Sorted(func(yield func(uint32) bool) {
		for s := range plan {
			if !yield(s) {
				return
			}
		}
	}) {
		ss, err := im.walkStripe(ctx, g, s, plan[s], bad, h)
		if err != nil {
			return out, err
		}
		out = append(out, ss)
	}
	return out, nil
}

// walkStripe examines and rebuilds one stripe.
func (im *Image) walkStripe(ctx context.Context, g format.Geometry, s uint32, sd shardDamage, bad map[uint64]bool, h stripeHooks) (StripeStatus, error) {
	ss := StripeStatus{Stripe: s}
	for shard := range sd {
		ss.Damaged = append(ss.Damaged, g.Shard(s, shard).Key())
	}
	sort.Strings(ss.Damaged)
	idx, err := im.StripeIndex(ctx, s)
	if err != nil && format.IsDamage(err) && onlyParity(sd, g) {
		// Every parity index is gone but the data is intact: compute
		// the stripe's parity again from its data.
		segs, rerr := im.Reencode(ctx, s)
		if rerr == nil {
			ss.Rows, ss.Repairable = segs[0].Index.Rows, true
			if h.regen != nil {
				return ss, h.regen(&ss, segs, sd)
			}
			return ss, nil
		}
		if !format.IsDamage(rerr) {
			return ss, rerr
		}
		err = fmt.Errorf("%v; recomputing parity from the data failed: %w", err, rerr)
	}
	if err != nil {
		if !format.IsDamage(err) {
			return ss, err
		}
		// Without a parity index nothing of the stripe can be rebuilt:
		// every damaged chunk of it is lost.
		ss.Err = err
		ss.LostChunks = lostChunks(im.m, s, sd, nil, true, bad)
		return ss, nil
	}
	rows := rowsFor(sd, idx.Rows)
	ss.Rows = len(rows)
	lost, err := im.repairRows(ctx, idx, rows, func(r int, shards [][]byte, rebuilt []bool) error {
		if h.row == nil {
			return nil
		}
		return h.row(s, idx, sd, r, shards, rebuilt)
	})
	if err != nil {
		return ss, err
	}
	ss.LostRows = lost
	ss.Repairable = len(lost) == 0
	ss.LostChunks = lostChunks(im.m, s, sd, lost, false, bad)
	if h.done != nil {
		return ss, h.done(&ss, idx)
	}
	return ss, nil
}

// onlyParity reports whether only parity shards of a stripe are damaged.
func onlyParity(sd shardDamage, g format.Geometry) bool {
	for shard := range sd {
		if shard < g.K {
			return false
		}
	}
	return true
}

// Stripes examines every stripe with damage and reports whether parity
// can rebuild it, reading only the damaged rows of the stripe's other
// shards. It changes nothing.
func (im *Image) Stripes(ctx context.Context, damage []Damage) ([]StripeStatus, error) {
	return im.walkStripes(ctx, damage, false, stripeHooks{})
}

// Rebuild rebuilds, from parity, the stored chunks that damage reports,
// without modifying the image, and hands each one's verified raw bytes to
// fn (the rebuilt frame's stored digest, when its segment's index is
// intact, then the chunk opened and checked against its chunk hash and
// block digests, as for every chunk). It reads only the rows those chunks
// touch. It returns the stripe statuses; chunks in their LostChunks were
// not rebuilt. Handing out raw bytes needs the key: an encrypted image
// that was not unlocked gives an error wrapping format.ErrNoKey
// (RebuildSegments needs none).
func (im *Image) Rebuild(ctx context.Context, damage []Damage, fn func(index uint64, raw []byte) error) ([]StripeStatus, error) {
	if _, ok := im.m.Geometry(); !ok {
		return nil, nil
	}
	if im.Locked() {
		return nil, im.errLocked("rebuilding chunks")
	}
	// Collected rows of damaged data shards: stripe → shard → row → bytes.
	got := map[uint32]map[int]map[int][]byte{}
	statuses, err := im.walkStripes(ctx, damage, false, stripeHooks{row: func(s uint32, idx *format.ParityIndex, sd shardDamage, r int, shards [][]byte, _ []bool) error {
		for shard := range sd {
			if shard >= idx.K {
				continue
			}
			if got[s] == nil {
				got[s] = map[int]map[int][]byte{}
			}
			if got[s][shard] == nil {
				got[s][shard] = map[int][]byte{}
			}
			got[s][shard][r] = slices.Clone(shards[shard])
		}
		return nil
	}})
	if err != nil {
		return statuses, err
	}
	return statuses, im.deliverRebuilt(ctx, damage, got, fn)
}

// deliverRebuilt decodes each damaged chunk from its rebuilt rows.
func (im *Image) deliverRebuilt(ctx context.Context, damage []Damage, got map[uint32]map[int]map[int][]byte, fn func(uint64, []byte) error) error {
	var want []uint64
	for _, d := range damage {
		if d.IsChunk {
			want = append(want, d.Chunk)
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	var buf []byte
	for _, i := range want {
		s, shard, _ := im.m.ChunkRows(i)
		rows := got[s][shard]
		frame, ok := im.m.FrameFromRows(i, func(r int) ([]byte, bool) { b, ok := rows[r]; return b, ok })
		if !ok {
			continue // in a lost row: reported in LostChunks
		}
		entries, err := im.index(ctx, im.m.Chunks[i].Segment)
		if err != nil && !format.IsDamage(err) {
			return err
		}
		// A damaged index (rebuilt with the segment only by a repair)
		// leaves the chunk hash as the check.
		raw, err := im.decodeFrame(i, frame, entries, buf)
		if err != nil {
			return fmt.Errorf("chunk %d rebuilt from parity is still damaged: %w", i, err)
		}
		if err := fn(i, raw); err != nil {
			return err
		}
		buf = raw
	}
	return nil
}
