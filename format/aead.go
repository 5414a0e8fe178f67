package format

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"filippo.io/age"
	"github.com/seedship/seedship/seal"
)

// FeatureAEAD marks an encrypted image (spec §11): sealed payloads,
// keyed digests, sealed metadata and a keyed manifest trailer.
const FeatureAEAD = "aead"

// The values of the header's encryption object this format version
// writes and reads (spec §11.1).
const (
	EncryptionScheme = "seedship-aead-1"
	EncryptionAEAD   = "aes-256-gcm"
	EncryptionKDF    = "hkdf-sha256"
)

// manifestFlagKeyed is preamble flags bit 0 (spec §6.1): the manifest
// ends in the keyed trailer, set exactly when it requires "aead".
const manifestFlagKeyed = 1

// keyedTrailerSize is the keyed trailer (spec §11.6): SHA-256, HMAC-SHA-256, magic.
const keyedTrailerSize = 72

// Encryption is the header's encryption object (spec §11.1): how the
// image is encrypted and its root key wrapped for its recipients, all
// readable without the key.
type Encryption struct {
	Scheme      string   `json:"scheme"`
	AEAD        string   `json:"aead"`
	KDF         string   `json:"kdf"`
	WrappedKeys []string `json:"wrapped_keys"` // armored age files of the 32-byte root key
	// Recipients lists the age1… recipients, for operators ("for
	// whom"); readers do not trust it.
	Recipients []string `json:"recipients,omitempty"`
	Passphrase bool     `json:"passphrase,omitempty"` // a passphrase copy exists (informative)
	Metadata   string   `json:"metadata"`             // base64 of the sealed metadata (spec §11.5)
}

// NewEncryption wraps root for the recipients and, when passphrase is not
// empty, for the passphrase (seal.Wrap), and returns the header's
// encryption object for it. The sealed metadata is filled in when the
// manifest is marshalled.
func NewEncryption(root seal.RootKey, recipients []seal.Recipient, passphrase string) (*Encryption, error) {
	wrapped, err := seal.Wrap(root, recipients, passphrase)
	if err != nil {
		return nil, fmt.Errorf("format: wrap the image key: %w", err)
	}
	e := &Encryption{Scheme: EncryptionScheme, AEAD: EncryptionAEAD, KDF: EncryptionKDF,
		WrappedKeys: wrapped, Passphrase: passphrase != ""}
	for _, r := range recipients {
		e.Recipients = append(e.Recipients, r.String())
	}
	return e, nil
}

// validate checks the fields a keyless reader can check.
func (e *Encryption) validate() error {
	if e.Scheme != EncryptionScheme || e.AEAD != EncryptionAEAD || e.KDF != EncryptionKDF {
		return fmt.Errorf("%w: encryption scheme %q, aead %q, kdf %q: this seedship implements %s, %s, %s: upgrade seedship",
			ErrVersion, e.Scheme, e.AEAD, e.KDF, EncryptionScheme, EncryptionAEAD, EncryptionKDF)
	}
	if n := len(e.WrappedKeys); n < 1 || n > seal.MaxWrappedKeys {
		return corruptf("encryption has %d wrapped keys, want 1 to %d", n, seal.MaxWrappedKeys)
	}
	return nil
}

// sealedMetadata decodes the header's sealed metadata, checking its size.
func (e *Encryption) sealedMetadata() ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(e.Metadata)
	if err != nil || len(b) < seal.Overhead {
		return nil, corruptf("encryption metadata is not the base64 of a sealed object")
	}
	return b, nil
}

// OpenKeys unwraps the root key of the encrypted image whose header is h
// with the identities (age identities; a passphrase is
// seal.PassphraseIdentity) and derives the image's keys. When none opens
// a wrapped copy the error matches ErrNoKey and says, in one line, what
// the image is encrypted for; a wrapped copy that is not a valid age
// file of a key is damage (ErrCorrupt). The keys are proven the image's
// only by the manifest MAC: call Manifest.Unseal with them.
func OpenKeys(h *Header, ids []age.Identity) (*seal.Keys, error) {
	if h.Encryption == nil {
		return nil, fmt.Errorf("format: image %s is not encrypted", h.ImageID)
	}
	var id [16]byte
	if err := decodeHex(id[:], h.ImageID); err != nil {
		return nil, corruptf("image_id %q: %v", h.ImageID, err)
	}
	return openKeys(id, h.Encryption.WrappedKeys, ids)
}

// openKeys unwraps a root key from wrapped with ids and derives the keys
// of image id.
func openKeys(id [16]byte, wrapped []string, ids []age.Identity) (*seal.Keys, error) {
	root, err := seal.Unwrap(wrapped, ids)
	switch {
	case errors.Is(err, seal.ErrNoIdentity):
		return nil, &noKeyError{err}
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return seal.DeriveKeys(root, id)
}

// noKeyError is seal's one-line "no identity opens the key" error,
// matching ErrNoKey too.
type noKeyError struct{ err error }

func (e *noKeyError) Error() string        { return e.err.Error() }
func (e *noKeyError) Unwrap() error        { return e.err }
func (e *noKeyError) Is(target error) bool { return target == ErrNoKey }

// manifestSecrets is the JSON of a manifest's sealed metadata (spec
// §11.5, kind 1): the header fields that reveal the source.
type manifestSecrets struct {
	SHA256       string          `json:"sha256"`
	Source       Source          `json:"source"`
	CaptureStart time.Time       `json:"capture_start"`
	CaptureEnd   time.Time       `json:"capture_end"`
	Resync       json.RawMessage `json:"resync,omitempty"`
}

// clearSource is what of a source an encrypted image shows without the
// key: what a target is chosen by.
func clearSource(s Source) Source {
	return Source{Kind: s.Kind, Size: s.Size, SectorSize: s.SectorSize}
}

// sourceShape is what of a source is both in the clear and sealed, for
// comparing the two.
func sourceShape(s Source) [3]any { return [3]any{s.Kind, s.Size, s.SectorSize} }

// Encrypted reports whether the image is encrypted (requires "aead").
func (m *Manifest) Encrypted() bool { return m.Header.RequiresFeature(FeatureAEAD) }

// Unsealed reports whether an encrypted manifest's keys are set and its
// secret fields are in Header: after Unseal, or a writer's SetKeys.
func (m *Manifest) Unsealed() bool { return m.keys != nil }

// Keys returns the keys given to Unseal or SetKeys, or nil.
func (m *Manifest) Keys() *seal.Keys { return m.keys }

// Hasher returns the image's chunk hasher: PlainHasher for an image
// without encryption, the keyed one once an encrypted manifest is
// unsealed, and nil for an encrypted manifest without its keys (check
// Encrypted and Unsealed first).
func (m *Manifest) Hasher() *Hasher {
	if !m.Encrypted() {
		return PlainHasher()
	}
	return m.hasher
}

// ZeroTableHash returns what the chunk table must record as H for chunk
// i if it is a zero chunk (spec §6.6 (5)): the zero-chunk hash of its
// length, or 32 zero bytes in an encrypted image. It needs no key.
func (m *Manifest) ZeroTableHash(i uint64) Hash {
	if m.Encrypted() {
		return Hash{}
	}
	_, n := m.ChunkRange(i)
	return ZeroChunkHash(int(n))
}

// SetKeys gives a manifest being written (one whose secret fields are in
// Header) the keys Marshal seals and MACs it with. The manifest must
// require "aead" and k be its image's keys. It is not how a read
// manifest is opened: that is Unseal, which checks the MAC first.
func (m *Manifest) SetKeys(k *seal.Keys) error {
	if !m.Encrypted() {
		return fmt.Errorf("format: SetKeys on a manifest that does not require %q", FeatureAEAD)
	}
	if m.body != nil {
		return fmt.Errorf("format: SetKeys on a manifest read from an image: use Unseal, which checks its MAC")
	}
	if err := m.checkKeysImage(k); err != nil {
		return err
	}
	m.keys, m.hasher = k, NewKeyedHasher(k)
	return nil
}

func (m *Manifest) checkKeysImage(k *seal.Keys) error {
	id, err := m.ImageID()
	if err != nil {
		return err
	}
	if k.ImageID() != id {
		return fmt.Errorf("format: keys of image %x for the manifest of image %x", k.ImageID(), id)
	}
	return nil
}

// Unseal opens a decoded encrypted manifest with its keys (OpenKeys): it
// checks the manifest MAC over every byte before the trailer, opens the
// sealed metadata, checks that the fields present both in the clear and
// sealed agree, and fills Header.SHA256, Source, CaptureStart,
// CaptureEnd and Resync in memory. A MAC or metadata that fails (the
// manifest was altered, or the key is not the one the image was written
// with) is an error wrapping ErrChecksum; a disagreement ErrCorrupt. On
// error the manifest is unchanged.
func (m *Manifest) Unseal(k *seal.Keys) error {
	if !m.Encrypted() {
		return fmt.Errorf("format: image %s is not encrypted: it has nothing to unseal", m.Header.ImageID)
	}
	if m.keys != nil {
		return nil // already open
	}
	if m.body == nil {
		return fmt.Errorf("format: Unseal of a manifest that was not read from an image: use SetKeys")
	}
	if err := m.checkKeysImage(k); err != nil {
		return fmt.Errorf("%w: %w", ErrChecksum, err)
	}
	if err := k.CheckManifestMAC(m.body, m.mac[:]); err != nil {
		return fmt.Errorf("%w: %w", ErrChecksum, err)
	}
	sealed, err := m.Header.Encryption.sealedMetadata()
	if err != nil {
		return err
	}
	pt, err := k.OpenMetadata(seal.ManifestMetadata, sealed)
	if err != nil {
		return fmt.Errorf("%w: manifest %w", ErrChecksum, err)
	}
	var s manifestSecrets
	if err := json.Unmarshal(pt, &s); err != nil {
		return corruptf("sealed manifest metadata: %v", err)
	}
	h := &m.Header
	if sourceShape(s.Source) != sourceShape(h.Source) {
		return corruptf("the sealed source (kind %q, size %d, sector size %d) disagrees with the plaintext header's (%q, %d, %d)",
			s.Source.Kind, s.Source.Size, s.Source.SectorSize, h.Source.Kind, h.Source.Size, h.Source.SectorSize)
	}
	if !isLowerHex(s.SHA256, 32) {
		return corruptf("sealed sha256 %q is not 64 lowercase hex digits", s.SHA256)
	}
	h.SHA256, h.Source, h.CaptureStart, h.CaptureEnd, h.Resync = s.SHA256, s.Source, s.CaptureStart, s.CaptureEnd, s.Resync
	m.keys, m.hasher, m.body = k, NewKeyedHasher(k), nil
	return nil
}

// sealHeader returns the header an encrypted manifest writes: the secret
// fields sealed into encryption.metadata (kind 1) and removed from the
// clear, the source reduced to kind, size and sector size.
func (m *Manifest) sealHeader() (Header, error) {
	h := m.Header
	if m.keys == nil {
		return h, fmt.Errorf("format: an encrypted manifest is written with its keys (SetKeys)")
	}
	pt, err := json.Marshal(manifestSecrets{SHA256: h.SHA256, Source: h.Source, CaptureStart: h.CaptureStart, CaptureEnd: h.CaptureEnd, Resync: h.Resync})
	if err != nil {
		return h, fmt.Errorf("format: manifest metadata: %w", err)
	}
	var sealed []byte
	if m.nonces != nil {
		sealed = m.keys.SealMetadataWithNonces(seal.ManifestMetadata, pt, m.nonces)
	} else {
		sealed = m.keys.SealMetadata(seal.ManifestMetadata, pt)
	}
	e := *h.Encryption
	e.Metadata = base64.StdEncoding.EncodeToString(sealed)
	h.Encryption = &e
	h.SHA256, h.Source, h.CaptureStart, h.CaptureEnd, h.Resync = "", clearSource(h.Source), time.Time{}, time.Time{}, nil
	return h, nil
}

// checkClear checks that an encrypted manifest read without its keys
// shows none of the sealed fields, and that its sealed metadata is there.
func (h *Header) checkClear() error {
	src := h.Source
	if h.SHA256 != "" || src.Path != "" || src.Serial != "" || src.WWN != "" || src.Model != "" || src.ByID != nil || src.Host != "" || src.InUse || !h.CaptureStart.IsZero() || !h.CaptureEnd.IsZero() || h.Resync != nil {
		return corruptf("an encrypted image's header shows sealed fields (sha256, source identity, capture times or resync) in the clear")
	}
	_, err := h.Encryption.sealedMetadata()
	return err
}
