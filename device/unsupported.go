//go:build !linux

package device

import (
	"errors"
	"fmt"
	"os"
)

// seedship reads and writes devices only on Linux. Elsewhere the package
// builds, so the rest of the module can be developed and cross-compiled,
// but every call fails with an error wrapping errors.ErrUnsupported.

func unsupported(op, path string) error {
	return fmt.Errorf("device: %s %s: block devices are supported on Linux only: %w", op, path, errors.ErrUnsupported)
}

// Stat is supported on Linux only.
func Stat(path string) (Info, error) { return Info{}, unsupported("stat", path) }

// CheckWritable is supported on Linux only.
func CheckWritable(path string) error { return unsupported("check", path) }

// SameDevice is supported on Linux only.
func SameDevice(a, b string) (bool, error) { return false, unsupported("compare", a) }

// ZeroRange is supported on Linux only.
func ZeroRange(f *os.File, off, length int64) error { return unsupported("zero", f.Name()) }

// OpenTarget is supported on Linux only.
func OpenTarget(path string, size int64, create bool) (*os.File, error) {
	return nil, unsupported("open", path)
}
