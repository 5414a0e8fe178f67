package format

import (
	"errors"
	"fmt"
)

// Sentinel errors. Most of them typically indicate wrong or corrupted input.
var (
	// ErrFormat means the bytes are not a seedship file of the expected kind
	// (wrong magic).
	ErrFormat = errors.New("format: not a seedship file")
	// ErrVersion means the file is a seedship file of a version this
	// reader does not understand.
	ErrVersion = errors.New("format: unsupported format version")
	// ErrCorrupt means a structure failed a consistency or hash check.
	ErrCorrupt = errors.New("format: corrupt data")
	// ErrChecksum means a chunk decoded but its hash does not match the
	// manifest.
	ErrChecksum = errors.New("format: chunk hash mismatch")
	// ErrTooLarge means a declared length exceeds the format's limits; it
	// protects readers from hostile sizes.
	ErrTooLarge = errors.New("format: declared size exceeds limit")
	// ErrWriterClosed is returned by writes after Close.
	ErrWriterClosed = errors.New("format: write after close")
	// ErrOrder is returned when chunks are added out of order.
	ErrOrder = errors.New("format: chunks must be added in index order")
)

// ChunkError reports a damaged chunk: which one, the byte range of the
// source it covers, and where it is stored.
type ChunkError struct {
	Index   uint64 // chunk index
	Offset  int64  // first byte of the source the chunk covers
	Length  int64  // number of source bytes the chunk covers
	Segment uint32 // data segment holding the chunk
	Err     error  // the cause, e.g. ErrChecksum or ErrCorrupt
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("chunk %d (source bytes %d-%d, segment %d): %v",
		e.Index, e.Offset, e.Offset+e.Length-1, e.Segment, e.Err)
}

// Unwrap returns the cause.
func (e *ChunkError) Unwrap() error { return e.Err }

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}
