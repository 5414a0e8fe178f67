package seed

import (
	"context"
	"fmt"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// Chunk reads chunk i by a ranged read of its frame, verifies it (frame
// header, the stored digest of its segment's index, bounded decode, which
// in an encrypted image first authenticates and decrypts the payload,
// chunk hash, and the block digests of its segment's index) and returns
// its raw bytes in buf (reused when large enough). A zero chunk is
// returned as zeros without reading. Damage is a *format.ChunkError (the
// chunk's frame, a payload that fails authentication included) or a
// *format.SegmentError (its segment's index); both satisfy
// format.IsDamage. An encrypted image that was not unlocked
// ([Image.Unlock]) gives an error wrapping format.ErrNoKey and reads
// nothing, not even a zero chunk. Other errors are operational.
func (im *Image) Chunk(ctx context.Context, i uint64, buf []byte) ([]byte, error) {
	if i >= uint64(len(im.m.Chunks)) {
		return nil, fmt.Errorf("seed: chunk %d of an image of %d chunks", i, len(im.m.Chunks))
	}
	c := im.m.Chunks[i]
	off, length := im.m.ChunkRange(i)
	if im.Locked() {
		// Not even a zero chunk: without the key the chunk table that
		// says it is zero is not authenticated (the manifest MAC).
		return nil, im.errLocked(fmt.Sprintf("reading chunk %d", i))
	}
	if cap(buf) < int(length) {
		buf = make([]byte, length)
	}
	buf = buf[:length]
	if c.Kind == format.KindZero {
		clear(buf)
		return buf, nil
	}
	if c.Kind != format.KindStored {
		return nil, fmt.Errorf("seed: chunk %d (bytes %d-%d): %s: %w", i, off, off+length, c.Kind, format.ErrNoData)
	}
	key := format.DataID(c.Segment).Key()
	frame := make([]byte, c.FrameLen())
	if _, err := store.ReaderAt(ctx, im.st, key).ReadAt(frame, c.Offset); err != nil {
		werr, damage := im.objectErr(ctx, key, err)
		if damage {
			return nil, &format.ChunkError{Index: i, Offset: off, Length: length, Segment: c.Segment, Err: werr}
		}
		return nil, werr
	}
	entries, err := im.index(ctx, c.Segment)
	if err != nil {
		return nil, err
	}
	return im.decodeFrame(i, frame, entries, buf)
}

// decodeFrame checks and decodes the frame of chunk i against the
// manifest and, when entries is not nil, its segment's index: the frame's
// stored digest first (nothing is decoded or decrypted from a frame whose
// stored bytes are not the ones written), then, after decoding, the block
// digests.
func (im *Image) decodeFrame(i uint64, frame []byte, entries []format.IndexEntry, buf []byte) ([]byte, error) {
	c := im.m.Chunks[i]
	off, length := im.m.ChunkRange(i)
	chunkErr := func(err error) error {
		return &format.ChunkError{Index: i, Offset: off, Length: length, Segment: c.Segment, Err: err}
	}
	f, err := im.m.ParseFrame(i, frame)
	if err != nil {
		return nil, chunkErr(err)
	}
	var e *format.IndexEntry
	if entries != nil {
		if e = im.entryOf(entries, i); e == nil {
			return nil, segmentErr(format.DataID(c.Segment), nil, fmt.Errorf("%w: index has no entry for chunk %d", format.ErrCorrupt, i))
		}
		if err := e.CheckStored(frame); err != nil {
			return nil, chunkErr(err)
		}
	}
	codec, err := im.codec()
	if err != nil {
		return nil, err
	}
	blocks := make([]format.BlockDigest, format.NumBlocks(int(length)))
	raw, err := codec.DecodeAt(i, f.Codec, f.Payload, int(length), c.Hash, buf[:0], blocks)
	if err != nil {
		return nil, chunkErr(err)
	}
	if e != nil {
		if err := format.CheckBlocks(blocks, e.Blocks); err != nil {
			return nil, chunkErr(err)
		}
	}
	return raw, nil
}
