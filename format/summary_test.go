package format

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"slices"
	"testing"
)

// errReaderAt fails every read with err.
type errReaderAt struct{ err error }

func (r errReaderAt) ReadAt([]byte, int64) (int, error) { return 0, r.err }

// TestReadSummary: every segment of an image, read back through
// ReadSummary, gives the manifest's entry (and, for a data segment, the
// index of exactly its chunks); a segment of another image, another
// number or kind, or with a damaged header, index or footer is refused,
// and a read failure stays in the error chain.
func TestReadSummary(t *testing.T) {
	m, segs, par, _ := parityFixture(t)
	id, err := m.ImageID()
	if err != nil {
		t.Fatal(err)
	}
	file := func(sid SegmentID) []byte {
		if sid.Kind == SegmentParity {
			return par[sid.Key()]
		}
		return segs[sid.Key()].Bytes()
	}
	chunks := m.SegmentChunks()
	for _, sid := range m.SegmentIDs() {
		b := file(sid)
		sum, entries, err := ReadSummary(bytes.NewReader(b), int64(len(b)), sid, id)
		if err != nil {
			t.Fatalf("%s: %v", sid.Key(), err)
		}
		if want, _ := m.Summary(sid); sum != want {
			t.Errorf("%s: summary %+v, the manifest has %+v", sid.Key(), sum, want)
		}
		var got []uint64
		for _, e := range entries {
			got = append(got, e.Index)
		}
		want := chunks[sid.Number]
		if sid.Kind == SegmentParity {
			want = nil // a parity segment's index holds row CRCs, not chunks
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: index entries of chunks %v, want %v", sid.Key(), got, want)
		}
	}

	data, parity := file(DataID(1)), file(ParityID(1))
	flip := func(b []byte, off int) []byte {
		b = bytes.Clone(b)
		b[off] ^= 0x01
		return b
	}
	readErr := errors.New("connection reset")
	for _, tc := range []struct {
		name  string
		r     io.ReaderAt
		size  int64
		id    SegmentID
		image [16]byte
		want  error // nil: any error
	}{
		{"another image's data segment", bytes.NewReader(data), int64(len(data)), DataID(1), [16]byte{1}, ErrCorrupt},
		{"another image's parity segment", bytes.NewReader(parity), int64(len(parity)), ParityID(1), [16]byte{1}, ErrCorrupt},
		{"data segment 1 read as 2", bytes.NewReader(data), int64(len(data)), DataID(2), id, ErrCorrupt},
		{"parity segment 1 read as 0", bytes.NewReader(parity), int64(len(parity)), ParityID(0), id, ErrCorrupt},
		{"a data segment read as parity", bytes.NewReader(data), int64(len(data)), ParityID(1), id, ErrCorrupt},
		{"bad magic", bytes.NewReader(flip(data, 0)), int64(len(data)), DataID(1), id, ErrFormat},
		{"damaged data index", bytes.NewReader(flip(data, len(data)-FooterSize-3)), int64(len(data)), DataID(1), id, ErrCorrupt},
		{"damaged parity footer", bytes.NewReader(flip(parity, len(parity)-9)), int64(len(parity)), ParityID(1), id, ErrCorrupt},
		{"truncated data segment", bytes.NewReader(data[:len(data)-1]), int64(len(data) - 1), DataID(1), id, ErrCorrupt},
		{"read failure", errReaderAt{readErr}, int64(len(data)), DataID(1), id, readErr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ReadSummary(tc.r, tc.size, tc.id, tc.image)
			if err == nil || !errors.Is(err, tc.want) {
				t.Fatalf("ReadSummary: %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReadImageID: a segment's header gives its image ID; a header that
// is not one of the segment asked for is damage, and a read failure is
// not.
func TestReadImageID(t *testing.T) {
	m, segs, par, _ := parityFixture(t)
	id, err := m.ImageID()
	if err != nil {
		t.Fatal(err)
	}
	data := segs[DataID(0).Key()].Bytes()
	if got, err := ReadImageID(bytes.NewReader(data), DataID(0)); err != nil || got != id {
		t.Fatalf("ReadImageID(data/0) = %x, %v; want %x", got, err, id)
	}
	if got, err := ReadImageID(bytes.NewReader(par[ParityID(0).Key()]), ParityID(0)); err != nil || got != id {
		t.Fatalf("ReadImageID(parity/0) = %x, %v; want %x", got, err, id)
	}
	badMagic := bytes.Clone(data)
	badMagic[3] ^= 0x10
	badVersion := bytes.Clone(data)
	badVersion[8] ^= 0x02
	for _, tc := range []struct {
		name string
		b    []byte
		id   SegmentID
	}{
		{"bad magic", badMagic, DataID(0)},
		{"bad version", badVersion, DataID(0)},
		{"another number", data, DataID(1)},
		{"another kind", data, ParityID(0)},
	} {
		_, err := ReadImageID(bytes.NewReader(tc.b), tc.id)
		var se *SegmentError
		if !errors.As(err, &se) || se.ID != tc.id || !IsDamage(err) {
			t.Errorf("%s: %v, want damage to %s", tc.name, err, tc.id.Key())
		}
	}
	readErr := errors.New("connection reset")
	if _, err := ReadImageID(errReaderAt{readErr}, DataID(0)); !errors.Is(err, readErr) || IsDamage(err) {
		t.Errorf("read failure: %v, want it as it is, not damage", err)
	}
	if _, err := ReadImageID(bytes.NewReader(data[:SegmentHeaderSize-1]), DataID(0)); !errors.Is(err, io.EOF) {
		t.Errorf("short header: %v, want io.EOF in the chain", err)
	}
}

// TestEncodeStripe: every stripe's parity, computed again from its data
// segments, is the captured parity byte for byte; a data segment that is
// short or altered, and a write failure, are refused.
func TestEncodeStripe(t *testing.T) {
	m, segs, par, g := parityFixture(t)
	from := func(files map[string][]byte) func(id SegmentID, w io.Writer) error {
		return func(id SegmentID, w io.Writer) error {
			_, err := w.Write(files[id.Key()])
			return err
		}
	}
	data := map[string][]byte{}
	for k, b := range segs {
		data[k] = b.Bytes()
	}
	for s := range uint32(m.Stripes()) {
		got, err := m.EncodeStripe(s, from(data))
		if err != nil {
			t.Fatalf("stripe %d: %v", s, err)
		}
		if len(got) != g.M {
			t.Fatalf("stripe %d: %d parity segments, want %d", s, len(got), g.M)
		}
		for _, ps := range got {
			b := append(append(bytes.Clone(ps.Header), ps.Rows...), ps.Trailer...)
			if !bytes.Equal(b, par[ParityID(ps.Number).Key()]) {
				t.Errorf("stripe %d: parity segment %d differs from the capture", s, ps.Number)
			}
		}
	}

	short, altered := maps.Clone(data), maps.Clone(data)
	k := DataID(1).Key()
	short[k] = data[k][:len(data[k])-1]
	altered[k] = bytes.Clone(data[k])
	altered[k][SegmentHeaderSize+10] ^= 0x01
	var se *SegmentError
	if _, err := m.EncodeStripe(0, from(short)); !errors.As(err, &se) || se.ID != DataID(1) || !IsDamage(err) {
		t.Errorf("a short data segment: %v, want damage to %s", err, k)
	}
	if _, err := m.EncodeStripe(0, from(altered)); !IsDamage(err) {
		t.Errorf("an altered data segment: %v, want damage", err)
	}
	readErr := errors.New("connection reset")
	if _, err := m.EncodeStripe(0, func(SegmentID, io.Writer) error { return readErr }); !errors.Is(err, readErr) || IsDamage(err) {
		t.Errorf("a write failure: %v, want it as it is", err)
	}
}
