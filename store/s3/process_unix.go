//go:build unix

package s3

import (
	"errors"
	"syscall"
)

// processGone reports whether no process with this pid exists here.
func processGone(pid int) bool {
	return pid > 0 && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
