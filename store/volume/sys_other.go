//go:build !linux

package volume

import (
	"errors"
	"os"
)

var errNoLinux = errors.New("needs Linux")

// freeSpace is unknown here: only --volume-size caps a volume.
func freeSpace(string) (int64, bool, error) { return 0, false, nil }

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// syncFS: the files were fsynced when written; there is no syncfs here.
func syncFS(string) error { return errNoLinux }

// dropCache cannot drop cached pages here; read-back says so.
func dropCache(string) error { return errNoLinux }
