//go:build !unix

package dir

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// dirHandle is a directory inside the root on systems without openat
// (Windows): every path goes through an [os.Root], which refuses to leave
// the root, and each element is checked with Lstat so that no symbolic
// link (or junction) inside the root is followed. Unlike the Unix version
// this is path-based, so a link swapped in between the check and the use
// is caught only by os.Root's confinement. Windows has no FIFOs in the
// file system, so opens cannot block.
type dirHandle struct {
	root     *os.Root
	rootPath string
	rel      string // "" for the root
	path     string
}

func openDir(root, rel string, create bool) (*dirHandle, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	d := &dirHandle{root: r, rootPath: root, path: root}
	if rel == "" {
		return d, nil
	}
	for _, elem := range strings.Split(rel, string(filepath.Separator)) {
		next := filepath.Join(d.rel, elem)
		p := filepath.Join(root, next)
		if create {
			if err := r.Mkdir(next, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
				r.Close()
				return nil, err
			}
		}
		fi, err := r.Lstat(next)
		if err == nil && !fi.IsDir() {
			if fi.Mode()&fs.ModeSymlink != 0 || fi.Mode()&fs.ModeIrregular != 0 {
				err = &notRegularError{path: p, what: "a symbolic link"}
			} else {
				err = &fs.PathError{Op: "open", Path: p, Err: errNotDir}
			}
		}
		if err != nil {
			r.Close()
			return nil, err
		}
		d.rel, d.path = next, p
	}
	return d, nil
}

// errNotDir is ENOTDIR's equivalent: a file where a directory must be.
var errNotDir = errors.New("not a directory")

func (d *dirHandle) Close() error { return d.root.Close() }

// openSub opens the subdirectory elem of d, creating it with create.
func (d *dirHandle) openSub(elem string, create bool) (*dirHandle, error) {
	return openDir(d.rootPath, filepath.Join(d.rel, elem), create)
}

func (d *dirHandle) name(n string) string { return filepath.Join(d.rel, n) }

func (d *dirHandle) lstat(name string) (fs.FileInfo, error) { return d.root.Lstat(d.name(name)) }

func (d *dirHandle) openRegular(name string) (*os.File, fs.FileInfo, error) {
	p := filepath.Join(d.path, name)
	if _, err := d.lstatRegular(name); err != nil {
		return nil, nil, err
	}
	f, err := d.root.Open(d.name(name))
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = regularOnly(p, fi)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

func (d *dirHandle) createTemp() (*os.File, string, error) {
	for range 100 {
		name := TempPrefix + strconv.FormatUint(rand.Uint64(), 36)
		f, err := d.root.OpenFile(d.name(name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
	return nil, "", &fs.PathError{Op: "createtemp", Path: d.path, Err: fs.ErrExist}
}

func (d *dirHandle) rename(from, to string) error {
	return d.root.Rename(d.name(from), d.name(to))
}

func (d *dirHandle) remove(name string) error { return d.root.Remove(d.name(name)) }

func (d *dirHandle) readDir() ([]fs.DirEntry, error) {
	name := d.rel
	if name == "" {
		name = "."
	}
	f, err := d.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.ReadDir(-1)
}

// sync does nothing: Windows cannot sync a directory.
func (d *dirHandle) sync() error { return nil }
