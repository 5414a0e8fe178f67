package format

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
)

// TestCodecBits: the sealed bit (0x80) is valid only on raw, zstd and
// zstd-x86, and names itself in messages.
func TestCodecBits(t *testing.T) {
	for _, tc := range []struct {
		c      Codec
		valid  bool
		sealed bool
		plain  Codec
		name   string
	}{
		{0x00, false, false, 0x00, "unknown"},
		{CodecRaw, true, false, CodecRaw, "raw"},
		{CodecZstd, true, false, CodecZstd, "zstd"},
		{CodecZstdX86, true, false, CodecZstdX86, "zstd-x86"},
		{CodecDigestOnly, true, false, CodecDigestOnly, "digest-only"},
		{0x05, false, false, 0x05, "unknown"},
		{CodecSealed, false, true, 0x00, "unknown"},
		{CodecSealed | CodecRaw, true, true, CodecRaw, "sealed raw"},
		{CodecSealed | CodecZstd, true, true, CodecZstd, "sealed zstd"},
		{CodecSealed | CodecZstdX86, true, true, CodecZstdX86, "sealed zstd-x86"},
		{CodecSealed | CodecDigestOnly, false, true, CodecDigestOnly, "unknown"},
		{0xFF, false, true, 0x7F, "unknown"},
	} {
		if tc.c.valid() != tc.valid || tc.c.Sealed() != tc.sealed || tc.c.Plain() != tc.plain || tc.c.String() != tc.name {
			t.Errorf("codec %#x: valid %v sealed %v plain %#x %q, want %v %v %#x %q",
				byte(tc.c), tc.c.valid(), tc.c.Sealed(), byte(tc.c.Plain()), tc.c.String(), tc.valid, tc.sealed, byte(tc.plain), tc.name)
		}
	}
}

// TestFrameHeaderPayloadBounds: a sealed payload is the plain one plus
// the 28-byte nonce and tag (spec §11.3), so 28 ≤ P ≤ L+28 and a sealed
// raw frame has P = L+28; a plain one keeps P ≤ L and raw P = L.
func TestFrameHeaderPayloadBounds(t *testing.T) {
	const L = 100
	if SealOverhead != 28 {
		t.Fatalf("SealOverhead %d, the spec says 28", SealOverhead)
	}
	s := CodecSealed
	for _, tc := range []struct {
		name  string
		codec Codec
		p     uint32
		want  error // nil: accepted
	}{
		{"raw", CodecRaw, L, nil},
		{"raw short", CodecRaw, L - 1, ErrCorrupt},
		{"zstd at raw size", CodecZstd, L, nil},
		{"zstd longer than raw", CodecZstd, L + 1, ErrCorrupt},
		{"zstd way longer than raw", CodecZstd, L + 29, ErrTooLarge},
		{"digest-only", CodecDigestOnly, 0, nil},
		{"digest-only with payload", CodecDigestOnly, 1, ErrCorrupt},
		{"sealed raw", s | CodecRaw, L + 28, nil},
		{"sealed raw unsealed size", s | CodecRaw, L, ErrCorrupt},
		{"sealed raw one short", s | CodecRaw, L + 27, ErrCorrupt},
		{"sealed raw one long", s | CodecRaw, L + 29, ErrTooLarge},
		{"sealed zstd empty plaintext", s | CodecZstd, 28, nil},
		{"sealed zstd under nonce and tag", s | CodecZstd, 27, ErrCorrupt},
		{"sealed zstd zero", s | CodecZstd, 0, ErrCorrupt},
		{"sealed zstd largest", s | CodecZstd, L + 28, nil},
		{"sealed zstd-x86", s | CodecZstdX86, 60, nil},
		{"sealed zstd-x86 under nonce and tag", s | CodecZstdX86, 10, ErrCorrupt},
		{"sealed digest-only", s | CodecDigestOnly, 28, ErrCorrupt},
		{"sealed unknown", s | 5, 50, ErrCorrupt},
	} {
		var b [FrameHeaderSize]byte
		frameHeader{Codec: tc.codec, Index: 7, PayloadLen: tc.p, RawLen: L}.put(b[:])
		f, err := parseFrameHeader(b[:])
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: %v, want accepted", tc.name, err)
		case tc.want == nil && (f.Codec != tc.codec || f.PayloadLen != tc.p):
			t.Errorf("%s: parsed %+v", tc.name, f)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if got := PayloadLenOK(tc.codec, tc.p, L); tc.codec.valid() && got != (tc.want == nil) {
			t.Errorf("%s: PayloadLenOK %v", tc.name, got)
		}
	}
}

// TestFrameDigestIsBLAKE3: the stored digest is plain BLAKE3-256 of the
// frame's bytes, what b3sum prints for them, however it is fed.
func TestFrameDigestIsBLAKE3(t *testing.T) {
	empty, _ := hex.DecodeString("af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262") // b3sum of nothing
	if d := FrameDigest(nil, nil); !bytes.Equal(d[:], empty) {
		t.Fatalf("FrameDigest of nothing %x, want %x", d, empty)
	}
	hdr, payload := bytes.Repeat([]byte{1}, FrameHeaderSize), bytes.Repeat([]byte("payload "), 1000)
	want := blake3.Sum256(append(bytes.Clone(hdr), payload...))
	if FrameDigest(hdr, payload) != want {
		t.Fatal("FrameDigest is not BLAKE3-256 of header then payload")
	}
	h := NewFrameDigester()
	h.Write(hdr[:5])
	h.Write(hdr[5:])
	for p := payload; len(p) > 0; p = p[min(len(p), 333):] {
		h.Write(p[:min(len(p), 333)])
	}
	if SumDigest(h) != want {
		t.Fatal("NewFrameDigester fed in pieces differs from FrameDigest")
	}
}

// storedSegment writes a data segment of the given frames (chunks 0, 1,
// …, each of raw length rawLen) and returns its bytes, the index's
// offset and length.
func storedSegment(t *testing.T, rawLen int, frames ...EncodedChunk) ([]byte, int64, int64) {
	t.Helper()
	var buf bytes.Buffer
	w := newSegmentWriter(&buf, 0, [16]byte{9})
	for i := range frames {
		frames[i].RawLen = rawLen
		frames[i].Blocks = make([]BlockDigest, NumBlocks(rawLen))
		frames[i].Blocks[0] = BlockDigest{byte(i + 1)}
		frames[i].Hash = Hash{byte(i + 1)}
		if _, err := w.writeChunk(uint64(i), &frames[i]); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := w.close()
	if err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	indexLen := int64(len(w.index))
	if sum.Size != int64(len(b)) {
		t.Fatalf("summary size %d, wrote %d", sum.Size, len(b))
	}
	return b, int64(len(b)) - FooterSize - indexLen, indexLen
}

// TestIndexEntryLayout: the writer records each frame's stored digest at
// entry offset 60, the block digests follow at 92, and the parser refuses
// entries that break the codec's payload bounds or are cut short.
func TestIndexEntryLayout(t *testing.T) {
	const L = MinChunkSize
	payload := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	good := []EncodedChunk{
		{Codec: CodecZstd, Payload: payload(300, 'a')},
		{Codec: CodecRaw, Payload: payload(L, 'b')},
		{Codec: CodecSealed | CodecRaw, Payload: payload(L+SealOverhead, 'c')},
		{Codec: CodecSealed | CodecZstd, Payload: payload(SealOverhead, 'd')},
	}
	seg, indexOff, indexLen := storedSegment(t, L, good...)
	if entry := int64(indexEntryFixed + 8*NumBlocks(L)); indexLen != 4*entry || indexEntryFixed != 92 {
		t.Fatalf("index of %d bytes, want 4 entries of %d", indexLen, entry)
	}
	_, entries, err := readDataIndex(bytes.NewReader(seg), int64(len(seg)))
	if err != nil {
		t.Fatal(err)
	}
	ib := seg[indexOff : indexOff+indexLen]
	for i, e := range entries {
		frame := seg[e.Offset : e.Offset+FrameHeaderSize+int64(e.PayloadLen)]
		if want := blake3.Sum256(frame); e.Stored != want {
			t.Errorf("entry %d: stored digest %x, want BLAKE3 of the frame %x", i, e.Stored, want)
		}
		at := int64(i) * (indexEntryFixed + 8*int64(NumBlocks(L)))
		if !bytes.Equal(ib[at+60:at+92], e.Stored[:]) || ib[at+92] != byte(i+1) {
			t.Errorf("entry %d: stored digest not at 60 or block digests not at 92", i)
		}
		if err := e.CheckStored(frame); err != nil {
			t.Errorf("entry %d: intact frame: %v", i, err)
		}
	}

	for _, tc := range []struct {
		name  string
		frame EncodedChunk
		want  string
	}{
		{"sealed payload under nonce and tag", EncodedChunk{Codec: CodecSealed | CodecZstd, Payload: payload(SealOverhead-1, 'e')}, "payload of 27 bytes"},
		{"sealed raw without the overhead", EncodedChunk{Codec: CodecSealed | CodecRaw, Payload: payload(L, 'e')}, "sealed raw payload"},
		{"sealed raw one byte long", EncodedChunk{Codec: CodecSealed | CodecRaw, Payload: payload(L+SealOverhead+1, 'e')}, "sealed raw payload"},
		{"raw short", EncodedChunk{Codec: CodecRaw, Payload: payload(L-1, 'e')}, "raw payload"},
		{"zstd longer than raw", EncodedChunk{Codec: CodecZstd, Payload: payload(L+1, 'e')}, "zstd payload"},
		{"sealed digest-only", EncodedChunk{Codec: CodecSealed | CodecDigestOnly, Payload: payload(SealOverhead, 'e')}, "codec"},
	} {
		seg, indexOff, indexLen := storedSegment(t, L, good[0], tc.frame)
		_, err := parseIndex(seg[indexOff:indexOff+indexLen], 2, indexOff)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "index entry 1") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want corrupt entry 1 (%q)", tc.name, err, tc.want)
		}
	}

	// Every truncation of the index is refused, and so is the version 2
	// layout (entries without the stored digest).
	for n := range ib {
		if _, err := parseIndex(ib[:n], 4, indexOff); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("index cut to %d of %d bytes: %v", n, len(ib), err)
		}
	}
	var v2 []byte
	for at := 0; at < len(ib); at += indexEntryFixed + 8*NumBlocks(L) {
		v2 = append(append(v2, ib[at:at+60]...), ib[at+92:at+indexEntryFixed+8*NumBlocks(L)]...)
	}
	if _, err := parseIndex(v2, 4, indexOff); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("version 2 index layout: %v", err)
	}
}

// TestStoredDigestInIndexIsAuthenticated: a changed stored digest in an
// index fails the index hash, and one forged consistently (index hash
// too, as a crafted image would) makes the intact frame fail CheckStored
// with a checksum error naming the chunk.
func TestStoredDigestInIndexIsAuthenticated(t *testing.T) {
	seg, indexOff, indexLen := storedSegment(t, MinChunkSize, EncodedChunk{Codec: CodecZstd, Payload: []byte("x")})
	seg[indexOff+70] ^= 1
	if _, _, err := readDataIndex(bytes.NewReader(seg), int64(len(seg))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("stored digest changed in the index: %v, want corrupt", err)
	}
	entries, err := parseIndex(seg[indexOff:indexOff+indexLen], 1, indexOff)
	if err != nil {
		t.Fatal(err)
	}
	frame := seg[SegmentHeaderSize : SegmentHeaderSize+FrameHeaderSize+1]
	err = entries[0].CheckStored(frame)
	if !errors.Is(err, ErrChecksum) || !IsDamage(err) || !strings.Contains(err.Error(), "chunk 0") {
		t.Fatalf("frame against a forged stored digest: %v", err)
	}
	if err := entries[0].CheckStored(frame[:len(frame)-1]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short frame: %v", err)
	}
}

// TestStoredDigestCatchesPayloadDamage: one flipped payload byte is found
// by the stored digest alone, without decoding: by CheckStored, by a
// scanner given the index (Next), and by one that reads the index last
// (LateDamage after Finish).
func TestStoredDigestCatchesPayloadDamage(t *testing.T) {
	m, segs, _ := buildImage(t, testSource(6*MinChunkSize, MinChunkSize, 3), MinChunkSize, 1<<20)
	chunks := m.SegmentChunks()[0]
	victim := chunks[1]
	c := m.Chunks[victim]
	clean := segs[DataID(0).Key()].Bytes()
	seg := bytes.Clone(clean)
	seg[c.Offset+FrameHeaderSize+int64(c.PayloadLen)/2] ^= 0x10
	_, entries, err := readDataIndex(bytes.NewReader(seg), int64(len(seg)))
	if err != nil {
		t.Fatal(err)
	}
	for k, e := range entries {
		err := e.CheckStored(seg[e.Offset : e.Offset+FrameHeaderSize+int64(e.PayloadLen)])
		if (err != nil) != (e.Index == victim) || (err != nil && !errors.Is(err, ErrChecksum)) {
			t.Errorf("entry %d (chunk %d): %v", k, e.Index, err)
		}
	}

	scan := func(useIndex bool) (bad []uint64, late []uint64) {
		sc, err := NewSegmentScanner(bytes.NewReader(seg), m, 0, chunks)
		if err != nil {
			t.Fatal(err)
		}
		if useIndex {
			if err := sc.UseIndex(entries); err != nil {
				t.Fatal(err)
			}
		}
		var buf []byte
		for {
			var f Frame
			f, buf, err = sc.Next(buf)
			if errors.Is(err, io.EOF) {
				break
			}
			var ce *ChunkError
			if errors.As(err, &ce) && errors.Is(err, ErrChecksum) {
				bad = append(bad, ce.Index)
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Stored != FrameDigest(buf[:FrameHeaderSize], f.Payload) {
				t.Fatalf("chunk %d: Frame.Stored is not the frame's digest", f.Index)
			}
		}
		if _, err := sc.Finish(); err != nil {
			t.Fatal(err)
		}
		for _, ce := range sc.LateDamage() {
			if !errors.Is(ce, ErrChecksum) || ce.Segment != 0 || ce.Length != MinChunkSize {
				t.Fatalf("late damage %v", ce)
			}
			late = append(late, ce.Index)
		}
		return bad, late
	}
	if bad, late := scan(true); len(bad) != 1 || bad[0] != victim || len(late) != 0 {
		t.Errorf("scanner with the index: damage %v, late %v, want chunk %d from Next", bad, late, victim)
	}
	if bad, late := scan(false); len(bad) != 0 || len(late) != 1 || late[0] != victim {
		t.Errorf("scanner without the index: damage %v, late %v, want chunk %d from LateDamage", bad, late, victim)
	}
	seg = clean
	if bad, late := scan(false); len(bad)+len(late) != 0 {
		t.Errorf("intact segment: damage %v, late %v", bad, late)
	}

	sc, _ := NewSegmentScanner(bytes.NewReader(seg), m, 0, chunks)
	if err := sc.UseIndex(entries[1:]); err == nil {
		t.Error("UseIndex accepted entries that are not the segment's chunks")
	}
}

// crcInvisible returns a set of bit positions in a row whose flipping
// leaves the row's CRC-32C unchanged: CRC is affine over GF(2), so among
// any 33 single-bit changes some nonempty combination cancels out.
func crcInvisible(row []byte) []int {
	base := RowCRC(0, row)
	type vec struct {
		v    uint32
		mask uint64
	}
	var basis []vec
	for i := range 40 {
		pos := i*37 + 5 // spread over the row's first bytes
		r := bytes.Clone(row)
		r[pos/8] ^= 1 << (pos % 8)
		v := vec{RowCRC(0, r) ^ base, 1 << i}
		for _, b := range basis {
			if v.v^b.v < v.v {
				v.v ^= b.v
				v.mask ^= b.mask
			}
		}
		if v.v == 0 {
			var bits []int
			for j := range 40 {
				if v.mask&(1<<j) != 0 {
					bits = append(bits, j*37+5)
				}
			}
			return bits
		}
		basis = append(basis, v)
		// Keep the basis sorted by leading bit, highest first, so the
		// reduction above is Gaussian elimination.
		for k := len(basis) - 1; k > 0 && basis[k].v > basis[k-1].v; k-- {
			basis[k], basis[k-1] = basis[k-1], basis[k]
		}
	}
	return nil
}

// TestParityRowsDigest: every parity segment's rows digest is recorded in
// every index of its stripe, checks the rows read in order, and catches a
// change that every row's CRC-32C misses (reported as damage of the
// whole segment, since the CRCs cannot say which row).
func TestParityRowsDigest(t *testing.T) {
	m, _, par, g := parityFixture(t)
	id, _ := m.ImageID()
	n := g.ParityNumber(0, 1)
	sum := m.Parity[n]
	b := par[ParityID(n).Key()]
	idx, err := readParityIndex(bytes.NewReader(b), int64(len(b)), sum.IndexHash, -1)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.RowsDigest) != g.M {
		t.Fatalf("%d rows digests, want %d", len(idx.RowsDigest), g.M)
	}
	for j := range g.M {
		pb := par[ParityID(g.ParityNumber(0, j)).Key()]
		if want := blake3.Sum256(pb[SegmentHeaderSize : SegmentHeaderSize+idx.ShardLen()]); idx.RowsDigest[j] != want {
			t.Errorf("rows digest of parity shard %d is not BLAKE3 of its rows", j)
		}
	}
	if err := CheckParityStream(bytes.NewReader(b), id, idx); err != nil {
		t.Fatalf("intact parity segment: %v", err)
	}
	if err := idx.CheckRows(1, Hash{1}); !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), ParityID(n).Key()) {
		t.Errorf("CheckRows of a wrong digest: %v", err)
	}

	bad := bytes.Clone(b)
	row := bad[SegmentHeaderSize : SegmentHeaderSize+idx.RowSize]
	bits := crcInvisible(row)
	if len(bits) == 0 {
		t.Fatal("no CRC-invisible change found")
	}
	for _, p := range bits {
		row[p/8] ^= 1 << (p % 8)
	}
	if RowCRC(0, row) != idx.CRC[g.K+1][0] || bytes.Equal(bad, b) {
		t.Fatal("the change is not invisible to the row CRC")
	}
	err = CheckParityStream(bytes.NewReader(bad), id, idx)
	var se *SegmentError
	if !errors.As(err, &se) || se.ID != ParityID(n) || se.Rows != nil || !IsDamage(err) || !strings.Contains(err.Error(), "rows digest") {
		t.Fatalf("rows changed under their CRCs: %v, want damage of the whole segment naming the rows digest", err)
	}
}

// BenchmarkFrameDigest measures the stored digest over 2 MiB frames, the
// writer's and a keyless reader's cost per stored byte.
func BenchmarkFrameDigest(b *testing.B) {
	hdr, payload := make([]byte, FrameHeaderSize), bytes.Repeat([]byte("stored bytes "), 2<<20/13)
	b.SetBytes(int64(len(hdr) + len(payload)))
	for b.Loop() {
		FrameDigest(hdr, payload)
	}
}
