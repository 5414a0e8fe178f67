package device

import (
	"errors"
	"strings"
)

// ErrNotBlockOrFile is returned (wrapped) when a path names something that
// is neither a block device nor a regular file: a character device, a
// directory, a socket or a FIFO.
var ErrNotBlockOrFile = errors.New("device: not a block device or regular file")

// ErrInUse is returned (wrapped, through an [*InUseError]) when writing to a
// target could destroy data someone is using: it is mounted, held by md or
// device-mapper, active swap, or claimed exclusively by another program.
var ErrInUse = errors.New("device: in use")

// ErrTooSmall is returned (wrapped) by [OpenTarget] when a block device is
// smaller than the image that is to be restored onto it.
var ErrTooSmall = errors.New("device: target too small")

// InUseError explains why a target may not be written to, and what the
// operator should do about it. Its message is one line, for example:
//
//	/dev/loop3 is mounted on /mnt/x: unmount it (umount /mnt/x) first
//
// errors.Is(err, ErrInUse) holds for every InUseError.
type InUseError struct {
	Path   string // the target as the caller named it
	Reason string // what uses it, as a predicate: "is mounted on /mnt/x"
	Fix    string // what to do, as an imperative: "unmount it (umount /mnt/x)"
}

// Error returns "<Path> <Reason>: <Fix> first".
func (e *InUseError) Error() string {
	return e.Path + " " + e.Reason + ": " + e.Fix + " first"
}

// Unwrap returns [ErrInUse].
func (e *InUseError) Unwrap() error { return ErrInUse }

// shellQuote quotes s for a POSIX shell when it needs it, so that a command
// in an error message can be pasted as is.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:,=@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
