package format

import "github.com/seedship/seedship/seal"

// Format constants. spec/FORMAT.md names each one; changing any of them
// changes the bytes on disk and needs a new formatVersion.
const (
	// formatVersion is the container format version this package writes and reads.
	formatVersion = 3

	// SealOverhead is how many bytes sealing adds to a chunk's payload in
	// an encrypted image (spec §11.3): the nonce before the ciphertext and
	// the tag after it.
	SealOverhead = seal.Overhead

	// blockSize is the granularity of block digests, the unit a catch-up
	// compares: 64 KiB, as the issue tracker's catch-up work requires.
	blockSize = 64 << 10
	// blockDigestLen is how many bytes of each block's SHA-256 are kept.
	blockDigestLen = len(BlockDigest{})

	// DefaultChunkSize is the default chunk size, 8 MiB. See the spec's
	// rationale: each chunk is one independent zstd frame, and at 8 MiB
	// that costs 0.5% less space than at 4 MiB on a realistic disk (enough
	// to store no more than the zstd CLI), while per-chunk costs (a table
	// entry, a frame, a task hand-off) vanish and a pipeline of a few
	// chunks per core stays small. Damage is still located to the 64 KiB
	// block by the block digests.
	DefaultChunkSize = 8 << 20
	// MinChunkSize and MaxChunkSize bound the chunk size; it must be a power
	// of two.
	MinChunkSize = blockSize
	MaxChunkSize = 64 << 20

	// DefaultSegmentSize is the size after which a data segment is closed
	// and a new one begun: 1 GiB keeps a 4 TiB device under ~4,100 objects.
	DefaultSegmentSize = 1 << 30
	// maxFramesPerSegment also closes a segment: with chunks that compress
	// to a few bytes, the segment size alone would let one segment (and
	// its index, built in memory) grow with the device. 4096 frames of
	// 8 MiB chunks index 32 GiB in about 4.4 MB.
	maxFramesPerSegment = 4096
	// MinSegmentSize bounds --segment-size from below (small segments are for
	// tests and test vectors; real images use the defaults).
	MinSegmentSize = 64 << 10

	// MaxManifestSize caps what a reader accepts as a manifest, protecting
	// it from hostile lengths: enough for 64 TiB at 4 MiB chunks.
	MaxManifestSize = 1 << 30

	// ManifestKey is the manifest's key in a store.
	ManifestKey = "manifest.ssm"
	// BaseDigestsKey is the key of a delta image's base-digest table
	// (spec §12), whose SHA-256 the header's base.digests_sha256 records.
	BaseDigestsKey = "base.digests"
)

// Magic numbers.
var (
	manifestMagic      = [8]byte{'S', 'S', 'H', 'I', 'P', 'M', 'A', 'N'}
	manifestTrailMagic = [8]byte{'S', 'S', 'M', 'A', 'N', 'E', 'N', 'D'}
	segmentMagic       = [8]byte{'S', 'S', 'H', 'I', 'P', 'S', 'E', 'G'}
	segmentEndMagic    = [8]byte{'S', 'S', 'S', 'E', 'G', 'E', 'N', 'D'}
	frameMagic         = [4]byte{'S', 'S', 'F', 'R'}
)

// Codec identifies how a chunk's payload is stored in its frame.
type Codec uint8

// Codecs.
const (
	CodecRaw     Codec = 1 // payload is the raw bytes
	CodecZstd    Codec = 2 // payload is one zstd frame
	CodecZstdX86 Codec = 3 // payload is one zstd frame of the x86-filtered bytes (x86.go)
	// CodecDigestOnly marks a frame of a digest-only image (feature
	// "digest-only"): no payload, only the chunk's hash and block
	// digests, so a disk shipped whole can be checked on arrival.
	CodecDigestOnly Codec = 4
)

// CodecSealed is the codec bit that marks a sealed payload (feature
// "aead", spec §11.3): the payload is nonce || ciphertext || tag of what
// the plain codec (the low 7 bits) would store. Only raw, zstd and
// zstd-x86 may be sealed.
const CodecSealed Codec = 0x80

// Sealed reports whether c has the sealed bit.
func (c Codec) Sealed() bool { return c&CodecSealed != 0 }

// Plain returns c without the sealed bit: the codec of the payload once
// opened.
func (c Codec) Plain() Codec { return c &^ CodecSealed }

// valid reports whether c is a codec a frame may carry; whether the image
// allows it is the manifest's business (CodecDigestOnly needs the
// "digest-only" feature, a sealed codec the "aead" feature). A
// digest-only frame has no payload to seal.
func (c Codec) valid() bool {
	p := c.Plain()
	if c.Sealed() {
		return p >= CodecRaw && p <= CodecZstdX86
	}
	return p >= CodecRaw && p <= CodecDigestOnly
}

// String returns the codec's name, for messages: "zstd", or
// "sealed zstd" for a sealed one.
func (c Codec) String() string {
	if c.Sealed() && c.valid() {
		return "sealed " + c.Plain().String()
	}
	switch c {
	case CodecRaw:
		return "raw"
	case CodecZstd:
		return "zstd"
	case CodecZstdX86:
		return "zstd-x86"
	case CodecDigestOnly:
		return "digest-only"
	}
	return "unknown"
}

// PayloadLenOK reports whether a payload of p bytes is possible for a chunk
// of rawLen bytes stored with codec c (spec §5.2): a plain payload is at
// most rawLen bytes (the writer stores raw whenever zstd would not save
// 1/64) and exactly rawLen when raw; a sealed one is SealOverhead bytes
// longer than the plain one it seals; a digest-only frame has none. It
// assumes c.valid().
func PayloadLenOK(c Codec, p uint32, rawLen int64) bool {
	q := int64(p)
	if c.Sealed() {
		q -= SealOverhead
		if q < 0 {
			return false
		}
	}
	switch c.Plain() {
	case CodecRaw:
		return q == rawLen
	case CodecDigestOnly:
		return q == 0
	}
	return q <= rawLen
}

// Kind says where a chunk's bytes are.
type Kind uint8

// Chunk kinds.
const (
	KindZero   Kind = 0 // all zero, not stored
	KindStored Kind = 1 // stored in a data segment of this image
	KindBase   Kind = 2 // same bytes as the base image holds there (delta images, feature "delta"); not stored
)

// String returns the kind's name, for messages.
func (k Kind) String() string {
	switch k {
	case KindZero:
		return "zero"
	case KindStored:
		return "stored"
	case KindBase:
		return "base"
	}
	return "unknown"
}
