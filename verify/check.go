package verify

import (
	"context"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// CheckOptions tunes [Check].
type CheckOptions struct {
	ScanOptions
}

// Check examines a whole image: every chunk of every data segment, every
// parity segment, the manifest and its copies, and, for each damaged parity
// stripe, whether parity can rebuild it. It reads each segment once, plus
// the damaged rows of damaged stripes.
func Check(ctx context.Context, st store.Store, m *format.Manifest, opts CheckOptions) (*Report, error) {
	so := opts.ScanOptions
	so.StopOnDamage = false
	prep := &Report{}
	indexes, err := CheckParity(ctx, st, m, prep)
	if err != nil {
		return prep, err
	}
	if g, ok := m.Geometry(); ok {
		// Data segments are also checked against their rows' CRC-32C:
		// a changed byte that still decodes to the right chunk (an
		// unused bit of a zstd header) would otherwise go unnoticed
		// and later count as an erasure in every repair of its rows.
		so.RowCRC = func(seg uint32) (int, []uint32, bool) {
			s, pos := g.Stripe(seg)
			idx := indexes[s]
			if idx == nil {
				return 0, nil, false
			}
			return idx.RowSize, idx.CRC[pos], true
		}
	}
	rep, err := Scan(ctx, st, m, so)
	if err != nil {
		return rep, err
	}
	for _, f := range prep.Findings {
		rep.add(f)
	}
	_, mf := CheckManifestCopies(ctx, st, m, m.CopyKeys())
	for _, f := range mf {
		rep.add(f)
	}
	if len(rep.Findings) > 0 {
		rep.Stripes, err = Stripes(ctx, st, m, rep.Findings)
	}
	rep.Sort()
	return rep, err
}

// Repairable reports whether every finding can be repaired: each damaged
// segment lies in a stripe parity can rebuild, and an intact manifest copy
// exists (the manifest was loaded, so one does).
func (r *Report) Repairable(m *format.Manifest) bool {
	if len(r.Findings) == 0 {
		return true
	}
	if _, ok := m.Geometry(); !ok {
		return false
	}
	inStripe := map[string]bool{}
	for _, s := range r.Stripes {
		if !s.Repairable {
			return false
		}
		for _, k := range s.Damaged {
			inStripe[k] = true
		}
	}
	for _, f := range r.Findings {
		if f.Key == format.ManifestKey || isCopyKey(m, f.Key) {
			continue
		}
		if !inStripe[f.Key] {
			return false
		}
	}
	return true
}

func isCopyKey(m *format.Manifest, key string) bool {
	for _, k := range m.CopyKeys() {
		if k == key {
			return true
		}
	}
	return false
}

// LostChunks lists the chunks beyond repair: all damaged chunks without
// parity, those in unrepairable rows with it.
func (r *Report) LostChunks(m *format.Manifest) []uint64 {
	if _, ok := m.Geometry(); !ok {
		return r.BadChunks()
	}
	seen := map[uint64]bool{}
	var out []uint64
	for _, s := range r.Stripes {
		for _, c := range s.LostChunks {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}
