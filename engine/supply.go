package engine

import (
	"context"
	"fmt"
	"sync"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
)

// imageSupplier reads chunks from the image's data segments through the
// image reader: whole segments as streams when all of their chunks are
// wanted, only the wanted frames (ranged reads) otherwise, so that a
// resumed restore fetches only what the target lacks.
type imageSupplier struct {
	im           *seed.Image
	workers      int
	readers      int
	stopOnDamage bool

	mu    sync.Mutex
	found []seed.Damage // what the reads found damaged
	stats seed.ReadStats
}

func (s *imageSupplier) supply(ctx context.Context, chunks []uint64, put func(uint64, []byte) error, missing func(uint64, error) error) error {
	var mu sync.Mutex
	got := newChunkSet(len(s.im.Manifest().Chunks))
	opts := seed.ReadOptions{
		Workers: s.workers, Readers: s.readers, StopOnDamage: s.stopOnDamage,
		Segments: segmentsOf(s.im.Manifest(), chunks),
		OnChunk: func(i uint64, raw []byte) error {
			if err := put(i, raw); err != nil {
				return err
			}
			mu.Lock()
			got.add(i)
			mu.Unlock()
			return nil
		},
		OnDamage: func(d seed.Damage) error {
			s.mu.Lock()
			s.found = append(s.found, d)
			s.mu.Unlock()
			if d.IsChunk {
				return missing(d.Chunk, d.Err)
			}
			return nil
		},
	}
	if !wholeSegments(s.im, opts.Segments, len(chunks)) {
		opts.Chunks = chunks
	}
	stats, err := s.im.Read(ctx, opts)
	s.stats = stats
	if err != nil {
		return err
	}
	// A chunk neither delivered nor reported (its segment's damage was
	// reported as a whole) is missing all the same.
	for _, i := range chunks {
		if !got.has(i) {
			if err := missing(i, fmt.Errorf("chunk %d could not be read from %s", i, s.im)); err != nil {
				return err
			}
		}
	}
	return nil
}

// wholeSegments reports whether n wanted chunks are every stored chunk of
// segs.
func wholeSegments(im *seed.Image, segs []uint32, n int) bool {
	total := 0
	for _, s := range segs {
		total += len(im.SegmentChunks(s))
	}
	return total == n
}

// segmentsOf lists, in order, the data segments holding the given stored
// chunks (given in order).
func segmentsOf(m *format.Manifest, chunks []uint64) []uint32 {
	var out []uint32
	for _, i := range chunks {
		if s := m.Chunks[i].Segment; len(out) == 0 || out[len(out)-1] != s {
			out = append(out, s)
		}
	}
	return out
}

// paritySupplier rebuilds chunks from the image's parity, leaving the
// image as it is.
type paritySupplier struct {
	im       *seed.Image
	statuses []seed.StripeStatus // the stripes it rebuilt from, once it ran
}

func (s *paritySupplier) supply(ctx context.Context, chunks []uint64, put func(uint64, []byte) error, missing func(uint64, error) error) error {
	m := s.im.Manifest()
	g, _ := m.Geometry()
	// One stripe at a time: a rebuild holds the rebuilt rows of the
	// damaged shards it is given, so that memory is one stripe's damage
	// (bounded like capture's parity accumulators), not the image's.
	var stripes []uint32
	byStripe := map[uint32][]seed.Damage{}
	for _, i := range chunks {
		off, length := m.ChunkRange(i)
		seg := m.Chunks[i].Segment
		st, _ := g.Stripe(format.DataID(seg))
		if byStripe[st] == nil {
			stripes = append(stripes, st)
		}
		byStripe[st] = append(byStripe[st], seed.Damage{Key: format.DataID(seg).Key(), Chunk: i, IsChunk: true, Offset: off, Length: length, Segment: seg})
	}
	done := make(map[uint64]bool, len(chunks))
	for _, st := range stripes {
		statuses, err := s.im.Rebuild(ctx, byStripe[st], func(i uint64, raw []byte) error {
			done[i] = true
			return put(i, raw)
		})
		s.statuses = append(s.statuses, statuses...)
		if err != nil {
			return err
		}
	}
	for _, i := range chunks {
		if !done[i] {
			if err := missing(i, fmt.Errorf("chunk %d is damaged and parity cannot rebuild it", i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// fallbackSupplier fetches chunks, one frame each, from a second copy of
// the image.
type fallbackSupplier struct {
	fb *seed.Image
}

func (s *fallbackSupplier) supply(ctx context.Context, chunks []uint64, put func(uint64, []byte) error, missing func(uint64, error) error) error {
	var buf []byte
	for _, i := range chunks {
		raw, err := s.fb.Chunk(ctx, i, buf)
		switch {
		case err == nil:
			buf = raw[:0]
			err = put(i, raw)
		case ctx.Err() != nil:
			return ctx.Err()
		case format.IsDamage(err):
			err = missing(i, fmt.Errorf("fallback %s: %w", s.fb, err))
		default:
			return fmt.Errorf("fallback %s: chunk %d: %w", s.fb, i, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
