package dir

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/seedship/seedship/store"
)

// ErrInvalidKey is wrapped by the error every method returns for a key that
// is not a clean, slash-separated relative path inside the root: empty,
// absolute, with an empty, "." or ".." element, with a backslash or NUL byte,
// with an element starting with [TempPrefix], the lock's [store.LockKey], or
// not a local path on this system (a drive letter or reserved name on
// Windows). Such errors also match [store.ErrPermanent]: retrying cannot fix
// a bad key.
var ErrInvalidKey = errors.New("dir: invalid key")

// keyError is an invalid key and the reason it was rejected.
type keyError struct {
	key, reason string
}

func (e *keyError) Error() string { return fmt.Sprintf("dir: invalid key %q: %s", e.key, e.reason) }

// Is makes a keyError match both ErrInvalidKey and store.ErrPermanent.
func (e *keyError) Is(target error) bool {
	return target == ErrInvalidKey || target == store.ErrPermanent
}

// checkKey returns a *keyError if key cannot name an object in the root.
func checkKey(key string) error {
	reason := ""
	switch {
	case key == "":
		reason = "empty"
	case strings.HasPrefix(key, "/"):
		reason = "absolute"
	case strings.ContainsRune(key, '\\'):
		reason = "contains a backslash"
	case strings.ContainsRune(key, 0):
		reason = "contains a NUL byte"
	}
	if reason == "" {
		for elem := range strings.SplitSeq(key, "/") {
			if err := checkElem(elem); err != nil {
				reason = err.Error()
				break
			}
		}
	}
	if reason == "" && key == store.LockKey {
		reason = "is the reserved name of the writer lock"
	}
	if reason == "" && !filepath.IsLocal(filepath.FromSlash(key)) {
		reason = "not a local path on this system"
	}
	if reason != "" {
		return &keyError{key: key, reason: reason}
	}
	return nil
}

// checkElem reports why elem cannot be one element of a key. List uses it to
// skip directory entries, so it covers temporary files too.
func checkElem(elem string) error {
	switch {
	case elem == "":
		return errors.New("has an empty element")
	case elem == "." || elem == "..":
		return fmt.Errorf("has a %q element", elem)
	case strings.HasPrefix(elem, TempPrefix):
		return fmt.Errorf("has an element starting with the reserved prefix %q", TempPrefix)
	case strings.ContainsAny(elem, "\\\x00"):
		return errors.New("has an element with a backslash or NUL byte")
	}
	return nil
}

// noSpaceErrs are the OS errors of a full destination: not bad input, and
// not worth an immediate retry (see store.ErrNoSpace).
var noSpaceErrs = []error{
	syscall.ENOSPC, // no space left on device
	syscall.EDQUOT, // disk quota exceeded
}

// noSpaceError marks err as store.ErrNoSpace without changing its message.
type noSpaceError struct{ err error }

func (e *noSpaceError) Error() string        { return e.err.Error() }
func (e *noSpaceError) Unwrap() error        { return e.err }
func (e *noSpaceError) Is(target error) bool { return target == store.ErrNoSpace }

// permanentErrs are the OS errors that retrying cannot fix.
var permanentErrs = []error{
	syscall.EROFS,        // read-only file system
	syscall.EACCES,       // permission denied
	syscall.EPERM,        // operation not permitted
	fs.ErrPermission,     // the above, and their equivalents on other systems
	syscall.EFBIG,        // file too large (FAT32 stops at 4 GiB)
	syscall.ENAMETOOLONG, // key element too long for the file system
	syscall.ENOTDIR,      // a file stands where a key needs a directory
	syscall.EISDIR,       // a directory stands where a key needs a file
}

// permanentError marks err as permanent without changing its message.
type permanentError struct{ err error }

func (e *permanentError) Error() string        { return e.err.Error() }
func (e *permanentError) Unwrap() error        { return e.err }
func (e *permanentError) Is(target error) bool { return target == store.ErrPermanent }

// classify wraps err so that it matches store.ErrNoSpace when the file
// system is full, or store.ErrPermanent when it is another OS error that
// retrying cannot fix or a non-regular file in the way of a write; anything
// else is returned unchanged.
func classify(err error) error {
	if err == nil || errors.Is(err, store.ErrPermanent) || errors.Is(err, store.ErrNoSpace) {
		return err
	}
	for _, p := range noSpaceErrs {
		if errors.Is(err, p) {
			return &noSpaceError{err: err}
		}
	}
	if errors.Is(err, store.ErrNotRegular) {
		// A symlink or special file where a write must go: only the
		// operator can remove it.
		return &permanentError{err: err}
	}
	for _, p := range permanentErrs {
		if errors.Is(err, p) {
			return &permanentError{err: err}
		}
	}
	return err
}

// isNotExist reports whether err means the path is absent: it does not
// exist, or one of its parents is a regular file.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// classifyRead is classify for reads: a path that runs through a regular
// file (ENOTDIR) names no object, so it wraps store.ErrNotExist instead.
func classifyRead(err error) error {
	if errors.Is(err, store.ErrNotRegular) {
		return err // damage of one object, for the reader to report
	}
	if errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w (%w)", store.ErrNotExist, err)
	}
	return classify(err)
}

// notRegularError is something other than a regular file where an object
// must be, or a symbolic link where a directory of the image must be. It
// matches [store.ErrNotRegular]; a directory in place of an object also
// matches [store.ErrNotExist], since directories are not keys.
type notRegularError struct {
	path string
	what string // "a FIFO", "a symbolic link", ...
}

func (e *notRegularError) Error() string {
	return fmt.Sprintf("%s is %s, not a regular file or directory; an image holds only those (remove it, or copy the image again)", e.path, e.what)
}

func (e *notRegularError) Is(target error) bool {
	return target == store.ErrNotRegular || (target == store.ErrNotExist && e.what == "a directory")
}

// regularOnly returns a *notRegularError unless fi, found at p, is a
// regular file.
func regularOnly(p string, fi fs.FileInfo) error {
	m := fi.Mode()
	what := ""
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		what = "a directory"
	case m&fs.ModeSymlink != 0:
		what = "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		what = "a FIFO"
	case m&fs.ModeSocket != 0:
		what = "a socket"
	case m&fs.ModeDevice != 0:
		what = "a device"
	default:
		what = fmt.Sprintf("a special file (mode %v)", m)
	}
	return &notRegularError{path: p, what: what}
}
