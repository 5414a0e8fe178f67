//go:build soak

package engine_test

import "testing"

// TestDeltaExt4Soak is the case at its full size: a realistic
// 1 GiB ext4 image (about a minute on a small VM, so not in the default
// run), 1,000 random 4 KiB writes, the delta at most 80 MiB.
//
//	go test -tags soak -run TestDeltaExt4Soak -v ./engine/
func TestDeltaExt4Soak(t *testing.T) {
	runDeltaExt4(t, 1024)
}
