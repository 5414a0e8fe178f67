package seal

import "io"

// SealChunkWithNonces is SealChunk with each nonce read from nonces
// instead of the CSPRNG. It exists for published test vectors, whose
// bytes must not change from run to run; sealing real data with it and a
// repeating source reuses a nonce, which breaks AES-GCM for the whole
// key. Everything else calls SealChunk.
func (k *Keys) SealChunkWithNonces(dst, plaintext []byte, ad ChunkAD, nonces io.Reader) []byte {
	return k.sealChunk(dst, plaintext, ad, nonces)
}

// SealMetadataWithNonces is SealMetadata with the nonce read from nonces,
// for test vectors only, like SealChunkWithNonces.
func (k *Keys) SealMetadataWithNonces(kind MetadataKind, plaintext []byte, nonces io.Reader) []byte {
	return k.sealMetadata(kind, plaintext, nonces)
}
