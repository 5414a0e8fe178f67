package volume

import (
	"errors"
	"fmt"
)

// ErrRefused is wrapped by every refusal of the volumes given: a volume of
// another image, a duplicate, a stale volume, a location without a label, a
// missing volume a capture needs. Nothing has been written when it is
// returned; the CLI maps it to bad input (exit 2).
var ErrRefused = errors.New("volumes refused")

// The reasons for a refusal; each refusal wraps ErrRefused and one of them.
var (
	// ErrNoLabel: a location holds no volume label.
	ErrNoLabel = errors.New("no volume label")
	// ErrBadLabel: a volume label cannot be read as one.
	ErrBadLabel = errors.New("bad volume label")
	// ErrForeign: a volume of another image.
	ErrForeign = errors.New("volume of another image")
	// ErrStale: a volume of an earlier (or later) capture of the same source.
	ErrStale = errors.New("stale volume")
	// ErrDuplicate: the same volume, or the same directory, given twice.
	ErrDuplicate = errors.New("duplicate volume")
	// ErrMissingVolume: a capture continues only with all its volumes.
	ErrMissingVolume = errors.New("volume missing")
	// ErrTaken: a fresh capture's destination already holds a volume.
	ErrTaken = errors.New("destination holds a volume")
)

// ErrReadOnly is returned by the writes of a set opened for reading.
var ErrReadOnly = errors.New("volume set opened for reading")

// refuse builds a refusal: its message is the formatted one line, and it
// matches ErrRefused and reason.
func refuse(reason error, format string, args ...any) error {
	return &refusedError{reason: reason, msg: fmt.Sprintf(format, args...)}
}

type refusedError struct {
	reason error
	msg    string
}

func (e *refusedError) Error() string   { return e.msg }
func (e *refusedError) Unwrap() []error { return []error{ErrRefused, e.reason} }
