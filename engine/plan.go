package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
)

// origin says where a restore takes one chunk from. Every chunk of a
// restorePlan has exactly one; the executor runs the origins in this
// order. A delta image's base, or a chunk on another courier volume, is
// one more origin (or a segment's volume, which the reader resolves), not
// another loop.
type origin uint8

const (
	onTarget     origin = iota // already correct on the target (--resume): not touched
	fromZero                   // all zero: zeroed on the target unless it reads as zeros
	fromImage                  // read and verified from this image's data segment
	fromParity                 // rebuilt from this image's parity (segment missing or damaged)
	fromFallback               // read and verified from the fallback copy of the image
	unavailable                // beyond repair: left untouched (--allow-damaged only)
)

// restorePlan is, for each chunk of an image, the one origin a restore
// takes it from. It starts from what can be known before anything is
// written (which segments exist, which stripes parity can rebuild, what
// the fallback holds, what the target already holds); damage found while
// reading moves a chunk to its next origin (demote).
type restorePlan struct {
	m        *format.Manifest
	parity   bool // the image has parity
	fallback bool // a fallback copy is given
	// damagedSegments counts the data segments the image lacks or holds
	// at another size (planned around before anything is read).
	damagedSegments int

	mu     sync.Mutex
	origin []origin // by chunk index
}

// newPlan takes every stored chunk from the image and every zero chunk
// from zeros; a delta's chunks of kind base are on the target already.
func newPlan(m *format.Manifest, fallback bool) *restorePlan {
	_, parity := m.Geometry()
	p := &restorePlan{m: m, parity: parity, fallback: fallback, origin: make([]origin, len(m.Chunks))}
	for i, c := range m.Chunks {
		switch c.Kind {
		case format.KindZero:
			p.origin[i] = fromZero
		case format.KindBase:
			// A delta's unchanged chunk: the target holds the base's
			// bytes there (checked before anything is written).
			p.origin[i] = onTarget
		default:
			p.origin[i] = fromImage
		}
	}
	return p
}

// of returns the origin of chunk i.
func (p *restorePlan) of(i uint64) origin {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.origin[i]
}

// set gives chunk i the origin o.
func (p *restorePlan) set(i uint64, o origin) {
	p.mu.Lock()
	p.origin[i] = o
	p.mu.Unlock()
}

// demote moves chunk i, which its origin could not supply, to the next
// origin that may: parity, then the fallback, then none. It returns the
// new origin.
func (p *restorePlan) demote(i uint64) origin {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := p.origin[i]
	switch {
	case o < fromParity && p.parity:
		o = fromParity
	case o < fromFallback && p.fallback:
		o = fromFallback
	default:
		o = unavailable
	}
	p.origin[i] = o
	return o
}

// chunks lists, in order, the chunks whose origin is o.
func (p *restorePlan) chunks(o origin) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []uint64
	for i, x := range p.origin {
		if x == o {
			out = append(out, uint64(i))
		}
	}
	return out
}

// bytes sums the raw bytes of the chunks whose origin is o.
func (p *restorePlan) bytes(o origin) int64 {
	var n int64
	for _, i := range p.chunks(o) {
		_, l := p.m.ChunkRange(i)
		n += l
	}
	return n
}

// planSegments plans around the data segments the image lacks or holds
// at another size, listing the store only (no data is read). A missing
// segment's chunks come from parity, when their stripe has no more
// damaged segments than parity shards; else from the fallback, when it
// holds the segment at its size; else from nowhere. A segment of the
// wrong size is still read (its intact chunks are good; damage found
// moves the rest on), but without parity or a fallback nothing could make
// up for what it lacks. It returns why chunks may be lost, if they may.
func (p *restorePlan) planSegments(ctx context.Context, im, fb *seed.Image) (lost []error, err error) {
	sv, err := im.Survey(ctx)
	if err != nil || len(sv.Damage) == 0 {
		return nil, err
	}
	beyondParity := map[format.SegmentID]bool{}
	for _, id := range sv.Lost {
		beyondParity[id] = true
	}
	fbBad := map[string]bool{}
	if fb != nil {
		fsv, err := fb.Survey(ctx)
		if err != nil {
			return nil, fmt.Errorf("fallback %s: %w", fb, err)
		}
		for _, d := range fsv.Damage {
			fbBad[d.Key] = true
		}
	}
	for _, d := range sv.Damage {
		id, ok := d.SegmentID()
		if !ok || id.Kind != format.SegmentData {
			continue
		}
		p.damagedSegments++
		o := fromImage
		switch {
		case !errors.Is(d.Err, format.ErrMissing):
			if !p.parity && fb == nil {
				lost = append(lost, d.Err)
			}
		case p.parity && !beyondParity[id]:
			o = fromParity
		case fb != nil && !fbBad[d.Key]:
			o = fromFallback
		default:
			o = unavailable
			lost = append(lost, d.Err)
		}
		for _, i := range im.SegmentChunks(id.Number) {
			p.set(i, o)
		}
	}
	return lost, nil
}

// planResume marks the chunks the target already holds correctly (by
// hash, read locally: local reads are cheap, WAN fetches are not) as on
// the target.
func (p *restorePlan) planResume(ctx context.Context, t *restoreTarget, workers int) error {
	differ, err := chunksThatDiffer(ctx, p.m, t, workers)
	if err != nil {
		return fmt.Errorf("compare %s with the image for --resume: %w", t.path, err)
	}
	for i := range p.m.Chunks {
		if !differ.has(uint64(i)) {
			p.set(uint64(i), onTarget)
		}
	}
	return nil
}
