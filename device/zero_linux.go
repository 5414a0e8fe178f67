package device

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// zeros is the shared, never written source of zero bytes for the
// write-zeros fallback.
var zeros [1 << 20]byte

// ZeroRange makes length bytes of f starting at off read back as zeros, as
// cheaply as the kernel allows. f must be open for writing and not with
// O_DIRECT (the unaligned head and tail are written through the page cache).
//
// On a block device the sector-aligned middle of the range is zeroed with
// the BLKZEROOUT ioctl, which the kernel serves with WRITE ZEROES, or by
// writing zero pages itself, and which invalidates the page cache for the
// range. The unaligned head and tail, and the whole range when BLKZEROOUT is
// not supported (EOPNOTSUPP, EINVAL, ENOTTY), are written with zeros. This
// is deliberately not BLKDISCARD: a discard (TRIM, UNMAP) is a hint, and a
// device is free to return old data, garbage or zeros for a discarded range
// afterwards, whereas BLKZEROOUT guarantees zeros (it may still unmap the
// blocks when the device promises that unmapped blocks read as zero). A
// range past the end of the device is an error.
//
// On a regular file the part of the range inside the file is deallocated
// with fallocate(FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE), falling back to
// writing zeros when the filesystem cannot punch holes; a range past the end
// extends the file, sparsely, to off+length. The file is never shrunk.
//
// ZeroRange does not sync; call f.Sync when the zeros must be durable. Any
// other kind of file returns an error wrapping [ErrNotBlockOrFile].
func ZeroRange(f *os.File, off, length int64) error {
	if off < 0 || length < 0 || off > (1<<63-1)-length {
		return fmt.Errorf("device: zeroing %s: invalid range offset %d length %d", f.Name(), off, length)
	}
	if length == 0 {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		return zeroFile(f, fi.Size(), off, length)
	case m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0:
		return zeroBlock(f, off, length)
	default:
		return fmt.Errorf("device: zeroing %s: %w", f.Name(), ErrNotBlockOrFile)
	}
}

func zeroBlock(f *os.File, off, length int64) error {
	size, sector, _, err := blockGeometry(f)
	if err != nil {
		return err
	}
	end := off + length
	if end > size {
		return fmt.Errorf("device: zeroing %s: range [%d, %d) ends past the device end at %d", f.Name(), off, end, size)
	}
	s := int64(sector)
	if s <= 0 {
		s = 512
	}
	aStart := (off + s - 1) / s * s
	aEnd := end / s * s
	if aStart >= aEnd {
		return writeZeros(f, off, end)
	}
	err = blkZeroOut(f, aStart, aEnd-aStart)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
		err = writeZeros(f, aStart, aEnd)
	}
	if err != nil {
		return err
	}
	if err := writeZeros(f, off, aStart); err != nil {
		return err
	}
	return writeZeros(f, aEnd, end)
}

// blkZeroOut issues BLKZEROOUT for [off, off+length), both in bytes.
func blkZeroOut(f *os.File, off, length int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	r := [2]uint64{uint64(off), uint64(length)}
	var errno unix.Errno
	err = rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r)))
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return fmt.Errorf("device: BLKZEROOUT on %s [%d, %d): %w", f.Name(), off, off+length, errno)
	}
	return nil
}

func zeroFile(f *os.File, size, off, length int64) error {
	end := off + length
	if end > size {
		if err := f.Truncate(end); err != nil {
			return fmt.Errorf("device: zeroing %s: %w", f.Name(), err)
		}
	}
	punchEnd := min(end, size)
	if off >= punchEnd {
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	err = rc.Control(func(fd uintptr) {
		opErr = unix.Fallocate(int(fd), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, punchEnd-off)
	})
	if err != nil {
		return err
	}
	if errors.Is(opErr, unix.EOPNOTSUPP) || errors.Is(opErr, unix.ENOSYS) {
		return writeZeros(f, off, punchEnd)
	}
	if opErr != nil {
		return fmt.Errorf("device: punching a hole in %s [%d, %d): %w", f.Name(), off, punchEnd, opErr)
	}
	return nil
}

// writeZeros writes zeros to [off, end) of f.
func writeZeros(f *os.File, off, end int64) error {
	for off < end {
		n := min(end-off, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("device: writing zeros to %s: %w", f.Name(), err)
		}
		off += n
	}
	return nil
}
