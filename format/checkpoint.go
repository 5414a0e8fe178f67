package format

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"time"

	"filippo.io/age"
	"github.com/seedship/seedship/seal"
)

// CheckpointKey is where a running capture records how far it got (spec
// §7.1). Readers of an image ignore it; a finished capture deletes it.
const CheckpointKey = "capture.ckpt"

// MaxCheckpointSize bounds what a reader accepts as a checkpoint, before
// it reads it: a checkpoint is a few hundred bytes.
const MaxCheckpointSize = 64 << 10

// checkpointVersion 2 added the seal and the stored-segments digest;
// version 3, of image format version 2, records the image format version
// and falls on group boundaries; version 4, of image format version 3,
// may be encrypted: wrapped keys and a sealed object (spec §7.1). Older
// checkpoints are refused.
const checkpointVersion = 4

// checkpointDomain separates checkpoint seals from every other SHA-256.
const checkpointDomain = "seedship-checkpoint\n"

// Checkpoint is the progress record of an unfinished capture (spec §7.1):
// data segments 0 … Segments−1 (whole groups, spec §5.5) and the parity
// of their stripes are stored, the first Chunks chunks are recorded (the
// last stored one is the last frame of the last group), and SHA256State
// is the whole-source SHA-256 state after Chunks chunks.
type Checkpoint struct {
	ImageID      [16]byte
	Source       Source
	ChunkSize    int
	Level        int
	SegmentSize  int64
	Parity       *Geometry
	Width        int  // data segments grown together without parity (0 or 1: one at a time)
	DigestOnly   bool // a digest-only image (feature "digest-only")
	CaptureStart time.Time
	Segments     uint32
	Chunks       uint64
	SHA256State  []byte
	// Stored is [StoredDigest] of the segments stored so far: it binds the
	// checkpoint to exactly those segments.
	Stored Hash
	// WrappedKeys, in the checkpoint of an encrypted capture, are the
	// image's wrapped copies of the root key plus one for the resume
	// identity (spec §11.5). Such a checkpoint is written with
	// MarshalSealed: SHA256State and Source but for its kind and size
	// are sealed.
	WrappedKeys []string
	// Recipients and Passphrase record, for an encrypted capture, whom
	// the image is for (the manifest's informative encryption.recipients
	// and encryption.passphrase), so that a resumed capture's manifest
	// says it too. Covered by the checkpoint's seal.
	Recipients []string
	Passphrase bool

	sealed []byte     // parsed, not yet unsealed: the sealed object
	keys   *seal.Keys // after Unseal
}

// checkpointJSON is the encoding of a checkpoint.
type checkpointJSON struct {
	Format       string    `json:"format"`
	Version      int       `json:"version"`
	ImageFormat  int       `json:"image_format"`
	ImageID      string    `json:"image_id"`
	Source       Source    `json:"source"`
	ChunkSize    int       `json:"chunk_size"`
	Level        int       `json:"level"`
	SegmentSize  int64     `json:"segment_size"`
	Parity       *Geometry `json:"parity,omitempty"`
	Width        int       `json:"width,omitempty"`
	DigestOnly   bool      `json:"digest_only,omitempty"`
	CaptureStart time.Time `json:"capture_start"`
	Segments     uint32    `json:"segments"`
	Chunks       uint64    `json:"chunks"`
	SHA256State  []byte    `json:"sha256_state,omitempty"`
	Stored       string    `json:"stored_sha256"`
	WrappedKeys  []string  `json:"wrapped_keys,omitempty"`
	Recipients   []string  `json:"recipients,omitempty"`
	Passphrase   bool      `json:"passphrase,omitempty"`
	Sealed       []byte    `json:"sealed,omitempty"`
	Seal         string    `json:"seal"`
}

// checkpointSecrets is the sealed object of an encrypted capture's
// checkpoint (spec §11.5, kind 2).
type checkpointSecrets struct {
	SHA256State []byte `json:"sha256_state"`
	Source      Source `json:"source"`
}

// StoredDigest returns the digest that binds a checkpoint to the stored
// segments (spec §7.1): SHA-256(D ‖ P), where D is the SHA-256 over the
// summaries of the data segments in order and P the same over the parity
// segments; a summary is its kind (1 byte), number (4), size (8), frame
// count (4) and index hash (32), integers little-endian.
func StoredDigest(data, parity []SegmentSummary) Hash {
	var d storedDigest
	for _, s := range data {
		d.add(s)
	}
	for _, s := range parity {
		d.add(s)
	}
	return d.sum()
}

// storedDigest computes [StoredDigest] incrementally, as segments are
// stored, in constant memory.
type storedDigest struct{ data, parity hash.Hash }

func (d *storedDigest) add(s SegmentSummary) {
	if d.data == nil {
		d.data, d.parity = sha256.New(), sha256.New()
	}
	var b [49]byte
	b[0] = byte(s.Kind)
	binary.LittleEndian.PutUint32(b[1:], s.Number)
	binary.LittleEndian.PutUint64(b[5:], uint64(s.Size))
	binary.LittleEndian.PutUint32(b[13:], s.Frames)
	copy(b[17:], s.IndexHash[:])
	if s.Kind == SegmentParity {
		d.parity.Write(b[:])
	} else {
		d.data.Write(b[:])
	}
}

func (d *storedDigest) sum() Hash {
	if d.data == nil {
		d.data, d.parity = sha256.New(), sha256.New()
	}
	var b [64]byte
	d.data.Sum(b[:0])
	d.parity.Sum(b[32:32])
	return sha256.Sum256(b[:])
}

// checkpointSeal is the seal of a checkpoint: the SHA-256 over the domain
// string, the image ID and the checkpoint's JSON encoding with an empty
// seal field, so that a checkpoint of another image, or one whose fields
// were edited or damaged, is recognised.
func checkpointSeal(imageID [16]byte, j checkpointJSON) (Hash, error) {
	j.Seal = ""
	b, err := json.Marshal(j)
	if err != nil {
		return Hash{}, fmt.Errorf("format: checkpoint: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(checkpointDomain))
	h.Write(imageID[:])
	h.Write(b)
	var out Hash
	h.Sum(out[:0])
	return out, nil
}

// Marshal encodes the checkpoint of a capture without encryption as one
// JSON object whose "seal" field authenticates the rest (spec §7.1). A
// checkpoint with WrappedKeys is refused: it is written with
// MarshalSealed.
func (c *Checkpoint) Marshal() ([]byte, error) {
	if len(c.WrappedKeys) != 0 {
		return nil, fmt.Errorf("format: the checkpoint of an encrypted capture is written with MarshalSealed")
	}
	return c.marshal(c.Source, c.SHA256State, nil)
}

// MarshalSealed encodes the checkpoint of an encrypted capture (spec
// §7.1, §11.5): SHA256State and the full source are sealed with k (kind
// 2), only the source's kind and size stay in the clear, and
// WrappedKeys (which must not be empty) are recorded.
func (c *Checkpoint) MarshalSealed(k *seal.Keys) ([]byte, error) {
	if len(c.WrappedKeys) == 0 {
		return nil, fmt.Errorf("format: the checkpoint of an encrypted capture needs its wrapped keys")
	}
	if k.ImageID() != c.ImageID {
		return nil, fmt.Errorf("format: keys of image %x for the checkpoint of image %x", k.ImageID(), c.ImageID)
	}
	pt, err := json.Marshal(checkpointSecrets{SHA256State: c.SHA256State, Source: c.Source})
	if err != nil {
		return nil, fmt.Errorf("format: checkpoint: %w", err)
	}
	return c.marshal(Source{Kind: c.Source.Kind, Size: c.Source.Size}, nil, k.SealMetadata(seal.CheckpointMetadata, pt))
}

// Encrypted reports whether the checkpoint is an encrypted capture's.
func (c *Checkpoint) Encrypted() bool { return len(c.WrappedKeys) != 0 }

// OpenKeys unwraps the root key from the checkpoint's wrapped copies with
// ids (the resume identity, or one of the image's) and derives the
// image's keys; errors as [OpenKeys].
func (c *Checkpoint) OpenKeys(ids []age.Identity) (*seal.Keys, error) {
	if !c.Encrypted() {
		return nil, fmt.Errorf("format: the checkpoint of image %x is not encrypted", c.ImageID)
	}
	return openKeys(c.ImageID, c.WrappedKeys, ids)
}

// Unseal opens a parsed encrypted checkpoint's sealed object with k and
// fills SHA256State and Source. A sealed object that fails (altered, or
// not this image's key) is an error wrapping ErrChecksum; one whose
// source's kind or size differ from the clear ones ErrCorrupt. On error
// the checkpoint is unchanged.
func (c *Checkpoint) Unseal(k *seal.Keys) error {
	if !c.Encrypted() {
		return fmt.Errorf("format: the checkpoint of image %x is not encrypted", c.ImageID)
	}
	if c.keys != nil {
		return nil
	}
	if k.ImageID() != c.ImageID {
		return fmt.Errorf("%w: keys of image %x for the checkpoint of image %x", ErrChecksum, k.ImageID(), c.ImageID)
	}
	pt, err := k.OpenMetadata(seal.CheckpointMetadata, c.sealed)
	if err != nil {
		return fmt.Errorf("%w: checkpoint %w", ErrChecksum, err)
	}
	var s checkpointSecrets
	if err := json.Unmarshal(pt, &s); err != nil {
		return corruptf("sealed checkpoint: %v", err)
	}
	if s.Source.Kind != c.Source.Kind || s.Source.Size != c.Source.Size {
		return corruptf("the checkpoint's sealed source (%s, %d bytes) disagrees with its clear one (%s, %d bytes)", s.Source.Kind, s.Source.Size, c.Source.Kind, c.Source.Size)
	}
	c.SHA256State, c.Source, c.keys, c.sealed = s.SHA256State, s.Source, k, nil
	return nil
}

// marshal encodes the checkpoint with the given source and state in the
// clear and, for an encrypted capture, its sealed object.
func (c *Checkpoint) marshal(src Source, state, sealed []byte) ([]byte, error) {
	j := checkpointJSON{
		Format: "seedship-checkpoint", Version: checkpointVersion, ImageFormat: formatVersion, ImageID: hex.EncodeToString(c.ImageID[:]),
		Source: src, ChunkSize: c.ChunkSize, Level: c.Level, SegmentSize: c.SegmentSize, Parity: c.Parity,
		Width: c.Width, DigestOnly: c.DigestOnly, CaptureStart: c.CaptureStart, Segments: c.Segments, Chunks: c.Chunks, SHA256State: state,
		Stored: hex.EncodeToString(c.Stored[:]), WrappedKeys: c.WrappedKeys, Recipients: c.Recipients, Passphrase: c.Passphrase, Sealed: sealed,
	}
	seal, err := checkpointSeal(c.ImageID, j)
	if err != nil {
		return nil, err
	}
	j.Seal = hex.EncodeToString(seal[:])
	b, err := json.Marshal(j)
	if err != nil {
		return nil, fmt.Errorf("format: checkpoint: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseCheckpoint decodes and checks a checkpoint: its size, its version,
// its seal and the ranges of its fields. A damaged or edited checkpoint
// returns an error wrapping ErrCorrupt; one of another version, or not a
// checkpoint at all, ErrVersion or ErrFormat. It does not compare the
// checkpoint with the stored segments; the caller does, with
// [StoredDigest].
func ParseCheckpoint(b []byte) (*Checkpoint, error) {
	if len(b) > MaxCheckpointSize {
		return nil, fmt.Errorf("%w: checkpoint of %d bytes (at most %d)", ErrTooLarge, len(b), MaxCheckpointSize)
	}
	var j checkpointJSON
	if jerr := json.Unmarshal(b, &j); jerr != nil || j.Format != "seedship-checkpoint" {
		return nil, fmt.Errorf("%w: not a capture checkpoint", ErrFormat)
	}
	if j.Version != checkpointVersion || j.ImageFormat != formatVersion {
		return nil, fmt.Errorf("%w: checkpoint version %d of image format %d, made by another seedship; this seedship reads version %d of format %d: capture again into an empty destination",
			ErrVersion, j.Version, j.ImageFormat, checkpointVersion, formatVersion)
	}
	c := &Checkpoint{Source: j.Source, ChunkSize: j.ChunkSize, Level: j.Level, SegmentSize: j.SegmentSize,
		Parity: j.Parity, Width: j.Width, DigestOnly: j.DigestOnly, CaptureStart: j.CaptureStart, Segments: j.Segments, Chunks: j.Chunks, SHA256State: j.SHA256State,
		WrappedKeys: j.WrappedKeys, Recipients: j.Recipients, Passphrase: j.Passphrase, sealed: j.Sealed}
	if err := decodeHex(c.ImageID[:], j.ImageID); err != nil {
		return nil, corruptf("checkpoint image id: %v", err)
	}
	var seal Hash
	if err := decodeHex(seal[:], j.Seal); err != nil {
		return nil, corruptf("checkpoint seal: %v", err)
	}
	if want, err := checkpointSeal(c.ImageID, j); err != nil || want != seal {
		return nil, corruptf("checkpoint seal does not match its contents (edited or damaged)")
	}
	if err := decodeHex(c.Stored[:], j.Stored); err != nil {
		return nil, corruptf("checkpoint stored_sha256: %v", err)
	}
	if err := c.validateSealed(); err != nil {
		return nil, err
	}
	return c, c.validate()
}

// validateSealed checks that an encrypted capture's checkpoint has its
// wrapped keys and sealed object and nothing secret in the clear, and
// that a plain one has neither.
func (c *Checkpoint) validateSealed() error {
	if !c.Encrypted() {
		if c.sealed != nil {
			return corruptf("checkpoint has a sealed object but no wrapped keys")
		}
		return nil
	}
	if n := len(c.WrappedKeys); n > seal.MaxWrappedKeys+1 {
		return corruptf("checkpoint has %d wrapped keys, at most %d", n, seal.MaxWrappedKeys+1)
	}
	if len(c.sealed) < seal.Overhead {
		return corruptf("encrypted checkpoint without its sealed object")
	}
	if src := c.Source; c.SHA256State != nil || src.Path != "" || src.SectorSize != 0 || src.Serial != "" || src.WWN != "" ||
		src.Model != "" || src.ByID != nil || src.Host != "" || src.InUse {
		return corruptf("encrypted checkpoint shows sealed fields (sha256_state, source identity) in the clear")
	}
	if c.DigestOnly {
		return errDigestOnlyAEAD
	}
	return nil
}

// validate checks the ranges of a checkpoint's fields, so that no count
// in it can make a resuming capture allocate or loop without bound.
func (c *Checkpoint) validate() error {
	switch {
	case c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize || c.ChunkSize&(c.ChunkSize-1) != 0:
		return corruptf("checkpoint chunk size %d", c.ChunkSize)
	case c.SegmentSize < MinSegmentSize:
		return corruptf("checkpoint segment size %d", c.SegmentSize)
	case c.Source.Size < 0:
		return corruptf("checkpoint source size %d", c.Source.Size)
	case !c.Encrypted() && (len(c.Recipients) != 0 || c.Passphrase):
		return corruptf("a plaintext checkpoint names recipients")
	case c.Segments > maxSegmentNumber:
		return corruptf("checkpoint counts %d segments", c.Segments)
	case c.Width < 0 || c.Width > MaxGroupWidth || c.Width > 1 && c.Parity != nil:
		return corruptf("checkpoint width %d", c.Width)
	}
	if nchunks := uint64((c.Source.Size + int64(c.ChunkSize) - 1) / int64(c.ChunkSize)); c.Chunks > nchunks {
		return corruptf("checkpoint counts %d chunks in a source of %d", c.Chunks, nchunks)
	}
	if c.Parity != nil {
		if err := c.Parity.Validate(); err != nil {
			return corruptf("checkpoint parity: %v", err)
		}
	}
	return nil
}

func decodeHex(dst []byte, s string) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%d hex digits, want %d", len(s), 2*len(dst))
	}
	_, err := hex.Decode(dst, []byte(s))
	return err
}
