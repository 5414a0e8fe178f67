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

	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
)

// Device errors.
var (
	// ErrDeviceTooSmall means the device or file is shorter than the image.
	ErrDeviceTooSmall = errors.New("verify: device is smaller than the image")
	// ErrNotDevice means the path given as a device is neither a regular
	// file nor a block device (a FIFO, a directory, a socket).
	ErrNotDevice = errors.New("verify: not a device or file")
)

// DeviceOptions tunes [Device]. Zero values mean the defaults.
type DeviceOptions struct {
	Workers    int           // parallel readers and hashers; default GOMAXPROCS
	OnProgress func(n int64) // called with the raw bytes of each chunk checked
	// SkipSourceSHA256 leaves out the whole-source SHA-256 (one serial
	// stream over every byte): for callers that only want to know which
	// chunks differ, such as a resumed restore.
	SkipSourceSHA256 bool
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
// its chunk hash (zero chunks must read as zeros), in parallel, and,
// unless opts.SkipSourceSHA256, the whole-source SHA-256 of those bytes in
// order against the manifest's sha256. The image's segments are not read.
// Each mismatching chunk is a finding, and so is a whole-source SHA-256
// that differs. A device larger than the image is fine (only the image's
// range is compared); a smaller one is an error wrapping
// ErrDeviceTooSmall. Memory is a chunk buffer per worker, plus two.
func Device(ctx context.Context, m *format.Manifest, path string, opts DeviceOptions) (*Report, error) {
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
	d := &deviceCheck{m: m, f: f, path: path, opts: opts, rep: &Report{}}
	if !opts.SkipSourceSHA256 {
		d.sum = sha256.New()
	}
	err = d.run(ctx)
	d.rep.Sort()
	if err != nil {
		return d.rep, err
	}
	d.rep.checked(CheckChunkHashes)
	if d.sum != nil {
		d.checkSum()
	}
	return d.rep, nil
}

type deviceCheck struct {
	m    *format.Manifest
	f    *os.File
	path string
	opts DeviceOptions
	rep  *Report
	sum  hash.Hash // nil: no whole-source SHA-256
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
			for c := range jobs {
				if err := d.chunk(c.i, c.buf); err != nil {
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
// manifest.
func (d *deviceCheck) chunk(i uint64, buf []byte) error {
	off, length := d.m.ChunkRange(i)
	b := buf[:length]
	if _, err := d.f.ReadAt(b, off); err != nil {
		return fmt.Errorf("read %s at %d: %w", d.path, off, err)
	}
	c := d.m.Chunks[i]
	var match bool
	if c.Kind == format.KindZero {
		match = format.IsZero(b)
	} else {
		match = format.ChunkHash(b, nil) == c.Hash
	}
	switch {
	case !match:
		d.rep.add(chunkFinding(d.path, i, off, length, c.Segment, fmt.Errorf("%s differs from the image: %w", d.path, format.ErrChecksum)))
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
