package format

import (
	"crypto/sha256"
	"sync"

	"github.com/seedship/seedship/seal"
)

// Chunk hash names (header field chunk_hash, spec §3 and §11.4).
const (
	ChunkHashPlain = "sha256-tree"       // every image without encryption
	ChunkHashKeyed = "blake3-keyed-tree" // encrypted images (feature "aead")
)

// Hasher computes an image's chunk hashes and block digests: the
// plaintext "sha256-tree" (PlainHasher) or, in an encrypted image, the
// keyed "blake3-keyed-tree" bound to each chunk's index (NewKeyedHasher).
// It is the one place callers get chunk digests from, so that no caller
// has to know which an image uses. A Hasher is safe for concurrent use.
type Hasher struct {
	keys *seal.Keys
	pool sync.Pool // *seal.Digester: a Digester is not safe for concurrent use
}

var plainHasher = &Hasher{}

// PlainHasher returns the hasher of an image without encryption: the
// sha256-tree of spec §3, which ignores the chunk index.
func PlainHasher() *Hasher { return plainHasher }

// NewKeyedHasher returns the hasher of an encrypted image with keys k
// (spec §11.4).
func NewKeyedHasher(k *seal.Keys) *Hasher {
	h := &Hasher{keys: k}
	h.pool.New = func() any { return k.NewDigester() }
	return h
}

// Keyed reports whether h computes keyed digests.
func (h *Hasher) Keyed() bool { return h.keys != nil }

// Name returns the header's chunk_hash for h.
func (h *Hasher) Name() string {
	if h.Keyed() {
		return ChunkHashKeyed
	}
	return ChunkHashPlain
}

// Chunk returns the chunk hash of chunk index's raw bytes (1 byte to
// 64 MiB) and, if blocks is not nil (it must have room for
// NumBlocks(len(raw)) entries), fills in its block digests.
func (h *Hasher) Chunk(index uint64, raw []byte, blocks []BlockDigest) Hash {
	if h.keys == nil {
		return ChunkHash(raw, blocks)
	}
	d := h.pool.Get().(*seal.Digester)
	defer h.pool.Put(d)
	return Hash(seal.DigestChunk(d, raw, index, blocks))
}

// Zero returns the chunk hash of rawLen zero bytes at chunk index, and
// their block digests if blocks is not nil. The plain hash needs no
// data; the keyed one is bound to the position, so it hashes the zeros.
func (h *Hasher) Zero(index uint64, rawLen int, blocks []BlockDigest) Hash {
	if h.keys == nil {
		if blocks != nil {
			fillZeroBlocks(rawLen, blocks)
		}
		return ZeroChunkHash(rawLen)
	}
	if rawLen <= len(zeroBuf) {
		return h.Chunk(index, zeroBuf[:rawLen], blocks)
	}
	return h.Chunk(index, chunkOfZeros()[:rawLen], blocks)
}

// chunkOfZeros is a read-only buffer of MaxChunkSize zero bytes, made on
// first use. Its pages are never written, so the kernel backs them with
// its one zero page: it costs address space, not memory.
var chunkOfZeros = sync.OnceValue(func() []byte { return make([]byte, MaxChunkSize) })

// ZeroTableHash returns what the chunk table records as H for a zero
// chunk of rawLen bytes (spec §6.6 (5)): the zero-chunk hash in a plain
// image, 32 zero bytes in an encrypted one (its kind already says it is
// zero, and its keyed digest would need the key to check).
func (h *Hasher) ZeroTableHash(rawLen int) Hash {
	if h.keys != nil {
		return Hash{}
	}
	return ZeroChunkHash(rawLen)
}

// fillZeroBlocks sets the plain block digests of rawLen zero bytes.
func fillZeroBlocks(rawLen int, blocks []BlockDigest) {
	n := NumBlocks(rawLen)
	for i := range blocks[:n] {
		blocks[i] = zeroBlockDigest
	}
	if rem := rawLen % blockSize; rem != 0 {
		ChunkHash(zeroBuf[:rem], blocks[n-1:n])
	}
}

// Block returns the digest of one block b (1 byte to 64 KiB) as block k
// of chunk index: what Chunk records for it. The plain digest ignores the
// position; the keyed one is bound to it (spec §11.4), which is how a
// delta of an encrypted image compares a block with its base's digest at
// the base's position (chunk index and block of the base's chunk size).
func (h *Hasher) Block(index uint64, k int, b []byte) BlockDigest {
	if h.keys == nil {
		s := sha256.Sum256(b)
		return BlockDigest(s[:blockDigestLen])
	}
	d := h.pool.Get().(*seal.Digester)
	defer h.pool.Put(d)
	return BlockDigest(d.Block(b, index, uint32(k)))
}
