//go:build unix

package resync

import (
	"os"
	"syscall"
)

// keepOwner gives f the owner and group of fi (the file it replaces), so
// that an edited configuration file keeps who may read it.
func keepOwner(f *os.File, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	cur, err := f.Stat()
	if err != nil {
		return nil // the owner is kept when it can be compared; the write itself is checked elsewhere
	}
	if cst, ok := cur.Sys().(*syscall.Stat_t); ok && (cst.Uid != st.Uid || cst.Gid != st.Gid) {
		return f.Chown(int(st.Uid), int(st.Gid))
	}
	return nil
}
