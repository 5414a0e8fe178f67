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
	// ErrChecksum means data does not hash to what the manifest records:
	// a chunk that decoded but fails its chunk hash, or a device whose
	// whole-source SHA-256 differs.
	ErrChecksum = errors.New("format: hash mismatch")
	// ErrTooLarge means a declared length exceeds the format's limits; it
	// protects readers from hostile sizes.
	ErrTooLarge = errors.New("format: declared size exceeds limit")
	// ErrNoData means a chunk's bytes are not in this image: a
	// digest-only image holds none, a delta image only what changed.
	// The image is intact; the operation asked for what it does not hold.
	ErrNoData = errors.New("format: the image does not hold this chunk's data")
	// errWriterClosed is returned by writes after Close.
	errWriterClosed = errors.New("format: write after close")
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

// Error names the chunk, the source bytes it covers, its segment and the
// cause.
func (e *ChunkError) Error() string {
	return fmt.Sprintf("chunk %d (source bytes %d-%d, segment %d): %v",
		e.Index, e.Offset, e.Offset+e.Length-1, e.Segment, e.Err)
}

// Unwrap returns the cause.
func (e *ChunkError) Unwrap() error { return e.Err }

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// SegmentError reports damage to one segment as a whole (its header,
// index or footer, its size, or its absence) or to some of its parity
// rows, as opposed to one chunk's data ([ChunkError]).
type SegmentError struct {
	ID SegmentID
	// Rows lists the damaged parity rows of a parity segment; nil means
	// the whole segment (every row), empty means none (a damaged header:
	// rewriting the segment fixes it, no row is lost).
	Rows []int
	Err  error // the cause
}

// Error names the segment's key and the cause.
func (e *SegmentError) Error() string {
	return fmt.Sprintf("segment %s: %v", e.ID.Key(), e.Err)
}

// Unwrap returns the cause.
func (e *SegmentError) Unwrap() error { return e.Err }

// IsDamage reports whether err is damage of an image (a chunk, a segment
// or a manifest that is missing, truncated, corrupt or fails its hash), as
// opposed to an operational failure (a network error, a full disk, a
// cancelled context) or bad input (a file that is not an image, an
// unsupported version). It is the one answer to that question for every
// package.
//
// Damage is told by its cause: ErrCorrupt, ErrChecksum, ErrMissing or
// ErrTooLarge anywhere in the chain; and a wrong magic or version
// (ErrFormat, ErrVersion) inside a [ChunkError] or [SegmentError], because
// in a segment of an image whose manifest was read they are damage, while
// for a file given as an image they mean "not an image". A chunk or
// segment error with any other cause (a network failure while reading it)
// is not damage.
func IsDamage(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrCorrupt) || errors.Is(err, ErrChecksum) ||
		errors.Is(err, ErrMissing) || errors.Is(err, ErrTooLarge) {
		return true
	}
	var ce *ChunkError
	var se *SegmentError
	return (errors.As(err, &ce) || errors.As(err, &se)) &&
		(errors.Is(err, ErrFormat) || errors.Is(err, ErrVersion))
}

// versionError is the one-line refusal of a file of format version v,
// which is not the one this seedship reads. It matches ErrVersion.
func versionError(v int) error { return &VersionError{Version: v} }

// VersionError says a manifest, segment or checkpoint is of an image
// format version this seedship does not read, and what to do about it.
// errors.Is(err, ErrVersion) holds for it.
type VersionError struct {
	Version int // the version found
}

func (e *VersionError) Error() string {
	if e.Version < formatVersion {
		return fmt.Sprintf("format: image format version %d, made by an older seedship; this seedship reads version %d: capture it again (or restore it with the seedship that made it)",
			e.Version, formatVersion)
	}
	return fmt.Sprintf("format: image format version %d, made by a newer seedship; this seedship reads version %d: upgrade seedship", e.Version, formatVersion)
}

// Is makes errors.Is(err, ErrVersion) true.
func (e *VersionError) Is(target error) bool { return target == ErrVersion }

// ErrNoKey means no identity or passphrase given opens an encrypted
// image's key (spec §11.1): bad input, nothing was read or written.
var ErrNoKey = errors.New("format: no identity given opens this image's key")

// errDigestOnlyAEAD refuses an encrypted digest-only image, which this
// format version does not define.
var errDigestOnlyAEAD = fmt.Errorf("%w: a digest-only image cannot be encrypted in format version %d: capture without --digest-only, or without encryption", ErrVersion, formatVersion)
