package device

import (
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"
)

// SameDevice reports whether writing through one of the paths a and b could
// change what is read through the other, following symlinks. The engine
// uses it to refuse restoring onto the capture source and to refuse writing
// an image onto the device it is read from or stored on.
//
// It is true when the paths name the same regular file (same device and
// inode, as through a symlink or a hard link) or the same block device
// (same device number), and also when one is stacked on the other: a
// partition and its disk, a loop device (or its partition) and its backing
// file, a device-mapper or md device and its members, and a regular file and
// the block device its filesystem lives on. Two partitions of one disk, or
// two files on one filesystem, are not the same device.
//
// Device identity is exact; the stacking is followed through sysfs on a
// best-effort basis and may miss filesystems that report anonymous device
// numbers without a /dev source (overlayfs, NFS). Paths that are neither
// block devices nor regular files return an error wrapping
// [ErrNotBlockOrFile].
func SameDevice(a, b string) (bool, error) {
	return realHost.sameDevice(a, b)
}

// storageKey identifies a regular file (by device and inode) or a block
// device (by device number).
type storageKey struct {
	block    bool
	dev, ino uint64
}

func (h *host) sameDevice(a, b string) (bool, error) {
	ka, err := keyOf(a)
	if err != nil {
		return false, err
	}
	kb, err := keyOf(b)
	if err != nil {
		return false, err
	}
	if ka == kb {
		return true, nil
	}
	if h.lower(ka)[kb] {
		return true, nil
	}
	return h.lower(kb)[ka], nil
}

func keyOf(path string) (storageKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return storageKey{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return storageKey{dev: st.Dev, ino: st.Ino}, nil
	case unix.S_IFBLK:
		return storageKey{block: true, dev: st.Rdev}, nil
	default:
		return storageKey{}, fmt.Errorf("device: comparing %s: %w", path, notBlockOrFile(path, st.Mode))
	}
}

// maxStack bounds how deep lower follows devices stacked on devices.
const maxStack = 32

// lower returns k and everything k is stored on: for a file, the block
// device of its filesystem; for a partition, its disk; for a loop device,
// its backing file; for md and dm devices, their members; and so on down.
func (h *host) lower(k storageKey) map[storageKey]bool {
	seen := map[storageKey]bool{}
	var mounts []mount
	mountsRead := false
	var visit func(k storageKey, depth int)
	visit = func(k storageKey, depth int) {
		if seen[k] || depth > maxStack {
			return
		}
		seen[k] = true
		if !k.block {
			d := devnumOf(k.dev)
			if _, err := h.block(d); err == nil {
				visit(storageKey{block: true, dev: k.dev}, depth+1)
				return
			}
			// An anonymous device number (btrfs): the mount source names the disk.
			if !mountsRead {
				mounts, _ = h.mounts()
				mountsRead = true
			}
			for _, m := range mounts {
				var st unix.Stat_t
				if m.dev == d && h.isDevPath(m.source) &&
					unix.Stat(m.source, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK {
					visit(storageKey{block: true, dev: st.Rdev}, depth+1)
				}
			}
			return
		}
		b, err := h.block(devnumOf(k.dev))
		if err != nil {
			return
		}
		if disk, err := h.disk(b); err == nil && disk.dev != b.dev {
			visit(storageKey{block: true, dev: disk.dev.rdev()}, depth+1)
		}
		slaves, _ := h.slaves(b)
		for _, s := range slaves {
			visit(storageKey{block: true, dev: s.rdev()}, depth+1)
		}
		if bf := h.backingFile(b); bf != "" {
			var st unix.Stat_t
			if unix.Stat(bf, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
				visit(storageKey{dev: st.Dev, ino: st.Ino}, depth+1)
			}
		}
	}
	visit(k, 0)
	return seen
}
