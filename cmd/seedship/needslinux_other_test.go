//go:build !linux

package main

import (
	"path/filepath"
	"runtime"
	"testing"
)

// TestDeviceCommandsNeedLinux: on other systems capture, restore and
// verify --device refuse in one line that names Linux, and write nothing.
func TestDeviceCommandsNeedLinux(t *testing.T) {
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "disk.img"), []byte("data"))
	for _, args := range [][]string{
		{"capture", src, filepath.Join(d, "seed")},
		{"restore", filepath.Join(d, "seed"), filepath.Join(d, "target.img")},
		{"verify", "--device", src, filepath.Join(d, "seed")},
	} {
		oneLineError(t, expect(t, exitUsage, args...), "needs Linux", runtime.GOOS)
	}
	absent(t, filepath.Join(d, "seed"), "a refused capture writes nothing")
	absent(t, filepath.Join(d, "target.img"), "a refused restore writes nothing")
}
