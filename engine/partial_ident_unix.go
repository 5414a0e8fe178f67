//go:build unix

package engine

import (
	"os"
	"syscall"
)

// fileIdentity returns the device and inode of a regular file, which name
// it however it is reached: a file replaced under the same name has
// another.
func fileIdentity(fi os.FileInfo) (dev, ino uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return uint64(st.Dev), uint64(st.Ino), true //nolint:unconvert // Dev is int32 on darwin
}
