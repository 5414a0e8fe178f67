package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/sign"
	"github.com/seedship/seedship/store"
)

// Error kinds. Every error the engine returns is classified by [KindOf]
// into one of a handful of kinds, and the CLI maps only those to exit
// codes; lower packages' errors (format's damage, store's failures) are
// classified here, once.
var (
	// ErrBadInput marks a problem with what the operator asked for: a
	// missing source, a non-empty destination, a target too small or in
	// use, a second writer. Nothing was written. (exit code 2)
	ErrBadInput = errors.New("bad input")
	// ErrIntegrity marks damage found in an image or a mismatch between
	// a device and an image. (exit code 3)
	ErrIntegrity = errors.New("integrity check failed")
	// ErrResumable marks a runtime failure after partial work was kept
	// (a full disk, a dropped link): the same command with --resume
	// continues it. (exit code 1, with the command that continues it)
	ErrResumable = errors.New("incomplete")
)

// Kind is the class of an error, for the CLI's exit code.
type Kind int

// Kinds, in the order [KindOf] tests them.
const (
	KindOK          Kind = iota // no error (exit 0)
	KindInterrupted             // cancelled by the operator, e.g. SIGINT (exit 130)
	KindBadInput                // bad input, nothing written (exit 2)
	KindIntegrity               // damage or mismatch (exit 3)
	KindResumable               // partial work kept; --resume continues (exit 1)
	KindRuntime                 // any other runtime failure (exit 1)
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindOK:
		return "ok"
	case KindInterrupted:
		return "interrupted"
	case KindBadInput:
		return "bad input"
	case KindIntegrity:
		return "integrity"
	case KindResumable:
		return "resumable"
	}
	return "runtime"
}

// KindOf classifies err. An interruption (context.Canceled) wins over
// everything else, because whatever else failed then failed because of it;
// bad input and integrity come next, as they are what the operator must
// act on; a resumable failure comes before a plain runtime one.
func KindOf(err error) Kind {
	switch {
	case err == nil:
		return KindOK
	case errors.Is(err, context.Canceled):
		return KindInterrupted
	case errors.Is(err, ErrBadInput), errors.Is(err, sign.ErrBadKey), errors.Is(err, sign.ErrBadTrust),
		// An encrypted image no identity given opens: nothing was read.
		errors.Is(err, format.ErrNoKey), errors.Is(err, seal.ErrNoIdentity):
		return KindBadInput
	case errors.Is(err, ErrIntegrity), isDamage(err), sign.Refused(err):
		return KindIntegrity
	case errors.Is(err, ErrResumable), errors.Is(err, store.ErrNoSpace):
		// A full disk is never bad input: what was written before it
		// filled is kept, and --resume continues once there is room.
		return KindResumable
	}
	return KindRuntime
}

// Resumable marks err (unless nil, or already classified as interrupted,
// bad input or integrity) as leaving partial work that the same command
// with --resume continues.
func Resumable(err error) error {
	switch KindOf(err) {
	case KindOK, KindInterrupted, KindBadInput, KindIntegrity, KindResumable:
		return err
	}
	return fmt.Errorf("%w: %w", ErrResumable, err)
}

// isDamage reports whether err is damage of an image: the one predicate,
// format.IsDamage.
func isDamage(err error) bool { return format.IsDamage(err) }
