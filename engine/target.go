package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/seedship/seedship/device"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// restoreTarget is the device or file a restore writes: checked, opened
// and held (O_EXCL for a device, flock for a file) until it is closed, and
// remembered as it was, so that a restore that fails leaves a file at the
// size it had.
type restoreTarget struct {
	path    string
	f       *os.File
	size    int64 // bytes the image restores
	regular bool  // a regular file (else a block device)
	created bool  // this restore created the file
	fresh   bool  // reads as zeros: a created or empty file
	before  int64 // a regular file's size before the restore
}

// checkRestoreTarget applies every safety check to path that needs no
// opening. images are the stores the restore reads (the image and its
// fallback): none of their files may be the target. It changes nothing.
func checkRestoreTarget(ctx context.Context, path string, m *format.Manifest, images ...store.Store) (*restoreTarget, error) {
	t := &restoreTarget{path: path, size: m.Header.Size}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		t.created, t.fresh, t.regular = true, true, true
		return t, nil
	case err != nil:
		return nil, fmt.Errorf("%w: target %s: %w", ErrBadInput, path, err)
	}
	info, err := device.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: target %s: %w", ErrBadInput, path, err)
	}
	if err := notTheSource(path, info, m.Header.Source); err != nil {
		return nil, err
	}
	for _, st := range images {
		if st == nil {
			continue
		}
		if err := notInImage(ctx, path, st); err != nil {
			return nil, err
		}
	}
	t.regular = fi.Mode().IsRegular()
	t.before = fi.Size()
	t.fresh = t.regular && fi.Size() == 0
	return t, nil
}

// open opens the checked target for writing, holding it (O_EXCL for a
// device, flock for a file) until it is closed. A file shorter than the
// image is extended (sparsely); a longer one keeps its size until
// [restoreTarget.finish].
func (t *restoreTarget) open() error {
	// OpenTarget checks mounts, holders and swap, compares sizes, and
	// holds the target until we close it.
	f, err := device.OpenTarget(t.path, t.size, true)
	if err != nil {
		if errors.Is(err, device.ErrTooSmall) {
			return fmt.Errorf("%w: %w: choose a device of at least %d bytes", ErrBadInput, err, t.size)
		}
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	t.f = f
	return nil
}

// openExisting opens the checked target for a delta, which applies onto
// what the target holds: a device must be at least the delta's size; a
// file is opened as it is, not extended, so that checking it against the
// base (which reads it) changes nothing, and is grown by
// [restoreTarget.grow] only once the checks have passed.
func (t *restoreTarget) openExisting() error {
	want := t.size
	if t.regular {
		want = 0
	}
	f, err := device.OpenTarget(t.path, want, false)
	if err != nil {
		if errors.Is(err, device.ErrTooSmall) {
			return fmt.Errorf("%w: %w: the delta restores %d bytes: apply it onto the device its base was restored onto (at least that size)", ErrBadInput, err, t.size)
		}
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	t.f = f
	return nil
}

// grow extends a regular file shorter than the restore's size (sparsely:
// the new bytes read as zeros), after the checks that read it.
func (t *restoreTarget) grow() error {
	if !t.regular {
		return nil
	}
	fi, err := t.f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", t.path, err)
	}
	if fi.Size() < t.size {
		if err := t.f.Truncate(t.size); err != nil {
			return fmt.Errorf("extend %s to %d bytes: %w", t.path, t.size, err)
		}
	}
	return nil
}

// writeAt writes one chunk's raw bytes at off.
func (t *restoreTarget) writeAt(raw []byte, off int64) error {
	if _, err := t.f.WriteAt(raw, off); err != nil {
		return fmt.Errorf("write %s at byte %d: %w", t.path, off, err)
	}
	return nil
}

// finish makes a regular file exactly the source's size (so that its
// sha256sum equals the source's), fsyncs and closes the target. Cutting
// a longer file is the last change, made only after everything else was
// written: a restore that fails never shortens a file.
func (t *restoreTarget) finish() error {
	if t.regular {
		fi, err := t.f.Stat()
		if err != nil {
			return fmt.Errorf("stat %s: %w", t.path, err)
		}
		if fi.Size() > t.size {
			if err := t.f.Truncate(t.size); err != nil {
				return fmt.Errorf("resize %s to %d bytes: %w", t.path, t.size, err)
			}
		}
	}
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", t.path, err)
	}
	if err := t.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", t.path, err)
	}
	return nil
}

// abandon ends a restore that failed with err after the target was opened,
// and returns the error to report. What was written is kept when --resume
// can continue it (interrupted, or a resumable failure) or when the operator
// accepted damage (keepDamaged); otherwise a file this restore created is
// removed, so that it cannot pass for a restored disk, and a file it
// extended gets its size back.
func (t *restoreTarget) abandon(err error, keepDamaged bool) error {
	defer t.f.Close()
	switch KindOf(err) {
	case KindInterrupted:
		return fmt.Errorf("restore interrupted: %w; %s is incomplete", err, t.path)
	case KindIntegrity, KindBadInput:
		if keepDamaged {
			return err
		}
	default:
		return Resumable(fmt.Errorf("%w; %s is incomplete", err, t.path))
	}
	if t.created {
		t.f.Close()
		if rerr := os.Remove(t.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return errors.Join(err, fmt.Errorf("remove the incomplete %s: %w", t.path, rerr))
		}
		return err
	}
	if t.regular {
		if fi, serr := t.f.Stat(); serr == nil && fi.Size() > t.before {
			if terr := t.f.Truncate(t.before); terr != nil {
				return errors.Join(err, fmt.Errorf("give %s back its size of %d bytes: %w", t.path, t.before, terr))
			}
		}
	}
	return err
}

// notTheSource refuses to restore onto the device the image was captured
// from: the same file or device on the capture host, or a disk with the
// /dev/disk/by-id identity anywhere.
func notTheSource(target string, info device.Info, src format.Source) error {
	refuse := func(why string) error {
		return fmt.Errorf("%w: target %s is the capture source of this image (%s): restoring onto it would destroy the original; choose the replication target's device",
			ErrBadInput, target, why)
	}
	if host, _ := os.Hostname(); src.Path != "" && (src.Host == "" || src.Host == host) {
		same, err := device.SameDevice(target, src.Path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: cannot tell whether target %s is this image's capture source %s: %w", ErrBadInput, target, src.Path, err)
		}
		if same {
			return refuse("same device as " + src.Path)
		}
	}
	// /dev/disk/by-id names carry the disk's serial or WWN and, for a
	// partition, its number, so a shared name means the same partition
	// even on another host (shared SAN storage).
	for _, a := range info.ByID {
		if slices.Contains(src.ByID, a) {
			return refuse("same disk identity " + a)
		}
	}
	return nil
}

// localPaths is the optional ability of a store to name its keys' files.
type localPaths interface {
	Path(key string) (string, error)
}

// localPathsOf finds a localPaths in st or the stores it wraps.
func localPathsOf(st store.Store) (localPaths, bool) {
	for st != nil {
		if lp, ok := st.(localPaths); ok {
			return lp, true
		}
		u, ok := st.(store.Unwrapper)
		if !ok {
			break
		}
		st = u.Unwrap()
	}
	return nil, false
}

// notInImage refuses a target that is one of the files of the image in st
// (any of them: segments, the manifest and its copies, and whatever else
// lies there) or the device that holds them.
func notInImage(ctx context.Context, target string, st store.Store) error {
	lp, ok := localPathsOf(st)
	if !ok {
		return nil // not local: the target cannot be one of its files
	}
	var hit error
	err := st.List(ctx, "", func(i store.Info) error {
		p, err := lp.Path(i.Key)
		if err != nil {
			return nil
		}
		if same, err := device.SameDevice(target, p); err == nil && same {
			hit = fmt.Errorf("%w: target %s is %s of the image in %s, or holds it: restore onto the replication target's device instead",
				ErrBadInput, target, i.Key, st)
			return errStopList
		}
		return nil
	})
	if hit != nil {
		return hit
	}
	if err != nil {
		return fmt.Errorf("%w: cannot tell whether target %s is a file of %s: %w", ErrBadInput, target, st, err)
	}
	return nil
}

var errStopList = errors.New("stop listing")
