package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/seedship/seedship/seal"
)

// Sizes of the fixed manifest structures (spec: "Manifest").
const (
	manifestPreambleSize = 32
	chunkEntrySize       = 56
	segmentEntrySize     = 56
	manifestTrailerSize  = 40
	maxHeaderJSON        = 1 << 20
)

// Header is the manifest's JSON metadata. Unknown JSON fields are ignored
// by readers; features a reader must understand are listed in Requires.
type Header struct {
	Format         string      `json:"format"` // always "seedship"
	Version        int         `json:"version"`
	ImageID        string      `json:"image_id"` // 32 hex digits, also in every segment header
	Tool           string      `json:"tool"`
	Requires       []string    `json:"requires,omitempty"`
	Size           int64       `json:"size"`
	ChunkSize      int         `json:"chunk_size"`
	BlockSize      int         `json:"block_size"`
	BlockDigestLen int         `json:"block_digest_len"`
	ChunkHash      string      `json:"chunk_hash"` // "sha256-tree", or "blake3-keyed-tree" when encrypted
	SegmentSize    int64       `json:"segment_size"`
	Width          int         `json:"width,omitempty"` // data segments grown together without parity (spec §5.5); absent: 1
	Compression    Compression `json:"compression"`
	SHA256         string      `json:"sha256,omitempty"` // whole raw source, hex; sealed when encrypted
	Source         Source      `json:"source"`           // when encrypted only kind, size and sector_size are in the clear
	CaptureStart   time.Time   `json:"capture_start,omitzero"`
	CaptureEnd     time.Time   `json:"capture_end,omitzero"`
	Chunks         uint64      `json:"chunks"`
	ZeroChunks     uint64      `json:"zero_chunks"`
	StoredBytes    int64       `json:"stored_bytes"`           // bytes of all data segments
	ParityBytes    int64       `json:"parity_bytes,omitempty"` // bytes of all parity segments
	Parity         *Parity     `json:"parity,omitempty"`
	Base           *Base       `json:"base,omitempty"`
	Encryption     *Encryption `json:"encryption,omitempty"` // spec §11, feature "aead"
	// Resync is the replication product's seed token (package resync),
	// recorded by the capture-side steps of an adapter: opaque to the
	// format, checked by the target-side steps before a partial resync.
	Resync json.RawMessage `json:"resync,omitempty"`
}

// Compression records how payloads were compressed. zstd output differs
// between encoder versions, so the encoder is recorded for the record; the
// image stays readable by any zstd decoder.
type Compression struct {
	Codec   string `json:"codec"` // "zstd" or "none"
	Level   int    `json:"level"`
	Encoder string `json:"encoder"`
}

// Source identifies what was captured.
type Source struct {
	Path       string   `json:"path,omitempty"`
	Kind       string   `json:"kind"` // "block" or "file"
	Size       int64    `json:"size"`
	SectorSize int      `json:"sector_size,omitempty"`
	Serial     string   `json:"serial,omitempty"`
	WWN        string   `json:"wwn,omitempty"`
	Model      string   `json:"model,omitempty"`
	ByID       []string `json:"by_id,omitempty"`
	Host       string   `json:"host,omitempty"`
	// InUse records that the source was captured with --allow-in-use: it
	// may have been mounted or written during the capture, so the image
	// need not be a consistent state of any moment.
	InUse bool `json:"in_use,omitempty"`
}

// Parity records Reed-Solomon parity (spec: "Parity", feature "parity-rs").
type Parity struct {
	Data    int    `json:"data"`     // K data segments per stripe
	Parity  int    `json:"parity"`   // M parity segments per stripe
	RowSize int    `json:"row_size"` // bytes per shard row
	Matrix  string `json:"matrix"`
}

// Base names the base image of a delta image (spec: "Delta images",
// feature "delta").
type Base struct {
	ManifestSHA256 string `json:"manifest_sha256"` // the base's manifest hash, 64 hex digits
	ImageID        string `json:"image_id"`        // the base's image ID, 32 hex digits
	// DigestsSHA256 is the SHA-256 of the delta's base-digest table (key
	// BaseDigestsKey): what the target must hold where the delta writes,
	// so a restore refuses a target that is not in the base state.
	DigestsSHA256 string `json:"digests_sha256,omitempty"`
}

// ChunkEntry is one row of the manifest's chunk table.
type ChunkEntry struct {
	Hash       Hash
	Offset     int64  // frame offset in its segment (0 unless stored)
	Segment    uint32 // data segment number (0 unless stored)
	PayloadLen uint32 // stored payload bytes (0 unless stored)
	Kind       Kind
	Codec      Codec // payload codec (0 unless stored)
}

// FrameLen returns the bytes the chunk's frame occupies in its segment.
func (c ChunkEntry) FrameLen() int64 {
	if c.Kind != KindStored {
		return 0
	}
	return FrameHeaderSize + int64(c.PayloadLen)
}

// Manifest is the decoded manifest: metadata, the chunk table and the
// segment table. Hash is the SHA-256 of the encoded manifest, set by
// [Manifest.Marshal], [DecodeManifest] and [ReadManifestBytes].
type Manifest struct {
	Header   Header
	Chunks   []ChunkEntry
	Segments []SegmentSummary // data segments, by number
	Parity   []SegmentSummary // parity segments, by number (parity images)
	Hash     Hash

	// Encrypted images (spec §11): the keys once set or unsealed, the
	// image's hasher, and for a manifest read but not yet unsealed the
	// bytes its MAC covers and the MAC.
	keys   *seal.Keys
	hasher *Hasher
	body   []byte
	mac    [32]byte
	// nonces, when set (test vectors only), replaces the CSPRNG as the
	// source of the metadata's sealing nonce.
	nonces io.Reader
}

// supportedFeatures lists the Requires entries this reader implements.
var supportedFeatures = []string{featureParity, FeatureDelta, FeatureDigestOnly, FeatureAEAD}

// Features an image may require besides parity (spec §8).
const (
	FeatureDelta      = "delta"       // a delta image: chunks of kind KindBase, header "base" (§12)
	FeatureDigestOnly = "digest-only" // no payloads: every stored frame is CodecDigestOnly (§13)
)

// RequiresFeature reports whether the image requires feature f.
func (h *Header) RequiresFeature(f string) bool { return slices.Contains(h.Requires, f) }

// ChunkRange returns the source byte range chunk i covers.
func (m *Manifest) ChunkRange(i uint64) (off, length int64) {
	cs := int64(m.Header.ChunkSize)
	off = int64(i) * cs
	return off, min(cs, m.Header.Size-off)
}

// ImageID returns the decoded image ID.
func (m *Manifest) ImageID() ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(m.Header.ImageID)
	if err != nil || len(b) != 16 {
		return id, corruptf("image_id %q is not 32 hex digits", m.Header.ImageID)
	}
	copy(id[:], b)
	return id, nil
}

// dataSegment returns the summary of data segment n.
func (m *Manifest) dataSegment(n uint32) (SegmentSummary, bool) { return findSegment(m.Segments, n) }

// findSegment looks n up in a table sorted by segment number.
func findSegment(table []SegmentSummary, n uint32) (SegmentSummary, bool) {
	i, ok := slices.BinarySearchFunc(table, n, func(s SegmentSummary, n uint32) int {
		return int(int64(s.Number) - int64(n))
	})
	if !ok {
		return SegmentSummary{}, false
	}
	return table[i], true
}

// Marshal returns the encoded manifest and sets m.Hash. An encrypted
// manifest needs its keys (SetKeys): its secret fields are sealed into
// encryption.metadata (m.Header.Encryption.Metadata is updated) and its
// trailer carries the MAC (spec §11.5, §11.6).
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("format: refusing to write an invalid manifest: %w", err)
	}
	hdr := m.Header
	if m.Encrypted() {
		var err error
		if hdr, err = m.sealHeader(); err != nil {
			return nil, err
		}
	}
	b, err := m.encode(hdr)
	if err == nil {
		m.Header.Encryption = hdr.Encryption // with the metadata just sealed
	}
	return b, err
}

// encode writes the manifest with header hdr (the sealed one of an
// encrypted manifest, whose trailer is then keyed) and sets m.Hash.
func (m *Manifest) encode(hdr Header) ([]byte, error) {
	trailer, flags := manifestTrailerSize, uint16(0)
	if m.Encrypted() {
		trailer, flags = keyedTrailerSize, manifestFlagKeyed
	}
	hj, err := json.Marshal(&hdr)
	if err != nil {
		return nil, fmt.Errorf("format: manifest header: %w", err)
	}
	nseg := len(m.Segments) + len(m.Parity)
	n := manifestPreambleSize + len(hj) + len(m.Chunks)*chunkEntrySize + nseg*segmentEntrySize + trailer
	b := make([]byte, 0, n)
	var pre [manifestPreambleSize]byte
	copy(pre[:], manifestMagic[:])
	binary.LittleEndian.PutUint16(pre[8:], formatVersion)
	binary.LittleEndian.PutUint16(pre[10:], flags)
	binary.LittleEndian.PutUint32(pre[12:], uint32(len(hj)))
	binary.LittleEndian.PutUint64(pre[16:], uint64(len(m.Chunks)))
	binary.LittleEndian.PutUint32(pre[24:], uint32(nseg))
	b = append(b, pre[:]...)
	b = append(b, hj...)
	var ce [chunkEntrySize]byte
	for _, c := range m.Chunks {
		copy(ce[0:], c.Hash[:])
		binary.LittleEndian.PutUint64(ce[32:], uint64(c.Offset))
		binary.LittleEndian.PutUint32(ce[40:], c.Segment)
		binary.LittleEndian.PutUint32(ce[44:], c.PayloadLen)
		ce[48], ce[49] = byte(c.Kind), byte(c.Codec)
		b = append(b, ce[:]...)
	}
	var se [segmentEntrySize]byte
	for _, s := range append(m.Segments[:len(m.Segments):len(m.Segments)], m.Parity...) {
		binary.LittleEndian.PutUint32(se[0:], s.Number)
		se[4] = byte(s.Kind)
		binary.LittleEndian.PutUint64(se[8:], uint64(s.Size))
		binary.LittleEndian.PutUint32(se[16:], s.Frames)
		copy(se[24:], s.IndexHash[:])
		b = append(b, se[:]...)
	}
	hash := sha256.Sum256(b)
	var mac [32]byte
	if flags&manifestFlagKeyed != 0 {
		mac = m.keys.ManifestMAC(b)
	}
	b = append(b, hash[:]...)
	if flags&manifestFlagKeyed != 0 {
		b = append(b, mac[:]...)
	}
	b = append(b, manifestTrailMagic[:]...)
	m.Hash = hash
	return b, nil
}

// ReadManifestBytes reads a whole manifest from r, decodes it, and also
// returns its encoded bytes, for writing intact copies verbatim. It reads
// the 32-byte preamble first and refuses a wrong magic or version, or
// counts that make the manifest longer than MaxManifestSize, before
// reading on; the rest is read only up to the length the counts give, so
// neither a huge file nor hostile counts make it allocate more than the
// manifest's real bytes.
func ReadManifestBytes(r io.Reader) (*Manifest, []byte, error) {
	pre := make([]byte, manifestPreambleSize)
	n, err := io.ReadFull(r, pre)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("format: read manifest: %w", err)
	}
	if n < manifestPreambleSize {
		m, err := DecodeManifest(pre[:n]) // too short: says why
		return m, nil, err
	}
	want, err := manifestLength(pre)
	if err != nil {
		return nil, nil, err
	}
	b := bytes.NewBuffer(make([]byte, 0, min(want, 1<<20)))
	b.Write(pre)
	if _, err := io.Copy(b, io.LimitReader(r, want-manifestPreambleSize+1)); err != nil {
		return nil, nil, fmt.Errorf("format: read manifest: %w", err)
	}
	if int64(b.Len()) > want {
		return nil, nil, corruptf("manifest is longer than the %d bytes its counts give", want)
	}
	m, err := DecodeManifest(b.Bytes())
	if err != nil {
		return nil, nil, err
	}
	return m, b.Bytes(), nil
}

// manifestLength checks a manifest preamble's magic and version and
// returns the manifest's total length according to its counts.
func manifestLength(pre []byte) (int64, error) {
	if [8]byte(pre[:8]) != manifestMagic {
		return 0, fmt.Errorf("%w: bad manifest magic", ErrFormat)
	}
	if v := binary.LittleEndian.Uint16(pre[8:]); v != formatVersion {
		return 0, versionError(int(v))
	}
	trailer, err := trailerSize(pre)
	if err != nil {
		return 0, err
	}
	hl := uint64(binary.LittleEndian.Uint32(pre[12:]))
	nc := binary.LittleEndian.Uint64(pre[16:])
	ns := uint64(binary.LittleEndian.Uint32(pre[24:]))
	if hl > maxHeaderJSON || nc > MaxManifestSize/chunkEntrySize {
		return 0, fmt.Errorf("%w: manifest counts (%d header bytes, %d chunks) exceed %d bytes", ErrTooLarge, hl, nc, MaxManifestSize)
	}
	n := manifestPreambleSize + hl + nc*chunkEntrySize + ns*segmentEntrySize + uint64(trailer)
	if n > MaxManifestSize {
		return 0, fmt.Errorf("%w: manifest of %d bytes, over %d", ErrTooLarge, n, MaxManifestSize)
	}
	return int64(n), nil
}

// trailerSize returns the trailer length the preamble's flags give: the
// 72-byte keyed trailer when bit 0 is set, else 40. Other bits are
// reserved.
func trailerSize(pre []byte) (int, error) {
	flags := binary.LittleEndian.Uint16(pre[10:])
	switch flags {
	case 0:
		return manifestTrailerSize, nil
	case manifestFlagKeyed:
		return keyedTrailerSize, nil
	}
	return 0, corruptf("manifest flags %#04x: only bit 0 is defined", flags)
}

// DecodeManifest decodes and fully checks an encoded manifest: magic,
// version, the trailing hash, table sizes and every invariant the spec
// states. It never trusts a count before checking it against len(b).
func DecodeManifest(b []byte) (*Manifest, error) {
	if len(b) < manifestPreambleSize+manifestTrailerSize {
		if len(b) >= 8 && [8]byte(b[:8]) != manifestMagic {
			return nil, fmt.Errorf("%w: bad manifest magic", ErrFormat)
		}
		return nil, corruptf("manifest is %d bytes: truncated", len(b))
	}
	if [8]byte(b[:8]) != manifestMagic {
		return nil, fmt.Errorf("%w: bad manifest magic", ErrFormat)
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != formatVersion {
		return nil, versionError(int(v))
	}
	if [8]byte(b[len(b)-8:]) != manifestTrailMagic {
		return nil, corruptf("manifest trailer missing: truncated")
	}
	trailer, err := trailerSize(b)
	if err != nil {
		return nil, err
	}
	if len(b) < manifestPreambleSize+trailer {
		return nil, corruptf("manifest is %d bytes: truncated", len(b))
	}
	body := b[:len(b)-trailer]
	m := &Manifest{Hash: sha256.Sum256(body)}
	if [32]byte(b[len(body):len(body)+32]) != m.Hash {
		return nil, corruptf("manifest hash mismatch")
	}
	if binary.LittleEndian.Uint32(b[28:]) != 0 {
		return nil, corruptf("manifest reserved bytes not zero")
	}
	hl := int64(binary.LittleEndian.Uint32(b[12:]))
	nc := binary.LittleEndian.Uint64(b[16:])
	ns := int64(binary.LittleEndian.Uint32(b[24:]))
	if hl > maxHeaderJSON || nc > uint64(len(body))/chunkEntrySize {
		return nil, corruptf("manifest counts exceed its size")
	}
	want := manifestPreambleSize + hl + int64(nc)*chunkEntrySize + ns*segmentEntrySize
	if want != int64(len(body)) {
		return nil, corruptf("manifest is %d bytes, its counts say %d", len(body), want)
	}
	p := body[manifestPreambleSize:]
	dec := json.NewDecoder(bytes.NewReader(p[:hl]))
	if err := dec.Decode(&m.Header); err != nil {
		return nil, corruptf("manifest header: %v", err)
	}
	p = p[hl:]
	if err := m.decodeChunks(p[:int(nc)*chunkEntrySize], int(nc)); err != nil {
		return nil, err
	}
	if err := m.decodeSegments(p[int(nc)*chunkEntrySize:], int(ns)); err != nil {
		return nil, err
	}
	keyed := trailer == keyedTrailerSize
	if keyed != m.Encrypted() {
		return nil, corruptf("manifest flags bit 0 (keyed trailer) is %v but requires %q is %v: they come together", keyed, FeatureAEAD, m.Encrypted())
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	if keyed {
		// Kept until Unseal checks the MAC over them.
		m.body, m.mac = bytes.Clone(body), [32]byte(b[len(body)+32:len(body)+64])
	}
	return m, nil
}

// decodeChunks decodes the chunk table (n entries in b).
func (m *Manifest) decodeChunks(b []byte, n int) error {
	m.Chunks = make([]ChunkEntry, n)
	for i := range m.Chunks {
		e := b[i*chunkEntrySize:]
		c := &m.Chunks[i]
		copy(c.Hash[:], e[:32])
		c.Offset = int64(binary.LittleEndian.Uint64(e[32:]))
		c.Segment = binary.LittleEndian.Uint32(e[40:])
		c.PayloadLen = binary.LittleEndian.Uint32(e[44:])
		c.Kind, c.Codec = Kind(e[48]), Codec(e[49])
		for _, r := range e[50:56] {
			if r != 0 {
				return corruptf("chunk %d: reserved bytes not zero", i)
			}
		}
	}
	return nil
}

// decodeSegments decodes the segment table (n entries in b): data
// entries first, then parity entries.
func (m *Manifest) decodeSegments(b []byte, n int) error {
	all := make([]SegmentSummary, n)
	for i := range all {
		e := b[i*segmentEntrySize:]
		s := &all[i]
		s.Number = binary.LittleEndian.Uint32(e[0:])
		s.Kind = SegmentKind(e[4])
		s.Size = int64(binary.LittleEndian.Uint64(e[8:]))
		s.Frames = binary.LittleEndian.Uint32(e[16:])
		copy(s.IndexHash[:], e[24:56])
		if e[5]|e[6]|e[7]|e[20]|e[21]|e[22]|e[23] != 0 {
			return corruptf("segment entry %d: reserved bytes not zero", i)
		}
	}
	nd := 0
	for nd < len(all) && all[nd].Kind == SegmentData {
		nd++
	}
	m.Segments, m.Parity = all[:nd:nd], all[nd:]
	return nil
}

// validate checks the invariants of spec "Manifest invariants".
func (m *Manifest) validate() error {
	if err := m.validateHeader(); err != nil {
		return err
	}
	if err := m.validateParity(); err != nil {
		return err
	}
	stored, err := m.validateSegments()
	if err != nil {
		return err
	}
	zeros, err := m.validateChunks()
	if err != nil {
		return err
	}
	if h := &m.Header; h.ZeroChunks != zeros || h.StoredBytes != stored {
		return corruptf("header counts (%d zero chunks, %d stored bytes) disagree with the tables (%d, %d)",
			h.ZeroChunks, h.StoredBytes, zeros, stored)
	}
	return nil
}

// validateHeader checks the header JSON's fields (invariant 3).
func (m *Manifest) validateHeader() error {
	h := &m.Header
	if h.Format != "seedship" {
		return corruptf("manifest format field %q", h.Format)
	}
	if h.Version != formatVersion {
		return versionError(h.Version)
	}
	for _, f := range h.Requires {
		if !slices.Contains(supportedFeatures, f) {
			return fmt.Errorf("%w: image requires feature %q, which this seedship does not implement: upgrade seedship", ErrVersion, f)
		}
	}
	if _, err := m.ImageID(); err != nil {
		return err
	}
	if h.ChunkSize < MinChunkSize || h.ChunkSize > MaxChunkSize || h.ChunkSize&(h.ChunkSize-1) != 0 {
		return corruptf("chunk_size %d", h.ChunkSize)
	}
	wantHash := ChunkHashPlain
	if m.Encrypted() {
		wantHash = ChunkHashKeyed
	}
	if h.BlockSize != blockSize || h.BlockDigestLen != blockDigestLen || h.ChunkHash != wantHash {
		return corruptf("block_size %d, block_digest_len %d, chunk_hash %q: this seedship reads %d, %d, %s for this image",
			h.BlockSize, h.BlockDigestLen, h.ChunkHash, blockSize, blockDigestLen, wantHash)
	}
	if h.Size < 0 {
		return corruptf("size %d", h.Size)
	}
	wantChunks := uint64((h.Size + int64(h.ChunkSize) - 1) / int64(h.ChunkSize))
	if uint64(len(m.Chunks)) != wantChunks || h.Chunks != wantChunks {
		return corruptf("%d chunks in table, header says %d, size needs %d", len(m.Chunks), h.Chunks, wantChunks)
	}
	if err := m.validateEncryption(); err != nil {
		return err
	}
	if !m.Encrypted() || m.Unsealed() {
		if b, err := hex.DecodeString(h.SHA256); err != nil || len(b) != sha256.Size || strings.ToLower(h.SHA256) != h.SHA256 {
			return corruptf("sha256 %q is not 64 lowercase hex digits", h.SHA256)
		}
	}
	return h.validateBase()
}

// validateEncryption checks the encryption object: present exactly when
// the image requires "aead", of the scheme this seedship implements, not
// with digest-only, and, read without the keys, no sealed field in the
// clear.
func (m *Manifest) validateEncryption() error {
	h := &m.Header
	enc := m.Encrypted()
	if (h.Encryption != nil) != enc {
		return corruptf("header encryption and the %s feature must come together (encryption present %v, requires %s %v)", FeatureAEAD, h.Encryption != nil, FeatureAEAD, enc)
	}
	if !enc {
		return nil
	}
	if h.RequiresFeature(FeatureDigestOnly) {
		return errDigestOnlyAEAD
	}
	if err := h.Encryption.validate(); err != nil {
		return err
	}
	if !m.Unsealed() {
		return h.checkClear()
	}
	return nil
}

// validateBase checks the delta header: "base" is present exactly when
// the image requires "delta", names a base by well-formed hashes, and is
// not the image itself.
func (h *Header) validateBase() error {
	delta := h.RequiresFeature(FeatureDelta)
	if (h.Base != nil) != delta {
		return corruptf("header base and the delta feature must come together (base present %v, requires delta %v)", h.Base != nil, delta)
	}
	if !delta {
		return nil
	}
	if h.RequiresFeature(FeatureDigestOnly) {
		return corruptf("an image cannot be both a delta and digest-only")
	}
	b := h.Base
	if !isLowerHex(b.ManifestSHA256, sha256.Size) || !isLowerHex(b.ImageID, 16) {
		return corruptf("base names manifest %q, image %q: want 64 and 32 lowercase hex digits", b.ManifestSHA256, b.ImageID)
	}
	if b.DigestsSHA256 != "" && !isLowerHex(b.DigestsSHA256, sha256.Size) {
		return corruptf("base digests_sha256 %q is not 64 lowercase hex digits", b.DigestsSHA256)
	}
	if b.ImageID == h.ImageID {
		return corruptf("delta image %s names itself as its base", h.ImageID)
	}
	return nil
}

// isLowerHex reports whether s is n bytes written as 2n lowercase hex digits.
func isLowerHex(s string, n int) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == n && strings.ToLower(s) == s
}

// validateSegments checks the data segment table (invariant 4) and
// returns the sum of the data segments' sizes.
func (m *Manifest) validateSegments() (stored int64, err error) {
	for i, s := range m.Segments {
		if s.Kind != SegmentData {
			return 0, corruptf("segment entry %d: kind %d", i, s.Kind)
		}
		if i > 0 && s.Number <= m.Segments[i-1].Number {
			return 0, corruptf("segment table not in increasing order at entry %d", i)
		}
		if s.Number > maxSegmentNumber {
			return 0, corruptf("segment number %d above %d", s.Number, maxSegmentNumber)
		}
		if s.Size < SegmentHeaderSize+FooterSize {
			return 0, corruptf("segment %d: size %d", s.Number, s.Size)
		}
		stored += s.Size
	}
	return stored, nil
}

// GroupWidth returns how many data segments the writer grew together
// (spec §5.5): K with parity, the header's width without (1 if absent).
func (m *Manifest) GroupWidth() int {
	if g, ok := m.Geometry(); ok {
		return g.K
	}
	return max(m.Header.Width, 1)
}

// validateChunks checks the chunk table (invariant 5) and returns the
// number of zero chunks.
func (m *Manifest) validateChunks() (zeros uint64, err error) {
	zeroHash := map[int64]Hash{}
	encrypted := m.Encrypted()
	frames := make(map[uint32]uint32, len(m.Segments))
	next := make(map[uint32]int64, len(m.Segments)) // where each segment's next frame starts
	width := uint32(m.GroupWidth())
	var group uint32 // the group of the last stored chunk
	for i := range m.Chunks {
		c := &m.Chunks[i]
		_, rawLen := m.ChunkRange(uint64(i))
		switch c.Kind {
		case KindZero:
			zeros++
			zh, ok := zeroHash[rawLen]
			if !ok && !encrypted {
				zh = ZeroChunkHash(int(rawLen))
				zeroHash[rawLen] = zh
			} // an encrypted image's zero chunks record 32 zero bytes (spec §11.4)
			if c.Segment != 0 || c.Offset != 0 || c.PayloadLen != 0 || c.Codec != 0 || c.Hash != zh {
				return 0, corruptf("zero chunk %d has a stored location or a non-zero hash", i)
			}
		case KindStored:
			if err := m.validateStored(i, rawLen, next); err != nil {
				return 0, err
			}
			// A group's frames all come before the next group's.
			g := c.Segment / width
			if g < group {
				return 0, corruptf("chunk %d in segment %d, a group before the previous chunk's", i, c.Segment)
			}
			group = g
			next[c.Segment] = c.Offset + c.FrameLen()
			frames[c.Segment]++
		case KindBase:
			if !m.Header.RequiresFeature(FeatureDelta) {
				return 0, corruptf("chunk %d: kind base in an image that is not a delta", i)
			}
			if c.Segment != 0 || c.Offset != 0 || c.PayloadLen != 0 || c.Codec != 0 {
				return 0, corruptf("base chunk %d has a stored location", i)
			}
		default:
			return 0, corruptf("chunk %d: kind %d not valid in this image", i, c.Kind)
		}
	}
	for _, s := range m.Segments {
		if frames[s.Number] != s.Frames || s.Frames == 0 {
			return 0, corruptf("segment %d: table says %d frames, chunk table places %d", s.Number, s.Frames, frames[s.Number])
		}
	}
	return zeros, m.validateGroups()
}

// validateGroups checks the grouping of data segments (spec §5.5) when
// segments were grown together: segments numbered 0 … D−1, and a last
// group with fewer segments than the width only when it held fewer
// frames, one in each.
func (m *Manifest) validateGroups() error {
	width := m.GroupWidth()
	if width == 1 {
		return nil
	}
	if _, ok := m.Geometry(); !ok && width > MaxGroupWidth {
		return corruptf("width %d above %d", width, MaxGroupWidth)
	}
	for i, s := range m.Segments {
		if s.Number != uint32(i) {
			return corruptf("data segment %d numbered %d in an image of groups of %d", i, s.Number, width)
		}
	}
	short := len(m.Segments) % width
	for _, s := range m.Segments[len(m.Segments)-short:] {
		if s.Frames != 1 {
			return corruptf("data segment %d: the last group has %d of %d segments, but %d frames in this one", s.Number, short, width, s.Frames)
		}
	}
	return nil
}

// validateStored checks one stored chunk's entry; next holds where the
// next frame of each segment that already has one starts.
func (m *Manifest) validateStored(i int, rawLen int64, next map[uint32]int64) error {
	c := &m.Chunks[i]
	seg, ok := m.dataSegment(c.Segment)
	if !ok {
		return corruptf("chunk %d in segment %d, which is not in the segment table", i, c.Segment)
	}
	if !c.Codec.valid() {
		return corruptf("chunk %d: codec %d", i, c.Codec)
	}
	if enc := m.Encrypted(); c.Codec.Sealed() != enc {
		return corruptf("chunk %d: codec %s in an image that is %sencrypted", i, c.Codec, map[bool]string{true: "", false: "not "}[enc])
	}
	if digestOnly := m.Header.RequiresFeature(FeatureDigestOnly); digestOnly != (c.Codec == CodecDigestOnly) {
		return corruptf("chunk %d: codec %s in an image that is %sdigest-only", i, c.Codec, map[bool]string{true: "", false: "not "}[digestOnly])
	}
	if c.Codec == CodecDigestOnly && c.PayloadLen != 0 {
		return corruptf("chunk %d: digest-only with a %d-byte payload", i, c.PayloadLen)
	}
	if !PayloadLenOK(c.Codec, c.PayloadLen, rawLen) {
		return corruptf("chunk %d: payload length %d for %d raw bytes", i, c.PayloadLen, rawLen)
	}
	// Each segment's frames lie back to back in chunk order, from the
	// end of its header.
	want, ok := next[c.Segment]
	if !ok {
		want = SegmentHeaderSize
	}
	if c.Offset != want {
		return corruptf("chunk %d at offset %d of segment %d, expected %d", i, c.Offset, c.Segment, want)
	}
	if c.Offset+c.FrameLen() > seg.Size-FooterSize {
		return corruptf("chunk %d runs past the end of segment %d", i, c.Segment)
	}
	return nil
}

// Geometry returns the image's parity geometry, if it has parity.
func (m *Manifest) Geometry() (Geometry, bool) {
	p := m.Header.Parity
	if p == nil {
		return Geometry{}, false
	}
	return Geometry{K: p.Data, M: p.Parity, RowSize: p.RowSize}, true
}

// Stripes returns the number of parity stripes.
func (m *Manifest) Stripes() int {
	g, ok := m.Geometry()
	if !ok || len(m.Segments) == 0 {
		return 0
	}
	last := m.Segments[len(m.Segments)-1].Number
	s, _ := g.Stripe(DataID(last))
	return int(s) + 1
}

// ParitySegment returns the summary of parity segment n, as
// Summary(ParityID(n)) does (kept while callers move to Summary).
func (m *Manifest) paritySegment(n uint32) (SegmentSummary, bool) { return findSegment(m.Parity, n) }

func (m *Manifest) validateParity() error {
	h := &m.Header
	has := slices.Contains(h.Requires, featureParity)
	if (h.Parity != nil) != has {
		return corruptf("parity field and requires list disagree")
	}
	if h.Parity == nil {
		if len(m.Parity) != 0 || h.ParityBytes != 0 {
			return corruptf("%d parity segments in an image without parity", len(m.Parity))
		}
		if h.Width < 0 || h.Width > MaxGroupWidth {
			return corruptf("width %d: want 1 to %d", h.Width, MaxGroupWidth)
		}
		return nil
	}
	if h.Width != 0 {
		return corruptf("width %d in a parity image, whose groups are its stripes", h.Width)
	}
	g, _ := m.Geometry()
	if err := g.Validate(); err != nil {
		return corruptf("%v", err)
	}
	if h.Parity.Matrix != parityMatrix {
		return fmt.Errorf("%w: parity matrix %q, this seedship implements %q", ErrVersion, h.Parity.Matrix, parityMatrix)
	}
	// Data segments are numbered 0, 1, 2, ... so stripes are complete
	// but for the last.
	for i, s := range m.Segments {
		if s.Number != uint32(i) {
			return corruptf("parity image: data segment %d numbered %d", i, s.Number)
		}
	}
	var pb int64
	for _, s := range m.Parity {
		pb += s.Size
	}
	if pb != h.ParityBytes {
		return corruptf("parity_bytes %d, parity segments hold %d", h.ParityBytes, pb)
	}
	if len(m.Parity) != m.Stripes()*g.M {
		return corruptf("%d parity segments for %d stripes of %d+%d", len(m.Parity), m.Stripes(), g.K, g.M)
	}
	for i, s := range m.Parity {
		if s.Kind != SegmentParity || s.Number != uint32(i) || s.Frames != 0 || s.Size < SegmentHeaderSize+FooterSize {
			return corruptf("parity segment entry %d invalid", i)
		}
	}
	return nil
}

// CopyKeys returns the keys of the redundant manifest copies the image
// carries (spec §9.5): one per parity shard for parity images, none
// otherwise.
func (m *Manifest) CopyKeys() []string {
	g, ok := m.Geometry()
	if !ok {
		return nil
	}
	keys := make([]string, g.M)
	for i := range keys {
		keys[i] = manifestCopyKey(i + 1)
	}
	return keys
}

// Summary returns the manifest's entry for segment id.
func (m *Manifest) Summary(id SegmentID) (SegmentSummary, bool) {
	if id.Kind == SegmentParity {
		return findSegment(m.Parity, id.Number)
	}
	return findSegment(m.Segments, id.Number)
}

// SegmentIDs returns every segment of the image: the data segments, then
// the parity segments, each in increasing number.
func (m *Manifest) SegmentIDs() []SegmentID {
	out := make([]SegmentID, 0, len(m.Segments)+len(m.Parity))
	for _, s := range m.Segments {
		out = append(out, DataID(s.Number))
	}
	for _, s := range m.Parity {
		out = append(out, ParityID(s.Number))
	}
	return out
}

// indexLen returns the length the index of data segment n must have: one
// entry of indexEntryFixed bytes plus 8 bytes per block for each of its
// chunks. A reader compares it with the footer before allocating the index.
func (m *Manifest) indexLen(chunks []uint64) int64 {
	var n int64
	for _, i := range chunks {
		_, length := m.ChunkRange(i)
		n += indexEntryFixed + int64(NumBlocks(int(length)))*int64(blockDigestLen)
	}
	return n
}
