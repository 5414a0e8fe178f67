package engine

import "fmt"

// digestOnlyRefusal is the one line with which commands that need chunk
// data (copy; restore names it too) refuse a digest-only image (capture
// --digest-only, feature "digest-only"): it records every chunk's hash and
// block digests but none of the data, so it can only be compared with a
// device.
func digestOnlyRefusal(op, image string) string {
	return fmt.Sprintf("%s: %s is a digest-only image: it records hashes, not data, so there is nothing to %s; compare a device with it where it is (seedship verify --device DEV IMAGE, or seedship diff IMAGE DEV), or copy its files with any tool (they are small, and seedship verify checks them where they land)",
		op, image, op)
}
