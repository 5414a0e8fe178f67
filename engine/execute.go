package engine

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/seedship/seedship/device"
)

// supplier hands the executor verified chunks from one origin.
type supplier interface {
	// supply calls put, possibly from several goroutines at once, with
	// the verified raw bytes of each of chunks it can serve (raw is valid
	// during the call only), and missing with each one it cannot because
	// its copy there is damaged or absent. An error from put or missing,
	// or any failure that is not damage, ends it.
	supply(ctx context.Context, chunks []uint64, put func(i uint64, raw []byte) error, missing func(i uint64, why error) error) error
}

// executor carries out a restore plan: each origin's chunks are fetched,
// verified (by the supplier) and written, in the plan's order of origins;
// a chunk an origin cannot supply moves on to the next one. Memory and
// concurrency are the suppliers' bounds: the executor holds no chunk.
type executor struct {
	plan       *restorePlan
	target     *restoreTarget
	meter      *Meter
	suppliers  map[origin]supplier
	stopOnLoss bool // a chunk with no origin left ends the restore (no --allow-damaged)
	zeroed     bool // the target reads as zeros: zero chunks need no writing

	mu      sync.Mutex
	written map[origin][]uint64 // chunks written from parity and the fallback
	fromImg int                 // chunks written from the image
	zeroes  int64               // bytes of zero chunks written
}

// run executes every stage of the plan.
func (x *executor) run(ctx context.Context) error {
	x.written = map[origin][]uint64{}
	x.meter.Add(x.plan.bytes(onTarget))
	for _, o := range []origin{fromImage, fromParity, fromFallback} {
		if err := x.stage(ctx, o); err != nil {
			return err
		}
	}
	return x.zero(ctx)
}

// stage writes the chunks whose origin is o.
func (x *executor) stage(ctx context.Context, o origin) error {
	chunks := x.plan.chunks(o)
	if len(chunks) == 0 {
		return nil
	}
	put := func(i uint64, raw []byte) error {
		if x.plan.of(i) != o {
			return nil // read along with others, but not wanted from here
		}
		off, _ := x.plan.m.ChunkRange(i)
		if err := x.target.writeAt(raw, off); err != nil {
			return err
		}
		x.meter.Add(int64(len(raw)))
		x.mu.Lock()
		if o == fromImage {
			x.fromImg++ // the common case: counted, not listed
		} else {
			x.written[o] = append(x.written[o], i)
		}
		x.mu.Unlock()
		return nil
	}
	missing := func(i uint64, why error) error {
		if x.plan.of(i) != o {
			return nil
		}
		if x.plan.demote(i) == unavailable && x.stopOnLoss {
			return fmt.Errorf("%w: a chunk is beyond repair: %w; the restore stopped and %s is incomplete (--allow-damaged writes the rest)",
				ErrIntegrity, why, x.target.path)
		}
		return nil
	}
	return x.suppliers[o].supply(ctx, chunks, put, missing)
}

// zero makes every chunk whose origin is zero read as zeros on the
// target, one ZeroRange call per run of consecutive such chunks.
func (x *executor) zero(ctx context.Context) error {
	m := x.plan.m
	if x.zeroed {
		x.meter.Add(x.plan.bytes(fromZero))
		return nil
	}
	runStart, runLen := int64(-1), int64(0)
	flush := func() error {
		if runLen == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := device.ZeroRange(x.target.f, runStart, runLen); err != nil {
			return fmt.Errorf("zero bytes %d-%d of %s: %w", runStart, runStart+runLen-1, x.target.path, err)
		}
		x.meter.Add(runLen)
		x.zeroes += runLen
		runStart, runLen = -1, 0
		return nil
	}
	for _, i := range x.plan.chunks(fromZero) {
		off, length := m.ChunkRange(i)
		if runLen > 0 && runStart+runLen != off {
			if err := flush(); err != nil {
				return err
			}
		}
		if runLen == 0 {
			runStart = off
		}
		runLen += length
	}
	return flush()
}

// writtenFrom returns, sorted, the chunks written from origin o.
func (x *executor) writtenFrom(o origin) []uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := slices.Clone(x.written[o])
	slices.Sort(out)
	return out
}

// chunkSet is a set of chunk indices, one bit each.
type chunkSet []uint64

func newChunkSet(n int) chunkSet     { return make(chunkSet, (n+63)/64) }
func (s chunkSet) add(i uint64)      { s[i/64] |= 1 << (i % 64) }
func (s chunkSet) has(i uint64) bool { return s[i/64]&(1<<(i%64)) != 0 }
