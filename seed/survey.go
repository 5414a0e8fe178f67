package seed

import (
	"context"
	"fmt"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// Survey is what [Image.Survey] found by listing the image's store.
type Survey struct {
	// Damage has one entry per segment that is missing or whose size
	// differs from the manifest's.
	Damage []Damage
	// Lost lists the damaged data segments that parity cannot rebuild:
	// every one in an image without parity, and those of stripes with
	// more damaged segments than parity segments.
	Lost []format.SegmentID
}

// Survey lists the image's segments (reading no data) and compares each
// with the manifest: present, with its recorded size. It is the cheap
// check to make before writing anything: if Lost is empty, every segment
// is present or parity has enough shards to rebuild it (row damage found
// later may still exceed it).
func (im *Image) Survey(ctx context.Context) (Survey, error) {
	have := map[string]int64{}
	for _, prefix := range []string{"data/", "parity/"} {
		err := im.st.List(ctx, prefix, func(i store.Info) error { have[i.Key] = i.Size; return nil })
		if err != nil {
			return Survey{}, fmt.Errorf("list %s: %w", im.st, err)
		}
	}
	var sv Survey
	perStripe := map[uint32]int{}
	g, hasParity := im.m.Geometry()
	for _, id := range im.m.SegmentIDs() {
		sum, _ := im.m.Summary(id)
		size, ok := have[id.Key()]
		var err error
		switch {
		case !ok:
			err = fmt.Errorf("%w: %s is missing from %s", format.ErrMissing, id.Key(), im.st)
		case size != sum.Size:
			err = fmt.Errorf("%w: %s is %d bytes, the manifest says %d (truncated or replaced)", format.ErrCorrupt, id.Key(), size, sum.Size)
		default:
			continue
		}
		sv.Damage = append(sv.Damage, damageOf(id.Key(), segmentErr(id, nil, err)))
		if hasParity {
			s, _ := g.Stripe(id)
			perStripe[s]++
		}
	}
	for _, d := range sv.Damage {
		id, _ := d.SegmentID()
		if id.Kind != format.SegmentData {
			continue
		}
		if !hasParity {
			sv.Lost = append(sv.Lost, id)
		} else if s, _ := g.Stripe(id); perStripe[s] > g.M {
			sv.Lost = append(sv.Lost, id)
		}
	}
	return sv, nil
}
