//go:build !linux

package verify

import (
	"errors"
	"fmt"
)

// DescribeTarget is supported on Linux only, like every device call.
func DescribeTarget(path string) (Target, error) {
	return Target{}, fmt.Errorf("verify: describe %s: block devices are supported on Linux only: %w", path, errors.ErrUnsupported)
}
