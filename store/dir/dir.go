package dir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/seedship/seedship/store"
)

// TempPrefix starts the name of every temporary file a [Store.Put] writes
// before renaming it over its key. [Store.List] skips such files,
// [Store.RemoveTemps] deletes them, and no key element may start with it.
const TempPrefix = ".tmp-"

// copyBufSize is the size of the buffers Put copies through: large enough
// that a multi-megabyte segment costs few write calls, small enough to pool.
const copyBufSize = 1 << 20

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Store is a [store.Store] over a local directory. It is safe for concurrent
// use. Create one with [New] or [Open].
type Store struct {
	root string // absolute, cleaned
}

var (
	_ store.Store       = (*Store)(nil)
	_ store.Connections = (*Store)(nil)
)

// New returns a Store rooted at root, creating root and any missing parents
// (and syncing the directories that hold them). Use it for a store about to
// be written, such as a capture target. root is made absolute, so the store
// does not depend on the working directory. It fails if root exists and is
// not a directory; a permission error wraps [store.ErrPermanent].
func New(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("dir: new %s: %w", root, err)
	}
	if err := mkdirAll(abs); err != nil {
		return nil, fmt.Errorf("dir: new %s: %w", abs, classify(err))
	}
	return Open(abs)
}

// Open returns a Store rooted at the existing directory root and creates
// nothing. Use it for a store that is only read (info, verify, restore), so a
// mistyped path or an unmounted volume is an error instead of an empty image.
// A missing root wraps [store.ErrNotExist].
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("dir: open %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("dir: open %s: %w", abs, classify(err))
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("dir: open %s: not a directory: %w", abs, store.ErrPermanent)
	}
	return &Store{root: abs}, nil
}

// Root returns the absolute directory the store lives in.
func (s *Store) Root() string { return s.root }

// String returns "dir:" followed by the absolute root, e.g. "dir:/mnt/seed".
func (s *Store) String() string { return "dir:" + s.root }

// Connections returns 2. The store is a local disk on a 2-core machine: two
// writers overlap one file's fsync with the next file's copy, while more only
// add seeks and fsync contention on a single device.
func (s *Store) Connections() int { return 2 }

// Path returns the OS path that holds key, for messages and for callers that
// must hand a file to another program. It fails (wrapping [ErrInvalidKey]) for
// keys the store would reject. The file need not exist.
func (s *Store) Path(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	return s.path(key), nil
}

// path maps a checked key (or "" for the root) to its OS path.
func (s *Store) path(key string) string {
	if key == "" {
		return s.root
	}
	return filepath.Join(s.root, filepath.FromSlash(key))
}

// Put stores the bytes of r under key, atomically and durably: see the
// package documentation. size is the exact length, or -1 when unknown; a
// reader that yields fewer or more bytes than a non-negative size is an
// error. On any error, including a cancelled ctx (checked before every Read
// of r), the temporary file is removed and key keeps its previous content,
// if any. An error from r is returned wrapped, and is not classified.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	if err := checkKey(key); err != nil {
		return err
	}
	if size < -1 {
		return fmt.Errorf("dir: put %s: invalid size %d", key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dir: put %s: %w", key, err)
	}
	relDir, base := splitKey(key)
	d, err := openDir(s.root, relDir, false)
	if relDir != "" && errors.Is(err, fs.ErrNotExist) {
		d, err = openDir(s.root, relDir, true)
	}
	if err != nil {
		return fmt.Errorf("dir: put %s: %w", key, classify(err))
	}
	defer d.Close()

	f, tmp, err := d.createTemp()
	if err != nil {
		return fmt.Errorf("dir: put %s: %w", key, classify(err))
	}
	closed := false
	defer func() {
		if err != nil {
			if !closed {
				_ = f.Close()
			}
			_ = d.remove(tmp)
		}
	}()

	src := store.ContextReader(ctx, r)
	if size >= 0 {
		// One byte more than declared is enough to tell a long reader.
		src = io.LimitReader(src, size+1)
	}
	w := &fileWriter{f: f}
	bp := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(w, src, *bp)
	copyBufs.Put(bp)
	switch {
	case err != nil && w.err != nil:
		return fmt.Errorf("dir: put %s: %w", key, classify(err))
	case err != nil:
		return fmt.Errorf("dir: put %s: reading data: %w", key, err)
	case size >= 0 && n != size:
		if n > size {
			return fmt.Errorf("dir: put %s: reader has more than the declared %d bytes", key, size)
		}
		return fmt.Errorf("dir: put %s: reader has %d bytes, declared %d: %w", key, n, size, io.ErrUnexpectedEOF)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("dir: put %s: %w", key, classify(err))
	}
	closed = true
	if err = f.Close(); err != nil {
		return fmt.Errorf("dir: put %s: %w", key, classify(err))
	}
	// Last chance to honour a cancellation: after the rename the object exists.
	if err = ctx.Err(); err != nil {
		return fmt.Errorf("dir: put %s: %w", key, err)
	}
	if err = d.rename(tmp, base); err != nil {
		return fmt.Errorf("dir: put %s: %w", key, classify(err))
	}
	// The object is in place; a failed directory sync only weakens its
	// durability, and the temp file no longer exists to be removed.
	if err := d.sync(); err != nil {
		return fmt.Errorf("dir: put %s: %w", key, classify(err))
	}
	return nil
}

// Get returns a reader for length bytes of key starting at off, or for the
// rest of the object when length is negative. If the object is shorter than
// off+length the reader returns its bytes and then an error wrapping
// io.ErrUnexpectedEOF; an offset past the end with a negative length fails at
// once with such an error. Every Read first checks ctx. The caller must
// Close the reader. A missing key (or a directory) wraps [store.ErrNotExist].
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("dir: get %s: negative offset %d", key, off)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dir: get %s: %w", key, err)
	}
	f, fi, err := s.openRegular(key)
	if err != nil {
		return nil, fmt.Errorf("dir: get %s: %w", key, classifyRead(err))
	}
	if length, err = store.RangeLength(off, length, fi.Size()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("dir: get %s: %w", key, err)
	}
	return &objectReader{ctx: ctx, f: f, key: key, off: off, pos: off, remain: length}, nil
}

// Stat returns the size and modification time of key. A missing key (or a
// directory) wraps [store.ErrNotExist].
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := checkKey(key); err != nil {
		return store.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.Info{}, fmt.Errorf("dir: stat %s: %w", key, err)
	}
	fi, err := s.lstatRegular(key)
	if err != nil {
		return store.Info{}, fmt.Errorf("dir: stat %s: %w", key, classifyRead(err))
	}
	return store.Info{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List calls fn, in the caller's goroutine, for every regular file under the
// root whose key begins with prefix, in lexical (byte) order of the keys.
// prefix is a plain string prefix, not necessarily a directory: "data/0000"
// matches "data/00001.seg". Temporary files, the lock file ([LockName]),
// names that are not valid key elements, and anything that is not a regular
// file or a directory are skipped; symbolic links are neither reported nor
// followed, so a listing never leaves the root. The error of fn is returned
// unchanged and stops the listing. Only the directories that can hold
// matching keys are read, and a missing directory below the root (or a
// symlink in its place) simply has no keys.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	start := ""
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		start = prefix[:i]
		if checkKey(start) != nil {
			return nil // no valid key lies below an invalid directory
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dir: list %q: %w", prefix, err)
	}
	d, err := openDir(s.root, filepath.FromSlash(start), false)
	if err != nil {
		if start != "" && (isNotExist(err) || errors.Is(err, store.ErrNotRegular)) {
			return nil
		}
		return fmt.Errorf("dir: list %q: %w", prefix, classify(err))
	}
	defer d.Close()
	return s.list(ctx, d, start, prefix, fn)
}

type listEntry struct {
	name string
	dir  bool
	fi   fs.FileInfo // nil for directories
}

// list walks d, the directory of dirKey ("" for the root). Entries are
// visited in order of their name with "/" appended for directories: every
// key below directory x starts with x+"/", and sorting siblings that way is
// exactly the lexical order of the full keys ("a.b" < "a/b" < "a0").
func (s *Store) list(ctx context.Context, d *dirHandle, dirKey, prefix string, fn func(store.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dir: list %q: %w", prefix, err)
	}
	des, err := d.readDir()
	if err != nil {
		return fmt.Errorf("dir: list %q: %w", prefix, classify(err))
	}
	ents := make([]listEntry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if checkElem(name) != nil || (dirKey == "" && name == store.LockKey) {
			continue // temporary files, the lock, and names no key can have
		}
		key := joinKey(dirKey, name)
		switch t := de.Type(); {
		case t.IsDir():
			if strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				ents = append(ents, listEntry{name: name, dir: true})
			}
		case t.IsRegular() && strings.HasPrefix(key, prefix):
			fi, err := d.lstat(name)
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted since ReadDir
			}
			if err != nil {
				return fmt.Errorf("dir: list %s: %w", key, classify(err))
			}
			if fi.Mode().IsRegular() {
				ents = append(ents, listEntry{name: name, fi: fi})
			}
		}
	}
	sortName := func(e listEntry) string {
		if e.dir {
			return e.name + "/"
		}
		return e.name
	}
	slices.SortFunc(ents, func(a, b listEntry) int { return strings.Compare(sortName(a), sortName(b)) })

	for _, e := range ents {
		key := joinKey(dirKey, e.name)
		if e.dir {
			sub, err := d.openSub(e.name, false)
			if isNotExist(err) || errors.Is(err, store.ErrNotRegular) {
				continue // removed, or swapped for a symlink, since ReadDir
			}
			if err != nil {
				return fmt.Errorf("dir: list %q: %w", prefix, classify(err))
			}
			err = s.list(ctx, sub, key, prefix, fn)
			sub.Close()
			if err != nil {
				return err
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("dir: list %q: %w", prefix, err)
		}
		if err := fn(store.Info{Key: key, Size: e.fi.Size(), ModTime: e.fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes key. A missing key, or a key that names a directory, is not
// an error and removes nothing. A symbolic link at key is removed itself;
// one on the way to key is not followed. Emptied parent directories are
// kept.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("dir: delete %s: %w", key, err)
	}
	relDir, base := splitKey(key)
	d, err := openDir(s.root, relDir, false)
	if err == nil {
		defer d.Close()
		var fi fs.FileInfo
		if fi, err = d.lstat(base); err == nil && fi.IsDir() {
			return nil
		}
		if err == nil {
			err = d.remove(base)
		}
	}
	if err != nil && !isNotExist(err) {
		return fmt.Errorf("dir: delete %s: %w", key, classify(err))
	}
	return nil
}

// RemoveTemps deletes every temporary file (name starting with [TempPrefix])
// anywhere under the root: the leftovers of Puts whose process was killed.
// Call it before resuming a capture, and only while nothing else writes to
// the store: it would also delete the temporary file of a Put in progress,
// which then fails. It stops at the first error, or when ctx is done.
func (s *Store) RemoveTemps(ctx context.Context) error {
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != s.root && errors.Is(err, fs.ErrNotExist) {
				return nil // vanished while walking
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), TempPrefix) {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dir: remove temps in %s: %w", s.root, classify(err))
	}
	return nil
}

// mkdirAll is os.MkdirAll that syncs the parent of every directory it makes.
func mkdirAll(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	parent := filepath.Dir(dir)
	if parent == dir {
		return err
	}
	if err := mkdirAll(parent); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(parent)
}

// syncDir makes the entries of directory dir durable. File systems that
// cannot sync a directory (some network and FUSE mounts; Windows) are
// tolerated, as in restic.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, errors.ErrUnsupported) {
		err = nil
	}
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// splitKey splits a checked key into its directory, OS-separated ("" at the
// root), and its last element.
func splitKey(key string) (relDir, base string) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 {
		return "", key
	}
	return filepath.FromSlash(key[:i]), key[i+1:]
}

// openRegular opens the regular file of a checked key; see
// dirHandle.openRegular.
func (s *Store) openRegular(key string) (*os.File, fs.FileInfo, error) {
	relDir, base := splitKey(key)
	d, err := openDir(s.root, relDir, false)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	return d.openRegular(base)
}

// lstatRegular returns the FileInfo of a checked key's regular file, or a
// *notRegularError for anything else there or a symlink on the way.
func (s *Store) lstatRegular(key string) (fs.FileInfo, error) {
	relDir, base := splitKey(key)
	d, err := openDir(s.root, relDir, false)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.lstatRegular(base)
}

// lstatRegular returns the FileInfo of name in d, without following a
// symlink, or a *notRegularError unless it is a regular file.
func (d *dirHandle) lstatRegular(name string) (fs.FileInfo, error) {
	fi, err := d.lstat(name)
	if err != nil {
		return nil, err
	}
	return fi, regularOnly(filepath.Join(d.path, name), fi)
}

func joinKey(dirKey, name string) string {
	if dirKey == "" {
		return name
	}
	return dirKey + "/" + name
}

// fileWriter records write errors, so Put can tell them from read errors
// (only the former are classified), and hides os.File's ReadFrom so the
// copy goes through Put's large buffer.
type fileWriter struct {
	f   *os.File
	err error
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// objectReader is the reader Get returns: remain bytes from pos, a short
// object reported as io.ErrUnexpectedEOF, and ctx checked on every Read.
type objectReader struct {
	ctx    context.Context
	f      *os.File
	key    string
	off    int64 // where the read began, for messages
	pos    int64
	remain int64
}

func (r *objectReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("dir: get %s: %w", r.key, err)
	}
	if r.remain <= 0 {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.f.ReadAt(p, r.pos)
	r.pos += int64(n)
	r.remain -= int64(n)
	switch {
	case err == io.EOF && r.remain > 0:
		return n, fmt.Errorf("dir: get %s: object ends at byte %d, %d bytes short of the range from %d: %w",
			r.key, r.pos, r.remain, r.off, io.ErrUnexpectedEOF)
	case err == io.EOF || (err == nil && r.remain == 0):
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	case err != nil:
		return n, fmt.Errorf("dir: get %s: %w", r.key, classify(err))
	}
	return n, nil
}

func (r *objectReader) Close() error { return r.f.Close() }

// RemoveIncomplete implements store.Cleaner: it removes stale temporary
// files (see RemoveTemps).
func (s *Store) RemoveIncomplete(ctx context.Context) error { return s.RemoveTemps(ctx) }
