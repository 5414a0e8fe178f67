package verify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"

	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// Sentinel errors.
var (
	// ErrNoImage means the location holds no manifest: it is not a
	// seedship image, or its capture never finished.
	ErrNoImage = errors.New("verify: no seedship image here (no manifest.ssm: not an image, or its capture did not finish)")
	// ErrDamaged means the image or device failed a check; the Report
	// says where.
	ErrDamaged = errors.New("verify: damage found")
)

// LoadManifest reads and checks the manifest of the image in st. If
// manifest.ssm is missing or damaged it falls back to the redundant copies
// manifest.ssm.N of parity images. A missing manifest wraps ErrNoImage; a
// damaged one wraps format.ErrCorrupt; one from another version wraps
// format.ErrVersion.
func LoadManifest(ctx context.Context, st store.Store) (*format.Manifest, error) {
	m, _, err := LoadManifestBytes(ctx, st)
	return m, err
}

// LoadManifestBytes is LoadManifest that also returns the manifest's
// encoded bytes, for rewriting damaged copies verbatim.
func LoadManifestBytes(ctx context.Context, st store.Store) (*format.Manifest, []byte, error) {
	m, b, err := readManifest(ctx, st, format.ManifestKey)
	// Any failure of the main manifest, an apparent version change
	// included (a flipped bit in the version field looks like one), is
	// worth trying the copies for; if none decodes, the main one's error
	// stands.
	if err == nil || !(recoverable(err) || errors.Is(err, format.ErrVersion)) {
		return m, b, err
	}
	var copies []string
	lerr := st.List(ctx, format.ManifestKey+".", func(i store.Info) error {
		copies = append(copies, i.Key)
		return nil
	})
	if lerr != nil {
		return nil, nil, fmt.Errorf("list %s: %w", st, lerr)
	}
	for _, key := range copies {
		if m, b, cerr := readManifest(ctx, st, key); cerr == nil {
			return m, b, nil
		}
	}
	if errors.Is(err, store.ErrNotExist) {
		if len(copies) > 0 {
			return nil, nil, fmt.Errorf("%s: manifest.ssm missing and every copy damaged: %w", st, format.ErrCorrupt)
		}
		return nil, nil, fmt.Errorf("%s: %w", st, ErrNoImage)
	}
	return nil, nil, err
}

// recoverable reports whether a manifest copy may do better than err.
func recoverable(err error) bool {
	return errors.Is(err, store.ErrNotExist) || errors.Is(err, format.ErrCorrupt) ||
		errors.Is(err, format.ErrFormat) || errors.Is(err, format.ErrTooLarge)
}

func readManifest(ctx context.Context, st store.Store, key string) (*format.Manifest, []byte, error) {
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		if errors.Is(err, store.ErrNotExist) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("read %s of %s: %w", key, st, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, format.MaxManifestSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s of %s: %w", key, st, err)
	}
	m, err := format.DecodeManifest(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s of %s: %w", key, st, err)
	}
	return m, b, nil
}

// CheckManifestCopies reports every manifest file of the image (the main
// one and, for parity images, its copies) that is missing or differs from
// m. It returns the keys that need rewriting.
func CheckManifestCopies(ctx context.Context, st store.Store, m *format.Manifest, copies []string) ([]string, []Finding) {
	var bad []string
	var findings []Finding
	for _, key := range append([]string{format.ManifestKey}, copies...) {
		got, _, err := readManifest(ctx, st, key)
		if err == nil && got.Hash != m.Hash {
			err = fmt.Errorf("%s differs from the image's manifest", key)
		}
		if err != nil {
			bad = append(bad, key)
			findings = append(findings, Finding{Key: key, Err: fmt.Errorf("manifest %s: %w", key, err)})
		}
	}
	return bad, findings
}

// ScanOptions tunes [Scan]. Zero values mean the defaults.
type ScanOptions struct {
	// Workers decode and hash chunks in parallel; default GOMAXPROCS.
	Workers int
	// Readers stream segments in parallel; default the store's
	// connection count, or 2.
	Readers int
	// OnChunk, if set, receives every stored chunk's raw bytes after they
	// passed their hash, from worker goroutines concurrently. raw is valid
	// only during the call. An error from OnChunk ends the scan.
	OnChunk func(index uint64, raw []byte) error
	// OnProgress, if set, is called with the raw bytes of each chunk done.
	OnProgress func(n int64)
	// StopOnDamage ends the scan at the first finding.
	StopOnDamage bool
	// Segments restricts the scan to these data segments (nil: all).
	Segments []uint32
	// RowCRC, if set, gives the parity row size and the CRC-32C of each
	// row of a data segment (zero-padded to whole rows); the scan checks
	// the segment's bytes against them.
	RowCRC func(seg uint32) (rowSize int, want []uint32, ok bool)
}

type work struct {
	frame format.Frame
	buf   []byte
}

// Scan reads every stored chunk of the image in st described by m, checks
// each against its hash, and checks each segment's header, index and footer
// against the manifest. Damage is collected in the returned Report; the
// error is for failures that stop the scan (I/O that is not damage,
// cancellation, OnChunk errors, or damage with StopOnDamage).
func Scan(ctx context.Context, st store.Store, m *format.Manifest, opts ScanOptions) (*Report, error) {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Readers <= 0 {
		opts.Readers = store.ConnectionsOf(st, 2)
	}
	codec, err := format.NewChunkCodec(0, opts.Workers, format.MaxChunkSize)
	if err != nil {
		return nil, err
	}
	defer codec.Close()

	rep := &Report{}
	for _, c := range m.Chunks {
		if c.Kind == format.KindZero {
			rep.ZeroChunks++
		}
	}
	layout := m.SegmentChunks()
	segs := opts.Segments
	if segs == nil {
		for _, s := range m.Segments {
			segs = append(segs, s.Number)
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })

	g, ctx := errgroup.WithContext(ctx)
	damage := func(key string, err error) error {
		rep.addErr(key, err)
		if opts.StopOnDamage {
			return fmt.Errorf("%w: %v", ErrDamaged, err)
		}
		return nil
	}

	// A fixed set of frame buffers bounds memory: readers take one per
	// frame, workers hand it back.
	frameCap := format.FrameHeaderSize + m.Header.ChunkSize
	nbuf := opts.Workers*2 + opts.Readers
	pool := make(chan []byte, nbuf)
	for range nbuf {
		pool <- make([]byte, 0, frameCap)
	}
	jobs := make(chan uint32)
	frames := make(chan work, opts.Workers)

	g.Go(func() error {
		defer close(jobs)
		for _, s := range segs {
			select {
			case jobs <- s:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	readers, rctx := errgroup.WithContext(ctx)
	for range opts.Readers {
		readers.Go(func() error {
			for seg := range jobs {
				var crc *rowCRC
				if opts.RowCRC != nil {
					if R, want, ok := opts.RowCRC(seg); ok {
						crc = &rowCRC{size: R, want: want}
					}
				}
				if err := scanSegment(rctx, st, m, seg, layout[seg], pool, frames, damage, crc); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		err := readers.Wait()
		close(frames)
		return err
	})
	for range opts.Workers {
		g.Go(func() error {
			out := make([]byte, 0, m.Header.ChunkSize)
			for w := range frames {
				_, length := m.ChunkRange(w.frame.Index)
				raw, err := codec.Decode(w.frame.Codec, w.frame.Payload, int(length), m.Chunks[w.frame.Index].Hash, out, nil)
				if err != nil {
					off, _ := m.ChunkRange(w.frame.Index)
					err = damage(format.SegmentKey(m.Chunks[w.frame.Index].Segment), &format.ChunkError{Index: w.frame.Index, Offset: off, Length: length,
						Segment: m.Chunks[w.frame.Index].Segment, Err: err})
				} else {
					rep.ok(length)
					if opts.OnChunk != nil {
						err = opts.OnChunk(w.frame.Index, raw)
					}
					if opts.OnProgress != nil {
						opts.OnProgress(length)
					}
				}
				pool <- w.buf[:0]
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	err = g.Wait()
	rep.Sort()
	return rep, err
}

// scanSegment streams one segment and sends its frames to the workers.
func scanSegment(ctx context.Context, st store.Store, m *format.Manifest, seg uint32, chunks []uint64,
	pool chan []byte, frames chan<- work, damage func(string, error) error, crc *rowCRC) error {
	key := format.SegmentKey(seg)
	rc, err := st.Get(ctx, key, 0, -1)
	var r io.Reader
	switch {
	case err == nil:
		defer rc.Close()
		var body io.Reader = rc
		if crc != nil {
			body = io.TeeReader(rc, crc)
		}
		r = bufio.NewReaderSize(body, 1<<20)
	case errors.Is(err, store.ErrNotExist):
		r = eofReader{} // every chunk of it is reported missing
	default:
		return fmt.Errorf("read %s from %s: %w", key, st, err)
	}
	sc, err := format.NewSegmentScanner(r, m, seg, chunks)
	if err != nil {
		return err
	}
	if rc == nil {
		if err := damage(key, fmt.Errorf("%w: segment %s is missing from %s", format.ErrMissing, key, st)); err != nil {
			return err
		}
	} else if herr := sc.HeaderErr(); herr != nil {
		if err := damage(key, fmt.Errorf("segment %s: header: %w", key, herr)); err != nil {
			return err
		}
	}
	for {
		var buf []byte
		select {
		case buf = <-pool:
		case <-ctx.Done():
			return ctx.Err()
		}
		f, buf, err := sc.Next(buf)
		if err == io.EOF {
			pool <- buf[:0]
			break
		}
		if err != nil {
			pool <- buf[:0]
			if ioErr := sc.IOErr(); ioErr != nil {
				return fmt.Errorf("read %s from %s: %w", key, st, ioErr)
			}
			if err := damage(key, err); err != nil {
				return err
			}
			continue
		}
		select {
		case frames <- work{frame: f, buf: buf}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if rc == nil {
		return nil
	}
	if err := sc.Finish(); err != nil {
		if ioErr := sc.IOErr(); ioErr != nil {
			return fmt.Errorf("read %s from %s: %w", key, st, ioErr)
		}
		// A truncated segment was already reported chunk by chunk when
		// frames were lost; report trailer damage on its own otherwise.
		return damage(key, fmt.Errorf("segment %s: index/footer: %w", key, err))
	}
	if crc != nil {
		if bad := crc.finish(); len(bad) > 0 {
			return damage(key, fmt.Errorf("segment %s: %d row(s) fail their parity CRC-32C though every chunk decodes: %v", key, len(bad), bad))
		}
	}
	return nil
}

// rowCRC computes the CRC-32C of each parity row of a streamed segment.
type rowCRC struct {
	size int
	want []uint32
	got  []uint32
	cur  uint32
	off  int
}

func (c *rowCRC) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), c.size-c.off)
		c.cur = format.RowCRCUpdate(c.cur, p[:k])
		c.off += k
		p = p[k:]
		if c.off == c.size {
			c.got = append(c.got, c.cur)
			c.cur, c.off = 0, 0
		}
	}
	return n, nil
}

// finish pads the last row with zeros and returns the rows that differ.
func (c *rowCRC) finish() []int {
	if c.off > 0 {
		c.cur = format.RowCRCUpdate(c.cur, make([]byte, c.size-c.off))
		c.got = append(c.got, c.cur)
	}
	var bad []int
	for r, g := range c.got {
		if r >= len(c.want) || g != c.want[r] {
			bad = append(bad, r)
		}
	}
	return bad
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
