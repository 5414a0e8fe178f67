package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"slices"
	"time"
	"unsafe"

	"filippo.io/age"

	"github.com/seedship/seedship/device"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/store"
)

// SignatureSuffix is appended to a manifest file's key (manifest.ssm,
// manifest.ssm.N) to name its signature.
const SignatureSuffix = ".sig"

// DefaultLevel is the default zstd level, 3, which selects
// klauspost/compress's "default" strategy. Its "better" strategy (levels
// 6-9) stores about 1.5% less but costs twice the compression CPU, which
// on two cores makes capture slower than the zstd CLI; the x86 filter
// (format.CodecZstdX86) recovers most of that size for 2% more CPU.
const DefaultLevel = 3

// MaxParityMemory bounds the parity accumulators capture keeps per stripe
// (M shards, each a segment and its index), so memory stays bounded
// whatever the device size. The K data segments a stripe grows together
// stream out as they grow: they hold no more than their uploads' buffers
// (groupUploadMemory).
const MaxParityMemory = 256 << 20

// CaptureOptions tunes [Capture]. Zero values mean the defaults.
type CaptureOptions struct {
	ChunkSize   int   // default format.DefaultChunkSize
	Level       int   // zstd level 1-22, default DefaultLevel; -1 stores chunks raw
	SegmentSize int64 // default format.DefaultSegmentSize (DefaultParitySegmentSize with parity)
	// Parity, if set, adds Reed-Solomon parity: K data + M parity segments
	// per stripe (RowSize 0 means format.DefaultRowSize). The K data
	// segments of a stripe grow together (spec §5.5), so each stripe's
	// parity costs about M/K of its data.
	Parity *format.Geometry
	// Width grows this many data segments together without parity (spec
	// §5.5: each frame goes to the shortest), so that a courier volume
	// set of Width drives, segment n of each group on its own drive, is
	// written in parallel. Default 1: one segment at a time. With Parity
	// the groups are the stripes: leave Width 0, or give K.
	Width int
	// DigestOnly records each chunk's hash and block digests but stores
	// none of its data (feature "digest-only"): every chunk that is not
	// all zero becomes a frame of codec format.CodecDigestOnly with an
	// empty payload, so the segments hold only frame headers and
	// indexes, a few MiB per TiB. Level is then ignored.
	DigestOnly bool
	// Resume continues an interrupted capture into dst from its
	// checkpoint: options left zero are taken from it, the stored
	// segments are checked and kept, the source up to there is read again
	// to prove it is the same, and capture continues where the last
	// stored segment ended.
	Resume bool
	// Workers is the number of hash/compress workers, 1 to MaxWorkers
	// (default GOMAXPROCS). Capture runs fewer when the chunk buffers of
	// that many would not fit its memory bound.
	Workers  int
	Tool     string
	Progress func(Progress)
	// BeforeManifest, if set, runs once the whole source has been read
	// and stored, just before the manifest is written; what it returns is
	// recorded as the manifest's "resync" header field (a replication
	// product's seed token). An error fails the capture before the image
	// is complete.
	BeforeManifest func(ctx context.Context) (json.RawMessage, error)
	// SignManifest, if set, signs the manifest's bytes; the signature is
	// stored beside the manifest and each of its copies, under the
	// manifest file's key plus SignatureSuffix, before the manifest is
	// written (package sign makes OpenSSH signatures, namespace
	// "seedship").
	SignManifest func(manifest []byte) ([]byte, error)
	// Encrypt, if set, makes an encrypted image (spec §11: feature
	// "aead"): a new root key, wrapped for its recipients and
	// passphrase, seals every stored chunk and the manifest's secret
	// fields, and keys the chunk digests. Its checkpoint is sealed too,
	// and its root key also wrapped for a resume identity kept on this
	// host until the capture finishes (resumeKeyPath). Not with
	// DigestOnly.
	Encrypt *EncryptOptions
	// Identities, with Resume, open an encrypted capture's checkpoint
	// when this host does not hold its resume identity: the identities
	// of one of its recipients, or its passphrase
	// (seal.PassphraseIdentity).
	Identities []age.Identity

	imageID *[16]byte     // tests: a fixed image ID, so two captures compare byte for byte
	rootKey *seal.RootKey // tests: a fixed root key, so two encrypted images share it

	segmentSizeDefault bool // SegmentSize was not given: checkParity may shrink it to fit
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
			o.segmentSizeDefault = true
		}
	}
	if o.SegmentSize < format.MinSegmentSize {
		return fmt.Errorf("%w: --segment-size %d: use at least 64KiB", ErrBadInput, o.SegmentSize)
	}
	if o.Workers == 0 {
		o.Workers = min(runtime.GOMAXPROCS(0), MaxWorkers)
	}
	if o.Workers < 1 || o.Workers > MaxWorkers {
		return fmt.Errorf("%w: --workers %d: use 1 to %d", ErrBadInput, o.Workers, MaxWorkers)
	}
	if o.DigestOnly && o.Encrypt != nil {
		return fmt.Errorf("%w: --digest-only with --recipient or --passphrase-file: a digest-only image cannot be encrypted in this format version; leave out one or the other", ErrBadInput)
	}
	if o.Parity != nil {
		if o.Width != 0 && o.Width != o.Parity.K {
			return fmt.Errorf("%w: width %d with --parity %d+%d: a parity image grows the K segments of each stripe together; leave the width unset", ErrBadInput, o.Width, o.Parity.K, o.Parity.M)
		}
		o.Width = o.Parity.K
		return o.checkParity()
	}
	if o.Width == 0 {
		o.Width = 1
	}
	if o.Width < 1 || o.Width > format.MaxGroupWidth {
		return fmt.Errorf("%w: width %d: grow 1 to %d segments together", ErrBadInput, o.Width, format.MaxGroupWidth)
	}
	if o.pipelineBudget() < pipelineCost(o.ChunkSize, minPipeline, o.compresses()) {
		return fmt.Errorf("%w: width %d: its %d uploads at once need more memory than capture has beside the chunk pipeline; use fewer segments at once",
			ErrBadInput, o.Width, o.Width)
	}
	return nil
}

// compresses reports whether capture compresses chunks.
func (o *CaptureOptions) compresses() bool { return o.Level > 0 && !o.DigestOnly }

// checkParity checks the parity geometry and that its accumulators fit
// beside the smallest chunk pipeline in captureMemory (and within
// MaxParityMemory); when they do not, the error names the largest segment
// size that fits, with a smaller chunk size if the asked-for one leaves
// no room for a segment at all.
func (o *CaptureOptions) checkParity() error {
	g := o.Parity
	if g.RowSize == 0 {
		// Rows of at most 1/16 segment keep the rounding of each
		// stripe's shard length (at most one row) small.
		g.RowSize = format.DefaultRowSize
		for g.RowSize > 4096 && int64(g.RowSize)*16 > o.SegmentSize {
			g.RowSize /= 2
		}
	}
	if err := g.Validate(); err != nil {
		return fmt.Errorf("%w: --parity: %w", ErrBadInput, err)
	}
	compress := o.compresses()
	// room is what parity may hold beside the smallest pipeline and the
	// uploads of a stripe's K data segments.
	room := func(chunk int) int64 {
		return min(MaxParityMemory, captureMemory-groupUploadMemory(g.K)-pipelineCost(chunk, minPipeline, compress))
	}
	mem := int64(g.M) * format.ParityShardSize(o.SegmentSize, o.ChunkSize)
	if mem <= room(o.ChunkSize) {
		return nil
	}
	// The largest segment size that fits, with the largest chunk size
	// (up to the asked-for one) that leaves room for a segment at all.
	fits := func(chunk int) int64 {
		n := room(chunk)/int64(g.M) - format.ParityShardSize(0, chunk)
		if n >= 1<<20 {
			return n &^ (1<<20 - 1)
		}
		return n &^ (format.MinSegmentSize - 1)
	}
	chunk := o.ChunkSize
	for chunk > format.MinChunkSize && fits(chunk) < format.MinSegmentSize {
		chunk /= 2
	}
	seg := min(o.SegmentSize, fits(chunk))
	if chunk == o.ChunkSize && o.segmentSizeDefault && seg >= format.DefaultParitySegmentSize/2 {
		// Not asked for, and only a little too large (large chunks
		// leave less room for a stripe's parity): the default shrinks
		// to what fits. Far too large is refused with advice.
		o.SegmentSize = seg
		return nil
	}
	if chunk != o.ChunkSize {
		return fmt.Errorf("%w: --parity %d+%d with --chunk-size %s needs more than %d MiB of parity and chunk buffers: use --chunk-size %s --segment-size %s or smaller",
			ErrBadInput, g.K, g.M, sizeFlag(int64(o.ChunkSize)), captureMemory>>20, sizeFlag(int64(chunk)), sizeFlag(seg))
	}
	return fmt.Errorf("%w: --parity %d+%d with --segment-size %s needs %d MiB of parity buffers (at most %d MiB with --chunk-size %s): use --segment-size %s or smaller",
		ErrBadInput, g.K, g.M, sizeFlag(o.SegmentSize), mem>>20, room(o.ChunkSize)>>20, sizeFlag(int64(o.ChunkSize)), sizeFlag(seg))
}

// sizeFlag writes n as a --segment-size value: MiB or KiB when exact.
func sizeFlag(n int64) string {
	switch {
	case n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprint(n)
}

// pipelineBudget is what the chunk pipeline may hold: captureMemory less
// the parity accumulators and the uploads of a group beyond the first.
func (o *CaptureOptions) pipelineBudget() int64 {
	budget := int64(captureMemory) - groupUploadMemory(o.Width)
	if o.Parity != nil {
		budget -= int64(o.Parity.M) * format.ParityShardSize(o.SegmentSize, o.ChunkSize)
	}
	return max(budget, 0)
}

// CaptureResult describes a finished capture.
type CaptureResult struct {
	Manifest *format.Manifest
	Elapsed  time.Duration
	// ResumedAt is the source offset a resumed capture started reading
	// at (0 for a fresh capture); ReadBytes what it read of the source
	// after that point. RehashedBytes is what a resumed capture read
	// again, in RehashElapsed, to prove that the source is the one
	// already captured.
	ResumedAt, ReadBytes, RehashedBytes int64
	RehashElapsed                       time.Duration
}

// maxChunkTable bounds the chunk table a capture builds in memory (and
// the manifest that holds it): 128 MiB is 2.4 million chunks, a 19 TiB
// device at the default chunk size.
const maxChunkTable = 128 << 20

// checkChunkTable refuses a chunk size so small for the source that its
// chunk table would not fit maxChunkTable, naming one that does.
func checkChunkTable(size int64, chunkSize int) error {
	entry := int64(unsafe.Sizeof(format.ChunkEntry{}))
	chunks := func(c int) int64 { return (size + int64(c) - 1) / int64(c) }
	if chunks(chunkSize)*entry <= maxChunkTable {
		return nil
	}
	fits := chunkSize
	for fits < format.MaxChunkSize && chunks(fits)*entry > maxChunkTable {
		fits *= 2
	}
	if chunks(fits)*entry > maxChunkTable {
		return fmt.Errorf("%w: a source of %d bytes has too many chunks for one image even at --chunk-size 64MiB (at most %d MiB of chunk table)",
			ErrBadInput, size, maxChunkTable>>20)
	}
	return fmt.Errorf("%w: --chunk-size %s makes %d chunks of this %d-byte source, whose table would take %d MiB (at most %d MiB): use --chunk-size %s or larger",
		ErrBadInput, sizeFlag(int64(chunkSize)), chunks(chunkSize), size, chunks(chunkSize)*entry>>20, maxChunkTable>>20, sizeFlag(int64(fits)))
}

// capture is one run of [Capture]: planned (options, image identity,
// where to start), then written.
type capture struct {
	src  *Source
	dst  store.Store
	opts CaptureOptions

	ck      *format.Checkpoint // the progress record; on resume, as read
	resume  bool
	size    int64
	nchunks uint64
	first   uint64    // first chunk to read
	whole   hash.Hash // whole-source SHA-256 of chunks before first
	meter   *Meter
	rehash  int64         // source bytes re-read to prove continuity
	rehashT time.Duration // and how long that took
	// wrote says this run has written to dst (or dst held an interrupted
	// capture): a failure then leaves resumable work, not bad input.
	wrote bool
	// cont is what the run continues from besides dst: the segments
	// stored on full drives no longer attached (continue.go).
	cont *Continuation
	// keys, for an encrypted capture, seal its chunks, manifest and
	// checkpoints (encrypt.go); nil for a plaintext one.
	keys *captureKeys
}

// Capture reads the source and writes a seed image into dst, which must be
// empty (or, with opts.Resume, hold an interrupted capture of the same
// source). It holds dst's writer lock throughout. It reads the source once,
// sequentially; workers hash and compress chunks in parallel; one
// goroutine appends them in order to segments, feeds the whole-source
// SHA-256 and checkpoints progress. The manifest is written last, so an
// interrupted capture never looks complete.
//
// Errors: bad input (ErrBadInput) when nothing was written; an error
// wrapping context.Canceled when ctx was cancelled; a failure after
// something was written is [Resumable], except a source that changed
// while it was read (refused: wraps [device.ErrSourceChanged]).
func Capture(ctx context.Context, source *Source, dst store.Store, opts CaptureOptions) (*CaptureResult, error) {
	unlock, err := lockImage(ctx, dst, "capture")
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := planCapture(ctx, source, dst, opts)
	if err != nil {
		return nil, err
	}
	res, err := c.run(ctx)
	return res, c.classify(ctx, err)
}

// lockImage takes dst's writer lock for the whole command, so that a
// second writer is refused (bad input: nothing was written). The returned
// function releases it.
func lockImage(ctx context.Context, dst store.Store, command string) (func(), error) {
	host, _ := os.Hostname()
	owner := fmt.Sprintf("seedship %s on %s, pid %d", command, host, os.Getpid())
	unlock, err := store.Lock(ctx, dst, owner)
	switch {
	case errors.Is(err, store.ErrLocked):
		return nil, fmt.Errorf("%w: %w: wait for the other writer to finish, or choose another destination", ErrBadInput, err)
	case errors.Is(err, store.ErrNoLock):
		return nil, fmt.Errorf("%w: %s cannot hold a writer lock, so two writers could mix their images: %w; use a store that supports locking", ErrBadInput, dst, err)
	case err != nil:
		return nil, fmt.Errorf("%w: lock %s: %w", ErrBadInput, dst, err)
	}
	return func() { _ = unlock(context.WithoutCancel(ctx)) }, nil
}

// resumeFrom makes c continue the capture checkpoint ck records: an
// encrypted capture's checkpoint opened, the source proven to be the one
// captured, and opts taken from the checkpoint.
func (c *capture) resumeFrom(ck *format.Checkpoint, src *Source, opts *CaptureOptions) error {
	var err error
	// An encrypted capture's checkpoint seals the source's identity.
	if c.keys, err = openCheckpoint(ck, *opts); err != nil {
		return err
	}
	if err := checkSameSource(ck, src); err != nil {
		return err
	}
	if err := opts.adopt(ck); err != nil {
		return err
	}
	// An image is in use if any of its runs allowed it.
	ck.Source.InUse = ck.Source.InUse || src.AllowInUse
	c.ck = ck
	return nil
}

// setOptions completes opts with their defaults, checks them, and sizes
// the capture's chunk table and progress meter.
func (c *capture) setOptions(opts CaptureOptions) error {
	if err := opts.applyDefaults(); err != nil {
		return err
	}
	c.opts = opts
	c.nchunks = uint64((c.size + int64(opts.ChunkSize) - 1) / int64(opts.ChunkSize))
	if err := checkChunkTable(c.size, opts.ChunkSize); err != nil {
		return err
	}
	c.meter = NewMeter(c.size, opts.Progress)
	return nil
}

// planCapture checks the options (taking a resumed capture's from its
// checkpoint) and the destination, and fixes the image's identity. It
// writes nothing; every error wraps ErrBadInput.
func planCapture(ctx context.Context, src *Source, dst store.Store, opts CaptureOptions) (*capture, error) {
	c := &capture{src: src, dst: dst, resume: opts.Resume, size: src.Info.Size, whole: sha256.New()}
	if opts.Resume {
		ck, err := readCheckpoint(ctx, dst)
		if err != nil {
			return nil, err
		}
		if err := c.resumeFrom(ck, src, &opts); err != nil {
			return nil, err
		}
	}
	if err := c.setOptions(opts); err != nil {
		return nil, err
	}
	if opts.Resume {
		return c, nil
	}
	if err := requireEmpty(ctx, dst); err != nil {
		return nil, err
	}
	c.ck = &format.Checkpoint{Source: src.describe(), ChunkSize: opts.ChunkSize, Level: opts.Level,
		SegmentSize: opts.SegmentSize, Parity: opts.Parity, Width: opts.widthWithoutParity(), DigestOnly: opts.DigestOnly, CaptureStart: time.Now(), Stored: format.StoredDigest(nil, nil)}
	if opts.imageID != nil {
		c.ck.ImageID = *opts.imageID
	} else {
		rand.Read(c.ck.ImageID[:]) // never fails (crypto/rand, Go 1.24)
	}
	if opts.Encrypt != nil {
		k, err := newCaptureKeys(opts.Encrypt, c.ck.ImageID, opts.rootKey)
		if err != nil {
			return nil, err
		}
		c.keys = k
		c.ck.WrappedKeys = append(slices.Clone(k.enc.WrappedKeys), k.resumeCopy)
		c.ck.Recipients, c.ck.Passphrase = k.enc.Recipients, k.enc.Passphrase
	}
	return c, nil
}

// run writes the image: it recovers a resumed capture's state (or writes
// the first checkpoint), streams the source through the pipeline into
// segments, checks that the source did not change, and writes the
// manifest.
func (c *capture) run(ctx context.Context) (*CaptureResult, error) {
	var rs format.ResumeState
	if c.resume {
		c.wrote = true // dst already holds the interrupted capture
		var err error
		if rs, err = c.prepareResume(ctx); err != nil {
			return nil, err
		}
	} else {
		// The resume identity is kept before the checkpoint that names
		// its copy is stored.
		if err := c.keepResumeKey(); err != nil {
			return nil, err
		}
		if err := c.putCheckpoint(ctx, c.ck); err != nil {
			_ = c.dropResumeKey() // no checkpoint names it: nothing to resume
			return nil, err
		}
	}
	c.wrote = true
	// The codec holds an encoder per worker: size both to the memory bound.
	shape := shapeFor(c.opts.ChunkSize, c.opts.Workers, c.opts.compresses(), c.opts.pipelineBudget())
	level := max(c.opts.Level, 0)
	if c.opts.DigestOnly {
		level = 0 // nothing is compressed
	}
	codec, err := format.NewChunkCodec(level, shape.workers, c.opts.ChunkSize)
	if err != nil {
		return nil, err
	}
	defer codec.Close()
	if c.keys != nil {
		codec.SetKeys(c.keys.keys)
	}
	// A group's segments stream at once, each through its own upload,
	// with the store's connections to spare for the previous group's
	// last bytes.
	up := newUploader(ctx, c.dst, c.opts.Width+store.ConnectionsOf(c.dst, 2))
	// However the capture ends, no upload is left running.
	defer func() { _ = up.wait() }()
	iw, err := c.imageWriter(ctx, up, rs)
	if err != nil {
		return nil, err
	}
	if err := c.pipeline(codec, iw, shape).run(ctx); err != nil {
		_ = iw.Abort(err) // err says why; the sticky error adds nothing
		return nil, err
	}
	if err := c.src.checkUnchanged(); err != nil {
		_ = iw.Abort(err)
		_ = up.wait() // the refusal matters, not how the uploads ended
		// Resuming would continue the torn image: the checkpoint goes,
		// and with it the resume key.
		if c.dst.Delete(context.WithoutCancel(ctx), format.CheckpointKey) == nil {
			_ = c.dropResumeKey() // the refusal matters more
		}
		return nil, err
	}
	m, err := c.finish(ctx, iw, up)
	if err != nil {
		return nil, err
	}
	resumedAt := min(int64(c.first)*int64(c.opts.ChunkSize), c.size)
	return &CaptureResult{Manifest: m, Elapsed: time.Since(c.ck.CaptureStart), ResumedAt: resumedAt,
		ReadBytes: c.size - resumedAt, RehashedBytes: c.rehash, RehashElapsed: c.rehashT}, nil
}

// imageWriter sets up the segment writer: segments stream through the
// uploader, parity segments are stored as each stripe completes, a
// resumed capture continues from rs, and every closed segment is
// checkpointed once it has arrived.
func (c *capture) imageWriter(ctx context.Context, up *uploader, rs format.ResumeState) (*format.ImageWriter, error) {
	iw, err := format.NewImageWriter(up.create, c.ck.ImageID, c.opts.SegmentSize, c.nchunks)
	if err != nil {
		return nil, err
	}
	if c.keys != nil {
		if err := iw.SetKeys(c.keys.keys); err != nil {
			return nil, err
		}
	}
	if c.opts.Parity != nil {
		err := iw.SetParity(*c.opts.Parity, func(ps *format.ParitySegment) error {
			r := io.MultiReader(bytes.NewReader(ps.Header), bytes.NewReader(ps.Rows), bytes.NewReader(ps.Trailer))
			return c.dst.Put(ctx, format.ParityID(ps.Number).Key(), r, ps.Size())
		})
		if err != nil {
			return nil, err
		}
		iw.ConcurrentParityWrites() // Put is safe for concurrent use (store.Store)
	}
	if c.opts.Parity == nil && c.opts.Width > 1 {
		if err := iw.SetWidth(c.opts.Width); err != nil {
			return nil, err
		}
	}
	if c.resume {
		if err := iw.Resume(rs); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
		}
	}
	// The state is taken now, when a group of segments is closed, and
	// written once the group (and every segment before it) has arrived.
	iw.OnSegment(func(s format.SegmentDone) error {
		state, err := hashState(c.whole)
		if err != nil {
			return err
		}
		ck := *c.ck
		ck.Segments, ck.Chunks, ck.SHA256State, ck.Stored = s.Segment.Number+1, s.Chunks, state, s.Stored
		up.afterStored(func() error { return c.putCheckpoint(ctx, &ck) })
		return up.failed()
	})
	return iw, nil
}

// pipeline is capture's chunk pipeline: workers hash and compress (or,
// digest-only, only hash); the sink feeds the whole-source hash and the
// image writer, in order.
func (c *capture) pipeline(codec *format.ChunkCodec, iw *format.ImageWriter, shape pipelineShape) *chunkPipeline {
	p := c.encodePipeline(codec, iw, shape)
	if c.opts.DigestOnly {
		// Never keyed: applyDefaults and format refuse digest-only with encryption.
		p.process = func(j *chunkJob) { j.ec = format.DigestChunk(j.raw, j.blocks) }
	}
	return p
}

// requires lists the features the image needs beyond parity (which the
// image writer adds).
func (c *capture) requires() []string {
	if c.opts.DigestOnly {
		return []string{format.FeatureDigestOnly}
	}
	return nil
}

// compression is the manifest's record of how payloads were stored.
func (c *capture) compression() format.Compression {
	if c.opts.DigestOnly {
		return format.Compression{Codec: "none"} // there are no payloads
	}
	return compressionOf(c.opts.Level)
}

// widthWithoutParity is the checkpoint's record of Width: 0 with parity
// (the stripes are the groups) or for one segment at a time.
func (o *CaptureOptions) widthWithoutParity() int {
	if o.Parity != nil || o.Width <= 1 {
		return 0
	}
	return o.Width
}

func (c *capture) encodePipeline(codec *format.ChunkCodec, iw *format.ImageWriter, shape pipelineShape) *chunkPipeline {
	return &chunkPipeline{
		src: c.src.reader(), name: c.src.Path, size: c.size, chunkSize: c.opts.ChunkSize,
		first: c.first, last: c.nchunks, compress: c.opts.compresses(), shape: shape,
		process: func(j *chunkJob) { j.ec = codec.EncodeAt(j.index, j.raw, j.out, j.blocks) },
		sink: func(j *chunkJob) error {
			c.whole.Write(j.raw)
			if err := iw.Add(&j.ec); err != nil {
				return err
			}
			c.meter.Add(int64(len(j.raw)))
			return nil
		},
	}
}

// finish closes the last segment and stripe, waits until every segment
// is stored, and writes the manifest copies, then the manifest; then the
// checkpoint has served.
func (c *capture) finish(ctx context.Context, iw *format.ImageWriter, up *uploader) (*format.Manifest, error) {
	hdr := format.Header{
		Tool:         c.opts.Tool,
		Size:         c.size,
		ChunkSize:    c.opts.ChunkSize,
		Compression:  c.compression(),
		Requires:     c.requires(),
		SHA256:       hex.EncodeToString(c.whole.Sum(nil)),
		Source:       c.ck.Source,
		CaptureStart: c.ck.CaptureStart.UTC(),
		CaptureEnd:   time.Now().UTC(),
	}
	if c.keys != nil {
		hdr.Encryption = c.keys.enc
	}
	m, err := iw.Finish(hdr)
	if err != nil {
		return nil, err
	}
	// Every segment must be stored before the manifest says so.
	if err := up.wait(); err != nil {
		return nil, err
	}
	if c.opts.BeforeManifest != nil {
		token, err := c.opts.BeforeManifest(ctx)
		if err != nil {
			return nil, fmt.Errorf("before the manifest: %w", err)
		}
		m.Header.Resync = token
	}
	mb, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	// The signatures go beside every manifest file, before the manifest:
	// a complete image of a signed capture is never without them.
	if c.opts.SignManifest != nil {
		sig, err := c.opts.SignManifest(mb)
		if err != nil {
			return nil, fmt.Errorf("sign the manifest: %w", err)
		}
		for _, key := range append(m.CopyKeys(), format.ManifestKey) {
			if err := c.dst.Put(ctx, key+SignatureSuffix, bytes.NewReader(sig), int64(len(sig))); err != nil {
				return nil, fmt.Errorf("write %s%s to %s: %w", key, SignatureSuffix, c.dst, err)
			}
		}
	}
	// Copies first, for parity images: no single file's loss makes the
	// image unreadable (spec §9.5).
	for _, key := range m.CopyKeys() {
		if err := c.dst.Put(ctx, key, bytes.NewReader(mb), int64(len(mb))); err != nil {
			return nil, fmt.Errorf("write %s to %s: %w", key, c.dst, err)
		}
	}
	// Written last: its presence is what makes the image complete.
	if err := c.dst.Put(ctx, format.ManifestKey, bytes.NewReader(mb), int64(len(mb))); err != nil {
		return nil, fmt.Errorf("write manifest to %s: %w", c.dst, err)
	}
	if err := c.dst.Delete(ctx, format.CheckpointKey); err != nil {
		return nil, fmt.Errorf("remove %s from %s: %w", format.CheckpointKey, c.dst, err)
	}
	// Its copy went with the checkpoint: the image is complete.
	if err := c.dropResumeKey(); err != nil {
		return nil, err
	}
	return m, nil
}

// classify gives a failed run its kind: interrupted when ctx was
// cancelled, refused when the source changed; otherwise by whether the
// run had written anything: resumable if so (whatever the store calls the
// failure: a full disk, a dropped link, denied access), bad input if not,
// since then the same command, not --resume, is what to run again.
func (c *capture) classify(ctx context.Context, err error) error {
	switch kind := KindOf(err); {
	case err == nil:
		return nil
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	case errors.Is(err, device.ErrSourceChanged), kind == KindInterrupted, kind == KindBadInput, kind == KindIntegrity:
		return err
	case c.wrote:
		return Resumable(err)
	}
	return fmt.Errorf("%w: %w", ErrBadInput, err)
}

// requireEmpty refuses a destination that already holds anything, so a
// capture never mixes with or overwrites another image.
func requireEmpty(ctx context.Context, st store.Store) error {
	errFound := errors.New("found")
	var first string
	err := st.List(ctx, "", func(i store.Info) error { first = i.Key; return errFound })
	if errors.Is(err, errFound) {
		if _, cerr := st.Stat(ctx, format.CheckpointKey); cerr == nil {
			return fmt.Errorf("%w: destination %s holds an interrupted capture: continue it with --resume, or choose an empty destination", ErrBadInput, st)
		}
		return fmt.Errorf("%w: destination %s is not empty (it holds %s): choose an empty or new directory", ErrBadInput, st, first)
	}
	if err != nil {
		return fmt.Errorf("%w: list destination %s: %w", ErrBadInput, st, err)
	}
	return nil
}

func compressionOf(level int) format.Compression {
	if level < 0 {
		return format.Compression{Codec: "none"}
	}
	return format.Compression{Codec: "zstd", Level: level, Encoder: "github.com/klauspost/compress/zstd " + zstdVersion()}
}
