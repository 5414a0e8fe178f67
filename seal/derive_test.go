package seal

import (
	"bytes"
	"testing"
)

// TestForImage: the keys ForImage derives for another image are those
// DeriveKeys derives from the same root key: the same digest keys (a
// delta compares its digests with its base's), other per-image keys.
func TestForImage(t *testing.T) {
	var root RootKey
	for i := range root {
		root[i] = byte(i)
	}
	base, delta := [ImageIDSize]byte{1}, [ImageIDSize]byte{2}
	kb, err := DeriveKeys(root, base)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kb.ForImage(delta)
	if err != nil {
		t.Fatal(err)
	}
	want, err := DeriveKeys(root, delta)
	if err != nil {
		t.Fatal(err)
	}
	if got.ImageID() != delta || got.manifestMAC != want.manifestMAC || got.blockDigest != want.blockDigest || got.chunkDigest != want.chunkDigest {
		t.Fatal("ForImage's keys are not DeriveKeys' of the same root key and image ID")
	}
	if got.manifestMAC == kb.manifestMAC || got.blockDigest != kb.blockDigest {
		t.Fatal("the delta shares the base's MAC key, or not its block digest key")
	}
	raw := bytes.Repeat([]byte("seedship"), BlockSize/8)
	ad := ChunkAD{ImageID: delta, Index: 3, Codec: 0x81, RawLen: uint32(len(raw))}
	sealed := got.SealChunk(nil, raw, ad)
	if _, err := want.OpenChunk(nil, sealed, ad); err != nil {
		t.Fatalf("a chunk sealed with ForImage's keys does not open with DeriveKeys': %v", err)
	}
}

// TestDigesterBlock: Block gives the block digest Chunk records for the
// same block at the same place, and another at another place.
func TestDigesterBlock(t *testing.T) {
	k, err := DeriveKeys(RootKey{7}, [ImageIDSize]byte{9})
	if err != nil {
		t.Fatal(err)
	}
	d := k.NewDigester()
	raw := make([]byte, 3*BlockSize+1234)
	for i := range raw {
		raw[i] = byte(i % 251)
	}
	blocks := make([][BlockDigestLen]byte, 4)
	for _, index := range []uint64{0, 5, 1 << 40} {
		d.Chunk(raw, index, blocks)
		for kk := range blocks {
			b := raw[kk*BlockSize : min((kk+1)*BlockSize, len(raw))]
			if got := d.Block(b, index, uint32(kk)); got != blocks[kk] {
				t.Fatalf("chunk %d block %d: Block %x, Chunk %x", index, kk, got, blocks[kk])
			}
			if d.Block(b, index+1, uint32(kk)) == blocks[kk] || d.Block(b, index, uint32(kk)+1) == blocks[kk] {
				t.Fatalf("chunk %d block %d: the digest does not depend on the place", index, kk)
			}
		}
	}
}
