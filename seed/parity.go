package seed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// StripeIndex returns an intact parity index of stripe s: that of the
// first of the stripe's parity segments whose index matches the manifest.
func (im *Image) StripeIndex(ctx context.Context, s uint32) (*format.ParityIndex, error) {
	g, ok := im.m.Geometry()
	if !ok {
		return nil, fmt.Errorf("seed: %s has no parity", im)
	}
	var errs []error
	for j := range g.M {
		idx, err := im.parityIndex(ctx, g.ParityNumber(s, j))
		if err == nil {
			return idx, nil
		}
		if !format.IsDamage(err) {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w: stripe %d has no intact parity index (%v)", format.ErrCorrupt, s, errors.Join(errs...))
}

// parityIndex reads and checks the index of parity segment n; damage is a
// *format.SegmentError.
func (im *Image) parityIndex(ctx context.Context, n uint32) (*format.ParityIndex, error) {
	id := format.ParityID(n)
	idx, err := im.m.ReadParityIndexOf(store.ReaderAt(ctx, im.st, id.Key()), n)
	if err != nil && !format.IsDamage(err) {
		werr, damage := im.objectErr(ctx, id.Key(), err)
		if !damage {
			return nil, werr
		}
		err = segmentErr(id, nil, werr)
	}
	return idx, err
}

// CheckParity reads every parity segment of the image once and reports,
// through onDamage, each one that is missing, of the wrong size, or has a
// damaged header, index or trailer, or rows failing their CRC-32C (the
// damage lists those rows). It returns an intact parity index of each
// stripe that has one, for [ReadOptions.Parity].
func (im *Image) CheckParity(ctx context.Context, onDamage func(Damage)) (map[uint32]*format.ParityIndex, error) {
	g, ok := im.m.Geometry()
	if !ok {
		return nil, nil
	}
	indexes := map[uint32]*format.ParityIndex{}
	for _, sum := range im.m.Parity {
		if err := ctx.Err(); err != nil {
			return indexes, err
		}
		id := format.ParityID(sum.Number)
		idx, err := im.parityIndex(ctx, sum.Number)
		if err != nil {
			if !format.IsDamage(err) {
				return indexes, err
			}
			onDamage(damageOf(id.Key(), err))
			continue
		}
		if s, _ := g.Stripe(id); indexes[s] == nil {
			indexes[s] = idx
		}
		if err := im.checkParitySegment(ctx, id, idx, onDamage); err != nil {
			return indexes, err
		}
	}
	return indexes, nil
}

// checkParitySegment streams one parity segment whose index is intact.
func (im *Image) checkParitySegment(ctx context.Context, id format.SegmentID, idx *format.ParityIndex, onDamage func(Damage)) error {
	rc, err := im.st.Get(ctx, id.Key(), 0, -1)
	if err != nil {
		werr, damage := im.objectErr(ctx, id.Key(), err)
		if !damage {
			return werr
		}
		onDamage(damageOf(id.Key(), segmentErr(id, nil, werr)))
		return nil
	}
	defer rc.Close()
	err = im.cutInTransit(ctx, id.Key(), format.CheckParityStream(bufio.NewReaderSize(rc, 1<<20), im.id, idx))
	if err == nil {
		return nil
	}
	if !format.IsDamage(err) {
		return fmt.Errorf("read %s of %s: %w", id.Key(), im.st, err)
	}
	onDamage(damageOf(id.Key(), err))
	return nil
}

// StripeStatus says what is damaged in one parity stripe and whether
// parity can rebuild it.
type StripeStatus struct {
	Stripe     uint32
	Damaged    []string // keys of damaged segments
	Rows       int      // rows that needed rebuilding
	LostRows   []int    // rows beyond repair
	Repairable bool
	LostChunks []uint64 // chunks beyond repair
	// Err says why the stripe cannot be examined (no intact parity
	// index) or, after RebuildSegments, why a rebuilt segment of it was
	// abandoned (it failed its check: parity was damaged too).
	Err error
}

// shardDamage maps a stripe's shard position to the rows to rebuild (nil:
// all rows).
type shardDamage map[int][]int

// stripePlan groups damage by stripe and shard. whole marks every row of
// a damaged shard for rebuilding (a rewrite needs the whole segment);
// otherwise only the rows that damaged chunk frames touch.
func stripePlan(m *format.Manifest, g format.Geometry, damage []Damage, whole bool) map[uint32]shardDamage {
	out := map[uint32]shardDamage{}
	mark := func(stripe uint32, shard int, rows []int) {
		sd := out[stripe]
		if sd == nil {
			sd = shardDamage{}
			out[stripe] = sd
		}
		cur, seen := sd[shard]
		switch {
		case seen && cur == nil: // already all rows
		case rows == nil || whole:
			sd[shard] = nil
		default:
			// Non-nil even when empty: a damaged header needs a
			// rewrite but no row rebuilt.
			sd[shard] = append(slices.Clone(cur), rows...)
		}
	}
	for _, d := range damage {
		id, isSeg := d.SegmentID()
		switch {
		case d.IsChunk:
			stripe, shard, rows := m.ChunkRows(d.Chunk)
			mark(stripe, shard, rows)
		case !isSeg:
		default:
			if _, ok := m.Summary(id); ok {
				rows := d.Rows
				if id.Kind == format.SegmentData {
					rows = nil // a damaged data segment is rebuilt whole
				}
				stripe, shard := g.Stripe(id)
				mark(stripe, shard, rows)
			}
		}
	}
	return out
}

// rowsFor returns the sorted union of the rows to rebuild in a stripe.
func rowsFor(sd shardDamage, rows int) []int {
	set := map[int]bool{}
	for _, rs := range sd {
		if rs == nil {
			out := make([]int, rows)
			for i := range out {
				out[i] = i
			}
			return out
		}
		for _, r := range rs {
			if r < rows {
				set[r] = true
			}
		}
	}
	out := make([]int, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// lostChunks lists the damaged chunks (bad) of a stripe whose frames touch
// a lost row (every row when all is set): an intact chunk in a lost row
// is not lost, it can be read as it is.
func lostChunks(m *format.Manifest, stripe uint32, sd shardDamage, lost []int, all bool, bad map[uint64]bool) []uint64 {
	if !all && len(lost) == 0 {
		return nil
	}
	var out []uint64
	for i := range bad {
		s, shard, rows := m.ChunkRows(i)
		if _, damaged := sd[shard]; s != stripe || !damaged {
			continue
		}
		for _, r := range rows {
			if all || slices.Contains(lost, r) {
				out = append(out, i)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}
