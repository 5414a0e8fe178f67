//go:build windows

package dir

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/windows"

	"github.com/seedship/seedship/store"
)

var _ store.Locker = (*Store)(nil)

// lockOffset is the byte the lock covers: far past the holder line, so
// that a refused writer can still read who holds it (Windows byte-range
// locks are mandatory).
const lockOffset = 1 << 40

// Lock takes the writer lock of the image: an exclusive LockFileEx on the
// file [store.LockKey] in the root, which holds owner and the time. As
// with flock on Unix, the system releases it when the holder's process
// dies, so a killed writer never leaves a stale lock; the file stays
// behind, is never listed, and is reused by the next Lock. While another
// holder has it, Lock fails at once with an error wrapping
// [store.ErrLocked] that names the holder. unlock releases the lock;
// calls after the first do nothing.
func (s *Store) Lock(ctx context.Context, owner string) (func(context.Context) error, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dir: lock %s: %w", s.root, err)
	}
	p := filepath.Join(s.root, store.LockKey)
	if fi, err := os.Lstat(p); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("dir: lock %s: %s: %w", s.root, p, store.ErrNotRegular)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("dir: lock %s: %w", s.root, classify(err))
	}
	ol := windows.Overlapped{Offset: uint32(lockOffset & 0xffffffff), OffsetHigh: uint32(lockOffset >> 32)}
	h := windows.Handle(f.Fd())
	err = windows.LockFileEx(h, windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
	if err != nil {
		holder := readHolder(f)
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, fmt.Errorf("dir: %s is being written by %s (lock file %s, released when that process ends): %w",
				s.root, holder, p, store.ErrLocked)
		}
		return nil, fmt.Errorf("dir: lock %s: LockFileEx: %w", p, err)
	}
	if err := writeHolder(f, owner); err != nil {
		f.Close()
		return nil, fmt.Errorf("dir: lock %s: %w", p, classify(err))
	}
	var once sync.Once
	var uerr error
	return func(context.Context) error {
		once.Do(func() {
			if err := windows.UnlockFileEx(h, 0, 1, 0, &ol); err != nil {
				uerr = fmt.Errorf("dir: unlock %s: %w", p, err)
			}
			if err := f.Close(); err != nil && uerr == nil {
				uerr = fmt.Errorf("dir: unlock %s: %w", p, err)
			}
		})
		return uerr
	}, nil
}
