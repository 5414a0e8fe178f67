package volume

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Facts are what the labels say once the capture is complete: the
// manifest's facts, which the caller reads (the store knows no format).
type Facts struct {
	ImageID                  string
	Size                     int64
	SHA256                   string
	CaptureStart, CaptureEnd time.Time
	ManifestSHA256           string
}

// Finish records the image's facts, a summary of every volume and how
// many volumes may be lost in every label, and writes them. Call it once
// the manifest is stored.
func (s *Set) Finish(ctx context.Context, f Facts) error {
	sums := s.summaries()
	lose := s.MayLose()
	var detached []int
	for i := range s.detached {
		detached = append(detached, s.detached[i].Volume)
	}
	start, end := f.CaptureStart.UTC(), f.CaptureEnd.UTC()
	for _, v := range s.vols {
		v.mu.Lock()
		l := &v.label
		l.ImageID, l.Size, l.ManifestSHA256 = f.ImageID, f.Size, f.ManifestSHA256
		if !s.encrypted {
			l.SHA256, l.CaptureStart, l.CaptureEnd = f.SHA256, &start, &end
		}
		l.Complete, l.CountUnknown, l.Set, l.MayLose, l.Detached = true, false, sums, &lose, detached
		err := v.writeLabelLocked(ctx)
		v.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Set) summaries() []Summary {
	out := s.detachedSummaries()
	for _, v := range s.vols {
		v.mu.Lock()
		n, b := v.label.Holds()
		out = append(out, Summary{Volume: v.number, Files: n, Bytes: b})
		v.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Summary) int { return cmp.Compare(a.Volume, b.Volume) })
	return out
}

// MayLose is how many whole volumes of the set may be lost, any of them,
// with every stripe still rebuildable, judged from where the shards of
// each stripe actually are on the present volumes (call it with every
// volume present, or detached with its label known): for each stripe, the largest n such that the n volumes
// holding most of its shards hold at most M of them. It is 0 without
// parity (unless no volume holds a segment) and never more than V-1.
func (s *Set) MayLose() int {
	labels := make([]*Label, 0, len(s.detached)+len(s.vols))
	for i := range s.detached {
		labels = append(labels, &s.detached[i])
	}
	for _, v := range s.vols {
		v.mu.Lock()
		l := v.label
		l.Files = slices.Clone(v.label.Files)
		v.mu.Unlock()
		labels = append(labels, &l)
	}
	return MayLose(labels, s.layout, s.count)
}

// MayLose computes [Set.MayLose] from the labels of every volume of a set
// of count volumes with layout.
func MayLose(labels []*Label, layout Layout, count int) int {
	perStripe := map[uint32]map[int]int{}
	for _, l := range labels {
		for _, f := range l.Files {
			if f.Shard == nil {
				continue
			}
			if perStripe[f.Shard.Stripe] == nil {
				perStripe[f.Shard.Stripe] = map[int]int{}
			}
			perStripe[f.Shard.Stripe][l.Volume]++
		}
	}
	n := count - 1
	for _, byVol := range perStripe {
		counts := make([]int, 0, len(byVol))
		for _, c := range byVol {
			counts = append(counts, c)
		}
		slices.SortFunc(counts, func(a, b int) int { return cmp.Compare(b, a) })
		lost, sum := 0, 0
		for lost < len(counts) && sum+counts[lost] <= layout.Parity {
			sum += counts[lost]
			lost++
		}
		if lost < len(counts) {
			n = min(n, lost)
		}
	}
	return max(n, 0)
}

// Nominal is how many volumes the rotate rule lets one lose with parity
// k+m over v volumes when every volume has room: each volume holds at
// most h = ceil((k+m)/v) shards of a stripe, so floor(m/h) volumes may be
// lost (0 without parity).
func Nominal(k, m, v int) int {
	if m <= 0 || v <= 1 {
		return 0
	}
	h := (k + m + v - 1) / v
	return min(m/h, v-1)
}

// VolumeInfo describes one present volume of a set.
type VolumeInfo struct {
	Volume int
	Loc    string
	Cap    int64 // 0: no cap
	Files  int
	Bytes  int64
	Label  Label // as last read or written
}

// Volumes describes the present volumes, in volume order.
func (s *Set) Volumes() []VolumeInfo {
	out := make([]VolumeInfo, 0, len(s.vols))
	for _, v := range s.vols {
		v.mu.Lock()
		l := v.label
		l.Files = slices.Clone(v.label.Files)
		n, b := l.Holds()
		out = append(out, VolumeInfo{Volume: v.number, Loc: v.m.Loc, Cap: v.cap, Files: n, Bytes: b, Label: l})
		v.mu.Unlock()
	}
	return out
}

// Count is how many volumes the set has.
func (s *Set) Count() int { return s.count }

// Layout is the set's placement rule.
func (s *Set) Layout() Layout { return s.layout }

// Missing lists the numbers of the set's volumes that are not present.
func (s *Set) Missing() []int {
	have := map[int]bool{}
	for _, v := range s.vols {
		have[v.number] = true
	}
	var out []int
	for n := 1; n <= s.count; n++ {
		if !have[n] {
			out = append(out, n)
		}
	}
	return out
}

// Stored is what the present volumes hold, in bytes.
func (s *Set) Stored() int64 {
	var t int64
	for _, v := range s.vols {
		v.mu.Lock()
		t += v.used
		v.mu.Unlock()
	}
	return t
}
