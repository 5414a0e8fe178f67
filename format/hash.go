package format

import (
	"bytes"
	"crypto/sha256"
)

// Hash is a SHA-256 digest.
type Hash [32]byte

// BlockDigest is a truncated block hash: the first 8 bytes of
// the SHA-256 of a 64 KiB block. It finds changed source blocks during a
// catch-up; integrity rests on the full chunk hash, not on these.
type BlockDigest [8]byte

// zeroBuf is a shared all-zero buffer, read only; 1 MiB keeps the
// comparison loop's overhead negligible without holding a chunk's worth.
var zeroBuf = make([]byte, 1<<20)

// IsZero reports whether b is all zero bytes. It uses the vectorised
// bytes.Equal, so an all-zero chunk costs one pass at memory speed.
func IsZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBuf))
		if !bytes.Equal(b[:n], zeroBuf[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// ChunkHash computes the chunk hash of raw (spec: "Chunk hash"): the
// SHA-256 of the concatenated SHA-256 digests of its BlockSize blocks, the
// last one possibly short. If blocks is not nil it must have room for
// NumBlocks(len(raw)) entries and receives each block's truncated digest.
// One SHA-256 pass over the data yields both the chunk hash and the block
// digests, which is why the hash is a tree rather than a flat SHA-256.
func ChunkHash(raw []byte, blocks []BlockDigest) Hash {
	var digests [MaxChunkSize / blockSize * 32]byte
	n := 0
	for off := 0; off < len(raw); off += blockSize {
		end := min(off+blockSize, len(raw))
		d := sha256.Sum256(raw[off:end])
		copy(digests[n*32:], d[:])
		if blocks != nil {
			copy(blocks[n][:], d[:blockDigestLen])
		}
		n++
	}
	return sha256.Sum256(digests[:n*32])
}

// NumBlocks returns how many blocks a chunk of rawLen bytes has.
func NumBlocks(rawLen int) int { return (rawLen + blockSize - 1) / blockSize }

// The digest of an all-zero block is computed once.
var (
	zeroBlockHash   = sha256.Sum256(zeroBuf[:blockSize])
	zeroBlockDigest = BlockDigest(zeroBlockHash[:blockDigestLen])
)

// ZeroChunkHash returns the chunk hash of rawLen zero bytes without reading
// them: every full block has the same digest.
func ZeroChunkHash(rawLen int) Hash {
	h := sha256.New()
	for rem := rawLen; rem > 0; rem -= blockSize {
		if rem >= blockSize {
			h.Write(zeroBlockHash[:])
		} else {
			d := sha256.Sum256(zeroBuf[:rem]) // rem < BlockSize
			h.Write(d[:])
		}
	}
	var out Hash
	h.Sum(out[:0])
	return out
}

func sha256Sum(b []byte) Hash { return sha256.Sum256(b) }
