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
	"golang.org/x/sys/unix"
)

var (
	sdb  = devnum{8, 16}
	sdb1 = devnum{8, 17}
	sdb2 = devnum{8, 18}
	sdc  = devnum{8, 32}
)

// TestCheckBlockFake checks the rules for partitions, holders and swap on
// fake sysfs trees: the kernel here may lack partition tables, md and
// device-mapper, but the rules must hold for real disks.
func TestCheckBlockFake(t *testing.T) {
	tests := []struct {
		name   string
		target string // kernel name
		setup  func(t *testing.T, h *fakeHost)
		want   []string // substrings of the InUseError message; nil: no error
	}{
		{
			name:   "idle disk",
			target: "sdb",
		},
		{
			name:   "disk with a mounted partition",
			target: "sdb",
			setup: func(t *testing.T, h *fakeHost) {
				h.setMountinfo("27 1 254:0 / / rw - ext4 /dev/vda rw", "50 27 8:17 / /boot rw - ext4 /dev/sdb1 rw")
			},
			want: []string{"/dev/sdb has partition ", "/sdb1 mounted on /boot: unmount it (umount /boot) first"},
		},
		{
			name:   "the other partition is mounted",
			target: "sdb2",
			setup: func(t *testing.T, h *fakeHost) {
				h.setMountinfo("50 27 8:17 / /boot rw - ext4 /dev/sdb1 rw")
			},
		},
		{
			name:   "partition mounted on a path with a space",
			target: "sdb1",
			setup: func(t *testing.T, h *fakeHost) {
				h.setMountinfo(`50 27 8:17 / /mnt/my\040disk rw - vfat /dev/sdb1 rw`)
			},
			want: []string{"/dev/sdb1 is mounted on /mnt/my disk: unmount it (umount '/mnt/my disk') first"},
		},
		{
			name:   "disk mounted by /dev source with an anonymous device number (btrfs)",
			target: "sdb",
			setup: func(t *testing.T, h *fakeHost) {
				h.setMountinfo("50 27 0:45 /@ /data rw - btrfs " + h.devNode("sdb", sdb) + " rw")
			},
			want: []string{"is mounted on /data"},
		},
		{
			name:   "partition held by md",
			target: "sdb",
			setup: func(t *testing.T, h *fakeHost) {
				h.hold("sdb1", "md127", "")
			},
			want: []string{"has partition ", "sdb1 held by md127 (member of an active md RAID array): stop the array (mdadm --stop ", "/md127) first"},
		},
		{
			name:   "disk held by multipath, target its partition",
			target: "sdb1",
			setup: func(t *testing.T, h *fakeHost) {
				h.hold("sdb", "dm-0", "mpatha")
			},
			want: []string{"is on disk ", "/sdb, which is held by dm-0 (member of device-mapper device mpatha", "dmsetup remove mpatha"},
		},
		{
			name:   "target held by LVM",
			target: "sdc",
			setup: func(t *testing.T, h *fakeHost) {
				h.hold("sdc", "dm-3", "vg-root")
			},
			want: []string{"/dev/sdc is held by dm-3 (member of device-mapper device vg-root", "dmsetup remove vg-root"},
		},
		{
			name:   "other holder",
			target: "sdc",
			setup: func(t *testing.T, h *fakeHost) {
				h.hold("sdc", "bcache0", "")
			},
			want: []string{"is held by bcache0: stop ", "/bcache0 first"},
		},
		{
			name:   "partition is swap",
			target: "sdb",
			setup: func(t *testing.T, h *fakeHost) {
				h.setSwaps(h.devNode("sdb2", sdb2) + " partition 1024 0 -2")
			},
			want: []string{"has partition ", "sdb2 in use as swap: disable it (swapoff ", "sdb2) first"},
		},
		{
			name:   "swap elsewhere",
			target: "sdb",
			setup: func(t *testing.T, h *fakeHost) {
				h.setSwaps(h.devNode("sdc", sdc)+" partition 1024 0 -2", "/nonexistent file 1024 0 -3")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.addDevice("sdb", "", sdb)
			h.addDevice("sdb1", "sdb", sdb1)
			h.addDevice("sdb2", "sdb", sdb2)
			h.addDevice("sdc", "", sdc)
			if tt.setup != nil {
				tt.setup(t, h)
			}
			d, err := readDevnum(filepath.Join(h.dirs[tt.target], "dev"))
			if err != nil {
				t.Fatal(err)
			}
			err = h.checkBlock("/dev/"+tt.target, d, false)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("checkBlock: %v", err)
				}
				return
			}
			var iu *InUseError
			if !errors.As(err, &iu) || !errors.Is(err, ErrInUse) {
				t.Fatalf("checkBlock = %v, want an InUseError", err)
			}
			msg := err.Error()
			t.Logf("message: %s", msg)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q", msg, w)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("message %q is more than one line", msg)
			}
		})
	}
}

// TestCheckBlockFailsClosed checks that what cannot be read is an error,
// not a go-ahead.
func TestCheckBlockFailsClosed(t *testing.T) {
	tests := []struct {
		name  string
		setup func(h *fakeHost)
	}{
		{"no sysfs entry", func(h *fakeHost) { os.Remove(filepath.Join(h.sys, "dev", "block", sdb.String())) }},
		{"no mountinfo", func(h *fakeHost) { os.Remove(filepath.Join(h.proc, "self", "mountinfo")) }},
		{"garbled mountinfo", func(h *fakeHost) { h.setMountinfo("27 1 254:0 / /") }},
		{"garbled swaps", func(h *fakeHost) { h.setSwaps("/dev/sdb2") }},
		{"no holders directory", func(h *fakeHost) { os.Remove(filepath.Join(h.dirs["sdb1"], "holders")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t)
			h.addDevice("sdb", "", sdb)
			h.addDevice("sdb1", "sdb", sdb1)
			tt.setup(h)
			err := h.checkBlock("/dev/sdb", sdb, false)
			if err == nil || errors.Is(err, ErrInUse) {
				t.Fatalf("checkBlock = %v, want an error that is not ErrInUse", err)
			}
			if !strings.Contains(err.Error(), "cannot tell whether /dev/sdb is in use") {
				t.Errorf("message %q does not say what it could not check", err)
			}
		})
	}
}

func TestCheckWritableKinds(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "image")
	if err := os.WriteFile(file, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want error
	}{
		{file, nil},
		{dir, ErrNotBlockOrFile},
		{fifo, ErrNotBlockOrFile},
		{"/dev/null", ErrNotBlockOrFile},
		{filepath.Join(dir, "missing"), fs.ErrNotExist},
	}
	for _, tt := range tests {
		err := CheckWritable(tt.path)
		if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("CheckWritable(%s) = %v, want %v", tt.path, err, tt.want)
		}
	}
}

// wantInUse fails the test unless err is an InUseError whose one-line
// message contains every one of want.
func wantInUse(t *testing.T, err error, want ...string) {
	t.Helper()
	var iu *InUseError
	if !errors.Is(err, ErrInUse) || !errors.As(err, &iu) {
		t.Fatalf("err = %v, want an InUseError", err)
	}
	t.Logf("message: %v", err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message %q lacks %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("message %q is more than one line", err)
	}
}

func TestCheckWritableLoop(t *testing.T) {
	img := devicetest.Image(t, 16<<20)
	dev := devicetest.Attach(t, img)

	t.Run("idle loop device", func(t *testing.T) {
		if err := CheckWritable(dev); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("file behind an idle loop device", func(t *testing.T) {
		if err := CheckWritable(img); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("claimed exclusively elsewhere", func(t *testing.T) {
		f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_EXCL, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		wantInUse(t, CheckWritable(dev), dev+" is busy", "fuser -v "+dev)
	})
}

func TestCheckWritableMounted(t *testing.T) {
	devicetest.RequireLoop(t)
	img := devicetest.Image(t, 16<<20)
	devicetest.Mkfs(t, "ext4", img)
	dev := devicetest.Attach(t, img)
	mnt := devicetest.Mount(t, dev)

	wantInUse(t, CheckWritable(dev), dev+" is mounted on "+mnt, "umount "+mnt+") first")
	wantInUse(t, CheckWritable(img), img+" backs loop device "+dev+", which is mounted on "+mnt,
		"umount "+mnt+") and detach "+dev+" (losetup -d "+dev+") first")

	// A file on the mounted filesystem is not in use by these rules.
	inner := filepath.Join(mnt, "inner.img")
	if err := os.WriteFile(inner, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckWritable(inner); err != nil {
		t.Errorf("CheckWritable(%s) = %v", inner, err)
	}
}

func TestCheckWritableSwap(t *testing.T) {
	devicetest.RequireLoop(t)
	for _, tool := range []string{"mkswap", "swapon", "swapoff"} {
		if _, err := exec.LookPath(tool); err != nil {
			devicetest.Skipf(t, "needs %s: skipping swap test", tool)
		}
	}
	swapOn := func(t *testing.T, path string) {
		devicetest.Run(t, "mkswap", "-q", path)
		if out, err := exec.Command("swapon", path).CombinedOutput(); err != nil {
			devicetest.Skipf(t, "swapon %s failed (%v: %s): skipping swap test", path, err, strings.TrimSpace(string(out)))
		}
		t.Cleanup(func() { devicetest.Run(t, "swapoff", path) })
	}

	t.Run("loop device", func(t *testing.T) {
		dev := devicetest.Attach(t, devicetest.Image(t, 4<<20))
		swapOn(t, dev)
		wantInUse(t, CheckWritable(dev), dev+" is in use as swap: disable it (swapoff "+dev+") first")
	})
	t.Run("swap file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "swap file")
		if err := os.WriteFile(file, make([]byte, 4<<20), 0o600); err != nil {
			t.Fatal(err)
		}
		swapOn(t, file)
		wantInUse(t, CheckWritable(file), file+" is an active swap file: disable it (swapoff '"+file+"') first")
	})
}

func TestCheckWritableHolders(t *testing.T) {
	devicetest.RequireLoop(t)
	if _, err := exec.LookPath("dmsetup"); err != nil {
		t.Skip("needs dmsetup (apt-get install dmsetup): skipping real device-mapper holders test; TestCheckBlockFake covers the rule")
	}
	dev := devicetest.Attach(t, devicetest.Image(t, 4<<20))
	name := "seedship-test-" + filepath.Base(dev)
	table := "0 8192 linear " + dev + " 0"
	if out, err := exec.Command("dmsetup", "create", name, "--table", table).CombinedOutput(); err != nil {
		// The kernel decides this, not the test setup: always a skip.
		t.Skipf("device-mapper unavailable (dmsetup create: %v: %s): skipping real holders test; TestCheckBlockFake covers the rule",
			err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { devicetest.Run(t, "dmsetup", "remove", name) })
	wantInUse(t, CheckWritable(dev), dev+" is held by dm-", "member of device-mapper device "+name, "dmsetup remove "+name)
}
