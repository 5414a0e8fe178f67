package volume

import (
	"context"
	"fmt"
	"slices"

	"github.com/seedship/seedship/store"
)

// One bay at the source: a capture whose volumes are full stops, and the
// caller keeps on the source host what continuing needs (the labels
// [Set.Suspend] returns, and the engine's state); the next run gives only
// the new drive, with those labels as CreateOptions.Detached. The
// detached drives' labels are never written again: they say
// CountUnknown, and the manifest on the last drive completes the set.

// continueVolumes builds a resumed set from the detached volumes' labels
// (the earlier, full drives, not attached) and members: new empty drives,
// or drives of this set that joined after the detached ones (a
// continuation interrupted part way). It refuses, naming the path, a
// member of another set and a member that is one of the detached volumes.
func (s *Set) continueVolumes(ctx context.Context, members []Member, labels []*Label, detached []Label) error {
	ref := &detached[len(detached)-1]
	held := map[int]bool{}
	for i := range detached {
		d := &detached[i]
		if err := d.validate(); err != nil {
			return refuse(ErrBadLabel, "the continuation state's label of volume %d: %v: it cannot be used; continue with every drive of the capture attached", d.Volume, err)
		}
		if d.SetID != ref.SetID || d.Volume < 1 || held[d.Volume] {
			return refuse(ErrBadLabel, "the continuation state's labels are not of one volume set (volume %d): continue with every drive of the capture attached", d.Volume)
		}
		held[d.Volume] = true
	}
	s.layout, s.setID, s.created, s.source, s.detached = ref.Layout, ref.SetID, ref.Created, ref.Source, slices.Clone(detached)
	s.encrypted = s.encrypted || ref.Encrypted
	next := 0
	for n := range held {
		next = max(next, n)
	}
	// Volumes of this set that joined after the detached ones keep
	// their numbers; the others must be empty and are numbered after.
	byNumber := map[int]int{}
	for i, l := range labels {
		if l == nil {
			continue
		}
		if l.SetID != ref.SetID || (l.ImageID != "" && ref.ImageID != "" && l.ImageID != ref.ImageID) {
			reason, what := ErrForeign, "another image"
			if l.sameSource(ref) {
				reason, what = ErrStale, "another capture of the same source"
			}
			return refuse(reason, "%s is volume %d of %d of %s (%s), not of %s that the continuation state records: give an empty drive",
				members[i].Loc, l.Volume, l.Volumes, what, describe(l), describe(ref))
		}
		if held[l.Volume] {
			return refuse(ErrDuplicate, "%s is volume %d of %s, which is full and recorded in the continuation state: give only new drives after it (or every drive of the capture)",
				members[i].Loc, l.Volume, describe(ref))
		}
		if j, ok := byNumber[l.Volume]; ok {
			return refuse(ErrDuplicate, "%s and %s are both volume %d of %s: give each volume once", members[j].Loc, members[i].Loc, l.Volume, describe(ref))
		}
		byNumber[l.Volume] = i
		next = max(next, l.Volume)
	}
	next, err := s.addVolumes(ctx, members, labels, next, ref, ref.ImageID)
	if err != nil {
		return err
	}
	s.count = next
	for _, v := range s.vols {
		// Until the manifest is written the count is not known: more
		// drives may follow.
		v.label.Volumes, v.label.CountUnknown = s.count, true
	}
	s.sortVols()
	return nil
}

// Suspend records, in the label of every attached volume, the image's ID
// (hex) and that the count of volumes is not known (more drives will
// follow, with these detached), writes them, and returns the labels of
// every volume of the set so far, detached ones included, in volume
// order: what the next run needs as CreateOptions.Detached. Call it when
// a capture stopped because the volumes are full.
func (s *Set) Suspend(ctx context.Context, imageID string) ([]Label, error) {
	if !s.write {
		return nil, fmt.Errorf("volumes: suspend: %w", ErrReadOnly)
	}
	if !isHex(imageID, 32) {
		return nil, fmt.Errorf("volumes: suspend: image id %q is not 32 hex digits", imageID)
	}
	out := slices.Clone(s.detached)
	for _, v := range s.vols {
		v.mu.Lock()
		v.label.ImageID, v.label.CountUnknown = imageID, true
		err := v.writeLabelLocked(ctx)
		l := v.label
		l.Files = slices.Clone(v.label.Files)
		v.mu.Unlock()
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Label) int { return a.Volume - b.Volume })
	return out, nil
}

// CountKnown reports whether a present volume's label knows how many
// volumes the set has: one written when the capture was complete. The
// labels of drives detached before the capture ended (one bay at the
// source) do not; the last drive's does.
func (s *Set) CountKnown() bool {
	for _, v := range s.vols {
		v.mu.Lock()
		known := v.label.Complete && !v.label.CountUnknown
		v.mu.Unlock()
		if known {
			return true
		}
	}
	return false
}

// Detached is how many volumes of the set are detached (one bay at the
// source): known from the continuation state, not attached.
func (s *Set) Detached() int { return len(s.detached) }

// detachedSummaries are the detached volumes as every label lists them.
func (s *Set) detachedSummaries() []Summary {
	out := make([]Summary, 0, len(s.detached))
	for i := range s.detached {
		n, b := s.detached[i].Holds()
		out = append(out, Summary{Volume: s.detached[i].Volume, Files: n, Bytes: b})
	}
	return out
}

// Adopt completes a set whose present volumes were all detached before
// their capture ended (one bay at the source: the manifest is on the last
// drive, which is not here) from what a reader kept of that last drive:
// last, its label, and st, a store holding the files every volume of a
// complete set holds (the manifest, its copies and signatures). The set
// then counts last's volumes and serves those files from st when no
// present volume holds them. last must be complete and of this set and
// image; the caller keeps st where only it writes.
func (s *Set) Adopt(last *Label, st store.Store) error {
	if err := last.validate(); err != nil {
		return fmt.Errorf("%w: the kept label of the last volume: %w", ErrBadLabel, err)
	}
	if !last.Complete || last.SetID != s.setID {
		return fmt.Errorf("%w: the kept label of volume %d is not the completed label of this set", ErrBadLabel, last.Volume)
	}
	for _, v := range s.vols {
		if v.label.ImageID != "" && v.label.ImageID != last.ImageID {
			return fmt.Errorf("%w: the kept label is of image %s, %s of %s", ErrBadLabel, last.ImageID, v, v.label.ImageID)
		}
		if !slices.Contains(last.Detached, v.number) {
			return fmt.Errorf("%w: the kept label of volume %d does not list %s as filled before the capture ended", ErrBadLabel, last.Volume, v)
		}
	}
	s.mu.Lock()
	s.count = max(s.count, last.Volumes)
	s.kept = st
	s.mu.Unlock()
	return nil
}
