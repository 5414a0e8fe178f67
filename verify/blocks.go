package verify

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
)

// blockSize is the format's block (spec §3): the unit block digests
// cover and changes are located to.
const blockSize = 64 << 10

// ChangedRange is a range of a device that differs from the image, found
// by [Device]: within chunk Chunk, the 64 KiB blocks whose digests (or,
// for a zero chunk, bytes) differ, coalesced. Located is false when the
// image could not say which blocks differ (a delta image's base chunk
// records only its hash; or the chunk hash differs while every block
// digest matches): the range is then the whole chunk.
type ChangedRange struct {
	Chunk   uint64
	Offset  int64
	Length  int64
	Located bool
}

// segmentIndexes hands out the checked index entries of an image's data
// segments to Device's workers: each index is read once, by small ranged
// reads of its footer and index ([seed.Image.Index]), however many workers
// ask for it at once, and dropped once every stored chunk of its segment
// has been compared, so memory is the indexes of the segments in flight.
type segmentIndexes struct {
	im      *seed.Image
	mu      sync.Mutex
	futures map[uint32]*indexFuture
	left    map[uint32]int // stored chunks of the segment not yet compared
}

type indexFuture struct {
	once    sync.Once
	entries []format.IndexEntry
	err     error
}

func newSegmentIndexes(im *seed.Image) *segmentIndexes {
	return &segmentIndexes{im: im, futures: map[uint32]*indexFuture{}, left: map[uint32]int{}}
}

// entry returns the index entry of stored chunk i in data segment n.
// Every call must be followed by one call of done(n).
func (s *segmentIndexes) entry(ctx context.Context, n uint32, i uint64) (*format.IndexEntry, error) {
	s.mu.Lock()
	f, ok := s.futures[n]
	if !ok {
		f = &indexFuture{}
		s.futures[n] = f
		if _, seen := s.left[n]; !seen {
			s.left[n] = len(s.im.SegmentChunks(n))
		}
	}
	s.mu.Unlock()
	f.once.Do(func() { f.entries, f.err = s.im.Index(ctx, n) })
	if f.err != nil {
		return nil, f.err
	}
	k, found := slices.BinarySearchFunc(f.entries, i, func(e format.IndexEntry, i uint64) int { return cmp.Compare(e.Index, i) })
	if !found {
		// seed checks every index against the manifest's chunk table.
		return nil, fmt.Errorf("verify: chunk %d is not in the checked index of segment %d", i, n)
	}
	return &f.entries[k], nil
}

// done records that one stored chunk of segment n has been compared, and
// drops the segment's index after its last.
func (s *segmentIndexes) done(n uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.left[n]--
	if s.left[n] <= 0 {
		delete(s.futures, n)
	}
}

// changedBlocks returns the ranges of the blocks of a chunk at off for
// which differs(k) is true, coalesced.
func changedBlocks(i uint64, off int64, length int64, differs func(k int) bool) []ChangedRange {
	var out []ChangedRange
	for k, start := 0, int64(0); start < length; k, start = k+1, start+blockSize {
		if !differs(k) {
			continue
		}
		n := min(blockSize, length-start)
		if l := len(out); l > 0 && out[l-1].Offset+out[l-1].Length == off+start {
			out[l-1].Length += n
			continue
		}
		out = append(out, ChangedRange{Chunk: i, Offset: off + start, Length: n, Located: true})
	}
	return out
}

// describeChanged names changed ranges for a finding's message: the
// first few byte ranges and how many blocks they hold, or, for a chunk
// named as a whole, why (unlocated).
func describeChanged(rs []ChangedRange, unlocated string) string {
	if len(rs) == 1 && !rs[0].Located {
		return "the chunk hash differs; " + unlocated
	}
	var blocks int64
	var parts []string
	for k, r := range rs {
		blocks += (r.Length + blockSize - 1) / blockSize
		if k < 8 {
			parts = append(parts, fmt.Sprintf("%d-%d", r.Offset, r.Offset+r.Length-1))
		}
	}
	more := ""
	if len(rs) > 8 {
		more = fmt.Sprintf(" and %d more range(s)", len(rs)-8)
	}
	return fmt.Sprintf("%d changed 64 KiB block(s), bytes %s%s", blocks, strings.Join(parts, ", "), more)
}
