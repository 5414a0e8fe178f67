package device

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// host names the kernel interfaces the checks read. Tests point it at fake
// trees; everything else uses realHost.
type host struct {
	sys  string // sysfs, normally /sys
	proc string // procfs, normally /proc
	dev  string // device nodes, normally /dev
}

var realHost = &host{sys: "/sys", proc: "/proc", dev: "/dev"}

func devnumOf(rdev uint64) devnum { return devnum{unix.Major(rdev), unix.Minor(rdev)} }

func (d devnum) rdev() uint64 { return unix.Mkdev(d.major, d.minor) }

// blockDir is a block device's directory in sysfs.
type blockDir struct {
	dev       devnum
	dir       string // resolved, e.g. /sys/devices/pci0000:00/.../block/sdb/sdb1
	name      string // kernel name, e.g. "sdb1"
	partition bool
}

// block finds the sysfs directory of block device d through
// /sys/dev/block/MAJ:MIN.
func (h *host) block(d devnum) (blockDir, error) {
	dir, err := filepath.EvalSymlinks(filepath.Join(h.sys, "dev", "block", d.String()))
	if err != nil {
		return blockDir{}, fmt.Errorf("device: block device %s has no sysfs entry: %w", d, err)
	}
	_, err = os.Stat(filepath.Join(dir, "partition"))
	return blockDir{dev: d, dir: dir, name: filepath.Base(dir), partition: err == nil}, nil
}

// disk returns the whole disk b belongs to: b itself, or a partition's parent.
func (h *host) disk(b blockDir) (blockDir, error) {
	if !b.partition {
		return b, nil
	}
	dir := filepath.Dir(b.dir)
	d, err := readDevnum(filepath.Join(dir, "dev"))
	if err != nil {
		return blockDir{}, fmt.Errorf("device: parent disk of %s: %w", b.name, err)
	}
	return blockDir{dev: d, dir: dir, name: filepath.Base(dir)}, nil
}

// partitions lists the partitions of whole disk b, sorted by name.
func (h *host) partitions(b blockDir) ([]blockDir, error) {
	if b.partition {
		return nil, nil
	}
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, fmt.Errorf("device: listing partitions of %s: %w", b.name, err)
	}
	var parts []blockDir
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(b.dir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "partition")); err != nil {
			continue
		}
		d, err := readDevnum(filepath.Join(dir, "dev"))
		if err != nil {
			return nil, fmt.Errorf("device: partition %s of %s: %w", e.Name(), b.name, err)
		}
		parts = append(parts, blockDir{dev: d, dir: dir, name: e.Name(), partition: true})
	}
	return parts, nil // os.ReadDir sorts by name
}

// holders lists the kernel names of the devices stacked on b (md arrays,
// device-mapper targets, bcache), sorted.
func (h *host) holders(b blockDir) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(b.dir, "holders"))
	if err != nil {
		return nil, fmt.Errorf("device: reading holders of %s: %w", b.name, err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil
}

// slaves lists the devices b is stacked on (for md and device-mapper).
func (h *host) slaves(b blockDir) ([]devnum, error) {
	entries, err := os.ReadDir(filepath.Join(b.dir, "slaves"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("device: reading slaves of %s: %w", b.name, err)
	}
	var ds []devnum
	for _, e := range entries {
		d, err := readDevnum(filepath.Join(b.dir, "slaves", e.Name(), "dev"))
		if err != nil {
			return nil, fmt.Errorf("device: slave %s of %s: %w", e.Name(), b.name, err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// backingFile returns the backing file of loop device b, or "" if b is not
// a bound loop device.
func (h *host) backingFile(b blockDir) string {
	return readAttr(filepath.Join(b.dir, "loop", "backing_file"))
}

// loopDev is a bound loop device and the file behind it.
type loopDev struct {
	blockDir
	backing string
}

// loops lists the bound loop devices. Unbound ones have no loop/ directory.
func (h *host) loops() ([]loopDev, error) {
	matches, err := filepath.Glob(filepath.Join(h.sys, "block", "loop*", "loop", "backing_file"))
	if err != nil {
		return nil, fmt.Errorf("device: listing loop devices: %w", err)
	}
	var loops []loopDev
	for _, m := range matches {
		top := filepath.Dir(filepath.Dir(m))
		d, err := readDevnum(filepath.Join(top, "dev"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // detached while we looked
			}
			return nil, fmt.Errorf("device: loop device %s: %w", filepath.Base(top), err)
		}
		b, err := h.block(d)
		if err != nil {
			continue // detached while we looked
		}
		loops = append(loops, loopDev{blockDir: b, backing: readAttr(m)})
	}
	return loops, nil
}

// devPath returns the /dev path of b, from DEVNAME in its uevent file
// ("mapper/..." is not used by the kernel; dm devices are dm-N).
func (h *host) devPath(b blockDir) string {
	name := b.name
	if data, err := os.ReadFile(filepath.Join(b.dir, "uevent")); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "DEVNAME="); ok && v != "" {
				name = v
			}
		}
	}
	return filepath.Join(h.dev, name)
}

// describeHolder says what holder name (a kernel name found in a holders
// directory) is, and how the operator releases it.
func (h *host) describeHolder(name string) (what, fix string) {
	dev := filepath.Join(h.dev, name)
	switch {
	case strings.HasPrefix(name, "md"):
		return "held by " + name + " (member of an active md RAID array)",
			"stop the array (mdadm --stop " + shellQuote(dev) + ")"
	case strings.HasPrefix(name, "dm-"):
		dm := readAttr(filepath.Join(h.sys, "block", name, "dm", "name"))
		if dm == "" {
			dm = name
		}
		return "held by " + name + " (member of device-mapper device " + dm + ": LVM, LUKS or multipath)",
			"deactivate " + dm + " (dmsetup remove " + shellQuote(dm) + "; for LVM, vgchange -an)"
	default:
		return "held by " + name, "stop " + shellQuote(dev)
	}
}

// linksTo returns the symlinks in dir (such as /dev/disk/by-id) that
// resolve to block device d, sorted.
func linksTo(dir string, d devnum) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var links []string
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFBLK && devnumOf(st.Rdev) == d {
			links = append(links, p)
		}
	}
	sort.Strings(links)
	return links
}

// readDevnum reads a sysfs "dev" file.
func readDevnum(path string) (devnum, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return devnum{}, err
	}
	return parseDevnum(strings.TrimSpace(string(data)))
}

// readAttr reads a small sysfs attribute, trimmed; "" if it is missing.
func readAttr(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
