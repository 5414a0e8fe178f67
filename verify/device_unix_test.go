//go:build unix

package verify_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/verify"
)

// TestDeviceRefusesFIFO: a FIFO given as the device is refused at once,
// not opened (which would block until a writer appears).
func TestDeviceRefusesFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(p, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	mb, err := os.ReadFile(filepath.Join(vectorDir, "basic", "image", format.ManifestKey))
	if err != nil {
		t.Fatal(err)
	}
	m, err := format.DecodeManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := verify.Device(context.Background(), m, p, verify.DeviceOptions{}); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, verify.ErrNotDevice) {
			t.Fatalf("Device on a FIFO: %v, want ErrNotDevice", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Device on a FIFO hangs")
	}
}
