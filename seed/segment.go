package seed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/seedship/seedship/format"
)

// CopySegment streams segment id of the image to w, checking every byte
// on the way as [Image.CheckStream] does. Bytes reach w before the whole
// segment is checked: the caller must discard what w received unless
// CopySegment returns nil (a store.PipeWriter's CloseWithError does). A
// missing, short or damaged segment is damage (format.IsDamage); other
// errors are operational.
func (im *Image) CopySegment(ctx context.Context, id format.SegmentID, w io.Writer) error {
	rc, err := im.st.Get(ctx, id.Key(), 0, -1)
	if err != nil {
		werr, damage := im.objectErr(ctx, id.Key(), err)
		if damage {
			return segmentErr(id, nil, werr)
		}
		return werr
	}
	defer rc.Close()
	return im.cutInTransit(ctx, id.Key(), im.CheckStream(ctx, id, rc, w))
}

// CheckStream reads the bytes of segment id from r, which may come from
// anywhere (another copy of the image, a segment patched from several
// sources), checks all of them against the manifest and copies them to w
// (nil: discard). A data segment is checked frame by frame (header, every
// frame's stored digest against the segment's index, index, footer, size
// and, unless the image is encrypted and was not unlocked, every chunk
// opened and decoded within its length and checked against its hash and
// its block digests); so it needs no key, and an encrypted image's
// segments are then checked for transport integrity. A parity segment's
// header, rows (against their CRC-32C and the segment's rows digest) and
// trailer are checked against the stripe's parity index, read from the
// image's store beforehand. It returns nil for an intact segment, the
// first damage found (a *format.ChunkError or *format.SegmentError), or
// an operational error.
func (im *Image) CheckStream(ctx context.Context, id format.SegmentID, r io.Reader, w io.Writer) error {
	if w != nil {
		r = io.TeeReader(r, w)
	}
	if _, ok := im.m.Summary(id); !ok {
		return fmt.Errorf("seed: %s is not a segment of this image", id.Key())
	}
	if id.Kind == format.SegmentParity {
		return im.checkParityStream(ctx, id, r)
	}
	return im.checkDataStream(id, bufio.NewReaderSize(r, 1<<20))
}

func (im *Image) checkParityStream(ctx context.Context, id format.SegmentID, r io.Reader) error {
	g, _ := im.m.Geometry()
	stripe, _ := g.Stripe(id)
	idx, err := im.StripeIndex(ctx, stripe)
	if err != nil {
		return err
	}
	return im.checkParityWith(id, r, idx)
}

// checkParityWith checks parity segment id streamed from r against idx,
// an intact parity index of its stripe.
func (im *Image) checkParityWith(id format.SegmentID, r io.Reader, idx *format.ParityIndex) error {
	g, _ := im.m.Geometry()
	_, shard := g.Stripe(id)
	mine := *idx
	mine.J = shard - g.K
	err := format.CheckParityStream(r, im.id, &mine)
	if err != nil && !format.IsDamage(err) {
		if werr, damage := objectErr(im.st, id.Key(), err); damage {
			return segmentErr(id, nil, werr)
		}
	}
	return err
}

func (im *Image) checkDataStream(id format.SegmentID, r io.Reader) error {
	n := id.Number
	sc, err := format.NewSegmentScanner(r, im.m, n, im.chunks[n])
	if err != nil {
		return err
	}
	if err := sc.HeaderErr(); err != nil {
		return segmentErr(id, nil, fmt.Errorf("header: %w", err))
	}
	// The index comes after the frames: their stored digests are checked
	// by Finish (LateDamage); chunks are opened as they pass, when the
	// image can be opened.
	var codec *format.ChunkCodec
	if !im.Locked() {
		if codec, err = im.codec(); err != nil {
			return err
		}
	}
	var buf []byte
	out := make([]byte, 0, im.m.Header.ChunkSize)
	digests := map[uint64][]format.BlockDigest{}
	for {
		var f format.Frame
		f, buf, err = sc.Next(buf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return streamErr(sc, err)
		}
		if codec == nil || f.Codec == format.CodecDigestOnly {
			continue
		}
		c := im.m.Chunks[f.Index]
		off, length := im.m.ChunkRange(f.Index)
		blocks := make([]format.BlockDigest, format.NumBlocks(int(length)))
		if _, err := codec.DecodeAt(f.Index, f.Codec, f.Payload, int(length), c.Hash, out, blocks); err != nil {
			return &format.ChunkError{Index: f.Index, Offset: off, Length: length, Segment: n, Err: err}
		}
		digests[f.Index] = blocks
	}
	entries, err := sc.Finish()
	if err != nil {
		return streamErr(sc, segmentErr(id, nil, fmt.Errorf("index/footer: %w", err)))
	}
	if late := sc.LateDamage(); len(late) > 0 {
		return late[0]
	}
	for _, e := range entries {
		blocks, ok := digests[e.Index]
		if !ok {
			continue // not opened: a locked image, or a digest-only frame (no data)
		}
		if err := format.CheckBlocks(blocks, e.Blocks); err != nil {
			off, length := im.m.ChunkRange(e.Index)
			return &format.ChunkError{Index: e.Index, Offset: off, Length: length, Segment: n, Err: err}
		}
	}
	return nil
}

// streamErr prefers the stream's own read failure (operational) over the
// damage it caused.
func streamErr(sc *format.SegmentScanner, err error) error {
	if ioErr := sc.IOErr(); ioErr != nil {
		return ioErr
	}
	return err
}
