package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/format"
)

// ErrDeviceTooSmall means the device or file is shorter than the image.
var ErrDeviceTooSmall = errors.New("verify: device is smaller than the image")

// DeviceOptions tunes [Device]. Zero values mean the defaults.
type DeviceOptions struct {
	Workers    int           // parallel readers and hashers; default GOMAXPROCS
	OnProgress func(n int64) // called with the raw bytes of each chunk checked
}

// Device checks that the first m.Header.Size bytes of the device or file
// at path match the image block for block, using only the manifest's chunk
// hashes: the image's segments are not read. Each mismatching chunk is a
// finding. A device larger than the image is fine (only the image's range
// is compared); a smaller one is an error wrapping ErrDeviceTooSmall.
func Device(ctx context.Context, m *format.Manifest, path string, opts DeviceOptions) (*Report, error) {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
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
	rep := &Report{}
	g, ctx := errgroup.WithContext(ctx)
	idx := make(chan uint64)
	g.Go(func() error {
		defer close(idx)
		for i := range m.Chunks {
			select {
			case idx <- uint64(i):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for range opts.Workers {
		g.Go(func() error {
			buf := make([]byte, m.Header.ChunkSize)
			for i := range idx {
				off, length := m.ChunkRange(i)
				b := buf[:length]
				if _, err := f.ReadAt(b, off); err != nil {
					return fmt.Errorf("read %s at %d: %w", path, off, err)
				}
				c := m.Chunks[i]
				var match bool
				if c.Kind == format.KindZero {
					match = format.IsZero(b)
				} else {
					match = format.ChunkHash(b, nil) == c.Hash
				}
				if match {
					if c.Kind == format.KindZero {
						rep.mu.Lock()
						rep.ZeroChunks++
						rep.BytesChecked += length
						rep.mu.Unlock()
					} else {
						rep.ok(length)
					}
				} else {
					rep.add(Finding{Key: path, Chunk: i, IsChunk: true, Offset: off, Length: length, Segment: c.Segment,
						Err: &format.ChunkError{Index: i, Offset: off, Length: length, Segment: c.Segment,
							Err: fmt.Errorf("%s differs from the image", path)}})
				}
				if opts.OnProgress != nil {
					opts.OnProgress(length)
				}
			}
			return nil
		})
	}
	err = g.Wait()
	rep.Sort()
	return rep, err
}
