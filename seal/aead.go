package seal

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Sizes of a sealed payload's parts (spec §11.3): the payload is
// nonce || ciphertext || tag, so it is Overhead bytes longer than the
// plaintext.
const (
	NonceSize = 12
	TagSize   = 16
	Overhead  = NonceSize + TagSize
)

// ChunkADSize is the length of a chunk's associated data (spec §11.3).
const ChunkADSize = 40

var (
	chunkADMagic = [8]byte{'S', 'S', 'C', 'H', 'K', 'A', 'D', '1'}
	metaADMagic  = [8]byte{'S', 'S', 'M', 'E', 'T', 'A', 'D', '1'}
)

// ErrAuthentication means a sealed payload, the sealed metadata or the
// manifest MAC failed authentication: the bytes were damaged or altered,
// were moved from another chunk or image, or the key is not this
// image's. It is an integrity failure, never bad input.
var ErrAuthentication = errors.New("fails authentication")

// ChunkError is the error of opening one chunk's sealed payload. It
// matches ErrAuthentication with errors.Is.
type ChunkError struct {
	Index  uint64 // chunk index
	Reason string // what was wrong, for the message
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("chunk %d: sealed payload %s: %s (damaged, truncated, or moved from another chunk or image)", e.Index, ErrAuthentication, e.Reason)
}

// Unwrap makes a ChunkError match ErrAuthentication.
func (e *ChunkError) Unwrap() error { return ErrAuthentication }

// ChunkAD is what a chunk's sealed payload is bound to besides its
// bytes (spec §11.3): the image, the chunk's place in it, and how to
// decode it. A payload opened with any other ChunkAD fails.
type ChunkAD struct {
	ImageID [ImageIDSize]byte
	Index   uint64 // chunk index i
	Codec   byte   // the frame's codec byte, encryption bit (0x80) included
	RawLen  uint32 // L, the chunk's raw length
}

// AppendBinary appends the 40-byte associated data of spec §11.3:
// magic "SSCHKAD1" (8), image ID (16), chunk index (u64), raw length
// (u32), codec (u8), 3 reserved zero bytes.
func (a ChunkAD) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, chunkADMagic[:]...)
	b = append(b, a.ImageID[:]...)
	b = binary.LittleEndian.AppendUint64(b, a.Index)
	b = binary.LittleEndian.AppendUint32(b, a.RawLen)
	return append(b, a.Codec, 0, 0, 0), nil
}

func (a ChunkAD) bytes() [ChunkADSize]byte {
	b, _ := a.AppendBinary(make([]byte, 0, ChunkADSize))
	return [ChunkADSize]byte(b)
}

// SealChunk encrypts a chunk's payload (its compressed or raw bytes) and
// appends nonce || ciphertext || tag to dst, which must not overlap
// plaintext. The nonce is 12 fresh random bytes, so sealing the same
// chunk again (a resumed capture) never reuses a nonce. SealChunk
// panics if ad names another image than the keys'.
func (k *Keys) SealChunk(dst, plaintext []byte, ad ChunkAD) []byte {
	return k.sealChunk(dst, plaintext, ad, rand.Reader)
}

func (k *Keys) sealChunk(dst, plaintext []byte, ad ChunkAD, nonces io.Reader) []byte {
	if ad.ImageID != k.imageID {
		panic("seal: SealChunk for another image than the keys were derived for")
	}
	adb := ad.bytes()
	return sealWith(k.chunkAEAD, dst, plaintext, adb[:], nonces)
}

// OpenChunk authenticates and decrypts a sealed payload (as SealChunk
// made it), appending the plaintext to dst. On failure it returns a
// *ChunkError (matching ErrAuthentication) and appends nothing: no
// unauthenticated byte is ever handed out.
func (k *Keys) OpenChunk(dst, sealed []byte, ad ChunkAD) ([]byte, error) {
	if len(sealed) < Overhead {
		return dst, &ChunkError{Index: ad.Index, Reason: fmt.Sprintf("%d bytes, shorter than the %d-byte nonce and tag", len(sealed), Overhead)}
	}
	adb := ad.bytes()
	out, err := k.chunkAEAD.Open(dst, sealed[:NonceSize], sealed[NonceSize:], adb[:])
	if err != nil {
		reason := "tag mismatch"
		if ad.ImageID != k.imageID {
			reason = "opened with another image's keys"
		}
		return dst, &ChunkError{Index: ad.Index, Reason: reason}
	}
	return out, nil
}

// MetadataKind says which structure a sealed metadata object belongs
// to; it is bound into the associated data, so that one cannot be
// passed off as the other.
type MetadataKind byte

// The kinds of sealed metadata (spec §11.5).
const (
	// ManifestMetadata is the manifest header's secret fields.
	ManifestMetadata MetadataKind = 1
	// CheckpointMetadata is the capture checkpoint's secret fields.
	CheckpointMetadata MetadataKind = 2
)

// metadataAD is the 32-byte associated data of sealed metadata: magic
// "SSMETAD1" (8), image ID (16), kind (u8), 7 reserved zero bytes.
func (k *Keys) metadataAD(kind MetadataKind) []byte {
	b := append(make([]byte, 0, 32), metaADMagic[:]...)
	b = append(b, k.imageID[:]...)
	return append(b, byte(kind), 0, 0, 0, 0, 0, 0, 0)
}

// SealMetadata encrypts secret metadata of the given kind (spec §11.5:
// the JSON object of the fields that must not be readable) and returns
// nonce || ciphertext || tag.
func (k *Keys) SealMetadata(kind MetadataKind, plaintext []byte) []byte {
	return k.sealMetadata(kind, plaintext, rand.Reader)
}

func (k *Keys) sealMetadata(kind MetadataKind, plaintext []byte, nonces io.Reader) []byte {
	return sealWith(k.metaAEAD, nil, plaintext, k.metadataAD(kind), nonces)
}

// OpenMetadata authenticates and decrypts what SealMetadata returned for
// the same kind. Its error matches ErrAuthentication.
func (k *Keys) OpenMetadata(kind MetadataKind, sealed []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("sealed metadata of %d bytes, shorter than the %d-byte nonce and tag: %w", len(sealed), Overhead, ErrAuthentication)
	}
	out, err := k.metaAEAD.Open(nil, sealed[:NonceSize], sealed[NonceSize:], k.metadataAD(kind))
	if err != nil {
		return nil, fmt.Errorf("sealed metadata %w (damaged, of another kind or image, or not this image's key)", ErrAuthentication)
	}
	return out, nil
}

// ManifestMAC returns HMAC-SHA-256 of a manifest's body (every byte
// before its trailer) under the image's manifest key (spec §11.6).
func (k *Keys) ManifestMAC(body []byte) [32]byte {
	m := hmac.New(sha256.New, k.manifestMAC[:])
	m.Write(body)
	return [32]byte(m.Sum(nil))
}

// CheckManifestMAC reports whether mac is the manifest MAC of body, in
// constant time. Its error matches ErrAuthentication.
func (k *Keys) CheckManifestMAC(body []byte, mac []byte) error {
	want := k.ManifestMAC(body)
	if !hmac.Equal(want[:], mac) {
		return fmt.Errorf("manifest MAC %w: the manifest was altered, or this is not the key of the image that wrote it", ErrAuthentication)
	}
	return nil
}

func sealWith(a interface {
	Seal(dst, nonce, plaintext, ad []byte) []byte
}, dst, plaintext, ad []byte, nonces io.Reader) []byte {
	var nonce [NonceSize]byte
	if _, err := io.ReadFull(nonces, nonce[:]); err != nil {
		// crypto/rand never fails; a test's fixed reader is long enough.
		panic(fmt.Sprintf("seal: reading a nonce: %v", err))
	}
	dst = append(dst, nonce[:]...)
	return a.Seal(dst, nonce[:], plaintext, ad)
}
