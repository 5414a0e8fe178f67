package seed

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// indexCache keeps the last few data segment indexes read for single
// chunk fetches, whose block digests each fetched chunk is checked
// against. It holds at most max indexes (about 4.4 MB each at most).
type indexCache struct {
	mu    sync.Mutex
	max   int
	order []uint32
	m     map[uint32][]format.IndexEntry
}

func newIndexCache(max int) *indexCache {
	return &indexCache{max: max, m: map[uint32][]format.IndexEntry{}}
}

func (c *indexCache) get(n uint32) ([]format.IndexEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[n]
	return e, ok
}

func (c *indexCache) put(n uint32, e []format.IndexEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[n]; ok {
		return
	}
	if len(c.order) == c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.order = append(c.order, n)
	c.m[n] = e
}

// readIndex reads and checks the index of data segment n. Damage (a
// missing or short segment, an index that disagrees with the manifest) is
// a *format.SegmentError; any other error is operational.
func (im *Image) readIndex(ctx context.Context, n uint32) ([]format.IndexEntry, error) {
	id := format.DataID(n)
	entries, err := im.m.ReadIndexOf(store.ReaderAt(ctx, im.st, id.Key()), n, im.chunks[n])
	if err != nil {
		if werr, damage := im.objectErr(ctx, id.Key(), err); damage && !format.IsDamage(err) {
			err = segmentErr(id, nil, werr)
		} else if !damage {
			return nil, werr
		}
	}
	return entries, err
}

// index returns the checked index of data segment n, from the cache when
// it is there.
func (im *Image) index(ctx context.Context, n uint32) ([]format.IndexEntry, error) {
	if e, ok := im.idx.get(n); ok {
		return e, nil
	}
	e, err := im.readIndex(ctx, n)
	if err != nil {
		return nil, err
	}
	im.idx.put(n, e)
	return e, nil
}

// entryOf returns the index entry of stored chunk i among its segment's
// index entries (in increasing chunk order, as checked against the
// manifest).
func (im *Image) entryOf(entries []format.IndexEntry, i uint64) *format.IndexEntry {
	k, ok := slices.BinarySearchFunc(entries, i, func(e format.IndexEntry, i uint64) int { return cmp.Compare(e.Index, i) })
	if !ok {
		return nil
	}
	return &entries[k]
}

// Index returns the index of data segment n (every frame's chunk index,
// location, chunk hash, stored digest and 8-byte block digests, which in
// an encrypted image are keyed: comparing them needs the image unlocked),
// read by ranged reads of
// the segment's footer and index only and checked against the manifest
// (index hash, frame count, and each entry against the chunk table), so
// comparing a device or a source with an image's block digests costs a
// few small reads per segment and never its payloads. Damage is returned
// as an error that format.IsDamage recognises.
func (im *Image) Index(ctx context.Context, n uint32) ([]format.IndexEntry, error) {
	if _, ok := im.m.Summary(format.DataID(n)); !ok {
		return nil, fmt.Errorf("seed: %s has no data segment %d", im, n)
	}
	return im.index(ctx, n)
}
