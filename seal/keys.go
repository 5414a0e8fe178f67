package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// KeySize is the size of a root key and of every key derived from it.
const KeySize = 32

// ImageIDSize is the size of an image ID (spec §6.2 image_id, 16 bytes).
const ImageIDSize = 16

// RootKey is an image's only secret: 32 random bytes, wrapped for the
// image's recipients (Wrap) and never stored in the clear. Every key
// the image uses is derived from it (DeriveKeys).
type RootKey [KeySize]byte

// NewRootKey returns a fresh random root key.
func NewRootKey() RootKey {
	var k RootKey
	rand.Read(k[:]) // never fails (crypto/rand, Go 1.24+)
	return k
}

// The HKDF-SHA-256 labels (the info parameter) of the derived keys, spec
// §11.2. Each key serves one algorithm and one purpose. The per-image keys
// use the image ID as the HKDF salt; the digest keys use no salt, so that
// images sharing a root key (a delta image and its base) compare digests.
const (
	labelChunkAEAD    = "seedship v1 chunk aead"
	labelMetadataAEAD = "seedship v1 metadata aead"
	labelManifestMAC  = "seedship v1 manifest mac"
	labelBlockDigest  = "seedship v1 block digest"
	labelChunkDigest  = "seedship v1 chunk digest"
)

// Keys are the keys of one image, derived from its root key and image
// ID. A Keys is safe for concurrent use; the Digester it makes is not.
type Keys struct {
	root        RootKey // kept for ForImage; never exported
	imageID     [ImageIDSize]byte
	chunkAEAD   cipher.AEAD
	metaAEAD    cipher.AEAD
	manifestMAC [KeySize]byte
	blockDigest [KeySize]byte
	chunkDigest [KeySize]byte
}

// DeriveKeys derives an image's keys from its root key (spec §11.2).
func DeriveKeys(root RootKey, imageID [ImageIDSize]byte) (*Keys, error) {
	k := &Keys{root: root, imageID: imageID}
	var err error
	if k.chunkAEAD, err = newGCM(derive(root, imageID[:], labelChunkAEAD)); err != nil {
		return nil, err
	}
	if k.metaAEAD, err = newGCM(derive(root, imageID[:], labelMetadataAEAD)); err != nil {
		return nil, err
	}
	k.manifestMAC = derive(root, imageID[:], labelManifestMAC)
	k.blockDigest = derive(root, nil, labelBlockDigest)
	k.chunkDigest = derive(root, nil, labelChunkDigest)
	return k, nil
}

// ImageID returns the image ID the keys were derived for.
func (k *Keys) ImageID() [ImageIDSize]byte { return k.imageID }

func derive(root RootKey, salt []byte, label string) [KeySize]byte {
	b, err := hkdf.Key(sha256.New, root[:], salt, label, KeySize)
	if err != nil {
		// Only a length above 255·32 bytes fails; 32 never does.
		panic(fmt.Sprintf("seal: hkdf %q: %v", label, err))
	}
	return [KeySize]byte(b)
}

func newGCM(key [KeySize]byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("seal: aes: %w", err)
	}
	// The nonce is chosen here (random, spec §11.3), not by
	// NewGCMWithRandomNonce, so that test vectors can fix it.
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: gcm: %w", err)
	}
	return g, nil
}

// ForImage derives the keys of another image under the same root key
// (spec §11.2): a delta image is encrypted under its base's root key, so
// that the same identities open it and its digest keys (Kb, Kh: per root
// key, not per image) compare its blocks with the base's. Its per-image
// keys (Kc, Km, Kmac) are its own, salted with its image ID. The root key
// itself never leaves seal.
func (k *Keys) ForImage(imageID [ImageIDSize]byte) (*Keys, error) {
	return DeriveKeys(k.root, imageID)
}
