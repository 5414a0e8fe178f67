package device

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// OpenTarget opens path for restoring an image of size bytes onto it
// (size < 0: unknown, not checked), after the checks of [CheckWritable].
// The caller closes the file.
//
// A block device is opened read-write with O_EXCL. The exclusive claim
// lasts until the file is closed, so while the restore runs nobody can
// mount the device, add it to an array or swap on it; and the open itself
// fails (with an [*InUseError]) if somebody claimed it after the checks. A
// device smaller than size returns an error wrapping [ErrTooSmall].
//
// A regular file is opened read-write; if it does not exist and create is
// true it is created with mode 0600, since disk images hold other people's
// data. It is locked (flock, exclusive) until the file is closed, before it
// is changed in any way: a file another seedship restore is writing returns
// an [*InUseError]. A file shorter than size is extended, sparsely, to size;
// a longer one is left as it is. A missing file with create false returns an error
// wrapping [fs.ErrNotExist]. Anything else returns an error wrapping
// [ErrNotBlockOrFile].
func OpenTarget(path string, size int64, create bool) (*os.File, error) {
	return realHost.openTarget(path, size, create)
}

func (h *host) openTarget(path string, size int64, create bool) (*os.File, error) {
	var st unix.Stat_t
	err := unix.Stat(path, &st)
	if errors.Is(err, unix.ENOENT) && create {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		if err := lockTarget(f, path); err != nil {
			f.Close()
			return nil, err
		}
		if size > 0 {
			if err := f.Truncate(size); err != nil {
				f.Close()
				return nil, fmt.Errorf("device: sizing new target %s to %d bytes: %w", path, size, err)
			}
		}
		return f, nil
	}
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}

	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		return h.openBlock(path, devnumOf(st.Rdev), size)
	case unix.S_IFREG:
		if err := h.checkFile(path, &st); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		if o, ok := fi.Sys().(*unix.Stat_t); ok && (o.Dev != st.Dev || o.Ino != st.Ino) {
			f.Close()
			return nil, fmt.Errorf("device: %s was replaced while being checked: try again", path)
		}
		if err := lockTarget(f, path); err != nil {
			f.Close()
			return nil, err
		}
		if size > fi.Size() {
			if err := f.Truncate(size); err != nil {
				f.Close()
				return nil, fmt.Errorf("device: extending target %s to %d bytes: %w", path, size, err)
			}
		}
		return f, nil
	default:
		return nil, notBlockOrFile(path, st.Mode)
	}
}

func (h *host) openBlock(path string, d devnum, size int64) (*os.File, error) {
	if err := h.checkBlock(path, d, false); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_EXCL, 0)
	if errors.Is(err, unix.EBUSY) {
		return nil, busy(path)
	}
	if err != nil {
		return nil, err
	}
	devSize, _, rdev, err := blockGeometry(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	if devnumOf(rdev) != d {
		f.Close()
		return nil, fmt.Errorf("device: %s changed from device %s to %s while being checked: try again", path, d, devnumOf(rdev))
	}
	if size >= 0 && devSize < size {
		f.Close()
		return nil, fmt.Errorf("%w: %s holds %d bytes but the image needs %d: restore onto a device at least that large", ErrTooSmall, path, devSize, size)
	}
	return f, nil
}
