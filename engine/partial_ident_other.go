//go:build !unix

package engine

import "os"

// fileIdentity knows no inode here: the state binds a file target by its
// path alone (restore runs on Linux only).
func fileIdentity(os.FileInfo) (dev, ino uint64, ok bool) { return 0, 0, false }
