package device

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"golang.org/x/sys/unix"
)

func TestSameDeviceFiles(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	b := filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, []byte(p), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sym := filepath.Join(dir, "sym")
	hard := filepath.Join(dir, "hard")
	if err := os.Symlink(a, sym); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(a, hard); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		a, b string
		want bool
	}{
		{a, a, true},
		{a, sym, true},
		{sym, hard, true},
		{a, b, false},
		{b, sym, false},
	}
	for _, tt := range tests {
		got, err := SameDevice(tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("SameDevice(%s, %s) = %v, %v; want %v", tt.a, tt.b, got, err, tt.want)
		}
	}
	if _, err := SameDevice(a, "/dev/null"); !errors.Is(err, ErrNotBlockOrFile) {
		t.Errorf("SameDevice(file, /dev/null) = %v, want ErrNotBlockOrFile", err)
	}
}

func TestSameDeviceLoop(t *testing.T) {
	img := devicetest.Image(t, 4<<20)
	other := devicetest.Image(t, 4<<20)
	dev := devicetest.Attach(t, img)
	otherDev := devicetest.Attach(t, other)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		a, b string
		want bool
	}{
		{dev, dev, true},
		{dev, link, true},
		{dev, img, true},
		{img, link, true},
		{dev, other, false},
		{dev, otherDev, false},
		{otherDev, other, true},
	}
	for _, tt := range tests {
		got, err := SameDevice(tt.a, tt.b)
		if err != nil || got != tt.want {
			t.Errorf("SameDevice(%s, %s) = %v, %v; want %v", tt.a, tt.b, got, err, tt.want)
		}
	}

	// The image file lives on some block device; restoring onto that disk
	// would overwrite the image, so both the file and the loop device over
	// it count as the same device as the disk.
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	b, err := realHost.block(devnumOf(st.Dev))
	if err != nil {
		t.Skipf("the temporary directory is not on a block device (%v): skipping file-on-disk case", err)
	}
	node := realHost.devPath(b)
	if _, err := os.Stat(node); err != nil {
		t.Skipf("no device node for %s (%v): skipping file-on-disk case", b.name, err)
	}
	for _, p := range []string{img, dev} {
		if got, err := SameDevice(node, p); err != nil || !got {
			t.Errorf("SameDevice(%s (%s), %s) = %v, %v; want true", node, b.name, p, got, err)
		}
	}
}

// TestLowerFake follows stacking that needs partitions and device-mapper.
func TestLowerFake(t *testing.T) {
	h := newFakeHost(t)
	h.addDevice("sdb", "", sdb)
	h.addDevice("sdb1", "sdb", sdb1)
	h.addDevice("sdb2", "sdb", sdb2)
	h.addDevice("sdc", "", sdc)
	dm0 := devnum{253, 0}
	h.addDevice("dm-0", "", dm0)
	h.stackOn("dm-0", "sdb2")
	h.stackOn("dm-0", "sdc")
	loop := devnum{7, 0}
	h.addDevice("loop0", "", loop)
	backing := filepath.Join(t.TempDir(), "backing.img")
	if err := os.WriteFile(backing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.setBacking("loop0", backing)
	var st unix.Stat_t
	if err := unix.Stat(backing, &st); err != nil {
		t.Fatal(err)
	}
	file := storageKey{dev: st.Dev, ino: st.Ino}

	key := func(d devnum) storageKey { return storageKey{block: true, dev: d.rdev()} }
	tests := []struct {
		name     string
		from     storageKey
		wants    []storageKey
		wantsNot []storageKey
	}{
		{"partition is on its disk", key(sdb1), []storageKey{key(sdb1), key(sdb)}, []storageKey{key(sdb2), key(sdc)}},
		{"disk is not on its partitions", key(sdb), []storageKey{key(sdb)}, []storageKey{key(sdb1), key(sdb2)}},
		{"dm is on its members and their disks", key(dm0), []storageKey{key(sdb2), key(sdb), key(sdc)}, []storageKey{key(sdb1)}},
		{"loop is on its backing file", key(loop), []storageKey{file}, []storageKey{key(sdb)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := h.lower(tt.from)
			for _, k := range tt.wants {
				if !got[k] {
					t.Errorf("lower lacks %+v: %+v", k, got)
				}
			}
			for _, k := range tt.wantsNot {
				if got[k] {
					t.Errorf("lower has %+v: %+v", k, got)
				}
			}
		})
	}
}
