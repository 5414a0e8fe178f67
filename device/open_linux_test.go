package device

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
)

func TestOpenTargetFile(t *testing.T) {
	dir := t.TempDir()

	t.Run("create", func(t *testing.T) {
		path := filepath.Join(dir, "new.img")
		f, err := OpenTarget(path, 1<<20, true)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() != 1<<20 || fi.Mode().Perm() != 0o600 {
			t.Errorf("new target: size %d mode %v, want %d and 0600", fi.Size(), fi.Mode(), 1<<20)
		}
		if _, err := f.WriteAt([]byte("x"), 10); err != nil {
			t.Errorf("new target is not writable: %v", err)
		}
	})
	t.Run("existing file is extended, never shrunk", func(t *testing.T) {
		path := filepath.Join(dir, "old.img")
		if err := os.WriteFile(path, make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ size, want int64 }{{500, 1000}, {-1, 1000}, {4000, 4000}} {
			f, err := OpenTarget(path, tc.size, false)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := f.Stat()
			f.Close()
			if err != nil || fi.Size() != tc.want {
				t.Errorf("OpenTarget(size %d): size %d, %v; want %d", tc.size, fi.Size(), err, tc.want)
			}
		}
	})
	t.Run("missing without create", func(t *testing.T) {
		if _, err := OpenTarget(filepath.Join(dir, "missing"), 1, false); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("not a block device or file", func(t *testing.T) {
		for _, p := range []string{"/dev/null", dir} {
			if _, err := OpenTarget(p, 1, true); !errors.Is(err, ErrNotBlockOrFile) {
				t.Errorf("OpenTarget(%s) = %v, want ErrNotBlockOrFile", p, err)
			}
		}
	})
}

func TestOpenTargetBlock(t *testing.T) {
	devicetest.RequireLoop(t)
	img := devicetest.Image(t, 16<<20)
	devicetest.Mkfs(t, "ext4", img)
	dev := devicetest.Attach(t, img)

	t.Run("too small", func(t *testing.T) {
		_, err := OpenTarget(dev, 16<<20+512, false)
		if !errors.Is(err, ErrTooSmall) || !strings.Contains(err.Error(), dev) {
			t.Errorf("err = %v, want ErrTooSmall naming %s", err, dev)
		}
	})

	t.Run("claim blocks mounting", func(t *testing.T) {
		f, err := OpenTarget(dev, 16<<20, false)
		if err != nil {
			t.Fatal(err)
		}
		mnt := t.TempDir()
		out, err := exec.Command("mount", dev, mnt).CombinedOutput()
		if err == nil {
			t.Errorf("mount %s succeeded while OpenTarget held it", dev)
			if uerr := exec.Command("umount", mnt).Run(); uerr != nil {
				t.Errorf("umount %s: %v", mnt, uerr)
			}
		}
		t.Logf("mount while claimed: %v: %s", err, strings.TrimSpace(string(out)))
		wantInUse(t, CheckWritable(dev), dev+" is busy")
		if _, err := OpenTarget(dev, -1, false); !errors.Is(err, ErrInUse) {
			t.Errorf("second OpenTarget = %v, want ErrInUse", err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := CheckWritable(dev); err != nil {
			t.Errorf("after Close: %v", err)
		}
	})

	t.Run("mounted", func(t *testing.T) {
		mnt := devicetest.Mount(t, dev)
		_, err := OpenTarget(dev, -1, false)
		wantInUse(t, err, dev+" is mounted on "+mnt)
		_, err = OpenTarget(img, -1, false)
		wantInUse(t, err, img+" backs loop device "+dev)
	})
}
