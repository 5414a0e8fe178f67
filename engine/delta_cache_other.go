//go:build !linux

package engine

import "os"

// dropCached is advice the platform has no call for: reading back reads
// whatever the system returns (restore needs Linux anyway).
func dropCached(*os.File, int64, int64) {}
