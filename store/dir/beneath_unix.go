//go:build unix

package dir

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// dirHandle is an open directory inside the root, reached from the root
// one element at a time with O_NOFOLLOW, so no symbolic link inside the
// root is ever followed. Every operation on it is relative to its file
// descriptor (openat, renameat, unlinkat), so a directory swapped for a
// symlink after it was opened cannot redirect them.
type dirHandle struct {
	f    *os.File
	path string // for messages and the files it opens
}

// openDir opens the directory rel (OS-separated, relative to root, "" for
// the root itself). With create, missing directories are made and the
// parent of each is synced; the root itself is never created, so a
// vanished volume fails instead of being replaced. A symbolic link on the
// way fails with a *notRegularError naming it.
func openDir(root, rel string, create bool) (*dirHandle, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	d := &dirHandle{f: os.NewFile(uintptr(fd), root), path: root}
	if rel == "" {
		return d, nil
	}
	for _, elem := range strings.Split(rel, string(filepath.Separator)) {
		next, err := d.openSub(elem, create)
		d.Close()
		if err != nil {
			return nil, err
		}
		d = next
	}
	return d, nil
}

// openSub opens the subdirectory elem of d, creating it with create.
func (d *dirHandle) openSub(elem string, create bool) (*dirHandle, error) {
	p := filepath.Join(d.path, elem)
	if create {
		if err := unix.Mkdirat(int(d.f.Fd()), elem, 0o777); err != nil && err != unix.EEXIST {
			return nil, &fs.PathError{Op: "mkdir", Path: p, Err: err}
		}
		// Sync even when another Put made it first: that Put may not have
		// synced the parent yet, and our object must not outlive its path.
		if err := d.sync(); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Openat(int(d.f.Fd()), elem, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, d.explain("open", elem, err)
	}
	return &dirHandle{f: os.NewFile(uintptr(fd), p), path: p}, nil
}

// explain turns the failure of an open with O_NOFOLLOW into an error that
// says what stands at elem: a symbolic link (or other non-directory where
// a directory was opened) is a *notRegularError; anything else keeps err.
func (d *dirHandle) explain(op, elem string, err error) error {
	p := filepath.Join(d.path, elem)
	// Systems differ in the errno (ELOOP on Linux, EMLINK on FreeBSD,
	// EFTYPE on NetBSD), so look at what is there.
	var st unix.Stat_t
	if unix.Fstatat(int(d.f.Fd()), elem, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return &notRegularError{path: p, what: "a symbolic link"}
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}

func (d *dirHandle) Close() error { return d.f.Close() }

// lstat returns what stands at name in d, without following a symlink.
func (d *dirHandle) lstat(name string) (fs.FileInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(d.f.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: filepath.Join(d.path, name), Err: err}
	}
	return statInfo{name: name, st: st}, nil
}

// openRegular opens the regular file name in d for reading. Anything else
// (a FIFO, a device, a socket, a directory, a symlink) fails with a
// *notRegularError before it is opened, or, if it was swapped in between,
// right after an open that cannot block (O_NONBLOCK, O_NOFOLLOW).
func (d *dirHandle) openRegular(name string) (*os.File, fs.FileInfo, error) {
	p := filepath.Join(d.path, name)
	if _, err := d.lstatRegular(name); err != nil {
		return nil, nil, err
	}
	fd, err := unix.Openat(int(d.f.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, d.explain("open", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, nil, &fs.PathError{Op: "fstat", Path: p, Err: err}
	}
	fi := statInfo{name: name, st: st}
	if err := regularOnly(p, fi); err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	// Reads of a regular file never block; clear the flag so that os
	// treats the descriptor as the ordinary file it is.
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, nil, &fs.PathError{Op: "fcntl", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), fi, nil
}

// createTemp creates a new temporary file in d. It asks for mode 0666, so
// the finished object gets the usual umask-derived permissions.
func (d *dirHandle) createTemp() (*os.File, string, error) {
	for range 100 {
		name := TempPrefix + strconv.FormatUint(rand.Uint64(), 36)
		fd, err := unix.Openat(int(d.f.Fd()), name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o666)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return nil, "", &fs.PathError{Op: "create", Path: filepath.Join(d.path, name), Err: err}
		}
		return os.NewFile(uintptr(fd), filepath.Join(d.path, name)), name, nil
	}
	return nil, "", &fs.PathError{Op: "createtemp", Path: d.path, Err: fs.ErrExist}
}

// rename replaces to (a file or a symlink, which is replaced, not
// followed) with from, both in d.
func (d *dirHandle) rename(from, to string) error {
	if err := unix.Renameat(int(d.f.Fd()), from, int(d.f.Fd()), to); err != nil {
		return &os.LinkError{Op: "rename", Old: filepath.Join(d.path, from), New: filepath.Join(d.path, to), Err: err}
	}
	return nil
}

// remove unlinks name in d (a symlink itself, never its target).
func (d *dirHandle) remove(name string) error {
	if err := unix.Unlinkat(int(d.f.Fd()), name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: filepath.Join(d.path, name), Err: err}
	}
	return nil
}

// readDir returns d's entries, with their types as the directory records
// them (a symlink is a symlink, never its target).
func (d *dirHandle) readDir() ([]fs.DirEntry, error) {
	if _, err := d.f.Seek(0, 0); err != nil {
		return nil, err
	}
	return d.f.ReadDir(-1)
}

// sync makes d's entries durable. File systems that cannot sync a
// directory (some network and FUSE mounts) are tolerated, as in restic.
func (d *dirHandle) sync() error {
	err := d.f.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	return err
}

// statInfo is an fs.FileInfo over a unix.Stat_t.
type statInfo struct {
	name string
	st   unix.Stat_t
}

func (s statInfo) Name() string { return s.name }
func (s statInfo) Size() int64  { return s.st.Size }
func (s statInfo) Mode() fs.FileMode {
	m := fs.FileMode(s.st.Mode & 0o777)
	switch s.st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		m |= fs.ModeDir
	case unix.S_IFLNK:
		m |= fs.ModeSymlink
	case unix.S_IFIFO:
		m |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		m |= fs.ModeSocket
	case unix.S_IFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		m |= fs.ModeDevice
	}
	return m
}
func (s statInfo) ModTime() time.Time {
	sec, nsec := s.st.Mtim.Unix()
	return time.Unix(sec, nsec)
}
func (s statInfo) IsDir() bool { return s.Mode().IsDir() }
func (s statInfo) Sys() any    { return &s.st }
