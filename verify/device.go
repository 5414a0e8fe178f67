package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store"
)

// Device errors.
var (
	// ErrDeviceTooSmall means the device or file is shorter than the image.
	ErrDeviceTooSmall = errors.New("verify: device is smaller than the image")
	// ErrNotDevice means the path given as a device is neither a regular
	// file nor a block device (a FIFO, a directory, a socket).
	ErrNotDevice = errors.New("verify: not a device or file")
	// ErrNeedsKey means a device was to be checked against an encrypted
	// image whose manifest was not unsealed: its chunk hashes are keyed
	// and its whole-source SHA-256 sealed, so nothing can be compared
	// without the key. [Device]'s error wraps it and format.ErrNoKey.
	ErrNeedsKey = errors.New("verify: a device is compared with an encrypted image's keyed chunk hashes and sealed source SHA-256, which need the image's key")
)

// DeviceOptions tunes [Device]. Zero values mean the defaults.
type DeviceOptions struct {
	Workers    int           // parallel readers and hashers; default GOMAXPROCS
	OnProgress func(n int64) // called with the raw bytes of each chunk checked
	// SkipSourceSHA256 leaves out the whole-source SHA-256 (one serial
	// stream over every byte): for callers that only want to know which
	// chunks differ, such as a resumed restore.
	SkipSourceSHA256 bool
	// Store, if set, is where the image lives: the index of every data
	// segment is then read too (small ranged reads of its footer and
	// index, never a payload), and every stored chunk's 64 KiB block
	// digests are compared with the device's (which the chunk hash pass
	// computes anyway), so that a chunk that differs is named with its
	// changed blocks, and the block digests of a digest-only image, which
	// no other check can reach, are checked against the data they
	// describe. Without it, a differing stored chunk is named as a whole.
	Store store.Store
}

// deviceChunk is one chunk read from the device, handed from a reader to
// the serial whole-source hasher in chunk order.
type deviceChunk struct {
	i    uint64
	buf  []byte
	done chan []byte // receives buf once the chunk is checked
}

// Device checks that the first m.Header.Size bytes of the device or file
// at path match the image, using only the manifest: every chunk against
// its chunk hash through the image's hasher (keyed in an encrypted
// image, whose manifest must have been unsealed, else the error wraps
// ErrNeedsKey; zero chunks must read as zeros), in parallel, and,
// unless opts.SkipSourceSHA256, the whole-source SHA-256 of those bytes in
// order against the manifest's sha256. The image's segments are not read.
// Each mismatching chunk is a finding, and so is a whole-source SHA-256
// that differs. A device larger than the image is fine (only the image's
// range is compared); a smaller one is an error wrapping
// ErrDeviceTooSmall. Memory is a chunk buffer per worker, plus two.
func Device(ctx context.Context, m *format.Manifest, path string, opts DeviceOptions) (*Report, error) {
	hasher := m.Hasher()
	if hasher == nil {
		// Before the device is opened: an encrypted image without its key.
		return nil, fmt.Errorf("check %s against image %s: %w: %w", path, m.Header.ImageID, ErrNeedsKey, format.ErrNoKey)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	// A chunk buffer per worker, plus two: as many as fit the reader's
	// memory bound.
	opts.Workers = max(1, min(opts.Workers, int(seed.ReadMemory/int64(m.Header.ChunkSize))-2))
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		// A FIFO would block the open, a directory has no bytes.
		return nil, fmt.Errorf("%s is neither a regular file nor a block device (%s): %w", path, fi.Mode().Type(), ErrNotDevice)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("size of %s: %w", path, err)
	}
	if size < m.Header.Size {
		return nil, fmt.Errorf("%w: %s is %d bytes, the image %d", ErrDeviceTooSmall, path, size, m.Header.Size)
	}
	d := &deviceCheck{m: m, hasher: hasher, f: f, path: path, opts: opts, rep: &Report{}}
	if opts.Store != nil {
		d.idx = newSegmentIndexes(seed.New(opts.Store, m, nil))
	}
	if !opts.SkipSourceSHA256 {
		d.sum = sha256.New()
	}
	err = d.run(ctx)
	d.rep.Sort()
	if err != nil {
		return d.rep, err
	}
	d.rep.checked(CheckChunkHashes)
	if d.idx != nil && !d.indexDamaged.Load() {
		d.rep.checked(CheckBlockDigests)
	}
	if d.sum != nil {
		d.checkSum()
	}
	return d.rep, nil
}

type deviceCheck struct {
	m      *format.Manifest
	hasher *format.Hasher // the image's: plain, or keyed (encrypted)
	f      *os.File
	path   string
	opts   DeviceOptions
	rep    *Report
	sum    hash.Hash       // nil: no whole-source SHA-256
	idx    *segmentIndexes // nil: no store, no block digests
	// indexDamaged: some stored chunk's block digests could not be
	// compared, so the block digest check did not cover everything.
	indexDamaged   atomic.Bool
	damagedIndexes sync.Map // segment number → reported
}

// run reads and checks every chunk: workers in parallel, then the hasher
// in order, with a fixed set of buffers.
func (d *deviceCheck) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	nbuf := d.opts.Workers + 2
	pool := make(chan []byte, nbuf)
	for range nbuf {
		pool <- make([]byte, d.m.Header.ChunkSize)
	}
	jobs := make(chan deviceChunk)
	order := make(chan deviceChunk, nbuf)
	g.Go(func() error {
		defer close(jobs)
		defer close(order)
		for i := range d.m.Chunks {
			var buf []byte
			select {
			case buf = <-pool:
			case <-ctx.Done():
				return ctx.Err()
			}
			c := deviceChunk{i: uint64(i), buf: buf, done: make(chan []byte, 1)}
			for _, ch := range []chan deviceChunk{jobs, order} {
				select {
				case ch <- c:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return nil
	})
	for range d.opts.Workers {
		g.Go(func() error {
			var digests [format.MaxChunkSize / blockSize]format.BlockDigest
			for c := range jobs {
				if err := d.chunk(ctx, c.i, c.buf, digests[:]); err != nil {
					return err
				}
				c.done <- c.buf
			}
			return nil
		})
	}
	g.Go(func() error { return d.hashInOrder(ctx, order, pool) })
	return g.Wait()
}

// hashInOrder feeds every chunk, in order, to the whole-source SHA-256 and
// returns its buffer to the pool.
func (d *deviceCheck) hashInOrder(ctx context.Context, order <-chan deviceChunk, pool chan<- []byte) error {
	for c := range order {
		var buf []byte
		select {
		case buf = <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if d.sum != nil {
			_, length := d.m.ChunkRange(c.i)
			d.sum.Write(buf[:length])
		}
		pool <- buf
	}
	return nil
}

// chunk reads chunk i of the device into buf and compares it with the
// image: a zero chunk must read as zeros; any other chunk must have its
// chunk hash and, with the image's store, the block digests of its
// segment's index. digests is the worker's scratch.
func (d *deviceCheck) chunk(ctx context.Context, i uint64, buf []byte, digests []format.BlockDigest) error {
	off, length := d.m.ChunkRange(i)
	b := buf[:length]
	if _, err := d.f.ReadAt(b, off); err != nil {
		return fmt.Errorf("read %s at %d: %w", d.path, off, err)
	}
	c := d.m.Chunks[i]
	var changed []ChangedRange
	unlocated := "" // why a changed chunk is named as a whole
	switch c.Kind {
	case format.KindZero:
		if !format.IsZero(b) {
			changed = changedBlocks(i, off, length, func(k int) bool {
				return !format.IsZero(b[int64(k)*blockSize : min(int64(k+1)*blockSize, length)])
			})
		}
	case format.KindStored:
		digests = digests[:format.NumBlocks(int(length))]
		h := d.hasher.Chunk(i, b, digests)
		var err error
		if changed, unlocated, err = d.storedChunk(ctx, i, c, h, digests); err != nil {
			return err
		}
	default: // a delta image's base chunk: its hash is all it records
		if d.hasher.Chunk(i, b, nil) != c.Hash {
			changed = []ChangedRange{{Chunk: i, Offset: off, Length: length}}
			unlocated = "a delta image records no block digests for a chunk of its base"
		}
	}
	switch {
	case len(changed) > 0:
		d.rep.mu.Lock()
		d.rep.Changed = append(d.rep.Changed, changed...)
		d.rep.mu.Unlock()
		d.rep.add(chunkFinding(d.path, i, off, length, c.Segment, fmt.Errorf("%s differs from the image: %s: %w", d.path, describeChanged(changed, unlocated), format.ErrChecksum)))
	case c.Kind == format.KindZero:
		d.rep.mu.Lock()
		d.rep.ZeroChunks++
		d.rep.BytesChecked += length
		d.rep.mu.Unlock()
	default:
		d.rep.ok(length)
	}
	if d.opts.OnProgress != nil {
		d.opts.OnProgress(length)
	}
	return nil
}

// storedChunk compares a stored chunk of the device, whose chunk hash is
// h and block digests digests, with the image, and returns its changed
// ranges (none when it matches) and, for a chunk named as a whole, why.
// With the image's store, the block digests are compared with the
// segment index's; a chunk whose hash matches while its index's block
// digests do not is damage of the image (its index does not describe the
// chunk it names), reported as a finding of the segment.
func (d *deviceCheck) storedChunk(ctx context.Context, i uint64, c format.ChunkEntry, h format.Hash, digests []format.BlockDigest) ([]ChangedRange, string, error) {
	off, length := d.m.ChunkRange(i)
	whole := []ChangedRange{{Chunk: i, Offset: off, Length: length}}
	if d.idx == nil {
		if h != c.Hash {
			return whole, "the image's segment indexes were not read, so its blocks are not compared", nil
		}
		return nil, "", nil
	}
	e, err := d.idx.entry(ctx, c.Segment, i)
	defer d.idx.done(c.Segment)
	if err != nil {
		if !format.IsDamage(err) {
			return nil, "", err
		}
		// The index is the image's damage, not the device's: the chunk
		// hash still decides about the device.
		d.indexDamage(c.Segment, err)
		if h != c.Hash {
			return whole, "the index that holds its block digests is damaged", nil
		}
		return nil, "", nil
	}
	if len(e.Blocks) != len(digests) {
		// seed checks each entry's raw length against the manifest, and
		// its digest count against that; a mismatch here is damage all
		// the same, never an index out of range.
		d.indexDamage(c.Segment, fmt.Errorf("%w: the index of %s has %d block digests for chunk %d of %d blocks",
			format.ErrCorrupt, format.DataID(c.Segment).Key(), len(e.Blocks), i, len(digests)))
		if h != c.Hash {
			return whole, "the index that holds its block digests is damaged", nil
		}
		return nil, "", nil
	}
	changed := changedBlocks(i, off, length, func(k int) bool { return digests[k] != e.Blocks[k] })
	switch {
	case h == c.Hash && len(changed) > 0:
		d.rep.add(Finding{Key: format.DataID(c.Segment).Key(), Segment: c.Segment,
			Err: fmt.Errorf("%w: the index of %s records block digests for chunk %d that do not match the chunk its hash names (%s): the image is damaged or was written wrongly",
				format.ErrCorrupt, format.DataID(c.Segment).Key(), i, describeChanged(changed, ""))})
		return nil, "", nil
	case h != c.Hash && len(changed) == 0:
		return whole, "every block digest matches (a 64-bit digest collision), so the change cannot be located", nil
	case h != c.Hash:
		return changed, "", nil
	}
	return nil, "", nil
}

// indexDamage reports a segment index that could not be used, once per
// segment (every chunk of the segment meets the same damage).
func (d *deviceCheck) indexDamage(n uint32, err error) {
	d.indexDamaged.Store(true)
	if _, seen := d.damagedIndexes.LoadOrStore(n, true); seen {
		return
	}
	d.rep.mu.Lock()
	d.rep.Unchecked = append(d.rep.Unchecked, Finding{Key: format.DataID(n).Key(), Segment: n, Err: err})
	d.rep.mu.Unlock()
}

// checkSum compares the whole-source SHA-256 with the manifest's.
func (d *deviceCheck) checkSum() {
	got := hex.EncodeToString(d.sum.Sum(nil))
	d.rep.SourceSHA256 = got
	d.rep.checked(CheckSourceSHA256)
	if got == d.m.Header.SHA256 {
		return
	}
	why := "the device differs from the source"
	if d.rep.OK() {
		why = "every chunk matches, so the manifest's sha256 is wrong: the image does not describe its source truthfully"
	}
	d.rep.add(Finding{Key: d.path, Err: fmt.Errorf("whole-source SHA-256 of %s is %s, the manifest says %s (%s): %w",
		d.path, got, d.m.Header.SHA256, why, format.ErrChecksum)})
}
