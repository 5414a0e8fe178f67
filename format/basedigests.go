package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// The base-digest table of a delta image (key BaseDigestsKey, spec §12):
// for every chunk the delta writes, the block digests the target must
// hold there before the delta is applied (the base image's bytes). Its
// SHA-256 is the header's base.digests_sha256, so the manifest hash
// authenticates it. It is streamed: a delta's writer appends entries as
// the source is read, and a restore checks the target entry by entry,
// never holding the table.
const (
	baseDigestsMagic   = "SSBASEDG"
	baseDigestsEndMark = "SSBDGEND"
	baseDigestsVersion = 1
	// BaseDigestsHeaderSize and BaseDigestsTrailerSize are the fixed
	// parts of the table; an entry is baseDigestsEntrySize bytes plus 8
	// per block digest.
	BaseDigestsHeaderSize  = 40
	BaseDigestsTrailerSize = 24
	baseDigestsEntrySize   = 16
	// baseDigestsEndIndex marks the trailer where an entry's chunk index
	// would be: no chunk has this index.
	baseDigestsEndIndex = ^uint64(0)
)

// BaseDigestsHeader is the geometry a base-digest table is about: the
// delta's chunk size and size, and the size of the base image. The
// number of block digests of each entry follows from them
// ([BaseDigestsHeader.BaseBlocks]).
type BaseDigestsHeader struct {
	ChunkSize int   // the delta's chunk size C
	Size      int64 // the delta's size S (the changed source's)
	BaseSize  int64 // the base image's size; at most Size
}

// Validate checks the geometry against the format's limits.
func (h BaseDigestsHeader) Validate() error {
	if h.ChunkSize < MinChunkSize || h.ChunkSize > MaxChunkSize || h.ChunkSize&(h.ChunkSize-1) != 0 {
		return corruptf("base digests: chunk size %d", h.ChunkSize)
	}
	if h.Size < 0 || h.BaseSize < 0 || h.BaseSize > h.Size || h.Size > 1<<62 {
		return corruptf("base digests: size %d, base size %d (want 0 ≤ base size ≤ size ≤ 2^62)", h.Size, h.BaseSize)
	}
	return nil
}

// Chunks returns the number of chunks of the delta.
func (h BaseDigestsHeader) Chunks() uint64 {
	return uint64((h.Size + int64(h.ChunkSize) - 1) / int64(h.ChunkSize))
}

// BaseBlocks returns how many block digests the entry of chunk i holds:
// the 64 KiB blocks of the chunk that begin below the base's size (a
// grown source's chunks past the base's end have none; the last of them
// may cover a short base block).
func (h BaseDigestsHeader) BaseBlocks(i uint64) int {
	start := int64(i) * int64(h.ChunkSize)
	end := min(start+int64(h.ChunkSize), h.Size)
	first := start / blockSize
	last := (min(end, h.BaseSize) + blockSize - 1) / blockSize // blocks that begin below both ends
	return int(max(0, last-first))
}

// BaseDigestsEntry is one entry of the table: chunk Chunk of the delta
// is written by it, and before that its blocks must hold Blocks (the
// base's digests of the same byte ranges, the last possibly of a short
// block at the base's end).
type BaseDigestsEntry struct {
	Chunk  uint64
	Blocks []BlockDigest
}

// BaseDigestsWriter writes a base-digest table front to back.
type BaseDigestsWriter struct {
	w     io.Writer
	sum   hash.Hash
	hdr   BaseDigestsHeader
	count uint64
	next  uint64 // the smallest chunk index the next entry may have
	buf   []byte
	err   error
}

// NewBaseDigestsWriter writes the table's header to w and returns the
// writer of its entries.
func NewBaseDigestsWriter(w io.Writer, hdr BaseDigestsHeader) (*BaseDigestsWriter, error) {
	return newBaseDigestsWriter(w, hdr, 0)
}

// NewKeyedBaseDigestsWriter is NewBaseDigestsWriter for an encrypted
// delta (spec §12): its digests are the base's keyed block digests, bound
// to their place in the base's chunks, so the table records the base's
// chunk size, with which a restore computes the target's digests at the
// same places.
func NewKeyedBaseDigestsWriter(w io.Writer, hdr BaseDigestsHeader, baseChunkSize int) (*BaseDigestsWriter, error) {
	if !validChunkSize(baseChunkSize) {
		return nil, fmt.Errorf("format: base chunk size %d", baseChunkSize)
	}
	return newBaseDigestsWriter(w, hdr, baseChunkSize)
}

func newBaseDigestsWriter(w io.Writer, hdr BaseDigestsHeader, baseChunkSize int) (*BaseDigestsWriter, error) {
	if err := hdr.Validate(); err != nil {
		return nil, err
	}
	bw := &BaseDigestsWriter{sum: sha256.New(), hdr: hdr}
	bw.w = io.MultiWriter(w, bw.sum)
	b := make([]byte, BaseDigestsHeaderSize)
	copy(b, baseDigestsMagic)
	binary.LittleEndian.PutUint16(b[8:], baseDigestsVersion)
	binary.LittleEndian.PutUint32(b[12:], uint32(hdr.ChunkSize))
	binary.LittleEndian.PutUint64(b[16:], uint64(hdr.Size))
	binary.LittleEndian.PutUint64(b[24:], uint64(hdr.BaseSize))
	binary.LittleEndian.PutUint32(b[32:], uint32(baseChunkSize))
	if _, err := bw.w.Write(b); err != nil {
		return nil, err
	}
	return bw, nil
}

// Add appends the entry of chunk i, which must follow the previous
// entry's chunk, with exactly hdr.BaseBlocks(i) digests.
func (bw *BaseDigestsWriter) Add(i uint64, blocks []BlockDigest) error {
	if bw.err != nil {
		return bw.err
	}
	if i < bw.next || i >= bw.hdr.Chunks() {
		return fmt.Errorf("format: base digests entry for chunk %d out of order or past chunk %d", i, bw.hdr.Chunks())
	}
	if want := bw.hdr.BaseBlocks(i); len(blocks) != want {
		return fmt.Errorf("format: base digests entry for chunk %d has %d block digests, want %d", i, len(blocks), want)
	}
	b := bw.buf[:0]
	b = binary.LittleEndian.AppendUint64(b, i)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(blocks)))
	b = binary.LittleEndian.AppendUint32(b, 0)
	for _, d := range blocks {
		b = append(b, d[:]...)
	}
	bw.buf = b
	if _, bw.err = bw.w.Write(b); bw.err != nil {
		return bw.err
	}
	bw.count++
	bw.next = i + 1
	return nil
}

// Close writes the trailer. It does not close the underlying writer.
func (bw *BaseDigestsWriter) Close() error {
	if bw.err != nil {
		return bw.err
	}
	b := make([]byte, BaseDigestsTrailerSize)
	binary.LittleEndian.PutUint64(b, baseDigestsEndIndex)
	binary.LittleEndian.PutUint64(b[8:], bw.count)
	copy(b[16:], baseDigestsEndMark)
	_, bw.err = bw.w.Write(b)
	if bw.err == nil {
		bw.err = errWriterClosed
		return nil
	}
	return bw.err
}

// Sum returns the SHA-256 of everything written so far: after Close, the
// table's hash for the header's base.digests_sha256.
func (bw *BaseDigestsWriter) Sum() Hash { return Hash(bw.sum.Sum(nil)) }

// Header returns the table's geometry.
func (bw *BaseDigestsWriter) Header() BaseDigestsHeader { return bw.hdr }

// Entries returns the number of entries added.
func (bw *BaseDigestsWriter) Entries() uint64 { return bw.count }

// BaseDigestsReader reads a base-digest table front to back, checking
// every field as it goes; each entry costs at most 8 KiB of memory
// (1,024 digests of a 64 MiB chunk), whatever the table's length.
// Entries are not authenticated until [BaseDigestsReader.Next] has
// returned io.EOF and the caller compared [BaseDigestsReader.Sum] with
// the manifest's base.digests_sha256: use them only to decide, never to
// write, before then.
type BaseDigestsReader struct {
	r      io.Reader
	sum    hash.Hash
	hdr    BaseDigestsHeader
	count  uint64
	next   uint64
	buf    []byte
	blocks []BlockDigest
	done   bool
	// baseChunk is a keyed table's base chunk size, 0 in a plaintext one.
	baseChunk int
}

// NewBaseDigestsReader reads and checks the table's header from r.
func NewBaseDigestsReader(r io.Reader) (*BaseDigestsReader, error) {
	br := &BaseDigestsReader{sum: sha256.New()}
	br.r = io.TeeReader(r, br.sum)
	b := make([]byte, BaseDigestsHeaderSize)
	if _, err := io.ReadFull(br.r, b); err != nil {
		return nil, shortTable(err)
	}
	if string(b[:8]) != baseDigestsMagic {
		return nil, fmt.Errorf("%w: base digests: bad magic %q", ErrFormat, b[:8])
	}
	if v := binary.LittleEndian.Uint16(b[8:]); v != baseDigestsVersion {
		return nil, fmt.Errorf("%w: base digests version %d", ErrVersion, v)
	}
	if binary.LittleEndian.Uint16(b[10:]) != 0 || binary.LittleEndian.Uint32(b[36:]) != 0 {
		return nil, corruptf("base digests: reserved header bytes not zero")
	}
	if bc := int(binary.LittleEndian.Uint32(b[32:])); bc != 0 {
		if !validChunkSize(bc) {
			return nil, corruptf("base digests: base chunk size %d", bc)
		}
		br.baseChunk = bc
	}
	size, base := binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])
	if size > 1<<62 || base > 1<<62 {
		return nil, corruptf("base digests: size %d, base size %d", size, base)
	}
	br.hdr = BaseDigestsHeader{ChunkSize: int(binary.LittleEndian.Uint32(b[12:])), Size: int64(size), BaseSize: int64(base)}
	if err := br.hdr.Validate(); err != nil {
		return nil, err
	}
	br.buf = make([]byte, baseDigestsEntrySize)
	return br, nil
}

// Header returns the table's geometry.
func (br *BaseDigestsReader) Header() BaseDigestsHeader { return br.hdr }

// BaseChunkSize returns the base's chunk size recorded by a keyed table
// (an encrypted delta's: its digests are bound to the base's chunks),
// or 0 for a plaintext table, whose digests are not bound to a place.
func (br *BaseDigestsReader) BaseChunkSize() int { return br.baseChunk }

// Next returns the next entry; its Blocks are valid until the next call.
// After the last entry it checks the trailer (the entry count, the end
// mark, nothing after it) and returns io.EOF. Damage wraps ErrCorrupt.
func (br *BaseDigestsReader) Next() (BaseDigestsEntry, error) {
	if br.done {
		return BaseDigestsEntry{}, io.EOF
	}
	b := br.buf[:baseDigestsEntrySize]
	if _, err := io.ReadFull(br.r, b); err != nil {
		return BaseDigestsEntry{}, shortTable(err)
	}
	i := binary.LittleEndian.Uint64(b)
	if i == baseDigestsEndIndex {
		return BaseDigestsEntry{}, br.trailer(b)
	}
	nb := binary.LittleEndian.Uint32(b[8:])
	if binary.LittleEndian.Uint32(b[12:]) != 0 {
		return BaseDigestsEntry{}, corruptf("base digests: entry for chunk %d: reserved bytes not zero", i)
	}
	if i < br.next || i >= br.hdr.Chunks() {
		return BaseDigestsEntry{}, corruptf("base digests: entry for chunk %d out of order or past chunk %d", i, br.hdr.Chunks())
	}
	// Checked against the geometry before anything is read by it, so
	// an entry never costs more than one chunk's digests.
	if want := br.hdr.BaseBlocks(i); int(nb) != want {
		return BaseDigestsEntry{}, corruptf("base digests: entry for chunk %d has %d block digests, want %d", i, nb, want)
	}
	raw := make([]byte, 8*int(nb))
	if _, err := io.ReadFull(br.r, raw); err != nil {
		return BaseDigestsEntry{}, shortTable(err)
	}
	br.blocks = br.blocks[:0]
	for k := range int(nb) {
		br.blocks = append(br.blocks, BlockDigest(raw[8*k:8*k+8]))
	}
	br.count++
	br.next = i + 1
	return BaseDigestsEntry{Chunk: i, Blocks: br.blocks}, nil
}

// trailer checks the trailer, whose first 8 bytes (the end index) are in
// b, and that nothing follows it.
func (br *BaseDigestsReader) trailer(b []byte) error {
	rest := make([]byte, BaseDigestsTrailerSize-8)
	copy(rest, b[8:])
	if _, err := io.ReadFull(br.r, rest[len(b)-8:]); err != nil {
		return shortTable(err)
	}
	if n := binary.LittleEndian.Uint64(rest); n != br.count {
		return corruptf("base digests: trailer counts %d entries, the table has %d", n, br.count)
	}
	if string(rest[8:]) != baseDigestsEndMark {
		return corruptf("base digests: bad end mark %q", rest[8:])
	}
	var one [1]byte
	switch _, err := io.ReadAtLeast(br.r, one[:], 1); {
	case err == nil:
		return corruptf("base digests: bytes after the trailer")
	case !errors.Is(err, io.EOF):
		return err
	}
	br.done = true
	return io.EOF
}

// Sum returns the SHA-256 of the bytes read so far: once Next returned
// io.EOF, the whole table's.
func (br *BaseDigestsReader) Sum() Hash { return Hash(br.sum.Sum(nil)) }

// Entries returns the number of entries read so far.
func (br *BaseDigestsReader) Entries() uint64 { return br.count }

// shortTable turns a read that ended early into damage (a truncated
// table); other read errors are returned as they are.
func shortTable(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: base digests truncated: %w", ErrMissing, io.ErrUnexpectedEOF)
	}
	return err
}

// WalkBaseDigests reads the rest of the table br and checks it against
// the delta manifest m: the table's geometry (chunk size and size) is the
// manifest's, there is one entry for every chunk of kind zero or stored
// and none for another, and, at its end, its SHA-256 is the header's
// base.digests_sha256. fn sees each entry (valid during the call) before
// the table is authenticated: it may decide, never write, until
// WalkBaseDigests returns nil; its error ends the walk. Damage wraps
// ErrCorrupt, ErrChecksum or ErrMissing.
func WalkBaseDigests(br *BaseDigestsReader, m *Manifest, fn func(BaseDigestsEntry) error) error {
	if m.Header.Base == nil {
		return fmt.Errorf("format: image %s is not a delta: it has no base digests", m.Header.ImageID)
	}
	if g := br.Header(); g.ChunkSize != m.Header.ChunkSize || g.Size != m.Header.Size {
		return corruptf("base digests for chunks of %d bytes of a %d-byte source, the delta has %d and %d",
			g.ChunkSize, g.Size, m.Header.ChunkSize, m.Header.Size)
	}
	if keyed := br.BaseChunkSize() != 0; keyed != m.Encrypted() {
		return corruptf("base digests keyed %v (base chunk size %d), but the delta's encryption is %v: an encrypted delta's table holds keyed digests, a plaintext one's plain",
			keyed, br.BaseChunkSize(), m.Encrypted())
	}
	next := uint64(0)
	for {
		e, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if w, ok := m.nextWritten(next); !ok || w != e.Chunk {
			return corruptf("base digests entry for chunk %d, but the delta writes chunk %d next", e.Chunk, w)
		}
		next = e.Chunk + 1
		if err := fn(e); err != nil {
			return err
		}
	}
	if w, ok := m.nextWritten(next); ok {
		return corruptf("no base digests entry for chunk %d, which the delta writes", w)
	}
	if sum := br.Sum(); hex.EncodeToString(sum[:]) != m.Header.Base.DigestsSHA256 {
		return fmt.Errorf("%w: base digests SHA-256 %x is not the manifest's base.digests_sha256 %q", ErrChecksum, sum, m.Header.Base.DigestsSHA256)
	}
	return nil
}

// CheckBaseDigests reads a whole base-digest table from r and checks it
// against the delta manifest m (see WalkBaseDigests): what verify and copy
// of a delta image do with it.
func CheckBaseDigests(r io.Reader, m *Manifest) error {
	br, err := NewBaseDigestsReader(r)
	if err != nil {
		return err
	}
	return WalkBaseDigests(br, m, func(BaseDigestsEntry) error { return nil })
}

// nextWritten returns the first chunk from i on that a delta writes (any
// kind but base).
func (m *Manifest) nextWritten(i uint64) (uint64, bool) {
	for ; i < uint64(len(m.Chunks)); i++ {
		if m.Chunks[i].Kind != KindBase {
			return i, true
		}
	}
	return 0, false
}

// EncodeBaseDigests encodes a whole table in memory (tests, small tables).
func EncodeBaseDigests(hdr BaseDigestsHeader, entries []BaseDigestsEntry) ([]byte, error) {
	return encodeBaseDigests(hdr, 0, entries)
}

// EncodeKeyedBaseDigests encodes a whole keyed table (an encrypted
// delta's, recording the base's chunk size) in memory (tests, small
// tables).
func EncodeKeyedBaseDigests(hdr BaseDigestsHeader, baseChunkSize int, entries []BaseDigestsEntry) ([]byte, error) {
	if !validChunkSize(baseChunkSize) {
		return nil, fmt.Errorf("format: base chunk size %d", baseChunkSize)
	}
	return encodeBaseDigests(hdr, baseChunkSize, entries)
}

func encodeBaseDigests(hdr BaseDigestsHeader, baseChunkSize int, entries []BaseDigestsEntry) ([]byte, error) {
	var buf bytes.Buffer
	w, err := newBaseDigestsWriter(&buf, hdr, baseChunkSize)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if err := w.Add(e.Chunk, e.Blocks); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// validChunkSize reports whether c is a chunk size the format allows
// (spec §3): a power of two from MinChunkSize to MaxChunkSize.
func validChunkSize(c int) bool {
	return c >= MinChunkSize && c <= MaxChunkSize && c&(c-1) == 0
}
