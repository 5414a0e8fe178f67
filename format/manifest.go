package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"
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
	ChunkHash      string      `json:"chunk_hash"` // "sha256-tree"
	SegmentSize    int64       `json:"segment_size"`
	Compression    Compression `json:"compression"`
	SHA256         string      `json:"sha256"` // whole raw source, hex
	Source         Source      `json:"source"`
	CaptureStart   time.Time   `json:"capture_start"`
	CaptureEnd     time.Time   `json:"capture_end"`
	Chunks         uint64      `json:"chunks"`
	ZeroChunks     uint64      `json:"zero_chunks"`
	StoredBytes    int64       `json:"stored_bytes"`           // bytes of all data segments
	ParityBytes    int64       `json:"parity_bytes,omitempty"` // bytes of all parity segments
	Parity         *Parity     `json:"parity,omitempty"`
	Base           *Base       `json:"base,omitempty"`
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
	Path       string   `json:"path"`
	Kind       string   `json:"kind"` // "block" or "file"
	Size       int64    `json:"size"`
	SectorSize int      `json:"sector_size,omitempty"`
	Serial     string   `json:"serial,omitempty"`
	WWN        string   `json:"wwn,omitempty"`
	Model      string   `json:"model,omitempty"`
	ByID       []string `json:"by_id,omitempty"`
	Host       string   `json:"host,omitempty"`
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
	ManifestSHA256 string `json:"manifest_sha256"`
	ImageID        string `json:"image_id"`
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
// [Manifest.Encode] and [DecodeManifest].
type Manifest struct {
	Header   Header
	Chunks   []ChunkEntry
	Segments []SegmentSummary // data segments, by number
	Parity   []SegmentSummary // parity segments, by number (parity images)
	Hash     Hash
}

// supportedFeatures lists the Requires entries this reader implements.
var supportedFeatures = []string{FeatureParity}

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

// Segment returns the summary of data segment n.
func (m *Manifest) Segment(n uint32) (SegmentSummary, bool) { return findSegment(m.Segments, n) }

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

// Encode writes the manifest to w and sets m.Hash.
func (m *Manifest) Encode(w io.Writer) error {
	b, err := m.Marshal()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Marshal returns the encoded manifest and sets m.Hash.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("format: refusing to write an invalid manifest: %w", err)
	}
	hj, err := json.Marshal(&m.Header)
	if err != nil {
		return nil, fmt.Errorf("format: manifest header: %w", err)
	}
	nseg := len(m.Segments) + len(m.Parity)
	n := manifestPreambleSize + len(hj) + len(m.Chunks)*chunkEntrySize + nseg*segmentEntrySize + manifestTrailerSize
	b := make([]byte, 0, n)
	var pre [manifestPreambleSize]byte
	copy(pre[:], manifestMagic[:])
	binary.LittleEndian.PutUint16(pre[8:], Version)
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
		se[4] = s.Kind
		binary.LittleEndian.PutUint64(se[8:], uint64(s.Size))
		binary.LittleEndian.PutUint32(se[16:], s.Frames)
		copy(se[24:], s.IndexHash[:])
		b = append(b, se[:]...)
	}
	m.Hash = sha256.Sum256(b)
	b = append(b, m.Hash[:]...)
	b = append(b, manifestTrailMagic[:]...)
	return b, nil
}

// ReadManifest reads a whole manifest from r (at most MaxManifestSize
// bytes) and decodes it.
func ReadManifest(r io.Reader) (*Manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("format: read manifest: %w", err)
	}
	if len(b) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest over %d bytes", ErrTooLarge, MaxManifestSize)
	}
	return DecodeManifest(b)
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
	if v := binary.LittleEndian.Uint16(b[8:]); v != Version {
		return nil, fmt.Errorf("%w: manifest version %d, this seedship reads version %d", ErrVersion, v, Version)
	}
	if [8]byte(b[len(b)-8:]) != manifestTrailMagic {
		return nil, corruptf("manifest trailer missing: truncated")
	}
	body := b[:len(b)-manifestTrailerSize]
	m := &Manifest{Hash: sha256.Sum256(body)}
	if [32]byte(b[len(b)-manifestTrailerSize:len(b)-8]) != m.Hash {
		return nil, corruptf("manifest hash mismatch")
	}
	if binary.LittleEndian.Uint16(b[10:]) != 0 || binary.LittleEndian.Uint32(b[28:]) != 0 {
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
	m.Chunks = make([]ChunkEntry, nc)
	for i := range m.Chunks {
		e := p[i*chunkEntrySize:]
		c := &m.Chunks[i]
		copy(c.Hash[:], e[:32])
		c.Offset = int64(binary.LittleEndian.Uint64(e[32:]))
		c.Segment = binary.LittleEndian.Uint32(e[40:])
		c.PayloadLen = binary.LittleEndian.Uint32(e[44:])
		c.Kind, c.Codec = Kind(e[48]), Codec(e[49])
		for _, r := range e[50:56] {
			if r != 0 {
				return nil, corruptf("chunk %d: reserved bytes not zero", i)
			}
		}
	}
	p = p[int(nc)*chunkEntrySize:]
	all := make([]SegmentSummary, ns)
	for i := range all {
		e := p[i*segmentEntrySize:]
		s := &all[i]
		s.Number = binary.LittleEndian.Uint32(e[0:])
		s.Kind = e[4]
		s.Size = int64(binary.LittleEndian.Uint64(e[8:]))
		s.Frames = binary.LittleEndian.Uint32(e[16:])
		copy(s.IndexHash[:], e[24:56])
		if e[5]|e[6]|e[7]|e[20]|e[21]|e[22]|e[23] != 0 {
			return nil, corruptf("segment entry %d: reserved bytes not zero", i)
		}
	}
	// Data entries come first, then parity entries.
	nd := 0
	for nd < len(all) && all[nd].Kind == SegmentData {
		nd++
	}
	m.Segments, m.Parity = all[:nd:nd], all[nd:]
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// validate checks the invariants of spec "Manifest invariants".
func (m *Manifest) validate() error {
	h := &m.Header
	if h.Format != "seedship" {
		return corruptf("manifest format field %q", h.Format)
	}
	if h.Version != Version {
		return fmt.Errorf("%w: manifest header version %d", ErrVersion, h.Version)
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
	if h.BlockSize != BlockSize || h.BlockDigestLen != BlockDigestLen || h.ChunkHash != "sha256-tree" {
		return corruptf("block_size %d, block_digest_len %d, chunk_hash %q: this seedship reads %d, %d, sha256-tree",
			h.BlockSize, h.BlockDigestLen, h.ChunkHash, BlockSize, BlockDigestLen)
	}
	if h.Size < 0 {
		return corruptf("size %d", h.Size)
	}
	wantChunks := uint64((h.Size + int64(h.ChunkSize) - 1) / int64(h.ChunkSize))
	if uint64(len(m.Chunks)) != wantChunks || h.Chunks != wantChunks {
		return corruptf("%d chunks in table, header says %d, size needs %d", len(m.Chunks), h.Chunks, wantChunks)
	}
	if len(h.SHA256) != 64 {
		return corruptf("sha256 %q", h.SHA256)
	}
	var zeros uint64
	var stored int64
	if err := m.validateParity(); err != nil {
		return err
	}
	for i, s := range m.Segments {
		if s.Kind != SegmentData {
			return corruptf("segment entry %d: kind %d", i, s.Kind)
		}
		if i > 0 && s.Number <= m.Segments[i-1].Number {
			return corruptf("segment table not in increasing order at entry %d", i)
		}
		if s.Size < SegmentHeaderSize+FooterSize {
			return corruptf("segment %d: size %d", s.Number, s.Size)
		}
		stored += s.Size
	}
	zeroHash := map[int64]Hash{}
	frames := make(map[uint32]uint32, len(m.Segments))
	var prevSeg uint32
	var prevEnd int64
	for i := range m.Chunks {
		c := &m.Chunks[i]
		_, rawLen := m.ChunkRange(uint64(i))
		switch c.Kind {
		case KindZero:
			zeros++
			if c.Segment != 0 || c.Offset != 0 || c.PayloadLen != 0 || c.Codec != 0 {
				return corruptf("zero chunk %d has a stored location", i)
			}
			zh, ok := zeroHash[rawLen]
			if !ok {
				zh = ZeroChunkHash(int(rawLen))
				zeroHash[rawLen] = zh
			}
			if c.Hash != zh {
				return corruptf("zero chunk %d has a non-zero hash", i)
			}
		case KindStored:
			seg, ok := m.Segment(c.Segment)
			if !ok {
				return corruptf("chunk %d in segment %d, which is not in the segment table", i, c.Segment)
			}
			if !c.Codec.Valid() {
				return corruptf("chunk %d: codec %d", i, c.Codec)
			}
			if c.PayloadLen > maxPayload(int(rawLen)) || (c.Codec == CodecRaw && int64(c.PayloadLen) != rawLen) {
				return corruptf("chunk %d: payload length %d for %d raw bytes", i, c.PayloadLen, rawLen)
			}
			// Frames are laid out in chunk order, back to back.
			if c.Segment == prevSeg && prevEnd != 0 {
				if c.Offset != prevEnd {
					return corruptf("chunk %d at offset %d of segment %d, expected %d", i, c.Offset, c.Segment, prevEnd)
				}
			} else if c.Segment < prevSeg || c.Offset != SegmentHeaderSize {
				return corruptf("chunk %d starts segment %d at offset %d", i, c.Segment, c.Offset)
			}
			prevSeg, prevEnd = c.Segment, c.Offset+c.FrameLen()
			if prevEnd > seg.Size-FooterSize {
				return corruptf("chunk %d runs past the end of segment %d", i, c.Segment)
			}
			frames[c.Segment]++
		default:
			return corruptf("chunk %d: kind %d not valid in this image", i, c.Kind)
		}
	}
	for _, s := range m.Segments {
		if frames[s.Number] != s.Frames || s.Frames == 0 {
			return corruptf("segment %d: table says %d frames, chunk table places %d", s.Number, s.Frames, frames[s.Number])
		}
	}
	if h.ZeroChunks != zeros || h.StoredBytes != stored {
		return corruptf("header counts (%d zero chunks, %d stored bytes) disagree with the tables (%d, %d)",
			h.ZeroChunks, h.StoredBytes, zeros, stored)
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
	s, _ := g.Stripe(last)
	return int(s) + 1
}

// ParitySegment returns the summary of parity segment n.
func (m *Manifest) ParitySegment(n uint32) (SegmentSummary, bool) { return findSegment(m.Parity, n) }

func (m *Manifest) validateParity() error {
	h := &m.Header
	has := slices.Contains(h.Requires, FeatureParity)
	if (h.Parity != nil) != has {
		return corruptf("parity field and requires list disagree")
	}
	if h.Parity == nil {
		if len(m.Parity) != 0 || h.ParityBytes != 0 {
			return corruptf("%d parity segments in an image without parity", len(m.Parity))
		}
		return nil
	}
	g, _ := m.Geometry()
	if err := g.Validate(); err != nil {
		return corruptf("%v", err)
	}
	if h.Parity.Matrix != ParityMatrix {
		return fmt.Errorf("%w: parity matrix %q, this seedship implements %q", ErrVersion, h.Parity.Matrix, ParityMatrix)
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
		keys[i] = ManifestCopyKey(i + 1)
	}
	return keys
}
