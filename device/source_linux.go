package device

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// OpenSource opens path, a block device or a regular file, for capture and
// records what [Source.CheckUnchanged] compares at the end.
//
// Unless allowInUse, a block device is refused (an [*InUseError]) when
// mounted, held or active swap, as [CheckWritable] says, and is then
// opened read-only with O_EXCL: while the source stays open nobody can
// mount it, add it to an array or swap on it. With allowInUse it is
// opened without the claim, so a mounted device can be read.
//
// The kernel is told that the file is read once, front to back.
func OpenSource(path string, allowInUse bool) (*Source, error) {
	return realHost.openSource(path, allowInUse)
}

// Source is a capture source held open. Its File is positioned at 0.
type Source struct {
	File *os.File
	Info Info
	// Exclusive says the block device is held with O_EXCL.
	Exclusive bool

	host   *host
	before sourceState
}

// sourceState is what tells that a source was written: for a regular file
// its identity, size and times; for a block device the kernel's write and
// discard counters (and, for a loop device, its backing file's state).
type sourceState struct {
	file    fileState
	writes  string // fields 7 and 14 of /sys/dev/block/MAJ:MIN/stat
	backing fileState
}

type fileState struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

func (s fileState) describe(now fileState) string {
	switch {
	case s.dev != now.dev || s.ino != now.ino:
		return "was replaced by another file"
	case s.size != now.size:
		return fmt.Sprintf("changed size from %d to %d bytes", s.size, now.size)
	case s.mtime != now.mtime:
		return "was modified (its mtime changed)"
	case s.ctime != now.ctime:
		return "was changed (its ctime changed)"
	}
	return ""
}

func statFile(st *unix.Stat_t) fileState {
	return fileState{dev: uint64(st.Dev), ino: uint64(st.Ino), size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

func (h *host) openSource(path string, allowInUse bool) (*Source, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	var f *os.File
	var err error
	exclusive := false
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		f, err = os.Open(path)
	case unix.S_IFBLK:
		if allowInUse {
			f, err = os.Open(path)
			break
		}
		if err := h.checkBlock(path, devnumOf(st.Rdev), false); err != nil {
			return nil, err
		}
		f, err = os.OpenFile(path, os.O_RDONLY|unix.O_EXCL, 0)
		if errors.Is(err, unix.EBUSY) {
			return nil, busy(path)
		}
		exclusive = true
	default:
		return nil, notBlockOrFile(path, st.Mode)
	}
	if err != nil {
		return nil, err
	}
	s := &Source{File: f, Exclusive: exclusive, host: h}
	if err := s.init(path, &st); err != nil {
		f.Close()
		return nil, err
	}
	return s, nil
}

// init describes the opened source, checks that it is what path named
// when checked, and records its state.
func (s *Source) init(path string, st *unix.Stat_t) error {
	var now unix.Stat_t
	if err := unix.Fstat(int(s.File.Fd()), &now); err != nil {
		return fmt.Errorf("device: stat %s: %w", path, err)
	}
	if now.Dev != st.Dev || now.Ino != st.Ino || now.Rdev != st.Rdev {
		return fmt.Errorf("device: %s was replaced while being opened: try again", path)
	}
	if now.Mode&unix.S_IFMT == unix.S_IFREG {
		s.Info = Info{Path: path, Size: now.Size}
	} else {
		size, sector, rdev, err := blockGeometry(s.File)
		if err != nil {
			return err
		}
		d := devnumOf(rdev)
		s.Info = Info{Path: path, IsBlock: true, Size: size, Major: d.major, Minor: d.minor, LogicalSectorSize: sector}
		s.host.identify(&s.Info, d)
	}
	state, err := s.state()
	if err != nil {
		return err
	}
	s.before = state
	// Advice only: the read is correct without it.
	_ = unix.Fadvise(int(s.File.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
	return nil
}

func (s *Source) state() (sourceState, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(s.File.Fd()), &st); err != nil {
		return sourceState{}, fmt.Errorf("device: stat %s: %w", s.Info.Path, err)
	}
	if !s.Info.IsBlock {
		return sourceState{file: statFile(&st)}, nil
	}
	// Writes still in the page cache are not counted until written back:
	// flush them (fsync of a block device flushes everyone's), so that
	// the counters tell what was written up to now.
	if err := s.File.Sync(); err != nil {
		return sourceState{}, fmt.Errorf("device: flush %s: %w", s.Info.Path, err)
	}
	d := devnum{s.Info.Major, s.Info.Minor}
	b, err := os.ReadFile(filepath.Join(s.host.sys, "dev", "block", d.String(), "stat"))
	if err != nil {
		return sourceState{}, fmt.Errorf("device: cannot read the write counters of %s: %w", s.Info.Path, err)
	}
	f := strings.Fields(string(b))
	if len(f) < 7 {
		return sourceState{}, fmt.Errorf("device: write counters of %s: %d fields in %s", s.Info.Path, len(f), b)
	}
	// Field 7 counts sectors written, 14 (kernels from 4.18) sectors
	// discarded; not the request counts, which an empty flush (our own
	// fsync) moves too.
	state := sourceState{writes: f[6]}
	if len(f) >= 14 {
		state.writes += " " + f[13]
	}
	if blk, err := s.host.block(d); err == nil {
		if backing := s.host.backingFile(blk); backing != "" {
			var bst unix.Stat_t
			// A loop device's file can be written past the device.
			if unix.Stat(strings.TrimSuffix(backing, " (deleted)"), &bst) == nil {
				state.backing = statFile(&bst)
			}
		}
	}
	return state, nil
}

// CheckUnchanged reports, with an error wrapping [ErrSourceChanged], a
// source that was written since it was opened: a regular file whose
// inode, size, mtime or ctime changed (or that its path no longer names),
// a block device whose kernel counters of sectors written or discarded
// moved (after flushing writes still in the page cache), a loop device
// whose backing file changed, or a block device that became mounted or
// held. File times have the kernel's timestamp
// granularity (a few milliseconds on kernels without fine-grained
// timestamps): a lone write that soon after the open, not changing the
// size, can go unseen.
func (s *Source) CheckUnchanged() error {
	now, err := s.state()
	if err != nil {
		return err
	}
	changed := func(what string) error {
		return fmt.Errorf("%w: %s %s", ErrSourceChanged, s.Info.Path, what)
	}
	if !s.Info.IsBlock {
		if what := s.before.file.describe(now.file); what != "" {
			return changed(what)
		}
		var st unix.Stat_t
		if err := unix.Stat(s.Info.Path, &st); err != nil || statFile(&st).describe(now.file) != "" {
			return changed("was replaced by another file (its path names another file now)")
		}
		return nil
	}
	if s.before.writes != now.writes {
		return changed("was written while it was read (the kernel's write counters moved)")
	}
	if what := s.before.backing.describe(now.backing); what != "" {
		return changed("is a loop device whose backing file " + what)
	}
	if err := s.host.checkBlock(s.Info.Path, devnum{s.Info.Major, s.Info.Minor}, false); err != nil {
		var inUse *InUseError
		if errors.As(err, &inUse) {
			return changed(inUse.Reason)
		}
		return err
	}
	return nil
}

// Close releases the source (and its exclusive claim).
func (s *Source) Close() error { return s.File.Close() }
