package storetest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/store"
)

// RunFiles runs [Run] and then the checks for stores that keep each key
// as a file below a root directory (store/dir, later courier volumes):
// an image is hostile input, so a FIFO, a symlink or a symlinked
// directory planted where an object belongs is refused at once with an
// error wrapping [store.ErrNotRegular] that names it, is not listed, and
// never leads a read, a write or a listing outside the root. newStore
// returns a new, empty store and the directory that holds its keys.
func RunFiles(t *testing.T, newStore func(t *testing.T) (store.Store, string)) {
	t.Helper()
	Run(t, func(t *testing.T) store.Store { s, _ := newStore(t); return s })
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, store.Store, string)
	}{
		{"FilesFIFO", testFilesFIFO},
		{"FilesSymlink", testFilesSymlink},
		{"FilesSymlinkedDir", testFilesSymlinkedDir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newStore(t)
			tc.fn(t, s, root)
		})
	}
}

// bounded runs fn and fails the test when it hangs.
func bounded(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s hangs", what)
	}
}

// mustRefuse checks that Get and Stat of key fail promptly with
// ErrNotRegular naming p, and that List does not report key.
func mustRefuse(t *testing.T, s store.Store, key, p string) {
	t.Helper()
	var getErr, statErr error
	bounded(t, "Get of "+key, func() {
		b, err := get(t.Context(), s, key, 0, -1)
		if err == nil {
			err = errors.New("read " + strings.TrimSpace(string(b[:min(len(b), 40)])))
		}
		getErr = err
	})
	bounded(t, "Stat of "+key, func() { _, statErr = s.Stat(t.Context(), key) })
	for op, err := range map[string]error{"Get": getErr, "Stat": statErr} {
		if !errors.Is(err, store.ErrNotRegular) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s(%q) = %v; want an error wrapping ErrNotRegular that names %s", op, key, err, p)
		}
	}
	var keys []string
	bounded(t, "List", func() { keys = listKeys(t, s, "") })
	if slices.Contains(keys, key) {
		t.Errorf("List reports %q", key)
	}
}

func testFilesFIFO(t *testing.T, s store.Store, root string) {
	for _, key := range []string{"manifest.ssm", "data/00000000.seg"} {
		p := filepath.Join(root, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := mkfifo(p); err != nil {
			t.Skipf("no FIFOs here: %v", err)
		}
		mustRefuse(t, s, key, p)
	}
}

func testFilesSymlink(t *testing.T, s store.Store, root string) {
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("outside"), 0o666); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, "manifest.ssm")
	if err := os.Symlink(outside, p); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	mustRefuse(t, s, "manifest.ssm", p)
	// A Put replaces the link itself, never its target.
	put(t, s, "manifest.ssm", []byte("new"))
	if b, _ := os.ReadFile(outside); string(b) != "outside" {
		t.Errorf("Put through a symlink changed the file outside the root to %q", b)
	}
}

func testFilesSymlinkedDir(t *testing.T, s store.Store, root string) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "00000000.seg"), []byte("outside"), 0o666); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "data")
	if err := os.Symlink(outside, link); err != nil {
		t.Skipf("no symlinks here: %v", err)
	}
	if _, err := get(t.Context(), s, "data/00000000.seg", 0, -1); !errors.Is(err, store.ErrNotRegular) || !strings.Contains(err.Error(), link) {
		t.Errorf("Get through a symlinked directory = %v; want ErrNotRegular naming %s", err, link)
	}
	if err := s.Put(t.Context(), "data/00000001.seg", strings.NewReader("x"), 1); err == nil {
		t.Error("Put through a symlinked directory succeeded")
	}
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Errorf("List followed a symlinked directory: %q", keys)
	}
	if des, _ := os.ReadDir(outside); len(des) != 1 {
		t.Errorf("the directory outside the root now has %d entries", len(des))
	}
}
