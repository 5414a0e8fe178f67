package device

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// CheckWritable reports whether seedship may overwrite path, following
// symlinks. It returns nil when nothing it can see uses the target, an
// [*InUseError] (wrapping [ErrInUse]) naming the first user it finds and
// how to release it, or another error when it cannot tell; it fails closed.
//
// A block device is refused when it, or one of its partitions, is mounted
// (by device number in /proc/self/mountinfo, or by a /dev source naming
// it); when it, one of its partitions, or the disk it is a partition of has
// holders in sysfs (md, device-mapper, LVM, LUKS, multipath, bcache); when
// it or one of its partitions is active swap; and finally when it cannot be
// opened with O_EXCL (EBUSY), which catches filesystems mounted in other
// mount namespaces and any other exclusive claim.
//
// A regular file is refused when it is an active swap file, or when it backs
// a loop device that is in use by the rules above. A file behind an idle
// loop device is allowed.
//
// The answer can be stale by the time the caller opens the target; use
// [OpenTarget] to check and claim a block device in one step. Anything but a
// block device or a regular file returns an error wrapping
// [ErrNotBlockOrFile]; a missing path an error wrapping [fs.ErrNotExist].
func CheckWritable(path string) error {
	return realHost.checkWritable(path)
}

func (h *host) checkWritable(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		return h.checkBlock(path, devnumOf(st.Rdev), true)
	case unix.S_IFREG:
		return h.checkFile(path, &st)
	default:
		return notBlockOrFile(path, st.Mode)
	}
}

// member is a block device whose use makes a target busy.
type member struct {
	blockDir
	path string // under /dev
	role string // "" for the target itself, "partition" or "disk"
}

// inUse builds the error for target path when m is what (a participle
// phrase: "mounted on /mnt", "in use as swap").
func inUse(path string, m member, what, fix string) *InUseError {
	reason := "is " + what
	switch m.role {
	case "partition":
		reason = "has partition " + m.path + " " + what
	case "disk":
		reason = "is on disk " + m.path + ", which is " + what
	}
	return &InUseError{Path: path, Reason: reason, Fix: fix}
}

// checkBlock checks block device d, named path. probe adds the O_EXCL open.
func (h *host) checkBlock(path string, d devnum, probe bool) error {
	cannot := func(err error) error {
		return fmt.Errorf("device: cannot tell whether %s is in use: %w", path, err)
	}
	b, err := h.block(d)
	if err != nil {
		return cannot(err)
	}
	self := []member{{blockDir: b, path: path}}
	parts, err := h.partitions(b)
	if err != nil {
		return cannot(err)
	}
	for _, p := range parts {
		self = append(self, member{blockDir: p, path: h.devPath(p), role: "partition"})
	}

	mounts, err := h.mounts()
	if err != nil {
		return cannot(err)
	}
	for _, m := range self {
		if mp, ok := h.findMount(mounts, m.dev); ok {
			return inUse(path, m, "mounted on "+mp.point, "unmount it (umount "+shellQuote(mp.point)+")")
		}
	}

	stacked := self
	if b.partition {
		disk, err := h.disk(b)
		if err != nil {
			return cannot(err)
		}
		stacked = append(stacked, member{blockDir: disk, path: h.devPath(disk), role: "disk"})
	}
	for _, m := range stacked {
		names, err := h.holders(m.blockDir)
		if err != nil {
			return cannot(err)
		}
		if len(names) > 0 {
			what, fix := h.describeHolder(names[0])
			return inUse(path, m, what, fix)
		}
	}

	swaps, err := h.swaps()
	if err != nil {
		return cannot(err)
	}
	for _, sw := range swaps {
		var st unix.Stat_t
		if unix.Stat(sw.path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
			continue
		}
		for _, m := range self {
			if devnumOf(st.Rdev) == m.dev {
				return inUse(path, m, "in use as swap", "disable it (swapoff "+shellQuote(m.path)+")")
			}
		}
	}

	if probe {
		return probeExclusive(path, d)
	}
	return nil
}

// probeExclusive opens block device path with O_EXCL and closes it again.
// Linux fails that open with EBUSY while a filesystem, swap, md, dm or any
// other exclusive opener claims the device, or a partition of it.
func probeExclusive(path string, d devnum) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_EXCL, 0)
	if errors.Is(err, unix.EBUSY) {
		return busy(path)
	}
	if err != nil {
		return fmt.Errorf("device: cannot tell whether %s is in use: %w", path, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("device: cannot tell whether %s is in use: %w", path, err)
	}
	if devnumOf(st.Rdev) != d {
		return fmt.Errorf("device: %s changed from device %s to %s while being checked: check again", path, d, devnumOf(st.Rdev))
	}
	return nil
}

func busy(path string) *InUseError {
	return &InUseError{
		Path:   path,
		Reason: "is busy: something holds it open exclusively (a filesystem, RAID, LVM or swap, perhaps in another mount namespace or container)",
		Fix:    "find the user (lsblk " + shellQuote(path) + "; fuser -v " + shellQuote(path) + ") and stop it",
	}
}

// checkFile checks regular file path whose stat is st.
func (h *host) checkFile(path string, st *unix.Stat_t) error {
	cannot := func(err error) error {
		return fmt.Errorf("device: cannot tell whether %s is in use: %w", path, err)
	}
	swaps, err := h.swaps()
	if err != nil {
		return cannot(err)
	}
	for _, sw := range swaps {
		if sameFile(sw.path, st) {
			return &InUseError{Path: path, Reason: "is an active swap file", Fix: "disable it (swapoff " + shellQuote(path) + ")"}
		}
	}
	loops, err := h.loops()
	if err != nil {
		return cannot(err)
	}
	for _, l := range loops {
		if !sameFile(l.backing, st) {
			continue
		}
		lp := h.devPath(l.blockDir)
		err := h.checkBlock(lp, l.dev, true)
		var iu *InUseError
		if errors.As(err, &iu) {
			return &InUseError{
				Path:   path,
				Reason: "backs loop device " + lp + ", which " + iu.Reason,
				Fix:    iu.Fix + " and detach " + lp + " (losetup -d " + shellQuote(lp) + ")",
			}
		}
		if err != nil {
			return cannot(err)
		}
	}
	return nil
}

// sameFile reports whether path names the regular file st describes.
func sameFile(path string, st *unix.Stat_t) bool {
	var o unix.Stat_t
	return path != "" && unix.Stat(path, &o) == nil && o.Mode&unix.S_IFMT == unix.S_IFREG &&
		o.Dev == st.Dev && o.Ino == st.Ino
}

// mounts reads this process's mount table.
func (h *host) mounts() ([]mount, error) {
	f, err := os.Open(filepath.Join(h.proc, "self", "mountinfo"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

// swaps reads the active swap areas. A kernel without swap support has no
// /proc/swaps, which means no swap.
func (h *host) swaps() ([]swap, error) {
	f, err := os.Open(filepath.Join(h.proc, "swaps"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseSwaps(f)
}

// isDevPath reports whether a mount source is a path under /dev. Only such
// sources are stat'ed: others may be network paths or autofs triggers.
func (h *host) isDevPath(source string) bool {
	return strings.HasPrefix(source, h.dev+"/")
}

// findMount returns the first mount of block device d: by the device number
// mountinfo shows, or, for filesystems that show an anonymous one (btrfs),
// by a /dev source that names d.
func (h *host) findMount(mounts []mount, d devnum) (mount, bool) {
	for _, m := range mounts {
		if m.dev == d {
			return m, true
		}
	}
	for _, m := range mounts {
		if !h.isDevPath(m.source) {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(m.source, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && devnumOf(st.Rdev) == d {
			return m, true
		}
	}
	return mount{}, false
}
