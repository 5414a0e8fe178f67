package engine

import (
	"os"

	"golang.org/x/sys/unix"
)

// dropCached asks the kernel to drop its cached pages of f's bytes
// [off, off+n), so that reading them back after an fsync reads the
// device, not the page cache. It is advice: a failure changes nothing but
// where the bytes come from.
func dropCached(f *os.File, off, n int64) {
	_ = unix.Fadvise(int(f.Fd()), off, n, unix.FADV_DONTNEED)
}
