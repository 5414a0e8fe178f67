package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// storeReaderAt reads one key through ranged Gets.
func storeReaderAtOf(ctx context.Context, st store.Store, key string) io.ReaderAt {
	return store.ReaderAt(ctx, st, key)
}

// readRange reads length bytes of key at off into buf; ok is false when the
// object is missing or too short (an erasure), err is any other failure.
func readRange(ctx context.Context, st store.Store, key string, off int64, buf []byte) (ok bool, err error) {
	_, err = storeReaderAtOf(ctx, st, key).ReadAt(buf, off)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotExist), errors.Is(err, io.ErrUnexpectedEOF):
		return false, nil
	}
	return false, fmt.Errorf("read %s: %w", key, err)
}

// StripeIndex returns an intact parity index of stripe s: the first parity
// segment whose index matches the manifest.
func StripeIndex(ctx context.Context, st store.Store, m *format.Manifest, s uint32) (*format.ParityIndex, error) {
	g, _ := m.Geometry()
	var errs []error
	for j := range g.M {
		sum, ok := m.ParitySegment(g.ParityNumber(s, j))
		if !ok {
			continue
		}
		key := format.ParityKey(sum.Number)
		idx, err := format.ReadParityIndex(storeReaderAtOf(ctx, st, key), sum.Size, sum.IndexHash)
		if err == nil && idx.Stripe == s && idx.J == j {
			return idx, nil
		}
		if err != nil && !errors.Is(err, format.ErrCorrupt) && !errors.Is(err, store.ErrNotExist) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		errs = append(errs, fmt.Errorf("%s: %v", key, err))
	}
	return nil, fmt.Errorf("stripe %d: no intact parity index (%v)", s, errors.Join(errs...))
}

// shardKey returns the key, read offset and size of shard i of a stripe.
func shardKey(m *format.Manifest, g format.Geometry, idx *format.ParityIndex, i int) (key string, base, size int64, present bool) {
	if i < g.K {
		d := idx.Data[i]
		if !d.Present() {
			return "", 0, 0, false
		}
		return format.SegmentKey(d.Number), 0, d.Size, true
	}
	n := g.ParityNumber(idx.Stripe, i-g.K)
	return format.ParityKey(n), format.SegmentHeaderSize, int64(idx.Rows) * int64(idx.RowSize), true
}

// RowSink receives a rebuilt row: the K+M slices of row r (data shards
// first), every one of them intact after reconstruction, and which of them
// were rebuilt. Slices are reused after the call returns.
type RowSink func(row int, shards [][]byte, rebuilt []bool) error

// RepairRows reads the given rows of every shard of a stripe, treats a
// slice that is missing, short or fails its CRC-32C as an erasure, rebuilds
// every row with at most M erasures, and hands each row to sink in
// increasing order. It returns the rows that could not be rebuilt. Each
// surviving shard is read once per requested row: a whole-shard repair
// reads each surviving segment of the stripe once.
func RepairRows(ctx context.Context, st store.Store, m *format.Manifest, idx *format.ParityIndex, rows []int, sink RowSink) (lost []int, err error) {
	g, _ := m.Geometry()
	coder, err := g.NewCoder()
	if err != nil {
		return nil, err
	}
	R := idx.RowSize
	bufs := make([][]byte, g.K+g.M)
	for i := range bufs {
		bufs[i] = make([]byte, R)
	}
	shards := make([][]byte, g.K+g.M)
	rebuilt := make([]bool, g.K+g.M)
	sort.Ints(rows)
	for _, r := range rows {
		if err := ctx.Err(); err != nil {
			return lost, err
		}
		erasures := 0
		for i := range shards {
			buf := bufs[i][:R]
			key, base, size, present := shardKey(m, g, idx, i)
			off := int64(r) * int64(R)
			ok := true
			clear(buf)
			if present && off < size {
				n := min(int64(R), size-off)
				ok, err = readRange(ctx, st, key, base+off, buf[:n])
				if err != nil {
					return lost, err
				}
			}
			if ok && format.RowCRC(buf) != idx.CRC[i][r] {
				ok = false
			}
			rebuilt[i] = !ok
			if ok {
				shards[i] = buf
			} else {
				shards[i] = buf[:0] // reedsolomon fills zero-length shards, reusing capacity
				erasures++
			}
		}
		if erasures == 0 {
			if err := sink(r, shards, rebuilt); err != nil {
				return lost, err
			}
			continue
		}
		if erasures > g.M {
			lost = append(lost, r)
			continue
		}
		if err := g.ReconstructRow(coder, shards); err != nil {
			lost = append(lost, r)
			continue
		}
		for i := range shards {
			if rebuilt[i] && format.RowCRC(shards[i]) != idx.CRC[i][r] {
				return lost, fmt.Errorf("stripe %d row %d: rebuilt shard %d fails its CRC", idx.Stripe, r, i)
			}
		}
		if err := sink(r, shards, rebuilt); err != nil {
			return lost, err
		}
	}
	return lost, nil
}

// RowsOf returns the rows of a shard that bytes [off, off+n) touch.
func RowsOf(off, n int64, rowSize int) []int {
	if n <= 0 {
		return nil
	}
	var rows []int
	for r := off / int64(rowSize); r*int64(rowSize) < off+n; r++ {
		rows = append(rows, int(r))
	}
	return rows
}
