package device

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenTargetLocksFiles: a regular file held open by one OpenTarget is
// refused to a second one (two restores onto one file), whether the first
// created it or found it, and is free again once the first closes it.
func TestOpenTargetLocksFiles(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.img")
	if err := os.WriteFile(existing, []byte("before"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		create     bool
	}{
		{"existing file", existing, false},
		{"file the first one created", filepath.Join(dir, "created.img"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, err := OpenTarget(tc.path, 4096, tc.create)
			if err != nil {
				t.Fatal(err)
			}
			second, err := OpenTarget(tc.path, 4096, true)
			if err == nil {
				second.Close()
			}
			var iu *InUseError
			if !errors.As(err, &iu) || !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), tc.path) ||
				!strings.Contains(err.Error(), "another seedship restore") || strings.Contains(err.Error(), "\n") {
				t.Errorf("second OpenTarget while the first holds %s: %v, want a one-line InUseError naming it", tc.path, err)
			}
			if err := first.Close(); err != nil {
				t.Fatal(err)
			}
			again, err := OpenTarget(tc.path, 4096, false)
			if err != nil {
				t.Fatalf("OpenTarget after the first writer closed: %v", err)
			}
			again.Close()
		})
	}
}
