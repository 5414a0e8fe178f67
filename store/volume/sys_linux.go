package volume

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// freeSpace is what an unprivileged writer may still put on the file
// system holding dir (f_bavail).
func freeSpace(dir string) (int64, bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, false, err
	}
	return int64(st.Bavail) * st.Bsize, true, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// syncFS flushes the whole file system holding dir (syncfs), so that
// every file of the volume is on the drive before its cache is dropped.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

// dropCache drops the clean cached pages of the regular file at path, so
// that the next read comes from the drive. It follows no symlink.
func dropCache(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return errors.New("not a regular file")
	}
	return unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
}
