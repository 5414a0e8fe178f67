package device

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Stat describes path, following symlinks. A regular file is measured with
// stat(2); a block device is opened read-only and measured with the
// BLKGETSIZE64 and BLKSSZGET ioctls, and its identity is read from
// /sys/dev/block/MAJ:MIN and /dev/disk. Missing identity is not an error.
// Anything else returns an error wrapping [ErrNotBlockOrFile].
func Stat(path string) (Info, error) {
	return realHost.stat(path)
}

func (h *host) stat(path string) (Info, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Info{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return Info{Path: path, Size: st.Size}, nil
	case unix.S_IFBLK:
	default:
		return Info{}, notBlockOrFile(path, st.Mode)
	}

	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	size, sector, rdev, err := blockGeometry(f)
	if err != nil {
		return Info{}, err
	}
	d := devnumOf(rdev)
	info := Info{Path: path, IsBlock: true, Size: size, Major: d.major, Minor: d.minor, LogicalSectorSize: sector}
	h.identify(&info, d)
	return info, nil
}

// blockGeometry returns the size in bytes, the logical sector size and the
// device number of the open block device f.
func blockGeometry(f *os.File) (size int64, sector int, rdev uint64, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, 0, 0, err
	}
	var st unix.Stat_t
	var sz uint64
	var opErr error
	err = rc.Control(func(fd uintptr) {
		if opErr = unix.Fstat(int(fd), &st); opErr != nil {
			opErr = fmt.Errorf("device: fstat %s: %w", f.Name(), opErr)
			return
		}
		if sz, opErr = unix.IoctlGetUint64(int(fd), unix.BLKGETSIZE64); opErr != nil {
			opErr = fmt.Errorf("device: BLKGETSIZE64 on %s: %w", f.Name(), opErr)
			return
		}
		if sector, opErr = unix.IoctlGetInt(int(fd), unix.BLKSSZGET); opErr != nil {
			opErr = fmt.Errorf("device: BLKSSZGET on %s: %w", f.Name(), opErr)
		}
	})
	if err == nil {
		err = opErr
	}
	if err != nil {
		return 0, 0, 0, err
	}
	return int64(sz), sector, st.Rdev, nil
}

// identify fills in the sysfs and /dev/disk fields of info. It is best
// effort: a container without /sys or udev yields an Info without identity.
func (h *host) identify(info *Info, d devnum) {
	b, err := h.block(d)
	if err != nil {
		return
	}
	info.Name = b.name
	info.BackingFile = h.backingFile(b)
	disk, err := h.disk(b)
	if err != nil {
		disk = b
	}
	info.Disk = disk.name
	info.Serial = firstAttr(
		filepath.Join(disk.dir, "serial"),        // virtio
		filepath.Join(disk.dir, "device/serial"), // nvme, mmc
	)
	if info.Serial == "" {
		info.Serial = vpdSerial(filepath.Join(disk.dir, "device/vpd_pg80")) // scsi, sata
	}
	info.WWN = firstAttr(
		filepath.Join(disk.dir, "wwid"),        // nvme namespace
		filepath.Join(disk.dir, "device/wwid"), // scsi
		filepath.Join(disk.dir, "device/wwn"),
	)
	info.Model = firstAttr(filepath.Join(disk.dir, "device/model"))
	info.ByID = linksTo(filepath.Join(h.dev, "disk", "by-id"), d)
	if uuids := linksTo(filepath.Join(h.dev, "disk", "by-uuid"), d); len(uuids) > 0 {
		info.FSUUID = filepath.Base(uuids[0])
	}
}

func firstAttr(paths ...string) string {
	for _, p := range paths {
		if v := readAttr(p); v != "" {
			return v
		}
	}
	return ""
}

// vpdSerial extracts the serial number from a SCSI Unit Serial Number VPD
// page (0x80): a 4-byte header whose last two bytes are the length.
func vpdSerial(path string) string {
	data, err := os.ReadFile(path)
	if err != nil || len(data) < 4 || data[1] != 0x80 {
		return ""
	}
	n := int(binary.BigEndian.Uint16(data[2:4]))
	if 4+n > len(data) {
		n = len(data) - 4
	}
	return strings.TrimSpace(strings.TrimRight(string(data[4:4+n]), "\x00"))
}

// notBlockOrFile builds the error for a path of the wrong kind.
func notBlockOrFile(path string, mode uint32) error {
	kind := "special file"
	switch mode & unix.S_IFMT {
	case unix.S_IFCHR:
		kind = "character device"
	case unix.S_IFDIR:
		kind = "directory"
	case unix.S_IFSOCK:
		kind = "socket"
	case unix.S_IFIFO:
		kind = "FIFO"
	case unix.S_IFLNK:
		kind = "symbolic link"
	}
	return fmt.Errorf("%w: %s is a %s: name a block device (such as /dev/sdb) or an image file", ErrNotBlockOrFile, path, kind)
}
