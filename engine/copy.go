package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/verify"
)

// CopyOptions tunes [Copy].
type CopyOptions struct {
	Jobs     int // segments copied in parallel; default the slower store's connections
	Progress func(Progress)
}

// CopyResult describes a finished copy.
type CopyResult struct {
	Manifest *format.Manifest
	Copied   []string // keys written this time
	Skipped  []string // keys already present and valid at the destination
	Bytes    int64    // bytes transferred
	Damaged  []string // source segments that failed verification and were not copied
}

// Copy copies the image in src to dst, verifying every segment while it
// streams (chunk hashes for data segments, row CRCs for parity), and writes
// the manifest last, so dst becomes a complete image only when everything
// arrived intact. It resumes: a segment already at dst with the right size
// and index hash is kept. A damaged source segment is not copied; the copy
// then ends with an error wrapping ErrIntegrity, after copying the rest,
// and without a manifest at dst (repair the source, or let 'verify
// --repair' rebuild the missing segment at dst from parity, then copy
// again).
func Copy(ctx context.Context, src, dst store.Store, opts CopyOptions) (*CopyResult, error) {
	m, mb, err := loadImage(ctx, src)
	if err != nil {
		return nil, err
	}
	if dm, err := verify.LoadManifest(ctx, dst); err == nil {
		if dm.Hash != m.Hash {
			return nil, fmt.Errorf("%w: destination %s holds another image (manifest %x): choose an empty destination", ErrBadInput, dst, dm.Hash[:8])
		}
	} else if !errors.Is(err, verify.ErrNoImage) {
		return nil, fmt.Errorf("destination %s: %w", dst, err)
	}
	if opts.Jobs <= 0 {
		opts.Jobs = min(store.ConnectionsOf(src, 2), store.ConnectionsOf(dst, 2))
	}
	type item struct {
		key    string
		sum    format.SegmentSummary
		parity bool
	}
	var items []item
	var total int64
	for _, s := range m.Segments {
		items = append(items, item{format.SegmentKey(s.Number), s, false})
		total += s.Size
	}
	for _, s := range m.Parity {
		items = append(items, item{format.ParityKey(s.Number), s, true})
		total += s.Size
	}
	meter := NewMeter(total, opts.Progress)
	res := &CopyResult{Manifest: m}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Jobs)
	for _, it := range items {
		g.Go(func() error {
			if present(gctx, dst, it.key, it.sum, it.parity) {
				mu.Lock()
				res.Skipped = append(res.Skipped, it.key)
				mu.Unlock()
				meter.Add(it.sum.Size)
				return nil
			}
			err := copySegment(gctx, src, dst, m, it.key, it.sum, it.parity, meter)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				res.Copied = append(res.Copied, it.key)
				res.Bytes += it.sum.Size
			case errors.Is(err, errSegmentDamaged):
				res.Damaged = append(res.Damaged, fmt.Sprintf("%s (%v)", it.key, err))
			default:
				return fmt.Errorf("copy %s: %w", it.key, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}
	if len(res.Damaged) > 0 {
		return res, fmt.Errorf("%w: %d segment(s) of %s are damaged and were not copied: %v; dst has no manifest yet (repair the source with 'seedship verify --repair', or fetch them from another copy, then copy again)",
			ErrIntegrity, len(res.Damaged), src, res.Damaged)
	}
	keys := append(m.CopyKeys(), format.ManifestKey)
	for _, k := range keys {
		if err := dst.Put(ctx, k, bytes.NewReader(mb), int64(len(mb))); err != nil {
			return res, fmt.Errorf("write %s to %s: %w", k, dst, err)
		}
		res.Copied = append(res.Copied, k)
	}
	return res, nil
}

var errSegmentDamaged = errors.New("segment damaged")

// present reports whether dst already holds a complete copy of a segment:
// right size and the index the manifest records. Store writes are atomic,
// and a segment was verified before it was stored, so this is enough.
func present(ctx context.Context, dst store.Store, key string, sum format.SegmentSummary, parity bool) bool {
	info, err := dst.Stat(ctx, key)
	if err != nil || info.Size != sum.Size {
		return false
	}
	r := store.ReaderAt(ctx, dst, key)
	if parity {
		_, err = format.ReadParityIndex(r, sum.Size, sum.IndexHash)
		return err == nil
	}
	f, _, err := format.ReadSegmentIndex(r, sum.Size)
	return err == nil && f.IndexHash == sum.IndexHash
}

// copySegment streams one segment from src to dst, verifying it on the
// way; the destination object is discarded unless every check passed.
func copySegment(ctx context.Context, src, dst store.Store, m *format.Manifest, key string, sum format.SegmentSummary, parity bool, meter *Meter) error {
	rc, err := src.Get(ctx, key, 0, -1)
	if errors.Is(err, store.ErrNotExist) {
		return fmt.Errorf("%w: missing from %s", errSegmentDamaged, src)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	pw := store.PutPipe(ctx, dst, key, sum.Size)
	tee := io.TeeReader(&countingReader{r: rc, meter: meter}, pw)
	var verr error
	if parity {
		idx, err := format.ReadParityIndex(store.ReaderAt(ctx, src, key), sum.Size, sum.IndexHash)
		if err != nil {
			verr = fmt.Errorf("%w: %v", format.ErrCorrupt, err)
		} else {
			verr = verifyParityStream(tee, m, sum, idx)
		}
	} else {
		verr = verifyDataStream(tee, m, sum)
	}
	if verr != nil {
		pw.CloseWithError(verr)
		var ce *format.ChunkError
		if errors.As(verr, &ce) || errors.Is(verr, format.ErrCorrupt) || errors.Is(verr, format.ErrMissing) || errors.Is(verr, format.ErrChecksum) {
			return fmt.Errorf("%w: %v", errSegmentDamaged, verr)
		}
		return verr
	}
	return pw.Close()
}

type countingReader struct {
	r     io.Reader
	meter *Meter
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.meter.Add(int64(n))
	return n, err
}

// verifyDataStream reads a data segment from r and checks every chunk.
func verifyDataStream(r io.Reader, m *format.Manifest, sum format.SegmentSummary) error {
	chunks := m.SegmentChunks()[sum.Number]
	sc, err := format.NewSegmentScanner(r, m, sum.Number, chunks)
	if err != nil {
		return err
	}
	if err := sc.HeaderErr(); err != nil {
		return err
	}
	codec, err := format.NewChunkCodec(0, 1, format.MaxChunkSize)
	if err != nil {
		return err
	}
	defer codec.Close()
	var buf []byte
	out := make([]byte, 0, m.Header.ChunkSize)
	for {
		var f format.Frame
		f, buf, err = sc.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			if ioErr := sc.IOErr(); ioErr != nil {
				return ioErr
			}
			return err
		}
		_, length := m.ChunkRange(f.Index)
		if _, err := codec.Decode(f.Codec, f.Payload, int(length), m.Chunks[f.Index].Hash, out, nil); err != nil {
			return fmt.Errorf("chunk %d: %w", f.Index, err)
		}
	}
	if err := sc.Finish(); err != nil {
		if ioErr := sc.IOErr(); ioErr != nil {
			return ioErr
		}
		return err
	}
	return nil
}

// verifyParityStream reads a parity segment from r and checks its header
// and its rows against idx, its index as read from the source beforehand
// (and checked against the manifest); the index and footer that follow are
// compared with idx's encoding.
func verifyParityStream(r io.Reader, m *format.Manifest, sum format.SegmentSummary, idx *format.ParityIndex) error {
	b := make([]byte, format.SegmentHeaderSize)
	if _, err := io.ReadFull(r, b); err != nil {
		return fmt.Errorf("%w: header: %v", format.ErrCorrupt, err)
	}
	h, err := format.ParseSegmentHeader(b)
	id, _ := m.ImageID()
	if err == nil && (h.Kind != format.SegmentParity || h.Number != sum.Number || h.ImageID != id) {
		err = fmt.Errorf("%w: parity segment header names another segment", format.ErrCorrupt)
	}
	if err != nil {
		return err
	}
	g, _ := m.Geometry()
	row := make([]byte, idx.RowSize)
	for i := range idx.Rows {
		if _, err := io.ReadFull(r, row); err != nil {
			return fmt.Errorf("%w: row %d: %v", format.ErrCorrupt, i, err)
		}
		if format.RowCRC(row) != idx.CRC[g.K+idx.J][i] {
			return fmt.Errorf("%w: row %d fails its CRC-32C", format.ErrCorrupt, i)
		}
	}
	tail, err := io.ReadAll(io.LimitReader(r, sum.Size))
	if err != nil {
		return err
	}
	if !bytes.Equal(tail, format.ParityTrailer(idx, idx.J)) {
		return fmt.Errorf("%w: parity index or footer differs", format.ErrCorrupt)
	}
	return nil
}
