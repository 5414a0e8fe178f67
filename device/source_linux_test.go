package device

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/seedship/seedship/device/devicetest"
)

// TestSourceFileChanges: every kind of change to a regular file source is
// reported, and an untouched file (read, even) is not.
func TestSourceFileChanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string)
		want   string // "" for no change
	}{
		{"read only", func(t *testing.T, p string) { _, err := os.ReadFile(p); noSetupErr(t, err) }, ""},
		{"rewritten in place", func(t *testing.T, p string) {
			time.Sleep(10 * time.Millisecond)
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			noSetupErr(t, err)
			_, err = f.WriteAt([]byte{1}, 0) // the same byte: the data is equal, the file was written
			noSetupErr(t, err)
			noSetupErr(t, f.Close())
		}, "modified"},
		{"grown", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			noSetupErr(t, err)
			_, err = f.Write([]byte("more"))
			noSetupErr(t, err)
			noSetupErr(t, f.Close())
		}, "changed size"},
		{"replaced", func(t *testing.T, p string) {
			noSetupErr(t, os.WriteFile(p+".new", []byte{1, 2, 3, 4}, 0o600))
			noSetupErr(t, os.Rename(p+".new", p))
		}, "replaced"},
		{"chmod", func(t *testing.T, p string) {
			time.Sleep(10 * time.Millisecond)
			noSetupErr(t, os.Chmod(p, 0o400))
		}, "ctime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "src.img")
			noSetupErr(t, os.WriteFile(p, []byte{1, 2, 3, 4}, 0o600))
			s, err := OpenSource(p, false)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Exclusive || s.Info.IsBlock || s.Info.Size != 4 {
				t.Fatalf("file source: %+v", s)
			}
			tc.change(t, p)
			err = s.CheckUnchanged()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unchanged file reported: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrSourceChanged) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrSourceChanged mentioning %q", err, tc.want)
			}
		})
	}
}

// TestSourceDeviceHeld: a block device source is held with O_EXCL (a
// second exclusive open fails), its writes are seen, and a mounted one is
// refused unless allowInUse.
func TestSourceDeviceHeld(t *testing.T) {
	loop := devicetest.Attach(t, devicetest.Image(t, 8<<20))
	s, err := OpenSource(loop, false)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Exclusive || !s.Info.IsBlock || s.Info.Size != 8<<20 {
		t.Fatalf("device source: %+v", s)
	}
	if f, err := os.OpenFile(loop, os.O_RDONLY|unix.O_EXCL, 0); err == nil {
		f.Close()
		t.Fatal("a second exclusive open succeeded while the source is held")
	}
	if err := s.CheckUnchanged(); err != nil {
		t.Fatalf("untouched device: %v", err)
	}
	f, err := os.OpenFile(loop, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Not synced: the write is in the page cache only, which the check
	// must flush to see it.
	if _, err := f.WriteAt(bytes.Repeat([]byte{1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckUnchanged(); !errors.Is(err, ErrSourceChanged) || !strings.Contains(err.Error(), "written") {
		t.Fatalf("written device: %v", err)
	}
	f.Close()
	s.Close()

	devicetest.Mkfs(t, "ext4", loop)
	devicetest.Mount(t, loop)
	var inUse *InUseError
	if _, err := OpenSource(loop, false); !errors.As(err, &inUse) {
		t.Fatalf("mounted device: %v, want an InUseError", err)
	}
	s, err = OpenSource(loop, true)
	if err != nil {
		t.Fatalf("mounted device with allowInUse: %v", err)
	}
	if s.Exclusive {
		t.Error("allowInUse source held exclusively")
	}
	s.Close()
}

func noSetupErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
