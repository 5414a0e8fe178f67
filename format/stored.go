package format

import (
	"fmt"
	"hash"

	"github.com/zeebo/blake3"
)

// Stored-byte digests (spec §5.3 and §9): the unkeyed BLAKE3-256 of what a
// segment stores, recorded in authenticated metadata (the segment index,
// covered by the manifest's segment table), so that every stored byte can be
// checked without decoding or decrypting it. BLAKE3 rather than SHA-256
// because it is twice as fast on the stored bytes (spec §11.7), which keeps
// a keyless verify well ahead of hashing the raw device.

// FrameDigest returns the stored digest of a frame: BLAKE3-256 of its
// FrameHeaderSize-byte header followed by its payload, the value its index
// entry records as Stored. A frame read in one piece is
// FrameDigest(frame[:FrameHeaderSize], frame[FrameHeaderSize:]).
func FrameDigest(header, payload []byte) Hash {
	h := blake3.New()
	_, _ = h.Write(header) // a hash.Hash never fails to write
	_, _ = h.Write(payload)
	var d Hash
	h.Sum(d[:0])
	return d
}

// NewFrameDigester returns a hash that computes [FrameDigest] from a frame
// written to it in pieces, header first: its Sum is the stored digest.
func NewFrameDigester() hash.Hash { return blake3.New() }

// NewRowsDigester returns a hash that computes a parity shard's rows
// digest ([ParityIndex.RowsDigest]) from its rows written to it in order.
func NewRowsDigester() hash.Hash { return blake3.New() }

// SumDigest returns the 32-byte digest a hash from [NewFrameDigester] or
// [NewRowsDigester] holds.
func SumDigest(h hash.Hash) Hash {
	var d Hash
	h.Sum(d[:0])
	return d
}

// CheckStored checks a frame as read from its segment (header and payload,
// FrameHeaderSize+PayloadLen bytes) against the stored digest its index
// entry records. A mismatch is damage of the chunk: an error wrapping
// ErrChecksum that names the chunk.
func (e IndexEntry) CheckStored(frame []byte) error {
	if int64(len(frame)) != FrameHeaderSize+int64(e.PayloadLen) {
		return corruptf("frame of chunk %d is %d bytes, its index entry says %d", e.Index, len(frame), FrameHeaderSize+int64(e.PayloadLen))
	}
	return e.CheckStoredDigest(FrameDigest(frame[:FrameHeaderSize], frame[FrameHeaderSize:]))
}

// CheckStoredDigest compares a frame's stored digest, computed by the
// caller (say with [NewFrameDigester] as the frame streamed past), with
// the one its index entry records. A mismatch wraps ErrChecksum and names
// the chunk.
func (e IndexEntry) CheckStoredDigest(d Hash) error {
	if d != e.Stored {
		return fmt.Errorf("%w: the stored bytes of chunk %d do not match the stored digest in its segment index (BLAKE3 %x, want %x)",
			ErrChecksum, e.Index, d[:8], e.Stored[:8])
	}
	return nil
}
