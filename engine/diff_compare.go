package engine

import (
	"context"
	"io"
	"runtime"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
)

// ByteRange is a range of source bytes [Offset, Offset+Length).
type ByteRange struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// End is the offset just past the range.
func (r ByteRange) End() int64 { return r.Offset + r.Length }

// chunkComparison is how one chunk of a source compares with what an
// image records for it: its chunk hash (from the manifest) and, where it
// differs, its 64 KiB block digests (a stored chunk's from its segment's
// index, a zero chunk's those of zero blocks).
type chunkComparison struct {
	// Same: the source's bytes are the image's chunk (same length and
	// chunk hash: the authority, a full SHA-256 tree).
	Same bool
	// Changed lists the changed source byte ranges of the chunk, in
	// order and coalesced; nil when Same. They are the 64 KiB blocks
	// whose digest differs, including the block the source's end cuts
	// short, if any. A chunk the source's end cuts at a block boundary
	// may have no changed range although it is not Same: the bytes the
	// source has match, the rest is missing (the caller knows the sizes).
	Changed []ByteRange
	// Located is false when the image cannot say which blocks changed:
	// the chunk's hash differs while every block digest matches (a
	// 64-bit digest collision). Changed is then the whole chunk.
	Located bool
}

// compareOptions tunes compareSource. Zero values mean the defaults.
type compareOptions struct {
	// Workers hash chunks in parallel; default GOMAXPROCS, fewer when
	// chunk buffers would not fit seed.ReadMemory.
	Workers int
	// OnProgress, if set, is called with the source bytes of each chunk
	// compared.
	OnProgress func(n int64)
	// OnChunk receives every chunk's comparison, in chunk order, from one
	// goroutine. An error from it ends the comparison.
	OnChunk func(c *chunkComparison) error
}

// compareSource compares the first size bytes of src with what the image
// im records, chunk by chunk, and hands each chunk's chunkComparison to
// opts.OnChunk in chunk order. It is a chunkPipeline (capture_stages.go):
// one reader reads src once, front to back (a device sequentially),
// workers hash chunks in parallel (one SHA-256 pass gives the chunk hash
// and the 64 KiB block digests; a chunk of zeros is recognised at memory
// speed), and the ordered sink compares. The image side is imageBlocks
// (delta_compare.go, shared with seedship delta): the manifest's chunk
// hashes, and the block digests of a chunk whose hash differs, from its
// segment's index by small ranged reads, never a payload; so an image in
// S3 costs about two small GETs per data segment with a change, and a
// digest-only image is compared like any other. A delta image is refused
// (its base chunks have no block digests).
//
// Only the part both cover, [0, min(size, image size)), is compared;
// bytes of src past the image's end are not read (the caller knows both
// sizes). Memory: the pipeline's chunk buffers (within seed.ReadMemory,
// as verify --device) and the two segment indexes imageBlocks holds. A
// damaged index is an error wrapping ErrIntegrity.
func compareSource(ctx context.Context, im *seed.Image, src io.ReaderAt, name string, size int64, opts compareOptions) error {
	hasher, err := imageHasher(im)
	if err != nil {
		return err
	}
	ib, err := newImageBlocks(im)
	if err != nil {
		return err
	}
	defer ib.close()
	m := im.Manifest()
	chunk := m.Header.ChunkSize
	common := min(max(size, 0), m.Header.Size)
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	p := &chunkPipeline{src: src, name: name, size: common, chunkSize: chunk,
		last: uint64((common + int64(chunk) - 1) / int64(chunk)), shape: shapeFor(chunk, min(workers, MaxWorkers), false, seed.ReadMemory),
		process: hashChunk, hasher: hasher}
	var want []format.BlockDigest
	p.sink = func(j *chunkJob) error {
		off, imgLen := m.ChunkRange(j.index)
		nb := format.NumBlocks(len(j.raw))
		res := chunkComparison{Located: true, Same: int64(len(j.raw)) == imgLen && j.ec.Hash == m.Chunks[j.index].Hash}
		if !res.Same {
			var err error
			if want, err = ib.blocks(ctx, off/blockSize, int64(nb), want[:0]); err != nil {
				return err
			}
			res.Changed, res.Located = changedRanges(off, len(j.raw), j.blocks[:nb], want, imgLen)
		}
		if opts.OnChunk != nil {
			if err := opts.OnChunk(&res); err != nil {
				return err
			}
		}
		if opts.OnProgress != nil {
			opts.OnProgress(int64(len(j.raw)))
		}
		return nil
	}
	return p.run(ctx)
}

// changedRanges returns the changed ranges of a chunk at off of which the
// source has n bytes (the image imgLen), given the source's block digests
// got and the image's want: the blocks whose digests differ (the block the
// source's end cuts short always does), coalesced. located is false when
// the chunk hash differs yet no block digest does (a 64-bit collision):
// the whole chunk is then reported.
func changedRanges(off int64, n int, got, want []format.BlockDigest, imgLen int64) (changed []ByteRange, located bool) {
	for k, d := range got {
		if d == want[k] {
			continue
		}
		start := off + int64(k)*blockSize
		end := min(start+blockSize, off+int64(n))
		if l := len(changed); l > 0 && changed[l-1].End() == start {
			changed[l-1].Length += end - start
			continue
		}
		changed = append(changed, ByteRange{Offset: start, Length: end - start})
	}
	if len(changed) == 0 && int64(n) == imgLen {
		return []ByteRange{{Offset: off, Length: int64(n)}}, false
	}
	return changed, true
}
