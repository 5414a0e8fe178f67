package seal

import (
	"encoding/binary"

	"github.com/zeebo/blake3"
)

// BlockSize is the block of the chunk tree (spec §3: 64 KiB).
const BlockSize = 65536

// BlockDigestLen is how many bytes of a block's keyed digest are kept
// (spec §3 block_digest_len).
const BlockDigestLen = 8

// maxBlocks bounds a chunk's blocks: 64 MiB chunks (spec §3).
const maxBlocks = 64 << 20 / BlockSize

// Digest is a keyed chunk digest (the chunk_hash "blake3-keyed-tree"
// of an encrypted image, spec §11.4).
type Digest [32]byte

// Digester computes an encrypted image's keyed chunk digests and block
// digests in one pass over the chunk, the shape of the plaintext
// "sha256-tree": a keyed BLAKE3 of each 64 KiB block, bound to its
// position, then a keyed BLAKE3 over those digests. A Digester is not
// safe for concurrent use: make one per worker (NewDigester).
type Digester struct {
	block, chunk *blake3.Hasher
	sums         [maxBlocks * 32]byte
}

// NewDigester returns a Digester under the image's digest keys.
func (k *Keys) NewDigester() *Digester {
	b, err := blake3.NewKeyed(k.blockDigest[:])
	if err != nil {
		panic("seal: blake3 key: " + err.Error()) // always 32 bytes
	}
	c, err := blake3.NewKeyed(k.chunkDigest[:])
	if err != nil {
		panic("seal: blake3 key: " + err.Error())
	}
	return &Digester{block: b, chunk: c}
}

// Chunk returns the keyed digest of chunk index's raw bytes (1 to 64 MiB)
// and, when blocks is not nil (it must then have room for one entry per
// 64 KiB block), each block's truncated keyed digest (spec §11.4):
//
//	d_k = BLAKE3-keyed(Kb, b_k || LE64(index) || LE32(k))
//	H   = BLAKE3-keyed(Kh, LE64(index) || LE32(len(raw)) || d_0 || … || d_{nb-1})
//
// Binding the position makes equal blocks at different places digest
// differently, so the digests do not reveal which blocks repeat; a
// catch-up or a delta compares a block only with the block at the same
// place, whose digest is comparable.
func (d *Digester) Chunk(raw []byte, index uint64, blocks [][BlockDigestLen]byte) Digest {
	return DigestChunk(d, raw, index, blocks)
}

// DigestChunk is d.Chunk for block digests of any type whose underlying
// type is [8]byte, such as format.BlockDigest, so that callers fill
// their own slices without copying.
func DigestChunk[B ~[BlockDigestLen]byte](d *Digester, raw []byte, index uint64, blocks []B) Digest {
	if len(raw) == 0 || len(raw) > maxBlocks*BlockSize {
		panic("seal: Digester.Chunk of a chunk outside 1 byte to 64 MiB")
	}
	var pos [12]byte
	binary.LittleEndian.PutUint64(pos[:8], index)
	n := 0
	for off := 0; off < len(raw); off += BlockSize {
		end := min(off+BlockSize, len(raw))
		binary.LittleEndian.PutUint32(pos[8:], uint32(n))
		d.block.Reset()
		// blake3.Hasher.Write never fails.
		_, _ = d.block.Write(raw[off:end])
		_, _ = d.block.Write(pos[:])
		s := d.block.Sum(d.sums[n*32 : n*32])
		if blocks != nil {
			copy(blocks[n][:], s[:BlockDigestLen])
		}
		n++
	}
	binary.LittleEndian.PutUint32(pos[8:], uint32(len(raw)))
	d.chunk.Reset()
	_, _ = d.chunk.Write(pos[:])
	_, _ = d.chunk.Write(d.sums[:n*32])
	var h Digest
	d.chunk.Sum(h[:0])
	return h
}

// Block returns the truncated keyed digest of one block b (1 byte to
// 64 KiB) as chunk index's block k (spec §11.4):
// BLAKE3-keyed(Kb, b || LE64(index) || LE32(k))[0:8], the block digest
// d.Chunk records for it. A delta of an encrypted image computes it at its
// base's positions to compare a source block with the base's digest of
// the same bytes, whatever chunk size the delta has.
func (d *Digester) Block(b []byte, index uint64, k uint32) [BlockDigestLen]byte {
	if len(b) == 0 || len(b) > BlockSize {
		panic("seal: Digester.Block of a block outside 1 byte to 64 KiB")
	}
	var pos [12]byte
	binary.LittleEndian.PutUint64(pos[:8], index)
	binary.LittleEndian.PutUint32(pos[8:], k)
	d.block.Reset()
	// blake3.Hasher.Write never fails.
	_, _ = d.block.Write(b)
	_, _ = d.block.Write(pos[:])
	var s [32]byte
	d.block.Sum(s[:0])
	return [BlockDigestLen]byte(s[:BlockDigestLen])
}
