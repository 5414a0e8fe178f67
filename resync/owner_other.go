//go:build !unix

package resync

import "os"

// keepOwner does nothing where files have no Unix owner: the replication
// products seedship drives run on Linux; this keeps the CLI building
// elsewhere, where extend's file edits are not used.
func keepOwner(*os.File, os.FileInfo) error { return nil }
