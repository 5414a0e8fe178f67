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
// chunk decoded within its length and checked against its hash and its
// block digests, index, footer, size); a parity segment's header, rows
// (against their CRC-32C) and trailer are checked against the stripe's
// parity index, read from the image's store beforehand. It returns nil
// for an intact segment, the first damage found (a *format.ChunkError or
// *format.SegmentError), or an operational error.
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
	stripe, shard := g.Stripe(id)
	j := shard - g.K
	idx, err := im.StripeIndex(ctx, stripe)
	if err != nil {
		return err
	}
	mine := *idx
	mine.J = j
	err = format.CheckParityStream(r, im.id, &mine)
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
	codec, err := sharedCodec(im.m.Header.ChunkSize)
	if err != nil {
		return err
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
		c := im.m.Chunks[f.Index]
		off, length := im.m.ChunkRange(f.Index)
		blocks := make([]format.BlockDigest, format.NumBlocks(int(length)))
		if _, err := codec.Decode(f.Codec, f.Payload, int(length), c.Hash, out, blocks); err != nil {
			return &format.ChunkError{Index: f.Index, Offset: off, Length: length, Segment: n, Err: err}
		}
		digests[f.Index] = blocks
	}
	entries, err := sc.Finish()
	if err != nil {
		return streamErr(sc, segmentErr(id, nil, fmt.Errorf("index/footer: %w", err)))
	}
	for _, e := range entries {
		if err := format.CheckBlocks(digests[e.Index], e.Blocks); err != nil {
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
