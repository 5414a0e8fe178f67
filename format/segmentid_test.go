package format

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		id  SegmentID
		ok  bool
	}{
		{"data/00000000.seg", DataID(0), true},
		{"data/00000042.seg", DataID(42), true},
		{"data/99999999.seg", DataID(99_999_999), true},
		{"parity/00000007.par", ParityID(7), true},
		{"data/0000042.seg", SegmentID{}, false},   // seven digits
		{"data/000000042.seg", SegmentID{}, false}, // nine
		{"data/0000004a.seg", SegmentID{}, false},
		{"data/+0000042.seg", SegmentID{}, false},
		{"data/00000042.par", SegmentID{}, false},
		{"parity/00000042.seg", SegmentID{}, false},
		{"data/00000042.seg.tmp", SegmentID{}, false},
		{"x/data/00000042.seg", SegmentID{}, false},
		{"manifest.ssm", SegmentID{}, false},
		{"", SegmentID{}, false},
	} {
		id, ok := ParseKey(tc.key)
		if id != tc.id || ok != tc.ok {
			t.Errorf("ParseKey(%q) = %+v, %v; want %+v, %v", tc.key, id, ok, tc.id, tc.ok)
		}
		if ok && id.Key() != tc.key {
			t.Errorf("ParseKey(%q).Key() = %q", tc.key, id.Key())
		}
	}
	if DataID(3).Key() != "data/00000003.seg" || ParityID(3).Key() != "parity/00000003.par" {
		t.Errorf("DataID(3).Key() = %q, ParityID(3).Key() = %q", DataID(3).Key(), ParityID(3).Key())
	}
}

func TestParseManifestCopyKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		n   int
		ok  bool
	}{
		{"manifest.ssm.1", 1, true},
		{"manifest.ssm.12", 12, true},
		{"manifest.ssm.0", 0, false},
		{"manifest.ssm.01", 0, false},
		{"manifest.ssm.", 0, false},
		{"manifest.ssm", 0, false},
		{"manifest.ssm.1.tmp", 0, false},
		{"manifest.ssm.-1", 0, false},
		{"manifest.ssm.1000", 0, false},
	} {
		n, ok := ParseManifestCopyKey(tc.key)
		if n != tc.n || ok != tc.ok {
			t.Errorf("ParseManifestCopyKey(%q) = %d, %v; want %d, %v", tc.key, n, ok, tc.n, tc.ok)
		}
	}
}

func TestIsDamage(t *testing.T) {
	net := errors.New("connection reset")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"corrupt", corruptf("x"), true},
		{"checksum", fmt.Errorf("chunk: %w", ErrChecksum), true},
		{"missing", fmt.Errorf("%w: gone", ErrMissing), true},
		{"too large", ErrTooLarge, true},
		{"chunk error with corrupt cause", &ChunkError{Err: corruptf("x")}, true},
		{"segment error with missing cause", &SegmentError{ID: DataID(1), Err: ErrMissing}, true},
		{"segment header of another version", &SegmentError{ID: DataID(1), Err: ErrVersion}, true},
		{"segment with bad magic", fmt.Errorf("read: %w", &SegmentError{ID: DataID(1), Err: ErrFormat}), true},
		{"not a manifest", fmt.Errorf("manifest.ssm: %w", ErrFormat), false},
		{"manifest of another version", ErrVersion, false},
		{"network error reading a chunk", &ChunkError{Err: net}, false},
		{"network error reading a segment", &SegmentError{Err: io.ErrClosedPipe}, false},
		{"cancelled", context.Canceled, false},
		{"plain", net, false},
	} {
		if got := IsDamage(tc.err); got != tc.want {
			t.Errorf("%s: IsDamage(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
