package volume

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/seedship/seedship/store"
)

// Margin is what a volume keeps free below its free space: 1% of it plus
// 32 MiB, for the file system's own blocks (extents, directories, the
// journal), the label's rewrites and rounding, so that a capture stops
// with a clean "volume full" before the drive itself reports no space.
func Margin(free int64) int64 { return free/100 + 32<<20 }

// Capacity returns what a volume at dir may hold besides held bytes it
// already holds: volumeSize if given and smaller, else its free space less
// [Margin]. ok is false when the free space cannot be known (a system
// without statfs): then only volumeSize caps it. dir need not exist yet:
// the nearest existing parent is asked.
func Capacity(dir string, held, volumeSize int64) (capacity int64, ok bool, err error) {
	free, ok, err := freeSpace(existingParent(dir))
	if err != nil {
		return 0, false, fmt.Errorf("free space of %s: %w", dir, err)
	}
	if !ok {
		return volumeSize, false, nil
	}
	auto := max(held+free-Margin(free), 0)
	if volumeSize > 0 && volumeSize < auto {
		return volumeSize, true, nil
	}
	return auto, true, nil
}

// capOf is the cap of member m holding held bytes: Capacity for a local
// directory, volumeSize (0: none) for object storage.
func capOf(m Member, held, volumeSize int64) (int64, error) {
	if m.Dir == "" {
		return volumeSize, nil
	}
	c, ok, err := Capacity(m.Dir, held, volumeSize)
	if err != nil {
		return 0, fmt.Errorf("%w: volume %s: %w", ErrRefused, m.Loc, err)
	}
	if !ok && volumeSize == 0 {
		return 0, nil
	}
	return c, nil
}

// marginOf is the margin kept free on m, for messages.
func marginOf(m Member) int64 {
	if m.Dir == "" {
		return 0
	}
	free, ok, err := freeSpace(existingParent(m.Dir))
	if err != nil || !ok {
		return 0
	}
	return Margin(free)
}

// existingParent is dir, or its nearest parent that exists.
func existingParent(dir string) string {
	d := filepath.Clean(dir)
	for {
		if exists(d) {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			return d
		}
		d = p
	}
}

// FullError is a write that does not fit: one volume's cap was reached
// while a file was written to it, or no volume has room for the next
// file. It wraps store.ErrNoSpace, which the engine treats as resumable.
type FullError struct {
	Volume  int    // the volume that filled up; 0 when none had room
	Loc     string // its location
	Cap     int64  // what it may hold
	Used    int64  // what it held
	Key     string // the file that did not fit
	Need    int64  // bytes of it read when the cap was reached, or its size
	Partial bool   // the cap was reached while Key was being written
	Rooms   []string
}

func (e *FullError) Error() string {
	if e.Volume == 0 {
		return fmt.Sprintf("every volume is full: %s (files are up to %s) fits on none (%s)", e.Key, humanBytes(e.Need), strings.Join(e.Rooms, "; "))
	}
	verb := "needs"
	if e.Partial {
		verb = "needed more than"
	}
	return fmt.Sprintf("volume %d (%s) is full: %s %s %s, and the volume may hold %s (its --volume-size, or its free space less a margin) of which %s are used",
		e.Volume, e.Loc, e.Key, verb, humanBytes(e.Need), humanBytes(e.Cap), humanBytes(e.Used))
}

// Unwrap makes a FullError match store.ErrNoSpace.
func (e *FullError) Unwrap() error { return store.ErrNoSpace }

func (s *Set) allFull(key string, expect int64) error {
	e := &FullError{Key: key, Need: expect}
	for _, v := range s.vols {
		v.mu.Lock()
		e.Rooms = append(e.Rooms, fmt.Sprintf("%s has %s left", v, humanBytes(max(v.cap-v.reserve-v.used-v.inflight, 0))))
		v.mu.Unlock()
	}
	return e
}

// humanBytes renders n with binary units, as the CLI does.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
