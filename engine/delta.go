package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"time"

	"filippo.io/age"
	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store"
)

// A delta image (spec §12) holds only what changed in a source since a
// base image was captured from it: chunks of the delta's own chunk size
// whose 64 KiB blocks all match the base are of kind base (not stored),
// the rest stored (compressed) or zero, through the ordinary image
// writer, so a delta is an ordinary image in every store, with parity if
// asked. Its base is named by manifest hash, and its base-digest table
// (format.BaseDigestsKey) records what the target must hold wherever the
// delta writes, so that applying it refuses a target not in the base
// state before anything is written.

// maxDeltaChunks is the most chunks [DeltaChunkSize] gives a delta: a
// 14 MiB chunk table (56 bytes a chunk), so that a delta's manifest stays
// small whatever the device. Up to 16 GiB the delta's chunk is one 64 KiB
// block, and a changed block costs one stored block.
const maxDeltaChunks = 1 << 18

// deltaUnit is the least a delta's pipeline reads and hashes at a time:
// 64 KiB reads would cost a system call and a hand-off per block.
const deltaUnit = 4 << 20

// DeltaChunkSize is the delta's default chunk size for a source of size
// bytes: the smallest power of two from 64 KiB up that keeps the delta at
// most maxDeltaChunks chunks (64 KiB up to 16 GiB, 1 MiB up to 256 GiB,
// 4 MiB for 1 TiB, 64 MiB from 16 TiB). A changed block costs its whole
// chunk in the delta (compressed), so larger devices pay for a bounded
// manifest with coarser deltas.
func DeltaChunkSize(size int64) int {
	c := int64(format.MinChunkSize)
	for c < format.MaxChunkSize && (size+c-1)/c > maxDeltaChunks {
		c *= 2
	}
	return int(c)
}

// DefaultDeltaLevel is a delta's default zstd level, 1 (klauspost's
// "fastest" strategy) rather than capture's 3: a delta's chunks are small
// (64 KiB for most devices), so each frame's match-table setup dominates
// compression, and on the 1 GiB benchmark image's 1,000 changed blocks
// level 1 stored 2% more (22.0 instead of 21.5 MiB) for 10% less CPU of
// the whole delta, whose speed bound is the source read.
const DefaultDeltaLevel = 1

// DeltaOptions tunes [Delta]. Zero values mean the defaults.
type DeltaOptions struct {
	// ChunkSize is the delta's chunk size, a power of two from 64 KiB to
	// 64 MiB; 0 means DeltaChunkSize of the source's size.
	ChunkSize   int
	Level       int              // zstd level 1-22 (default DefaultDeltaLevel); -1 stores changed chunks raw
	SegmentSize int64            // as for capture
	Parity      *format.Geometry // as for capture
	Workers     int              // hash/compress workers, 1 to MaxWorkers (default GOMAXPROCS)
	Tool        string
	Progress    func(Progress)
	// Chain, when the base is itself a delta image, holds the images it
	// builds on, nearest first (the base's base, its base if that is a
	// delta too, …, down to a full image): the block digests of a delta's
	// unchanged chunks are in its base. Only their manifests and segment
	// indexes are read.
	Chain []store.Store
	// SignManifest, if set, signs the delta's manifest (see
	// CaptureOptions.SignManifest).
	SignManifest func(manifest []byte) ([]byte, error)
	// Identities open an encrypted base (spec §11): age identities of
	// one of its recipients, or seal.PassphraseIdentity of its
	// passphrase. The delta is then encrypted under the base's root key
	// for the same recipients (spec §12). A plaintext base needs none.
	Identities []age.Identity

	imageID *[16]byte // tests: a fixed image ID
}

// DeltaResult describes a delta written.
type DeltaResult struct {
	Manifest *format.Manifest // the delta's
	Base     *format.Manifest // the base's
	Elapsed  time.Duration
	// ChangedChunks is the number of the delta's chunks that a restore
	// writes (stored or zero); ChangedBlocks the 64 KiB blocks that
	// differ from the base (or lie past its end).
	ChangedChunks uint64
	ChangedBlocks int64
	// DigestsBytes is the size of the base-digest table.
	DigestsBytes int64
}

// Delta compares the source, a frozen snapshot of the device the image in
// base was captured from, with base's block digests and writes a delta
// image holding only the changed chunks into dst, which must be empty. It
// reads the source once, sequentially (workers hash every 64 KiB block in
// parallel, one goroutine the whole-source SHA-256), and of the base only
// its manifest and segment indexes, never a payload. A base that is
// itself a delta needs the images it builds on (opts.Chain); the delta of
// a delta then applies onto a target that received the base delta. A
// source smaller than the base is refused. An encrypted base needs
// opts.Identities (else ErrBadInput, nothing written); the delta is then
// encrypted under the base's root key for the same recipients (spec
// §12), and an encrypted base that is itself a delta is refused.
//
// A delta that fails or is interrupted removes what it wrote (dst was
// empty, and it held dst's writer lock), so the same command can be run
// again; the errors are [Resumable] or interrupted accordingly.
func Delta(ctx context.Context, base store.Store, src *Source, dst store.Store, opts DeltaOptions) (*DeltaResult, error) {
	start := time.Now()
	bim, _, err := openKeyed(ctx, base, nil, opts.Identities, keyRequired)
	if err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	bm := bim.Manifest()
	if bm.Encrypted() && bm.Header.RequiresFeature(format.FeatureDelta) {
		// Its kind base chunks' keyed digests are bound to its own
		// base's chunks, which the base-digest table cannot say.
		return nil, fmt.Errorf("%w: base %s is an encrypted delta: this seedship makes deltas of full encrypted images only; compute the delta against the full image, or capture a full encrypted image of %s", ErrBadInput, base, src.Path)
	}
	var chain []*seed.Image
	for _, st := range opts.Chain {
		im, err := openImage(ctx, st)
		if err != nil {
			return nil, fmt.Errorf("chain image: %w", err)
		}
		if im.Encrypted() {
			return nil, fmt.Errorf("%w: chain image %s is encrypted: this seedship makes no delta of an encrypted delta; compute the delta against the full image", ErrBadInput, st)
		}
		chain = append(chain, im)
	}
	ib, err := newImageBlocks(bim, chain...)
	if err != nil {
		return nil, err
	}
	defer ib.close()
	size := src.Info.Size
	if size < bm.Header.Size {
		return nil, fmt.Errorf("%w: source %s is %d bytes, smaller than the %d bytes of base %s: a delta cannot shrink a target; capture a full image of it instead",
			ErrBadInput, src.Path, size, bm.Header.Size, base)
	}
	d, err := planDelta(src, bim, dst, opts)
	if err != nil {
		return nil, err
	}
	if err := d.setKeys(); err != nil {
		return nil, err
	}
	d.ib = ib
	unlock, err := lockImage(ctx, dst, "delta")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := requireEmpty(ctx, dst); err != nil {
		return nil, err
	}
	res, err := d.run(ctx)
	if err != nil {
		return nil, d.abandon(ctx, err)
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// deltaRun is one run of [Delta].
type deltaRun struct {
	src     *Source
	base    *seed.Image
	ib      *imageBlocks // the base's block digests
	bm      *format.Manifest
	dst     store.Store
	opts    CaptureOptions // chunk size, level, segment size, parity, workers: checked as capture's
	tool    string
	size    int64
	nchunks uint64
	imageID [16]byte
	meter   *Meter
	start   time.Time
	wrote   bool // something may have been written to dst
	// hasher is the delta's own: plain, or keyed with keys for an
	// encrypted base, whose root key the delta shares (setKeys).
	hasher *format.Hasher
	keys   *seal.Keys
	enc    *format.Encryption
}

// setKeys makes the delta of an encrypted base encrypted under the
// base's root key (spec §12): its own keys derived for its image ID, the
// base's wrapped copies of the root key, so that the base's identities
// open it, and a hasher whose block digests are comparable with the
// base's at the same place (the digest keys are per root key, §11.2).
func (d *deltaRun) setKeys() error {
	d.hasher = format.PlainHasher()
	if !d.bm.Encrypted() {
		return nil
	}
	keys, err := d.bm.Keys().ForImage(d.imageID)
	if err != nil {
		return err
	}
	be := d.bm.Header.Encryption
	d.keys, d.hasher = keys, format.NewKeyedHasher(keys)
	d.enc = &format.Encryption{Scheme: be.Scheme, AEAD: be.AEAD, KDF: be.KDF, WrappedKeys: slices.Clone(be.WrappedKeys),
		Recipients: slices.Clone(be.Recipients), Passphrase: be.Passphrase}
	return nil
}

// planDelta checks the options (with capture's rules) before anything is
// written.
func planDelta(src *Source, bim *seed.Image, dst store.Store, opts DeltaOptions) (*deltaRun, error) {
	size := src.Info.Size
	co := CaptureOptions{ChunkSize: opts.ChunkSize, Level: opts.Level, SegmentSize: opts.SegmentSize, Parity: opts.Parity, Workers: opts.Workers, SignManifest: opts.SignManifest}
	if co.ChunkSize == 0 {
		co.ChunkSize = DeltaChunkSize(size)
	}
	if co.Level == 0 {
		co.Level = DefaultDeltaLevel
	}
	if err := co.Validate(); err != nil {
		return nil, err
	}
	if err := checkChunkTable(size, co.ChunkSize); err != nil {
		return nil, err
	}
	d := &deltaRun{src: src, base: bim, bm: bim.Manifest(), dst: dst, opts: co, tool: opts.Tool, size: size,
		nchunks: uint64((size + int64(co.ChunkSize) - 1) / int64(co.ChunkSize)), meter: NewMeter(size, opts.Progress), start: time.Now()}
	if opts.imageID != nil {
		d.imageID = *opts.imageID
	} else {
		rand.Read(d.imageID[:]) // never fails (crypto/rand, Go 1.24)
	}
	return d, nil
}

// deltaJob is one unit of the source travelling through the delta's
// pipeline: its bytes, the base's digests of its blocks, and what the
// workers made of each delta chunk in it.
type deltaJob struct {
	off    int64
	raw    []byte
	base   []format.BlockDigest // the base's digests of the unit's blocks below the base's end
	blocks []format.BlockDigest // the source's, one per block of the unit
	// atBase are the source's keyed digests of the unit's blocks at the
	// base's places (an encrypted delta whose chunk size is not the
	// base's; unused otherwise).
	atBase []format.BlockDigest
	out    []byte // payloads of the unit's changed chunks
	chunks []deltaChunk
	done   chan struct{} // the worker finished
	hashed chan struct{} // the whole-source hash took the unit
}

// deltaChunk is what a worker found of one delta chunk.
type deltaChunk struct {
	index   uint64
	changed int // blocks that differ from the base
	ec      format.EncodedChunk
}

// run writes the delta: segments through the uploader, the base-digest
// table through its own upload, then the manifest.
func (d *deltaRun) run(ctx context.Context) (*DeltaResult, error) {
	co := d.opts
	unit := max(co.ChunkSize, deltaUnit)
	shape := shapeFor(unit, co.Workers, co.Level > 0, captureMemory)
	codec, err := format.NewChunkCodec(max(co.Level, 0), shape.workers, co.ChunkSize)
	if err != nil {
		return nil, err
	}
	defer codec.Close()
	ib := d.ib
	d.wrote = true
	up := newUploader(ctx, d.dst, store.ConnectionsOf(d.dst, 2))
	defer func() { _ = up.wait() }()
	iw, err := format.NewImageWriter(up.create, d.imageID, co.SegmentSize, d.nchunks)
	if err != nil {
		return nil, err
	}
	if d.keys != nil {
		codec.SetKeys(d.keys)
		if err := iw.SetKeys(d.keys); err != nil {
			return nil, err
		}
	}
	if co.Parity != nil {
		err := iw.SetParity(*co.Parity, func(ps *format.ParitySegment) error {
			r := io.MultiReader(bytes.NewReader(ps.Header), bytes.NewReader(ps.Rows), bytes.NewReader(ps.Trailer))
			return d.dst.Put(ctx, format.ParityID(ps.Number).Key(), r, ps.Size())
		})
		if err != nil {
			return nil, err
		}
	}
	pw := store.PutPipe(ctx, d.dst, format.BaseDigestsKey, -1)
	bufw := bufio.NewWriterSize(pw, 256<<10)
	counted := &countingWriter{w: bufw}
	bgeo := format.BaseDigestsHeader{ChunkSize: co.ChunkSize, Size: d.size, BaseSize: d.bm.Header.Size}
	var bdw *format.BaseDigestsWriter
	if d.keys != nil {
		// The base's keyed digests are bound to the base's chunks.
		bdw, err = format.NewKeyedBaseDigestsWriter(counted, bgeo, d.bm.Header.ChunkSize)
	} else {
		bdw, err = format.NewBaseDigestsWriter(counted, bgeo)
	}
	if err != nil {
		pw.CloseWithError(err)
		return nil, err
	}
	geo := bdw.Header()
	whole := sha256.New()
	res := &DeltaResult{Base: d.bm}
	err = d.pipeline(ctx, shape, unit, codec, ib, whole, func(j *deltaJob) error {
		for _, c := range j.chunks {
			if c.changed == 0 {
				if err := iw.AddBase(c.ec.Hash); err != nil {
					return err
				}
				continue
			}
			if err := iw.Add(&c.ec); err != nil {
				return err
			}
			off := int64(c.index) * int64(co.ChunkSize)
			first := (off - j.off) / blockSize
			var base []format.BlockDigest // none past the base's end
			if nb := int64(geo.BaseBlocks(c.index)); nb > 0 {
				base = j.base[first : first+nb]
			}
			if err := bdw.Add(c.index, base); err != nil {
				return err
			}
			res.ChangedChunks++
			res.ChangedBlocks += int64(c.changed)
		}
		d.meter.Add(int64(len(j.raw)))
		return nil
	})
	if err == nil {
		err = d.src.checkUnchanged()
	}
	if err == nil {
		err = bdw.Close()
	}
	if err == nil {
		err = bufw.Flush()
	}
	if err != nil {
		pw.CloseWithError(err)
		_ = iw.Abort(err)
		return nil, err
	}
	if err := pw.Close(); err != nil {
		return nil, fmt.Errorf("write %s to %s: %w", format.BaseDigestsKey, d.dst, err)
	}
	res.DigestsBytes = counted.n
	sum := bdw.Sum()
	hdr := format.Header{
		Tool:         d.tool,
		Requires:     []string{format.FeatureDelta},
		Size:         d.size,
		ChunkSize:    co.ChunkSize,
		Compression:  compressionOf(co.Level),
		SHA256:       hex.EncodeToString(whole.Sum(nil)),
		Source:       d.src.describe(),
		CaptureStart: d.start.UTC(),
		CaptureEnd:   time.Now().UTC(),
		Base: &format.Base{ManifestSHA256: hex.EncodeToString(d.bm.Hash[:]), ImageID: d.bm.Header.ImageID,
			DigestsSHA256: hex.EncodeToString(sum[:])},
		Encryption: d.enc,
	}
	m, err := iw.Finish(hdr)
	if err != nil {
		return nil, err
	}
	if err := up.wait(); err != nil {
		return nil, err
	}
	mb, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	if co.SignManifest != nil {
		sig, err := co.SignManifest(mb)
		if err != nil {
			return nil, fmt.Errorf("sign the manifest: %w", err)
		}
		if err := putSignature(ctx, d.dst, m, sig); err != nil {
			return nil, err
		}
	}
	for _, key := range append(m.CopyKeys(), format.ManifestKey) {
		if err := d.dst.Put(ctx, key, bytes.NewReader(mb), int64(len(mb))); err != nil {
			return nil, fmt.Errorf("write %s to %s: %w", key, d.dst, err)
		}
	}
	res.Manifest = m
	return res, nil
}

// pipeline reads the source once in units, in order; workers hash every
// block, compare it with the base and compress the changed chunks; one
// goroutine feeds the whole-source SHA-256; sink receives the units in
// order. A fixed set of jobs bounds memory.
func (d *deltaRun) pipeline(ctx context.Context, shape pipelineShape, unit int, codec *format.ChunkCodec, ib *imageBlocks, whole hash.Hash, sink func(*deltaJob) error) error {
	free := make(chan *deltaJob, shape.jobs)
	for range shape.jobs {
		free <- &deltaJob{raw: make([]byte, unit), blocks: make([]format.BlockDigest, unit/blockSize), atBase: make([]format.BlockDigest, unit/blockSize),
			out: make([]byte, 0, unit+unit/64+4096), done: make(chan struct{}, 1), hashed: make(chan struct{}, 1)}
	}
	work := make(chan *deltaJob, shape.workers)
	hashq := make(chan *deltaJob, shape.jobs)
	ordered := make(chan *deltaJob, shape.jobs)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(work)
		defer close(hashq)
		defer close(ordered)
		return d.read(gctx, unit, ib, free, work, hashq, ordered)
	})
	g.Go(func() error {
		for j := range hashq {
			whole.Write(j.raw)
			j.hashed <- struct{}{}
		}
		return nil
	})
	for range shape.workers {
		g.Go(func() error {
			for j := range work {
				d.compare(j, codec)
				j.done <- struct{}{}
			}
			return nil
		})
	}
	g.Go(func() error {
		for j := range ordered {
			for _, ch := range []chan struct{}{j.done, j.hashed} {
				select {
				case <-ch:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			if err := sink(j); err != nil {
				return err
			}
			j.raw, j.out = j.raw[:cap(j.raw)], j.out[:0]
			free <- j
		}
		return nil
	})
	return g.Wait()
}

// read is the one sequential pass over the source; it also looks up the
// base's digests of each unit's blocks, in order.
func (d *deltaRun) read(ctx context.Context, unit int, ib *imageBlocks, free <-chan *deltaJob, queues ...chan<- *deltaJob) error {
	baseSize := d.bm.Header.Size
	for off := int64(0); off < d.size; off += int64(unit) {
		var j *deltaJob
		select {
		case j = <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
		n := int(min(int64(unit), d.size-off))
		if _, err := d.src.reader().ReadAt(j.raw[:n], off); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w (the source shrank)", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("read source %s at byte %d: %w", d.src.Path, off, err)
		}
		j.off, j.raw = off, j.raw[:n]
		var err error
		j.base = j.base[:0]
		if off < baseSize {
			first := off / blockSize
			last := (min(off+int64(n), baseSize) + blockSize - 1) / blockSize
			if j.base, err = ib.blocks(ctx, first, last-first, j.base); err != nil {
				return fmt.Errorf("base: %w", err)
			}
		}
		for _, q := range queues {
			select {
			case q <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// compare hashes the blocks of j's unit, compares each delta chunk's
// blocks with the base's and encodes the chunks that changed. A plaintext
// delta's digests are the sha256-tree's, which ignore the place, so a
// chunk's own block digests are compared. An encrypted delta's are keyed
// and bound to their place (spec §11.4): each block is compared by its
// digest at the base's place (the base's chunk index and block in it),
// which is the delta's own only when both chunk sizes are equal.
func (d *deltaRun) compare(j *deltaJob, codec *format.ChunkCodec) {
	cs := d.opts.ChunkSize
	bcs := int64(d.bm.Header.ChunkSize)
	rebase := d.hasher.Keyed() && int64(cs) != bcs
	baseSize := d.bm.Header.Size
	j.chunks = j.chunks[:0]
	for a := 0; a < len(j.raw); a += cs {
		data := j.raw[a:min(a+cs, len(j.raw))]
		fb := a / blockSize // the chunk's first block in the unit
		blocks := j.blocks[fb : fb+format.NumBlocks(len(data))]
		c := deltaChunk{index: uint64((j.off + int64(a)) / int64(cs))}
		switch {
		case d.hasher.Keyed():
			c.ec.Hash = d.hasher.Chunk(c.index, data, blocks)
		case format.IsZero(data):
			// Free space is mostly zeros: one pass at memory speed
			// instead of hashing every block.
			c.ec.Hash = format.ZeroChunkHash(len(data))
			zeroDigests(data, blocks)
		default:
			c.ec.Hash = format.ChunkHash(data, blocks)
		}
		cmp := blocks
		if rebase {
			cmp = j.atBase[fb : fb+len(blocks)]
			for k := range cmp {
				o := j.off + int64(a) + int64(k)*blockSize
				if o >= baseSize {
					break // past the base's end: changed whatever it holds
				}
				cmp[k] = d.hasher.Block(uint64(o/bcs), int(o%bcs/blockSize), data[k*blockSize:min((k+1)*blockSize, len(data))])
			}
		}
		for k := range cmp {
			if fb+k >= len(j.base) || cmp[k] != j.base[fb+k] {
				c.changed++
			}
		}
		if c.changed > 0 {
			// Payloads of a unit's changed chunks lie one after another
			// in j.out, which has room for the unit's worst case.
			c.ec = codec.EncodeAt(c.index, data, j.out[len(j.out):], blocks)
			if !c.ec.Zero && c.ec.Codec != format.CodecRaw {
				j.out = j.out[:len(j.out)+len(c.ec.Payload)]
			}
		}
		j.chunks = append(j.chunks, c)
	}
}

// zeroBlock is the digest of a full zero block.
var zeroBlock = blockDigest(make([]byte, blockSize))

// zeroDigests fills blocks with the digests of the blocks of data, which
// is all zero: every full block has the same digest.
func zeroDigests(data []byte, blocks []format.BlockDigest) {
	for k := range blocks {
		blocks[k] = zeroBlock
	}
	if rem := len(data) % blockSize; rem != 0 {
		blocks[len(blocks)-1] = blockDigest(data[len(data)-rem:])
	}
}

// abandon removes what a failed delta wrote into dst (which was empty and
// whose lock it held), so that the same command can be run again, and
// classifies the failure.
func (d *deltaRun) abandon(ctx context.Context, err error) error {
	if !d.wrote {
		return err
	}
	cctx := context.WithoutCancel(ctx)
	var keys []string
	lerr := d.dst.List(cctx, "", func(i store.Info) error { keys = append(keys, i.Key); return nil })
	for _, k := range keys {
		if lerr == nil {
			lerr = d.dst.Delete(cctx, k)
		}
	}
	if c, ok := store.AsCleaner(d.dst); ok && lerr == nil {
		lerr = c.RemoveIncomplete(cctx)
	}
	if lerr != nil {
		return fmt.Errorf("%w; removing the incomplete delta also failed (%v): empty %s before running the same command again", err, lerr, d.dst)
	}
	switch KindOf(err) {
	case KindInterrupted, KindIntegrity, KindBadInput:
		return fmt.Errorf("%w (the incomplete delta was removed from %s)", err, d.dst)
	}
	return Resumable(fmt.Errorf("%w (the incomplete delta was removed from %s: run the same command again)", err, d.dst))
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
