//go:build unix && !linux

package dir

import "errors"

// mknodZero is not needed on these systems: device numbers differ.
func mknodZero(p string) error { return errors.ErrUnsupported }
