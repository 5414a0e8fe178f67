package device

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockTarget takes an exclusive, non-blocking flock on f, the regular file
// named path, for as long as f stays open: two restores onto one file would
// interleave their writes and both report success, so the second is
// refused with an [*InUseError]. A block device needs no flock: its O_EXCL
// open is the same claim, enforced by the kernel for every opener.
func lockTarget(f *os.File, path string) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("device: lock %s: %w", path, err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) {
		lerr = unix.Flock(int(fd), unix.LOCK_EX|unix.LOCK_NB)
	}); err != nil {
		return fmt.Errorf("device: lock %s: %w", path, err)
	}
	if errors.Is(lerr, unix.EWOULDBLOCK) {
		return &InUseError{Path: path, Reason: "is being written by another program (another seedship restore holds its lock)",
			Fix: "wait for that restore to end"}
	}
	if lerr != nil {
		return fmt.Errorf("device: lock %s: %w", path, lerr)
	}
	return nil
}
