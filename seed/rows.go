package seed

import (
	"context"
	"fmt"
	"slices"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// rowSink receives a rebuilt row: the K+M slices of row r (data shards
// first), every one intact after reconstruction, and which of them were
// rebuilt. Slices are reused after the call returns.
type rowSink func(row int, shards [][]byte, rebuilt []bool) error

// readSlice reads row r of shard i into buf (zero-filled past the shard's
// end); ok is false when the slice is missing, short or fails its CRC-32C
// (an erasure).
func (im *Image) readSlice(ctx context.Context, idx *format.ParityIndex, i, r int, buf []byte) (ok bool, err error) {
	clear(buf)
	if id, off, n := idx.Slice(i, r); n > 0 {
		_, err := store.ReaderAt(ctx, im.st, id.Key()).ReadAt(buf[:n], off)
		if err != nil {
			if werr, damage := im.objectErr(ctx, id.Key(), err); !damage {
				return false, werr
			}
			return false, nil
		}
	}
	return format.RowCRC(0, buf) == idx.CRC[i][r], nil
}

// repairRows reads the given rows of every shard of a stripe, treats a
// slice that is missing, short or fails its CRC-32C as an erasure,
// rebuilds every row with at most M erasures, and hands each row to sink
// in increasing order. It returns the rows that could not be rebuilt.
// Each surviving shard is read once per requested row: a whole-shard
// repair reads each surviving segment of the stripe once.
func (im *Image) repairRows(ctx context.Context, idx *format.ParityIndex, rows []int, sink rowSink) (lost []int, err error) {
	g, _ := im.m.Geometry()
	coder, err := g.NewCoder()
	if err != nil {
		return nil, err
	}
	n := g.K + g.M
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, idx.RowSize)
	}
	shards := make([][]byte, n)
	rebuilt := make([]bool, n)
	for _, r := range slices.Sorted(slices.Values(rows)) {
		if err := ctx.Err(); err != nil {
			return lost, err
		}
		erasures := 0
		for i := range shards {
			buf := bufs[i][:idx.RowSize]
			ok, err := im.readSlice(ctx, idx, i, r, buf)
			if err != nil {
				return lost, err
			}
			rebuilt[i] = !ok
			shards[i] = buf
			if !ok {
				shards[i] = buf[:0] // reedsolomon fills zero-length shards, reusing capacity
				erasures++
			}
		}
		if erasures > g.M || (erasures > 0 && coder.Reconstruct(shards) != nil) {
			lost = append(lost, r)
			continue
		}
		for i := range shards {
			if rebuilt[i] && format.RowCRC(0, shards[i]) != idx.CRC[i][r] {
				return lost, fmt.Errorf("%w: stripe %d row %d: rebuilt shard %d fails its CRC", format.ErrCorrupt, idx.Stripe, r, i)
			}
		}
		if err := sink(r, shards, rebuilt); err != nil {
			return lost, err
		}
	}
	return lost, nil
}
