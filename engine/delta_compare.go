package engine

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
)

// blockSize is the format's block: the unit of the block digests that
// delta and diff compare.
const blockSize = 64 << 10

// imageBlocks hands out an image's 8-byte digests of its 64 KiB blocks
// (spec §3, §5.3), front to back, without reading any payload: a zero
// chunk's blocks have the digest of a zero block, a stored chunk's come
// from its segment's index (seed.Image.Index: small ranged reads, checked
// against the manifest). So comparing a source or a device with an image
// in S3 costs the manifest and one index read per data segment.
//
// It is the comparison both `seedship delta` (which blocks of a source
// changed since its base) and `seedship diff` (which ranges of a device
// differ from an image) need: call [imageBlocks.blocks] with block
// numbers that never decrease, hash the other side's blocks with
// [blockDigest], and compare. Memory: the indexes of at most two data
// segments (the current one and the one fetched ahead), each under
// 34 MiB. Not safe for concurrent use.
//
// A delta image's chunks of kind base have no digests of their own (they
// are its base's): for a delta, parent gives the blocks of its base (which
// may itself be a delta with a parent, and so on down to a full image).
type imageBlocks struct {
	im     *seed.Image
	m      *format.Manifest
	size   int64
	parent *imageBlocks // the base's blocks, for a delta image
	// cur is the index of data segment curSeg, the one the last lookup
	// needed; ahead is the fetch of the next data segment's index,
	// started when cur was taken.
	cur      []format.IndexEntry
	curSeg   uint32
	hasCur   bool
	ahead    chan indexFetch
	aheadSeg uint32
	zero     format.BlockDigest // digest of a full zero block
	// keyed is the hasher of an encrypted image (nil for a plaintext
	// one): its zero chunks' block digests are bound to their place, so
	// they are computed, one chunk at a time (zeroChunk, zeroBlocks).
	keyed      *format.Hasher
	zeroChunk  uint64
	zeroBlocks []format.BlockDigest
}

// indexFetch is the outcome of fetching one segment's index ahead.
type indexFetch struct {
	entries []format.IndexEntry
	err     error
}

// newImageBlocks returns the block digests of the image im. A delta image
// needs chain: the images it builds on, nearest first (its base, that
// image's base if it is a delta too, …, down to a full image); each must
// be the image its predecessor names by manifest hash.
func newImageBlocks(im *seed.Image, chain ...*seed.Image) (*imageBlocks, error) {
	m := im.Manifest()
	ib := &imageBlocks{im: im, m: m, size: m.Header.Size, zero: zeroBlock}
	if m.Encrypted() {
		h, err := imageHasher(im)
		if err != nil {
			return nil, err
		}
		ib.keyed = h
	}
	if !m.Header.RequiresFeature(format.FeatureDelta) {
		if len(chain) > 0 {
			return nil, fmt.Errorf("%w: %s is a full image: it needs no chain of base images (%s given)", ErrBadInput, im, chain[0])
		}
		return ib, nil
	}
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: %s is a delta image (of base %s): its unchanged chunks' block digests are in its base; give the images it builds on with --chain (nearest first), or compare with the full image",
			ErrBadInput, im, m.Header.Base.ManifestSHA256)
	}
	if got := hex.EncodeToString(chain[0].Manifest().Hash[:]); got != m.Header.Base.ManifestSHA256 {
		return nil, fmt.Errorf("%w: %s is not the base of delta %s: its manifest sha256 is %s, the delta names %s; give the chain nearest first",
			ErrBadInput, chain[0], im, got, m.Header.Base.ManifestSHA256)
	}
	parent, err := newImageBlocks(chain[0], chain[1:]...)
	if err != nil {
		return nil, err
	}
	ib.parent = parent
	return ib, nil
}

// blockDigest returns the 8-byte digest of one block, as segment indexes
// record it.
func blockDigest(b []byte) format.BlockDigest {
	s := sha256.Sum256(b)
	return format.BlockDigest(s[:8])
}

// blocks appends to dst the digests of the image's blocks first …
// first+n−1 (which must lie inside the image; block numbers never
// decrease from one call to the next) and returns it.
func (ib *imageBlocks) blocks(ctx context.Context, first, n int64, dst []format.BlockDigest) ([]format.BlockDigest, error) {
	cs := int64(ib.m.Header.ChunkSize)
	per := cs / blockSize // blocks per chunk
	for k := first; k < first+n; k++ {
		i := uint64(k / per)
		if i >= uint64(len(ib.m.Chunks)) {
			return nil, fmt.Errorf("engine: block %d is past the end of %s", k, ib.im)
		}
		c := ib.m.Chunks[i]
		switch c.Kind {
		case format.KindZero:
			if ib.keyed != nil {
				dst = append(dst, ib.keyedZero(i)[k-int64(i)*per])
				continue
			}
			off := k * blockSize
			if l := min(blockSize, ib.size-off); l < blockSize {
				dst = append(dst, blockDigest(make([]byte, l)))
			} else {
				dst = append(dst, ib.zero)
			}
		case format.KindStored:
			e, err := ib.entry(ctx, c.Segment, i)
			if err != nil {
				return nil, err
			}
			kk := int(k - int64(i)*per)
			if kk >= len(e.Blocks) {
				return nil, fmt.Errorf("%w: %s: chunk %d has %d block digests, block %d asked", ErrIntegrity, ib.im, i, len(e.Blocks), kk)
			}
			dst = append(dst, e.Blocks[kk])
		case format.KindBase:
			if ib.parent == nil {
				return nil, fmt.Errorf("%w: %s: chunk %d is of kind base, and its base is not given", ErrBadInput, ib.im, i)
			}
			var err error
			if dst, err = ib.parent.blocks(ctx, k, 1, dst); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: %s: chunk %d is of kind %s, which has no block digests", ErrBadInput, ib.im, i, c.Kind)
		}
	}
	return dst, nil
}

// keyedZero returns the keyed block digests of zero chunk i of an
// encrypted image, computed once for consecutive lookups in the chunk.
func (ib *imageBlocks) keyedZero(i uint64) []format.BlockDigest {
	if ib.zeroBlocks == nil || ib.zeroChunk != i {
		_, n := ib.m.ChunkRange(i)
		nb := format.NumBlocks(int(n))
		if cap(ib.zeroBlocks) < nb {
			ib.zeroBlocks = make([]format.BlockDigest, nb)
		}
		ib.zeroBlocks = ib.zeroBlocks[:nb]
		ib.keyed.Zero(i, int(n), ib.zeroBlocks)
		ib.zeroChunk = i
	}
	return ib.zeroBlocks
}

// entry returns the index entry of stored chunk i in data segment s,
// taking segment indexes in turn and fetching the next one ahead.
func (ib *imageBlocks) entry(ctx context.Context, s uint32, i uint64) (*format.IndexEntry, error) {
	if !ib.hasCur || ib.curSeg != s {
		var entries []format.IndexEntry
		var err error
		if ib.ahead != nil && ib.aheadSeg == s {
			f := <-ib.ahead
			entries, err = f.entries, f.err
		} else {
			if ib.ahead != nil {
				<-ib.ahead // not needed after all (segments are taken in order, so this is rare)
			}
			entries, err = ib.im.Index(ctx, s)
		}
		ib.ahead = nil
		if err != nil {
			return nil, indexErr(ib.im, s, err)
		}
		ib.cur, ib.curSeg, ib.hasCur = entries, s, true
		if int(s)+1 < len(ib.m.Segments) {
			next := s + 1
			ch := make(chan indexFetch, 1)
			ib.ahead, ib.aheadSeg = ch, next
			go func() {
				e, err := ib.im.Index(ctx, next)
				ch <- indexFetch{e, err}
			}()
		}
	}
	k, ok := slices.BinarySearchFunc(ib.cur, i, func(e format.IndexEntry, i uint64) int { return cmp.Compare(e.Index, i) })
	if !ok {
		return nil, fmt.Errorf("%w: %s: chunk %d is not in the index of its segment %d", ErrIntegrity, ib.im, i, s)
	}
	return &ib.cur[k], nil
}

// close waits for an index fetched ahead, so that no goroutine outlives
// the comparison.
func (ib *imageBlocks) close() {
	if ib.ahead != nil {
		<-ib.ahead
		ib.ahead = nil
	}
	if ib.parent != nil {
		ib.parent.close()
	}
}

// indexErr classifies the failure to read a segment's index: damage is an
// integrity failure of that image; anything else (a dropped connection)
// stays operational.
func indexErr(im *seed.Image, s uint32, err error) error {
	if format.IsDamage(err) {
		return fmt.Errorf("%w: the index of data segment %d of %s: %w (repair or fetch a fresh copy of that image)", ErrIntegrity, s, im, err)
	}
	return fmt.Errorf("read the index of data segment %d of %s: %w", s, im, err)
}
