package verify

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/seedship/seedship/device"
)

// bootIDPath is where Linux tells its boot id.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// DescribeTarget describes the target at path for a receipt, following
// symbolic links: a block device's identity from [device.Stat] and its
// write counters, or a regular file's device, inode, size and times; and
// the boot id. Before reading a block device's counters it flushes the
// device's page cache (fsync), so writes still in memory are counted:
// that writes back what others wrote, and changes nothing of its own.
// Anything but a block device or a regular file is an error wrapping
// [device.ErrNotBlockOrFile].
func DescribeTarget(path string) (Target, error) {
	resolved, err := filepath.EvalSymlinks(path)
	if err == nil {
		resolved, err = filepath.Abs(resolved)
	}
	if err != nil {
		return Target{}, err
	}
	info, err := device.Stat(path)
	if err != nil {
		return Target{}, err
	}
	t := Target{Path: path, Resolved: resolved, Size: info.Size, BootID: readTrimmed(bootIDPath)}
	if !info.IsBlock {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			return Target{}, &fs.PathError{Op: "stat", Path: path, Err: err}
		}
		t.Kind, t.FileDev, t.FileInode = KindFile, uint64(st.Dev), st.Ino
		t.MTimeNS, t.CTimeNS = st.Mtim.Nano(), st.Ctim.Nano()
		return t, nil
	}
	t.Kind, t.Major, t.Minor, t.Name = KindBlock, info.Major, info.Minor, info.Name
	t.Serial, t.WWN, t.Model, t.ByID, t.BackingFile = info.Serial, info.WWN, info.Model, info.ByID, info.BackingFile
	if t.Writes, err = writeCounters(path, info); err != nil {
		return Target{}, err
	}
	return t, nil
}

// writeCounters flushes block device path and reads its kernel counters
// of sectors written and discarded (fields 7 and 14 of
// /sys/dev/block/MAJ:MIN/stat; the request counts are not used, as an
// empty flush moves them too).
func writeCounters(path string, info device.Info) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("flush %s before reading its write counters: %w", path, err)
	}
	stat := filepath.Join("/sys/dev/block", fmt.Sprintf("%d:%d", info.Major, info.Minor), "stat")
	b, err := os.ReadFile(stat)
	if err != nil {
		return "", fmt.Errorf("write counters of %s: %w", path, err)
	}
	fields := strings.Fields(string(b))
	if len(fields) < 7 {
		return "", fmt.Errorf("write counters of %s: %d fields in %s, want at least 7", path, len(fields), stat)
	}
	w := fields[6]
	if len(fields) >= 14 {
		w += " " + fields[13]
	}
	return w, nil
}

// readTrimmed reads a small file, trimmed; "" when it cannot.
func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
