package dir

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/storetest"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// temps returns the temporary files anywhere under root.
func temps(t *testing.T, root string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), TempPrefix) {
			found = append(found, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestConformance(t *testing.T) {
	storetest.RunFiles(t, func(t *testing.T) (store.Store, string) {
		s := newStore(t)
		// Every subtest has finished its Puts, failed ones included, by now.
		t.Cleanup(func() {
			if left := temps(t, s.Root()); len(left) > 0 {
				t.Errorf("temporary files left behind: %q", left)
			}
		})
		return s, s.Root()
	})
}

func TestNewOpen(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "new", "nested")
	if _, err := Open(root); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("Open(missing) = %v; want ErrNotExist", err)
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		t.Fatalf("New did not create %s: %v", root, err)
	}
	if got, want := s.String(), "dir:"+root; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := store.ConnectionsOf(s, 8); got != 2 {
		t.Errorf("ConnectionsOf = %d, want 2", got)
	}
	if _, err := Open(root); err != nil {
		t.Errorf("Open(existing): %v", err)
	}

	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := New(file); err == nil {
		t.Error("New(a regular file) succeeded")
	}
	if _, err := Open(file); err == nil {
		t.Error("Open(a regular file) succeeded")
	}

	// A relative root is made absolute.
	t.Chdir(base)
	s, err = New("rel")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(base, "rel"); s.Root() != want {
		t.Errorf("Root() = %q, want %q", s.Root(), want)
	}
}

func TestPath(t *testing.T) {
	s := newStore(t)
	p, err := s.Path("data/00000000.seg")
	if want := filepath.Join(s.Root(), "data", "00000000.seg"); err != nil || p != want {
		t.Errorf("Path = %q, %v; want %q", p, err, want)
	}
	if _, err := s.Path("../x"); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Path(../x) = %v; want ErrInvalidKey", err)
	}
}

func TestInvalidKeys(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	for _, key := range []string{
		"", "/abs", "/", "a//b", "a/", "./a", "a/./b", ".", "..", "../x", "a/../b", "a/..",
		`a\b`, `..\x`, "a\x00b", TempPrefix + "x", "data/" + TempPrefix + "1",
	} {
		errs := map[string]error{}
		errs["Put"] = s.Put(ctx, key, strings.NewReader("x"), 1)
		_, errs["Get"] = s.Get(ctx, key, 0, -1)
		_, errs["Stat"] = s.Stat(ctx, key)
		errs["Delete"] = s.Delete(ctx, key)
		_, errs["Path"] = s.Path(key)
		for op, err := range errs {
			if !errors.Is(err, ErrInvalidKey) || !errors.Is(err, store.ErrPermanent) {
				t.Errorf("%s(%q) = %v; want ErrInvalidKey and ErrPermanent", op, key, err)
			} else if !strings.HasPrefix(err.Error(), "dir: ") {
				t.Errorf("%s(%q) message %q lacks the dir: prefix", op, key, err)
			}
		}
	}
	// Nothing was written inside or next to the root.
	for _, d := range []string{s.Root(), filepath.Dir(s.Root())} {
		if des, err := os.ReadDir(d); err != nil || (d == s.Root() && len(des) != 0) {
			t.Errorf("ReadDir(%s) = %d entries, %v", d, len(des), err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Root()), "x")); err == nil {
		t.Error("a key escaped the root")
	}

	for _, key := range []string{"a", "a/b", "..a", "a..", ".hidden", "a b", "data/00000000.seg", ".tmp"} {
		if err := checkKey(key); err != nil {
			t.Errorf("checkKey(%q) = %v; want nil", key, err)
		}
	}
}

func TestTempFilesInvisible(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "data/x", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{TempPrefix + "1", "data/" + TempPrefix + "2", TempPrefix + "dir/y"} {
		p = filepath.Join(s.Root(), filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("partial"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	for _, prefix := range []string{"", "data/", ".tmp", TempPrefix, TempPrefix + "dir/"} {
		var got []string
		err := s.List(ctx, prefix, func(info store.Info) error {
			got = append(got, info.Key)
			return nil
		})
		want := []string{}
		if strings.HasPrefix("data/x", prefix) {
			want = []string{"data/x"}
		}
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, %v; want %q", prefix, got, err, want)
		}
	}
}

// failingReader yields some bytes, then an error.
type failingReader struct{ n int }

var errBoom = errors.New("boom")

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errBoom
	}
	p = p[:min(len(p), r.n)]
	r.n -= len(p)
	return len(p), nil
}

func TestNoTempAfterFailedPut(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Put(ctx, "file", strings.NewReader("f"), 1); err != nil {
		t.Fatal(err)
	}
	for name, put := range map[string]func() error{
		"reader error": func() error { return s.Put(ctx, "data/a", &failingReader{n: 3 << 20}, -1) },
		"short":        func() error { return s.Put(ctx, "data/b", strings.NewReader("abc"), 4) },
		"long":         func() error { return s.Put(ctx, "data/c", strings.NewReader("abcde"), 4) },
		"cancelled":    func() error { return s.Put(cancelled, "data/d", strings.NewReader("abc"), 3) },
		"through file": func() error { return s.Put(ctx, "file/x", strings.NewReader("abc"), 3) },
	} {
		err := put()
		if err == nil {
			t.Errorf("%s: Put succeeded", name)
			continue
		}
		if !strings.HasPrefix(err.Error(), "dir: put ") {
			t.Errorf("%s: message %q lacks the dir: put prefix", name, err)
		}
		if name == "reader error" && (!errors.Is(err, errBoom) || store.IsPermanent(err)) {
			t.Errorf("%s: %v; want the reader's error, not classified permanent", name, err)
		}
	}
	if left := temps(t, s.Root()); len(left) > 0 {
		t.Errorf("temporary files left behind: %q", left)
	}
}

func TestPutThroughFileIsPermanent(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "a", strings.NewReader("a"), 1); err != nil {
		t.Fatal(err)
	}
	err := s.Put(ctx, "a/b", strings.NewReader("b"), 1)
	if !store.IsPermanent(err) || !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("Put(a/b) over file a = %v; want permanent ENOTDIR", err)
	}
	// Reading through a file is just a missing key.
	if _, err := s.Stat(ctx, "a/b"); !errors.Is(err, store.ErrNotExist) || store.IsPermanent(err) {
		t.Errorf("Stat(a/b) = %v; want ErrNotExist", err)
	}
}

func TestRootVanished(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "mnt")
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), "data/x", strings.NewReader("x"), 1); err == nil {
		t.Error("Put into a vanished root succeeded")
	}
	if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Put recreated the root (%v): an unmounted volume would be shadowed", err)
	}
	if err := s.List(t.Context(), "", func(store.Info) error { return nil }); err == nil {
		t.Error("List of a vanished root succeeded")
	}
}

func TestRemoveTemps(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	for _, key := range []string{"manifest.ssm", "data/00000000.seg"} {
		if err := s.Put(ctx, key, strings.NewReader(key), int64(len(key))); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{TempPrefix + "a", "data/" + TempPrefix + "b", "data/deep/" + TempPrefix + "c"} {
		p = filepath.Join(s.Root(), filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("stale"), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	// A pre-check with a cancelled ctx fails and removes nothing.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.RemoveTemps(cancelled); !errors.Is(err, context.Canceled) {
		t.Errorf("RemoveTemps(cancelled) = %v", err)
	}
	if n := len(temps(t, s.Root())); n != 3 {
		t.Errorf("%d temporary files before RemoveTemps, want 3", n)
	}

	if err := s.RemoveTemps(ctx); err != nil {
		t.Fatal(err)
	}
	if left := temps(t, s.Root()); len(left) > 0 {
		t.Errorf("RemoveTemps left %q", left)
	}
	for _, key := range []string{"manifest.ssm", "data/00000000.seg"} {
		if _, err := s.Stat(ctx, key); err != nil {
			t.Errorf("RemoveTemps removed %s: %v", key, err)
		}
	}
	if err := s.RemoveTemps(ctx); err != nil {
		t.Errorf("RemoveTemps with nothing to do: %v", err)
	}
}

func TestGetReader(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	if err := s.Put(ctx, "obj", strings.NewReader("0123456789"), 10); err != nil {
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "obj", 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	// Small reads, then EOF, then EOF again.
	var buf bytes.Buffer
	p := make([]byte, 2)
	for {
		n, err := rc.Read(p)
		buf.Write(p[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n, err := rc.Read(p); n != 0 || err != io.EOF {
		t.Errorf("Read after EOF = %d, %v", n, err)
	}
	if buf.String() != "23456" {
		t.Errorf("read %q, want 23456", buf.String())
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}

	// A file truncated after Get opened it is short, not silently shorter.
	rc, err = s.Get(ctx, "obj", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := os.Truncate(filepath.Join(s.Root(), "obj"), 4); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(b) != "0123" {
		t.Errorf("reading a truncated object = %q, %v; want 0123 and io.ErrUnexpectedEOF", b, err)
	}
}

func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root, which ignores directory permissions; TestClassify covers EACCES")
	}
	s := newStore(t)
	if err := os.Chmod(s.Root(), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(s.Root(), 0o755) })
	err := s.Put(t.Context(), "x", strings.NewReader("x"), 1)
	if !store.IsPermanent(err) || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Put into a read-only directory = %v; want permanent permission error", err)
	}
}

func TestClassify(t *testing.T) {
	pathErr := func(errno syscall.Errno) error {
		return &fs.PathError{Op: "write", Path: "/mnt/seed/data/.tmp-x", Err: errno}
	}
	for _, tc := range []struct {
		err       error
		permanent bool
		notExist  bool
	}{
		{pathErr(syscall.ENOSPC), false, false}, // ErrNoSpace: see TestNoSpace
		{pathErr(syscall.EDQUOT), false, false},
		{pathErr(syscall.EROFS), true, false},
		{pathErr(syscall.EACCES), true, false},
		{pathErr(syscall.EPERM), true, false},
		{pathErr(syscall.EFBIG), true, false},
		{pathErr(syscall.ENAMETOOLONG), true, false},
		{pathErr(syscall.ENOTDIR), true, false},
		{pathErr(syscall.EISDIR), true, false},
		{&os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EROFS}, true, false},
		{pathErr(syscall.ENOENT), false, true},
		{pathErr(syscall.EIO), false, false},
		{pathErr(syscall.EINTR), false, false},
		{context.Canceled, false, false},
		{errors.New("other"), false, false},
	} {
		got := classify(tc.err)
		if store.IsPermanent(got) != tc.permanent || errors.Is(got, store.ErrNotExist) != tc.notExist {
			t.Errorf("classify(%v): permanent %v, not-exist %v; want %v, %v", tc.err,
				store.IsPermanent(got), errors.Is(got, store.ErrNotExist), tc.permanent, tc.notExist)
		}
		noSpace := errors.Is(tc.err, syscall.ENOSPC) || errors.Is(tc.err, syscall.EDQUOT)
		if errors.Is(got, store.ErrNoSpace) != noSpace || store.IsFinal(got) != (noSpace || tc.permanent) {
			t.Errorf("classify(%v): no-space %v, final %v; want %v, %v", tc.err,
				errors.Is(got, store.ErrNoSpace), store.IsFinal(got), noSpace, noSpace || tc.permanent)
		}
		if !errors.Is(got, tc.err) || got.Error() != tc.err.Error() {
			t.Errorf("classify(%v) = %v: lost the original error", tc.err, got)
		}
	}
	if classify(nil) != nil {
		t.Error("classify(nil) != nil")
	}
	// Reads map a path through a file to a missing key, not a permanent error.
	got := classifyRead(pathErr(syscall.ENOTDIR))
	if !errors.Is(got, store.ErrNotExist) || store.IsPermanent(got) {
		t.Errorf("classifyRead(ENOTDIR) = %v; want ErrNotExist", got)
	}
	if got := classifyRead(pathErr(syscall.EACCES)); !store.IsPermanent(got) {
		t.Errorf("classifyRead(EACCES) = %v; want permanent", got)
	}
}

// countingReader yields zeros up to limit, cancels after cancelAt bytes and
// counts what is read after that.
type countingReader struct {
	read, cancelAt, limit int
	cancel                context.CancelFunc
	afterCancel           int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.read >= r.limit {
		return 0, io.EOF
	}
	n := min(len(p), r.limit-r.read)
	clear(p[:n])
	if r.read >= r.cancelAt {
		r.afterCancel += n
	}
	r.read += n
	if r.read >= r.cancelAt {
		r.cancel()
	}
	return n, nil
}

func TestPutCancelStopsCopy(t *testing.T) {
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	r := &countingReader{cancelAt: 256 << 10, limit: 64 << 20, cancel: cancel}
	err := s.Put(ctx, "big", r, -1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v; want context.Canceled", err)
	}
	// The copy stops at the next Read, not at the end of the data.
	if r.afterCancel > 0 {
		t.Errorf("Put read %d bytes after ctx was cancelled", r.afterCancel)
	}
	if left := temps(t, s.Root()); len(left) > 0 {
		t.Errorf("temporary files left behind: %q", left)
	}
}
