package device

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"golang.org/x/sys/unix"
)

func TestStatRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(path, make([]byte, 12345), 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Path: path, Size: 12345}
	if info.Path != want.Path || info.Size != want.Size || info.IsBlock || info.Major != 0 || info.Name != "" {
		t.Errorf("Stat = %+v, want %+v", info, want)
	}
}

func TestStatLoop(t *testing.T) {
	for _, sector := range []int{512, 4096} {
		t.Run(strconv.Itoa(sector), func(t *testing.T) {
			img := devicetest.Image(t, 8<<20)
			dev := devicetest.Attach(t, img, "--sector-size", strconv.Itoa(sector))
			info, err := Stat(dev)
			if err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Stat(dev, &st); err != nil {
				t.Fatal(err)
			}
			realImg, err := filepath.EvalSymlinks(img)
			if err != nil {
				t.Fatal(err)
			}
			if !info.IsBlock || info.Size != 8<<20 || info.LogicalSectorSize != sector ||
				info.Major != unix.Major(st.Rdev) || info.Minor != unix.Minor(st.Rdev) ||
				info.Name != filepath.Base(dev) || info.Disk != info.Name || info.BackingFile != realImg {
				t.Errorf("Stat(%s) = %+v", dev, info)
			}

			// The same device through a symlink keeps the caller's name.
			link := filepath.Join(t.TempDir(), "link")
			if err := os.Symlink(dev, link); err != nil {
				t.Fatal(err)
			}
			if li, err := Stat(link); err != nil || li.Path != link || li.Size != info.Size || li.Minor != info.Minor {
				t.Errorf("Stat(%s) = %+v, %v", link, li, err)
			}
		})
	}
}

func TestStatNotBlockOrFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, path := range []string{"/dev/null", dir, fifo, sock} {
		if _, err := Stat(path); !errors.Is(err, ErrNotBlockOrFile) {
			t.Errorf("Stat(%s) = %v, want ErrNotBlockOrFile", path, err)
		}
	}
	if _, err := Stat(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(missing) = %v, want fs.ErrNotExist", err)
	}
}

// TestIdentifyFake reads disk identity from a fake sysfs and /dev/disk: a
// partition reports its disk's serial, WWN and model, and only the by-id
// links that name the partition itself.
func TestIdentifyFake(t *testing.T) {
	h := newFakeHost(t)
	h.addDevice("sdb", "", sdb)
	h.addDevice("sdb1", "sdb", sdb1)
	h.write(filepath.Join(h.dirs["sdb"], "device", "model"), "WDC WD40EFRX-68N \n")
	h.write(filepath.Join(h.dirs["sdb"], "device", "wwid"), "naa.50014ee2b6c3d4e5\n")
	// A SCSI Unit Serial Number VPD page.
	h.write(filepath.Join(h.dirs["sdb"], "device", "vpd_pg80"), "\x00\x80\x00\x0a  WD-WCC7K\x00")
	byID := filepath.Join(h.dev, "disk", "by-id")
	byUUID := filepath.Join(h.dev, "disk", "by-uuid")
	h.mkdir(byID)
	h.mkdir(byUUID)
	disk := h.devNode("sdb", sdb)
	part := h.devNode("sdb1", sdb1)
	h.symlink(disk, filepath.Join(byID, "wwn-0x50014ee2b6c3d4e5"))
	h.symlink(part, filepath.Join(byID, "wwn-0x50014ee2b6c3d4e5-part1"))
	h.symlink(part, filepath.Join(byID, "ata-WDC_WD40EFRX-68N_WD-WCC7K-part1"))
	h.symlink(part, filepath.Join(byUUID, "0f3c9a2e-1d2b-4c1a-9b57-6f0e8f1d2a3b"))

	var info Info
	h.identify(&info, sdb1)
	want := Info{
		Name: "sdb1", Disk: "sdb", Serial: "WD-WCC7K", WWN: "naa.50014ee2b6c3d4e5", Model: "WDC WD40EFRX-68N",
		FSUUID: "0f3c9a2e-1d2b-4c1a-9b57-6f0e8f1d2a3b",
		ByID: []string{
			filepath.Join(byID, "ata-WDC_WD40EFRX-68N_WD-WCC7K-part1"),
			filepath.Join(byID, "wwn-0x50014ee2b6c3d4e5-part1"),
		},
	}
	if info.Name != want.Name || info.Disk != want.Disk || info.Serial != want.Serial || info.WWN != want.WWN ||
		info.Model != want.Model || info.FSUUID != want.FSUUID || len(info.ByID) != 2 ||
		info.ByID[0] != want.ByID[0] || info.ByID[1] != want.ByID[1] {
		t.Errorf("identify = %+v\nwant       %+v", info, want)
	}

	// virtio and NVMe put the serial in the disk directory or device/serial.
	h.write(filepath.Join(h.dirs["sdb"], "serial"), "BTDV7234\n")
	info = Info{}
	h.identify(&info, sdb)
	if info.Serial != "BTDV7234" || len(info.ByID) != 1 || info.FSUUID != "" {
		t.Errorf("identify(disk) = %+v", info)
	}
}

// TestStatHostDisk reads, without writing, the real disk that holds the
// temporary directory, to exercise identity on real sysfs.
func TestStatHostDisk(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat(t.TempDir(), &st); err != nil {
		t.Fatal(err)
	}
	b, err := realHost.block(devnumOf(st.Dev))
	if err != nil {
		t.Skipf("the temporary directory is not on a block device (%v): skipping", err)
	}
	node := realHost.devPath(b)
	info, err := Stat(node)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		t.Skipf("cannot open %s (%v): skipping", node, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", info)
	if !info.IsBlock || info.Size <= 0 || info.Name != b.name || info.Disk == "" || info.LogicalSectorSize < 512 {
		t.Errorf("Stat(%s) = %+v", node, info)
	}
}
