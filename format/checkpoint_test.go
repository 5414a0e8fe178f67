package format

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func testCheckpoint() *Checkpoint {
	return &Checkpoint{
		ImageID: [16]byte{1, 2, 3}, Source: Source{Path: "/dev/sdb1", Kind: "block", Size: 10 << 20, Serial: "S1"},
		ChunkSize: 1 << 20, Level: 3, SegmentSize: 4 << 20, Parity: &Geometry{K: 3, M: 1, RowSize: 4096},
		CaptureStart: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), Segments: 2, Chunks: 7, SHA256State: []byte("state"),
		Stored: StoredDigest([]SegmentSummary{{Number: 0, Size: 100}, {Number: 1, Size: 200}}, nil),
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	want := testCheckpoint()
	b, err := want.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := got.Marshal()
	if !bytes.Equal(b, b2) {
		t.Fatalf("round trip differs:\n%s\n%s", b, b2)
	}
}

// TestCheckpointRefused: every edit that does not reseal, and every
// out-of-range field that does, is refused with the right class.
func TestCheckpointRefused(t *testing.T) {
	good, _ := testCheckpoint().Marshal()
	for _, tc := range []struct {
		name string
		b    func() []byte
		want error
	}{
		{"not json", func() []byte { return []byte("hello") }, ErrFormat},
		{"old version", func() []byte { return []byte(`{"format":"seedship-checkpoint","version":1}`) }, ErrVersion},
		{"edited count", func() []byte { return bytes.Replace(good, []byte(`"chunks":7`), []byte(`"chunks":6`), 1) }, ErrCorrupt},
		{"edited source", func() []byte { return bytes.Replace(good, []byte(`"S1"`), []byte(`"S2"`), 1) }, ErrCorrupt},
		{"no seal", func() []byte { return bytes.Replace(good, []byte(`"seal":"`), []byte(`"seal":"x`), 1) }, ErrCorrupt},
		{"too large", func() []byte { return append(bytes.Repeat([]byte(" "), MaxCheckpointSize), good...) }, ErrTooLarge},
		{"chunks past the source", func() []byte { c := testCheckpoint(); c.Chunks = 11; b, _ := c.Marshal(); return b }, ErrCorrupt},
		{"absurd segments", func() []byte { c := testCheckpoint(); c.Segments = 1 << 31; b, _ := c.Marshal(); return b }, ErrCorrupt},
		{"chunk size", func() []byte { c := testCheckpoint(); c.ChunkSize = 3 << 20; b, _ := c.Marshal(); return b }, ErrCorrupt},
		{"negative size", func() []byte { c := testCheckpoint(); c.Source.Size = -1; b, _ := c.Marshal(); return b }, ErrCorrupt},
		{"parity", func() []byte { c := testCheckpoint(); c.Parity.M = 0; b, _ := c.Marshal(); return b }, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseCheckpoint(tc.b()); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestStoredDigest: the digest depends on every summary field and on
// whether a segment is data or parity.
func TestStoredDigest(t *testing.T) {
	base := []SegmentSummary{{Number: 0, Size: 100, Frames: 3, IndexHash: Hash{9}}}
	d0 := StoredDigest(base, nil)
	for _, s := range []SegmentSummary{
		{Number: 1, Size: 100, Frames: 3, IndexHash: Hash{9}},
		{Number: 0, Size: 101, Frames: 3, IndexHash: Hash{9}},
		{Number: 0, Size: 100, Frames: 4, IndexHash: Hash{9}},
		{Number: 0, Size: 100, Frames: 3, IndexHash: Hash{8}},
	} {
		if StoredDigest([]SegmentSummary{s}, nil) == d0 {
			t.Errorf("%+v has the digest of %+v", s, base[0])
		}
	}
	if StoredDigest(nil, []SegmentSummary{{Kind: SegmentParity, Number: 0, Size: 100, Frames: 3, IndexHash: Hash{9}}}) == d0 {
		t.Error("a parity segment has the digest of a data segment")
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	good, _ := testCheckpoint().Marshal()
	f.Add(good)
	f.Add([]byte(`{"format":"seedship-checkpoint","version":2}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCheckpoint(b)
		if err != nil {
			return
		}
		// Whatever is accepted is sealed, in range and re-encodes to
		// something accepted.
		if c.Chunks > uint64(c.Source.Size) || c.Segments > maxSegmentNumber {
			t.Fatalf("accepted out-of-range counts: %+v", c)
		}
		b2, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseCheckpoint(b2); err != nil {
			t.Fatalf("re-encoded checkpoint refused: %v", err)
		}
	})
}
