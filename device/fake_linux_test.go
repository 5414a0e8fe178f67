package device

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"golang.org/x/sys/unix"
)

// fakeHost is a host whose /sys, /proc and /dev are a tree in a temporary
// directory, laid out like the kernel's, for checking partitions, holders
// and stacking that this machine's kernel may not be able to create.
type fakeHost struct {
	*host
	t    *testing.T
	dirs map[string]string // kernel name -> sysfs directory
}

func newFakeHost(t *testing.T) *fakeHost {
	t.Helper()
	root := t.TempDir()
	h := &fakeHost{
		host: &host{sys: filepath.Join(root, "sys"), proc: filepath.Join(root, "proc"), dev: filepath.Join(root, "dev")},
		t:    t,
		dirs: map[string]string{},
	}
	for _, d := range []string{"sys/dev/block", "sys/block", "sys/devices/virtual/block", "proc/self", "dev"} {
		h.mkdir(filepath.Join(root, d))
	}
	h.setMountinfo("27 1 254:0 / / rw - ext4 /dev/vda rw")
	return h
}

func (h *fakeHost) mkdir(dir string) {
	h.t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) write(path, data string) {
	h.t.Helper()
	h.mkdir(filepath.Dir(path))
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHost) symlink(target, link string) {
	h.t.Helper()
	if err := os.Symlink(target, link); err != nil {
		h.t.Fatal(err)
	}
}

// addDevice creates the sysfs entries of a block device. parent is "" for
// a whole disk, or the kernel name of the disk a partition belongs to.
func (h *fakeHost) addDevice(name, parent string, d devnum) {
	h.t.Helper()
	dir := filepath.Join(h.sys, "devices", "virtual", "block", name)
	if parent != "" {
		dir = filepath.Join(h.dirs[parent], name)
		h.write(filepath.Join(dir, "partition"), "1\n")
	} else {
		h.symlink(dir, filepath.Join(h.sys, "block", name))
	}
	h.write(filepath.Join(dir, "dev"), d.String()+"\n")
	h.write(filepath.Join(dir, "uevent"), "MAJOR=8\nDEVNAME="+name+"\nDEVTYPE=disk\n")
	h.mkdir(filepath.Join(dir, "holders"))
	h.symlink(dir, filepath.Join(h.sys, "dev", "block", d.String()))
	h.dirs[name] = dir
}

// hold makes holder (a kernel name such as md127 or dm-0) hold name. For a
// dm holder, dmName is written to its dm/name.
func (h *fakeHost) hold(name, holder, dmName string) {
	h.t.Helper()
	h.mkdir(filepath.Join(h.dirs[name], "holders", holder))
	if dmName != "" {
		h.write(filepath.Join(h.sys, "block", holder, "dm", "name"), dmName+"\n")
	}
}

// stackOn records in sysfs that device upper is built on lower.
func (h *fakeHost) stackOn(upper, lower string) {
	h.t.Helper()
	h.mkdir(filepath.Join(h.dirs[upper], "slaves"))
	h.symlink(h.dirs[lower], filepath.Join(h.dirs[upper], "slaves", lower))
	h.hold(lower, upper, "")
}

func (h *fakeHost) setBacking(loop, file string) {
	h.write(filepath.Join(h.dirs[loop], "loop", "backing_file"), file+"\n")
}

func (h *fakeHost) setMountinfo(lines ...string) {
	h.write(filepath.Join(h.proc, "self", "mountinfo"), strings.Join(lines, "\n")+"\n")
}

func (h *fakeHost) setSwaps(lines ...string) {
	h.write(filepath.Join(h.proc, "swaps"), swapsHeader+strings.Join(lines, "\n")+"\n")
}

// devNode makes a real block device node for d in the fake /dev, for
// checks that stat the paths in mountinfo sources and /proc/swaps. It skips
// the test when mknod is not allowed.
func (h *fakeHost) devNode(name string, d devnum) string {
	h.t.Helper()
	path := filepath.Join(h.dev, name)
	if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(d.rdev())); err != nil {
		devicetest.Skipf(h.t, "needs root to mknod a block device node (%v): skipping", err)
	}
	return path
}
