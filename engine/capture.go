package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/seedship/seedship/device"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// DefaultLevel is the default zstd level, 3, which selects
// klauspost/compress's "default" strategy. Its "better" strategy (levels
// 6-9) stores about 1.5% less but costs twice the compression CPU, which
// on two cores makes capture slower than the zstd CLI; the x86 filter
// (format.CodecZstdX86) recovers most of that size for 2% more CPU.
const DefaultLevel = 3

// MaxParityMemory bounds the parity accumulators capture keeps per stripe
// (M × segment size), so memory stays bounded whatever the device size.
const MaxParityMemory = 256 << 20

// CaptureOptions tunes [Capture]. Zero values mean the defaults.
type CaptureOptions struct {
	ChunkSize   int   // default format.DefaultChunkSize
	Level       int   // zstd level 1-22, default DefaultLevel; -1 stores chunks raw
	SegmentSize int64 // default format.DefaultSegmentSize (DefaultParitySegmentSize with parity)
	// Parity, if set, adds Reed-Solomon parity: K data + M parity segments
	// per stripe (RowSize 0 means format.DefaultRowSize).
	Parity *format.Geometry
	// Resume continues an interrupted capture into dst from its
	// checkpoint: options left zero are taken from it, the stored
	// segments are kept, and the source is read only from where the
	// last stored segment ended.
	Resume   bool
	Workers  int // hash/compress workers, default GOMAXPROCS
	Tool     string
	Progress func(Progress)

	imageID *[16]byte // tests: a fixed image ID, so two captures compare byte for byte
}

// Validate checks the options and fills in defaults; callers use it to
// reject bad options before creating anything. Errors wrap ErrBadInput.
func (o *CaptureOptions) Validate() error { return o.applyDefaults() }

func (o *CaptureOptions) applyDefaults() error {
	if o.ChunkSize == 0 {
		o.ChunkSize = format.DefaultChunkSize
	}
	if o.ChunkSize < format.MinChunkSize || o.ChunkSize > format.MaxChunkSize || o.ChunkSize&(o.ChunkSize-1) != 0 {
		return fmt.Errorf("%w: --chunk-size %d: use a power of two from 64KiB to 64MiB", ErrBadInput, o.ChunkSize)
	}
	if o.Level == 0 {
		o.Level = DefaultLevel
	}
	if o.Level < -1 || o.Level > 22 {
		return fmt.Errorf("%w: --level %d: use 1 (fastest) to 22 (smallest), or -1 for no compression", ErrBadInput, o.Level)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = format.DefaultSegmentSize
		if o.Parity != nil {
			o.SegmentSize = format.DefaultParitySegmentSize
		}
	}
	if o.SegmentSize < format.MinSegmentSize {
		return fmt.Errorf("%w: --segment-size %d: use at least 64KiB", ErrBadInput, o.SegmentSize)
	}
	if o.Parity != nil {
		if o.Parity.RowSize == 0 {
			// Rows of at most 1/16 segment keep the rounding of each
			// stripe's shard length (at most one row) small.
			o.Parity.RowSize = format.DefaultRowSize
			for o.Parity.RowSize > 4096 && int64(o.Parity.RowSize)*16 > o.SegmentSize {
				o.Parity.RowSize /= 2
			}
		}
		if err := o.Parity.Validate(); err != nil {
			return fmt.Errorf("%w: --parity: %w", ErrBadInput, err)
		}
		// Capture holds M shard-sized parity accumulators per stripe.
		if mem := int64(o.Parity.M) * (o.SegmentSize + int64(o.ChunkSize)); mem > MaxParityMemory {
			return fmt.Errorf("%w: --parity %d+%d with --segment-size %d needs %d MiB of parity buffers: use a smaller --segment-size (at most %d MiB per parity shard)",
				ErrBadInput, o.Parity.K, o.Parity.M, o.SegmentSize, mem>>20, MaxParityMemory/int64(o.Parity.M)>>20)
		}
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return nil
}

// CaptureResult describes a finished capture.
type CaptureResult struct {
	Manifest *format.Manifest
	Elapsed  time.Duration
	// ResumedAt is the source offset a resumed capture started reading
	// at (0 for a fresh capture); ReadBytes what it read of the source.
	ResumedAt, ReadBytes int64
}

// job is one chunk travelling through the capture pipeline.
type job struct {
	index  uint64
	raw    []byte
	out    []byte
	blocks []format.BlockDigest
	ec     format.EncodedChunk
	done   chan struct{} // closed when ec is ready
}

// Source is a block device or regular file opened for capture.
type Source struct {
	Path string
	Info device.Info
	f    *os.File
}

// OpenSource opens path for capture: a block device or a regular file
// that this process can read. Errors wrap ErrBadInput.
func OpenSource(path string) (*Source, error) { return OpenSourceWith(path, false) }

// OpenSourceWith is OpenSource that, unless allowInUse, also refuses a
// block device that is mounted or otherwise in use: a live filesystem
// changes while it is read, and the seed would not be a consistent image
// of any moment. Take the mirror out of service first, as the vendors'
// procedures say, or capture a snapshot.
func OpenSourceWith(path string, allowInUse bool) (*Source, error) {
	// The manifest records an absolute path, so that restore can recognise
	// the source from any working directory.
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	info, err := device.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: source %s: %w", ErrBadInput, path, err)
	}
	if info.IsBlock && !allowInUse {
		var inUse *device.InUseError
		if err := device.CheckWritable(path); errors.As(err, &inUse) {
			return nil, fmt.Errorf("%w: source %s %s: a live device changes while it is read; take it out of service (%s), capture a snapshot, or pass --allow-in-use",
				ErrBadInput, path, inUse.Reason, inUse.Fix)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: cannot read source %s: %w (check the path and that you may read it; devices usually need root)", ErrBadInput, path, err)
	}
	return &Source{Path: path, Info: info, f: f}, nil
}

// Close closes the source.
func (s *Source) Close() error { return s.f.Close() }

// Capture reads the source and writes a seed image into dst, which must be
// empty. It reads the source once, sequentially; workers hash and compress
// chunks in parallel; one goroutine appends them in order to segments and
// feeds the whole-source SHA-256. The manifest is written last, so an
// interrupted capture never looks complete.
func Capture(ctx context.Context, source *Source, dst store.Store, opts CaptureOptions) (*CaptureResult, error) {
	src, info, f := source.Path, source.Info, source.f
	srcInfo := sourceOf(src, info)
	var ck *checkpoint
	if opts.Resume {
		var err error
		if ck, err = readCheckpoint(ctx, dst); err != nil {
			return nil, err
		}
		if err := ck.checkSource(src, srcInfo); err != nil {
			return nil, err
		}
		if err := opts.adopt(ck); err != nil {
			return nil, err
		}
	}
	if err := opts.applyDefaults(); err != nil {
		return nil, err
	}
	if !opts.Resume {
		if err := requireEmpty(ctx, dst); err != nil {
			return nil, err
		}
	}

	codec, err := format.NewChunkCodec(max(opts.Level, 0), opts.Workers, opts.ChunkSize)
	if err != nil {
		return nil, err
	}
	defer codec.Close()

	var imageID [16]byte
	start := time.Now()
	if ck != nil {
		if imageID, err = decodeID(ck.ImageID); err != nil {
			return nil, err
		}
		start = ck.CaptureStart
	} else if opts.imageID != nil {
		imageID = *opts.imageID
	} else if _, err := rand.Read(imageID[:]); err != nil {
		return nil, err
	}
	size := info.Size
	nchunks := uint64((size + int64(opts.ChunkSize) - 1) / int64(opts.ChunkSize))
	meter := NewMeter(size, opts.Progress)

	g, gctx := errgroup.WithContext(ctx)
	up := newUploader(ctx, dst, store.ConnectionsOf(dst, 2))
	// However the capture ends, no upload is left running.
	defer up.wait()
	iw, err := format.NewImageWriter(up.create, imageID, opts.SegmentSize, nchunks)
	if err != nil {
		return nil, err
	}
	if opts.Parity != nil {
		err := iw.SetParity(*opts.Parity, func(ps *format.ParitySegment) error {
			r := io.MultiReader(bytes.NewReader(ps.Header), bytes.NewReader(ps.Rows), bytes.NewReader(ps.Trailer))
			return dst.Put(ctx, format.ParityKey(ps.Number), r, ps.Size())
		})
		if err != nil {
			return nil, err
		}
	}
	whole := sha256.New()
	first := uint64(0)
	if ck != nil {
		// Leftovers of the interrupted run (temporary files, incomplete
		// multipart uploads) take space and are never used again.
		if c, ok := store.AsCleaner(dst); ok {
			if err := c.RemoveIncomplete(ctx); err != nil {
				return nil, fmt.Errorf("remove the interrupted capture's incomplete uploads from %s: %w", dst, err)
			}
		}
		rs, err := resumeState(ctx, dst, ck, imageID)
		if err != nil {
			return nil, err
		}
		err = iw.Resume(rs, func(n uint32) (io.ReadCloser, error) { return dst.Get(ctx, format.SegmentKey(n), 0, -1) })
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
		}
		if whole, err = restoreHash(ck.SHA256State); err != nil {
			return nil, err
		}
		first = ck.Chunks
		meter.Add(int64(first) * int64(opts.ChunkSize))
	} else {
		ck = &checkpoint{Format: "seedship-checkpoint", Version: 1, ImageID: hex.EncodeToString(imageID[:]), Source: srcInfo,
			ChunkSize: opts.ChunkSize, Level: opts.Level, SegmentSize: opts.SegmentSize, Parity: opts.Parity, CaptureStart: start}
	}
	// After each stored segment, record how far we got: the state is
	// taken now, and written once the segment (and every one before it)
	// has arrived.
	iw.OnSegment(func(sum format.SegmentSummary, chunks uint64) error {
		state, err := hashState(whole)
		if err != nil {
			return err
		}
		c := *ck
		c.Segments, c.Chunks, c.SHA256State = sum.Number+1, chunks, state
		up.afterStored(func() error {
			if err := writeCheckpoint(ctx, dst, &c); err != nil {
				return fmt.Errorf("write %s: %w", CheckpointKey, err)
			}
			return nil
		})
		return up.failed()
	})
	resumedAt := min(int64(first)*int64(opts.ChunkSize), size)
	if _, err := f.Seek(resumedAt, io.SeekStart); err != nil {
		return nil, fmt.Errorf("seek source %s to %d: %w", src, resumedAt, err)
	}
	// Tell the kernel we read front to back, once.
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)

	// A fixed set of jobs bounds memory: about (2×workers+2) × 2 chunks.
	njobs := 2*opts.Workers + 2
	free := make(chan *job, njobs)
	nblocks := format.NumBlocks(opts.ChunkSize)
	for range njobs {
		// out has room for zstd's worst case, so it is never regrown.
		free <- &job{raw: make([]byte, opts.ChunkSize), out: make([]byte, 0, opts.ChunkSize+opts.ChunkSize/64+4096), blocks: make([]format.BlockDigest, nblocks)}
	}
	work := make(chan *job, opts.Workers)
	ordered := make(chan *job, njobs)

	// Reader: one sequential pass over the source.
	g.Go(func() error {
		defer close(work)
		defer close(ordered)
		for i := first; i < nchunks; i++ {
			var j *job
			select {
			case j = <-free:
			case <-gctx.Done():
				return gctx.Err()
			}
			off := int64(i) * int64(opts.ChunkSize)
			n := int(min(int64(opts.ChunkSize), size-off))
			if _, err := io.ReadFull(f, j.raw[:n]); err != nil {
				return fmt.Errorf("read source %s at byte %d: %w", src, off, err)
			}
			j.index, j.raw, j.done = i, j.raw[:n], make(chan struct{})
			for _, ch := range []chan *job{ordered, work} {
				select {
				case ch <- j:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		}
		// The source must not have grown or shrunk under us.
		var one [1]byte
		if n, _ := f.Read(one[:]); n != 0 {
			return fmt.Errorf("source %s grew during capture: stop writers to it and capture again", src)
		}
		return nil
	})
	for range opts.Workers {
		g.Go(func() error {
			for j := range work {
				j.ec = codec.Encode(j.raw, j.out, j.blocks)
				close(j.done)
			}
			return nil
		})
	}
	// Writer: in order, appends frames and hashes the whole source.
	g.Go(func() error {
		for j := range ordered {
			select {
			case <-j.done:
			case <-gctx.Done():
				return gctx.Err()
			}
			whole.Write(j.raw)
			if err := iw.Add(&j.ec); err != nil {
				return err
			}
			meter.Add(int64(len(j.raw)))
			if !j.ec.Zero && j.ec.Codec != format.CodecRaw && cap(j.ec.Payload) > cap(j.out) {
				j.out = j.ec.Payload[:0] // keep a grown buffer
			}
			j.raw, j.ec = j.raw[:cap(j.raw)], format.EncodedChunk{}
			free <- j
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		iw.Abort(err)
		return nil, err
	}
	end := time.Now()
	hdr := format.Header{
		Tool:         opts.Tool,
		Size:         size,
		ChunkSize:    opts.ChunkSize,
		Compression:  compressionOf(opts.Level),
		SHA256:       hex.EncodeToString(whole.Sum(nil)),
		Source:       srcInfo,
		CaptureStart: start.UTC(),
		CaptureEnd:   end.UTC(),
	}
	m, err := iw.Finish(hdr)
	if err != nil {
		return nil, err
	}
	// Every segment must be stored before the manifest says so.
	if err := up.wait(); err != nil {
		return nil, err
	}
	mb, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	// Copies first, for parity images: no single file's loss makes the
	// image unreadable (spec §9.5).
	for _, key := range m.CopyKeys() {
		if err := dst.Put(ctx, key, bytes.NewReader(mb), int64(len(mb))); err != nil {
			return nil, fmt.Errorf("write %s to %s: %w", key, dst, err)
		}
	}
	// Written last: its presence is what makes the image complete.
	if err := dst.Put(ctx, format.ManifestKey, bytes.NewReader(mb), int64(len(mb))); err != nil {
		return nil, fmt.Errorf("write manifest to %s: %w", dst, err)
	}
	// The checkpoint has served; a complete image does not need it.
	if err := dst.Delete(ctx, CheckpointKey); err != nil {
		return nil, fmt.Errorf("remove %s from %s: %w", CheckpointKey, dst, err)
	}
	return &CaptureResult{Manifest: m, Elapsed: time.Since(start), ResumedAt: resumedAt, ReadBytes: size - resumedAt}, nil
}

// requireEmpty refuses a destination that already holds anything, so a
// capture never mixes with or overwrites another image.
func requireEmpty(ctx context.Context, st store.Store) error {
	errFound := errors.New("found")
	var first string
	err := st.List(ctx, "", func(i store.Info) error { first = i.Key; return errFound })
	if errors.Is(err, errFound) {
		if _, cerr := st.Stat(ctx, CheckpointKey); cerr == nil {
			return fmt.Errorf("%w: destination %s holds an interrupted capture: continue it with --resume, or choose an empty destination", ErrBadInput, st)
		}
		return fmt.Errorf("%w: destination %s is not empty (it holds %s): choose an empty or new directory", ErrBadInput, st, first)
	}
	if err != nil {
		return fmt.Errorf("list destination %s: %w", st, err)
	}
	return nil
}

func compressionOf(level int) format.Compression {
	if level < 0 {
		return format.Compression{Codec: "none"}
	}
	return format.Compression{Codec: "zstd", Level: level, Encoder: "github.com/klauspost/compress/zstd " + zstdVersion()}
}

func sourceOf(path string, info device.Info) format.Source {
	s := format.Source{Path: path, Kind: "file", Size: info.Size}
	if info.IsBlock {
		s.Kind = "block"
		s.SectorSize = info.LogicalSectorSize
		s.Serial, s.WWN, s.Model, s.ByID = info.Serial, info.WWN, info.Model, info.ByID
	}
	if h, err := os.Hostname(); err == nil {
		s.Host = h
	}
	return s
}
