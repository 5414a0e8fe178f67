// Package verify checks a seedship image through package format and a
// store.Store: the manifest, every chunk hash, each segment's index and
// footer, and a device or file against the image. It owns the scan that
// reads every stored chunk back and verifies it, which restore reuses, so
// restore never writes a byte that has not passed its chunk hash.
//
// Its results are reports that collect every finding (chunk index, source
// byte range, segment), like restic's checker: one bad chunk does not hide
// the next. It must never write to a target device.
package verify
