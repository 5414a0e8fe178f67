//go:build unix

package dir

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedship/seedship/store"
)

// within runs fn and fails the test if it does not return in time: the
// bugs these tests catch are hangs.
func within(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); fn() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return within 5 s", what)
	}
}

func listAll(t *testing.T, s *Store, prefix string) []string {
	t.Helper()
	keys := []string{}
	var err error
	within(t, "List", func() {
		err = s.List(t.Context(), prefix, func(i store.Info) error { keys = append(keys, i.Key); return nil })
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

// TestNotRegular plants every kind of non-regular file where an object
// must be and checks that readers are refused at once, by name, and that
// List does not report them. Before the fix, a FIFO hung Get forever and a
// symlink to a file outside the image was read.
func TestNotRegular(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("outside the image"), 0o666); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		plant func(t *testing.T, s *Store, p string)
		what  string
	}{
		{"fifo", func(t *testing.T, s *Store, p string) {
			if err := unix.Mkfifo(p, 0o666); err != nil {
				t.Fatal(err)
			}
		}, "a FIFO"},
		{"symlink outside", func(t *testing.T, s *Store, p string) {
			if err := os.Symlink(outside, p); err != nil {
				t.Fatal(err)
			}
		}, "a symbolic link"},
		{"symlink inside", func(t *testing.T, s *Store, p string) {
			if err := s.Put(t.Context(), "real", strings.NewReader("real"), 4); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(s.Root(), "real"), p); err != nil {
				t.Fatal(err)
			}
		}, "a symbolic link"},
		{"symlink to fifo", func(t *testing.T, s *Store, p string) {
			fifo := filepath.Join(t.TempDir(), "fifo")
			if err := unix.Mkfifo(fifo, 0o666); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(fifo, p); err != nil {
				t.Fatal(err)
			}
		}, "a symbolic link"},
		{"socket", func(t *testing.T, s *Store, p string) {
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Skipf("unix socket: %v", err)
			}
			t.Cleanup(func() { l.Close() })
		}, "a socket"},
		{"device", func(t *testing.T, s *Store, p string) {
			// A copy of /dev/zero: reading it would never end.
			if err := mknodZero(p); err != nil {
				t.Skipf("mknod: %v", err)
			}
		}, "a device"},
		{"directory", func(t *testing.T, s *Store, p string) {
			if err := os.Mkdir(p, 0o777); err != nil {
				t.Fatal(err)
			}
		}, "a directory"},
	} {
		for _, key := range []string{"manifest.ssm", "data/00000001.seg"} {
			t.Run(tc.name+"/"+key, func(t *testing.T) {
				s := newStore(t)
				ctx := t.Context()
				if err := s.Put(ctx, "data/00000000.seg", strings.NewReader("seg"), 3); err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(s.Root(), filepath.FromSlash(key))
				tc.plant(t, s, p)

				var getErr, statErr error
				within(t, "Get", func() {
					rc, err := s.Get(ctx, key, 0, -1)
					if err == nil {
						_, err = io.ReadAll(rc)
						rc.Close()
						if err == nil {
							err = errors.New("read it as an object")
						}
					}
					getErr = err
				})
				within(t, "Stat", func() { _, statErr = s.Stat(ctx, key) })
				for op, err := range map[string]error{"Get": getErr, "Stat": statErr} {
					if !errors.Is(err, store.ErrNotRegular) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.what) {
						t.Errorf("%s(%q) = %v; want ErrNotRegular naming %s as %s", op, key, err, p, tc.what)
					}
					if store.IsPermanent(err) {
						t.Errorf("%s(%q) = %v; a damaged object is not a permanent store failure", op, key, err)
					}
					if want := tc.what == "a directory"; errors.Is(err, store.ErrNotExist) != want {
						t.Errorf("%s(%q) = %v; ErrNotExist %v, want %v (directories are not keys)", op, key, err, !want, want)
					}
				}
				if keys := listAll(t, s, ""); slices.Contains(keys, key) {
					t.Errorf("List reports %q, which is %s", key, tc.what)
				}
				// A Put replaces what stands there, without following it.
				err := s.Put(ctx, key, strings.NewReader("new"), 3)
				if tc.what == "a directory" {
					if !store.IsPermanent(err) {
						t.Errorf("Put over a directory = %v; want a permanent error", err)
					}
				} else {
					if err != nil {
						t.Fatalf("Put over %s: %v", tc.what, err)
					}
					if b, err := os.ReadFile(p); err != nil || string(b) != "new" {
						t.Errorf("after Put: %q, %v", b, err)
					}
				}
				if b, _ := os.ReadFile(outside); string(b) != "outside the image" {
					t.Errorf("the file outside the image changed to %q", b)
				}
			})
		}
	}
}

// TestSymlinkedDirectory puts a symlink to a directory outside the root
// where the image's data/ directory belongs: reads, writes, listing and
// deletion must all stay inside the root. Before the fix, all of them
// went through the link.
func TestSymlinkedDirectory(t *testing.T) {
	for _, inside := range []bool{false, true} {
		name := map[bool]string{false: "to outside", true: "to inside"}[inside]
		t.Run(name, func(t *testing.T) {
			s := newStore(t)
			ctx := t.Context()
			target := t.TempDir()
			if inside {
				target = filepath.Join(s.Root(), "elsewhere")
				if err := os.Mkdir(target, 0o777); err != nil {
					t.Fatal(err)
				}
			}
			victim := filepath.Join(target, "00000000.seg")
			if err := os.WriteFile(victim, []byte("victim"), 0o666); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(s.Root(), "data")
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}

			_, err := s.Get(ctx, "data/00000000.seg", 0, -1)
			if !errors.Is(err, store.ErrNotRegular) || !strings.Contains(err.Error(), link) {
				t.Errorf("Get through a symlinked directory = %v; want ErrNotRegular naming %s", err, link)
			}
			if _, err := s.Stat(ctx, "data/00000000.seg"); !errors.Is(err, store.ErrNotRegular) {
				t.Errorf("Stat through a symlinked directory = %v; want ErrNotRegular", err)
			}
			err = s.Put(ctx, "data/00000001.seg", strings.NewReader("new"), 3)
			if !errors.Is(err, store.ErrNotRegular) || !store.IsPermanent(err) || !strings.Contains(err.Error(), link) {
				t.Errorf("Put through a symlinked directory = %v; want a permanent ErrNotRegular naming %s", err, link)
			}
			if err := s.Delete(ctx, "data/00000000.seg"); err == nil {
				t.Error("Delete through a symlinked directory returned nil")
			}
			for _, prefix := range []string{"", "data/", "data/0"} {
				for _, k := range listAll(t, s, prefix) {
					if strings.HasPrefix(k, "data/") {
						t.Errorf("List(%q) went through the link: %q", prefix, k)
					}
				}
			}
			des, err := os.ReadDir(target)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(victim); len(des) != 1 || string(b) != "victim" {
				t.Errorf("the linked directory changed: %d entries, victim %q", len(des), b)
			}
		})
	}
}

func TestLockHolderAndRelease(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	unlock, err := store.Lock(ctx, s, "seedship capture /dev/sdb on host1 pid 42")
	if err != nil {
		t.Fatal(err)
	}
	// A second Lock, even in this process and through a fresh Store, is
	// refused and names the holder.
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	_, err = s2.Lock(ctx, "seedship copy")
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "seedship capture /dev/sdb on host1 pid 42 since ") {
		t.Fatalf("second Lock = %v; want ErrLocked naming the holder and the time", err)
	}
	// The lock is not part of the image.
	if keys := listAll(t, s, ""); len(keys) != 0 {
		t.Errorf("List of a locked empty image = %q", keys)
	}
	if err := s.Put(ctx, store.LockKey, strings.NewReader("x"), 1); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Put(%q) = %v; want ErrInvalidKey", store.LockKey, err)
	}
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := unlock(ctx); err != nil {
		t.Errorf("second unlock: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(s.Root(), store.LockKey)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unlock left the lock file: %v", err)
	}
	unlock, err = s2.Lock(ctx, "seedship copy")
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	_ = unlock(ctx)
}

// A planted symlink in place of the lock file is refused, not followed.
func TestLockFileSymlink(t *testing.T) {
	s := newStore(t)
	outside := filepath.Join(t.TempDir(), "x")
	if err := os.Symlink(outside, filepath.Join(s.Root(), store.LockKey)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(t.Context(), "me"); !errors.Is(err, store.ErrNotRegular) {
		t.Errorf("Lock with a symlinked lock file = %v; want ErrNotRegular", err)
	}
	if _, err := os.Lstat(outside); err == nil {
		t.Error("Lock created the symlink's target")
	}
}

// The lock of a process that is killed is released by the kernel: a new
// writer (a resumed capture) takes it.
func TestLockReleasedWhenHolderDies(t *testing.T) {
	if os.Getenv("SEEDSHIP_LOCK_HOLDER") != "" {
		return // the child's part runs in TestMain
	}
	s := newStore(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := execHolder(ctx, exe, s.Root())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 6)
	if _, err := io.ReadFull(out, line); err != nil || string(line) != "locked" {
		t.Fatalf("holder said %q, %v", line, err)
	}
	if _, err := s.Lock(ctx, "me"); !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "child holder") {
		t.Fatalf("Lock while the child holds it = %v", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	unlock, err := s.Lock(ctx, "me")
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	_ = unlock(ctx)
}
