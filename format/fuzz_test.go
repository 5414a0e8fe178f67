package format

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// seedFiles adds every file named name under testdata/vectors to f's corpus.
func seedFiles(f *testing.F, glob string) {
	paths, _ := filepath.Glob(filepath.Join(vectorDir, "*", "image", glob))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
}

// FuzzDecodeManifest checks that the manifest decoder never panics, never
// accepts bytes that do not re-encode to themselves, and always fails with
// one of the package's sentinels.
func FuzzDecodeManifest(f *testing.F) {
	seedFiles(f, ManifestKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFormat) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		again, err := m.Marshal()
		if err != nil {
			t.Fatalf("decoded manifest does not re-encode: %v", err)
		}
		m2, err := DecodeManifest(again)
		if err != nil || m2.Hash != m.Hash || len(m2.Chunks) != len(m.Chunks) {
			t.Fatalf("re-encoded manifest does not decode the same: %v", err)
		}
	})
}

// FuzzSegmentIndex feeds whole segments to the footer and index parsers.
func FuzzSegmentIndex(f *testing.F) {
	seedFiles(f, "data/*.seg")
	f.Fuzz(func(t *testing.T, b []byte) {
		footer, entries, err := readDataIndex(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if int(footer.Frames) != len(entries) {
			t.Fatalf("%d entries for %d frames", len(entries), footer.Frames)
		}
		// Every accepted entry lies inside the segment, in order, with a
		// payload its codec allows.
		end := int64(SegmentHeaderSize)
		for _, e := range entries {
			if e.Offset != end || len(e.Blocks) != NumBlocks(int(e.RawLen)) || !e.Codec.valid() || !PayloadLenOK(e.Codec, e.PayloadLen, int64(e.RawLen)) {
				t.Fatalf("entry %+v inconsistent", e)
			}
			end = e.Offset + FrameHeaderSize + int64(e.PayloadLen)
		}
		if end != footer.IndexOffset {
			t.Fatal("frames do not end at the index")
		}
	})
}

// FuzzFrame decodes a frame header and payload as a reader would, checking
// that a chunk is only ever returned when it matches its hash.
func FuzzFrame(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join(vectorDir, "*", "image", "data", "*.seg"))
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && len(b) > SegmentHeaderSize {
			f.Add(b[SegmentHeaderSize:min(len(b), SegmentHeaderSize+4096)], []byte{})
		}
	}
	// Sealed frames (encrypted images): the bounds of spec §11.3.
	for _, fh := range []frameHeader{
		{Codec: CodecSealed | CodecZstd, Index: 3, PayloadLen: SealOverhead + 10, RawLen: MinChunkSize},
		{Codec: CodecSealed | CodecRaw, Index: 4, PayloadLen: 64 + SealOverhead, RawLen: 64},
		{Codec: CodecSealed | CodecZstdX86, Index: 5, PayloadLen: SealOverhead - 1, RawLen: 64},
	} {
		b := make([]byte, FrameHeaderSize+int(fh.PayloadLen))
		fh.put(b)
		f.Add(b, []byte{})
	}
	codec, err := NewChunkCodec(0, 1, MaxChunkSize)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame, want []byte) {
		fh, err := parseFrameHeader(frame)
		if err != nil {
			return
		}
		payload := frame[FrameHeaderSize:]
		if uint32(len(payload)) > fh.PayloadLen {
			payload = payload[:fh.PayloadLen]
		}
		var h Hash
		copy(h[:], want)
		if !PayloadLenOK(fh.Codec, fh.PayloadLen, int64(fh.RawLen)) {
			t.Fatalf("frame header %+v accepted with a payload its codec does not allow", fh)
		}
		raw, err := codec.DecodeAt(fh.Index, fh.Codec, payload, int(fh.RawLen), h, nil, nil)
		if err == nil && (ChunkHash(raw, nil) != h || len(raw) != int(fh.RawLen)) {
			t.Fatal("Decode returned bytes that do not match the hash")
		}
	})
}

// FuzzSegmentScanner damages a valid segment at a fuzzed place and checks
// that a scan never hands out a chunk that fails its hash and never
// reports a damaged segment as intact.
func FuzzSegmentScanner(f *testing.F) {
	dir := filepath.Join(vectorDir, "basic")
	mb, err := os.ReadFile(filepath.Join(dir, "image", ManifestKey))
	if err != nil {
		f.Fatal(err)
	}
	seg, err := os.ReadFile(filepath.Join(dir, "image", "data", "00000000.seg"))
	if err != nil {
		f.Fatal(err)
	}
	m, err := DecodeManifest(mb)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(uint32(100), byte(1), uint32(0))
	f.Add(uint32(40), byte(0xff), uint32(0))
	f.Add(uint32(0), byte(0), uint32(5000))
	f.Fuzz(func(t *testing.T, pos uint32, xor byte, cut uint32) {
		b := bytes.Clone(seg)
		p := int(pos) % len(b)
		b[p] ^= xor
		if cut > 0 {
			b = b[:len(b)-int(cut)%len(b)]
		}
		damaged := !bytes.Equal(b, seg)
		_, errs := restoreImage(t, m, memSegments{DataID(0).Key(): bytes.NewBuffer(b)})
		if damaged && len(errs) == 0 {
			t.Fatalf("damage at %d (xor %#x, cut %d) not reported", p, xor, cut)
		}
		if !damaged && len(errs) != 0 {
			t.Fatalf("intact segment reported damaged: %v", errs)
		}
	})
}

// FuzzParityIndex feeds whole parity segments (seeded from the parity
// vector) to the parity footer and index parser: whatever it accepts must
// re-encode to the same bytes.
func FuzzParityIndex(f *testing.F) {
	seedFiles(f, "parity/*.par")
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := readParityIndex(bytes.NewReader(b), int64(len(b)), Hash{}, -1)
		if err != nil {
			return
		}
		if len(idx.Data) != idx.K || len(idx.CRC) != idx.K+idx.M || len(idx.RowsDigest) != idx.M {
			t.Fatalf("accepted an inconsistent index: K=%d M=%d, %d data refs, %d CRC rows", idx.K, idx.M, len(idx.Data), len(idx.CRC))
		}
		tr := idx.Trailer(idx.J)
		if !bytes.Equal(tr, b[len(b)-len(tr):]) {
			t.Fatal("accepted index does not re-encode to the bytes it came from")
		}
	})
}
