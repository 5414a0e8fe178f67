//go:build unix

package dir

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/seedship/seedship/store"
)

var _ store.Locker = (*Store)(nil)

// Lock takes the writer lock of the image: an flock(2) on the file
// [store.LockKey] in the root, which holds owner and the time. The kernel
// releases the lock when the holder's process dies, however it dies, so a
// killed capture never leaves a stale lock; the file itself may stay
// behind, is never listed, and is reused by the next Lock. While another
// process (or another Lock in this one) holds it, Lock fails at once with
// an error wrapping [store.ErrLocked] that names the holder from the
// file's contents. unlock removes the file and releases the lock; calls
// after the first do nothing.
//
// flock works on local file systems; on NFS it depends on the client (on
// Linux it is emulated with byte-range locks, which NFSv4 servers honour).
func (s *Store) Lock(ctx context.Context, owner string) (func(context.Context) error, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dir: lock %s: %w", s.root, err)
	}
	d, err := openDir(s.root, "", false)
	if err != nil {
		return nil, fmt.Errorf("dir: lock %s: %w", s.root, classify(err))
	}
	p := filepath.Join(s.root, store.LockKey)
	// An unlock may remove the file between our open and our flock; that
	// cannot happen many times in a row.
	for range 10 {
		f, err := openLockFile(d, p)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("dir: lock %s: %w", s.root, classify(err))
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			holder := readHolder(f)
			f.Close()
			d.Close()
			if err == unix.EWOULDBLOCK {
				return nil, fmt.Errorf("dir: %s is being written by %s (lock file %s, released when that process ends): %w",
					s.root, holder, p, store.ErrLocked)
			}
			return nil, fmt.Errorf("dir: lock %s: flock: %w", p, err)
		}
		if !sameFile(d, f) {
			f.Close() // removed by an unlock after we opened it: open the new one
			continue
		}
		if err := writeHolder(f, owner); err != nil {
			f.Close()
			d.Close()
			return nil, fmt.Errorf("dir: lock %s: %w", p, classify(err))
		}
		var once sync.Once
		var uerr error
		return func(context.Context) error {
			once.Do(func() {
				// Remove, then release: whoever opened the file meanwhile
				// sees it is gone and opens a new one.
				if sameFile(d, f) {
					if err := d.remove(store.LockKey); err != nil {
						uerr = fmt.Errorf("dir: unlock: %w", err)
					}
				}
				if err := f.Close(); err != nil && uerr == nil {
					uerr = fmt.Errorf("dir: unlock %s: %w", p, err)
				}
				d.Close()
			})
			return uerr
		}, nil
	}
	d.Close()
	return nil, fmt.Errorf("dir: lock %s: the lock file keeps being replaced", p)
}

// openLockFile opens or creates the lock file in the root d, refusing a
// symlink or special file planted there.
func openLockFile(d *dirHandle, p string) (*os.File, error) {
	fd, err := unix.Openat(int(d.f.Fd()), store.LockKey, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0o666)
	if err != nil {
		return nil, d.explain("open", store.LockKey, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fstat", Path: p, Err: err}
	}
	if err := regularOnly(p, statInfo{name: store.LockKey, st: st}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &fs.PathError{Op: "fcntl", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// sameFile reports whether the lock file's name in d still refers to f.
func sameFile(d *dirHandle, f *os.File) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Fstatat(int(d.f.Fd()), store.LockKey, &b, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}
