package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"filippo.io/age"

	"github.com/seedship/seedship/device"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// DiffOptions tunes [Diff]. Zero values mean the defaults.
type DiffOptions struct {
	Workers  int // parallel hashers; default GOMAXPROCS
	Progress func(Progress)
	// OnRange, if set, receives each changed range as soon as it is
	// complete, in increasing offset, coalesced (adjacent changed blocks,
	// also across chunks, are one range), so that a caller can print a
	// long list without holding it. An error from it ends the diff.
	OnRange func(DiffRange) error
	// Identities open an encrypted image (spec §11): its chunk hashes
	// and block digests are keyed, so the device's blocks can be
	// compared with them only under its key. An encrypted image none of
	// them opens is refused (ErrBadInput).
	Identities []age.Identity
}

// DiffRange is one changed range of a device.
type DiffRange struct {
	ByteRange
	// Located is true when the range is made of 64 KiB blocks whose
	// digests differ; false when the image could only say that its chunk
	// differs (a block digest collision), and the range is that chunk.
	Located bool
}

// DiffResult describes what [Diff] found.
type DiffResult struct {
	Manifest   *format.Manifest
	Device     string
	DeviceSize int64
	// Compared is the part both cover, [0, min(DeviceSize, image size)):
	// every byte of it was read and compared.
	Compared      int64
	ChangedBytes  int64  // bytes of the changed ranges (within Compared)
	Ranges        int64  // number of changed ranges
	ChangedChunks uint64 // chunks with at least one changed block
	Unlocated     uint64 // changed chunks located only to the chunk
}

// Identical reports whether the device holds exactly the image's bytes:
// the same size and no changed range.
func (r *DiffResult) Identical() bool {
	return r.ChangedBytes == 0 && r.DeviceSize == r.Manifest.Header.Size
}

// Missing returns the image's bytes past the device's end (Length 0
// when the device is not smaller).
func (r *DiffResult) Missing() ByteRange {
	if n := r.Manifest.Header.Size - r.DeviceSize; n > 0 {
		return ByteRange{Offset: r.DeviceSize, Length: n}
	}
	return ByteRange{}
}

// Extra returns the device's bytes past the image's end (Length 0 when
// the device is not larger).
func (r *DiffResult) Extra() ByteRange {
	if n := r.DeviceSize - r.Manifest.Header.Size; n > 0 {
		return ByteRange{Offset: r.Manifest.Header.Size, Length: n}
	}
	return ByteRange{}
}

// Diff compares the device or file at path with the image in img and
// reports the ranges whose 64 KiB blocks differ from what the image
// records. It reads the device once, front to back, hashing in parallel
// (compareSource), and of the image only the manifest and the indexes of
// the segments that hold a chunk that differs, never a payload: it works
// the same for a full image and a digest-only one, and an image in S3
// costs a few small requests. A delta image is refused (ErrBadInput): its
// unchanged chunks carry no block digests of their own.
//
// A device of another size is compared over the part both cover; the
// result says what is missing or extra. Differences are the result, not
// an error: the error is for what stopped the comparison (a missing
// device is ErrBadInput, a damaged image ErrIntegrity). Diff writes
// nothing and takes no lock.
func Diff(ctx context.Context, img store.Store, path string, opts DiffOptions) (*DiffResult, error) {
	im, _, err := openKeyed(ctx, img, nil, opts.Identities, keyRequired)
	if err != nil {
		return nil, err
	}
	m := im.Manifest()
	if m.Header.RequiresFeature(format.FeatureDelta) {
		return nil, fmt.Errorf("%w: %s is a delta image (base %s): its unchanged chunks have no block digests of their own, so it cannot say which blocks of %s differ there; diff against a full or digest-only image of the same state",
			ErrBadInput, img, m.Header.Base.ManifestSHA256, path)
	}
	f, size, err := openDevice(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &DiffResult{Manifest: m, Device: path, DeviceSize: size, Compared: min(size, m.Header.Size)}
	var pending *DiffRange
	flush := func() error {
		if pending == nil {
			return nil
		}
		r := *pending
		pending = nil
		res.Ranges++
		res.ChangedBytes += r.Length
		if opts.OnRange != nil {
			return opts.OnRange(r)
		}
		return nil
	}
	meter := NewMeter(res.Compared, opts.Progress)
	err = compareSource(ctx, im, f, path, size, compareOptions{Workers: opts.Workers, OnProgress: meter.Add,
		OnChunk: func(c *chunkComparison) error {
			if len(c.Changed) == 0 {
				return nil
			}
			res.ChangedChunks++
			if !c.Located {
				res.Unlocated++
			}
			for _, r := range c.Changed {
				if pending != nil && pending.End() == r.Offset && pending.Located == c.Located {
					pending.Length += r.Length
					continue
				}
				if err := flush(); err != nil {
					return err
				}
				pending = &DiffRange{ByteRange: r, Located: c.Located}
			}
			return nil
		}})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, fmt.Errorf("diff %s against %s: %w", path, img, err)
	}
	return res, nil
}

// openDevice opens a block device or regular file for reading and returns
// its size. A path that does not exist, or names something else, is bad
// input (a FIFO is refused before it is opened: opening it would block).
// It uses only os calls, so diff of an image file works on every system.
func openDevice(path string) (*os.File, int64, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: device %s does not exist: check the path", ErrBadInput, path)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: device %s: %w", ErrBadInput, path, err)
	}
	if !fi.Mode().IsRegular() && fi.Mode()&os.ModeDevice == 0 {
		return nil, 0, fmt.Errorf("%w: %s is %s: %w: give a block device or an image file", ErrBadInput, path, modeName(fi.Mode()), device.ErrNotBlockOrFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: open %s: %w", ErrBadInput, path, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("size of %s: %w", path, err)
	}
	return f, size, nil
}

// modeName names the kind of file a mode describes, for messages.
func modeName(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "not a regular file (" + m.Type().String() + ")"
}
