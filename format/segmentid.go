package format

import (
	"fmt"
	"strconv"
	"strings"
)

// SegmentKind says whether a segment holds chunk frames or parity.
type SegmentKind uint8

// Segment kinds, recorded in the segment header and the manifest.
const (
	SegmentData   SegmentKind = 0
	SegmentParity SegmentKind = 1
)

// maxSegmentNumber is the largest segment number a key can carry (spec
// §2: eight decimal digits).
const maxSegmentNumber = 99_999_999

// SegmentID names one segment of an image: its kind and number. It is the
// one place segment keys are made ([SegmentID.Key]) and parsed
// ([ParseKey]).
type SegmentID struct {
	Kind   SegmentKind
	Number uint32
}

// DataID returns the ID of data segment n.
func DataID(n uint32) SegmentID { return SegmentID{SegmentData, n} }

// ParityID returns the ID of parity segment n.
func ParityID(n uint32) SegmentID { return SegmentID{SegmentParity, n} }

// Key returns the segment's store key (spec §2).
func (id SegmentID) Key() string {
	if id.Kind == SegmentParity {
		return fmt.Sprintf("parity/%08d.par", id.Number)
	}
	return fmt.Sprintf("data/%08d.seg", id.Number)
}

// ParseKey returns the segment a store key names; ok is false for any
// other key (manifests, checkpoints, unknown files).
func ParseKey(key string) (id SegmentID, ok bool) {
	var digits string
	switch {
	case strings.HasPrefix(key, "data/") && strings.HasSuffix(key, ".seg"):
		id.Kind, digits = SegmentData, key[len("data/"):len(key)-len(".seg")]
	case strings.HasPrefix(key, "parity/") && strings.HasSuffix(key, ".par"):
		id.Kind, digits = SegmentParity, key[len("parity/"):len(key)-len(".par")]
	default:
		return SegmentID{}, false
	}
	n, ok := parseDigits(digits, 8)
	if !ok || n > maxSegmentNumber {
		return SegmentID{}, false
	}
	id.Number = uint32(n)
	return id, true
}

// parseDigits parses exactly width decimal digits.
func parseDigits(s string, width int) (uint64, bool) {
	if len(s) != width {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// manifestCopyKey returns the key of redundant manifest copy n (n ≥ 1).
func manifestCopyKey(n int) string { return fmt.Sprintf("%s.%d", ManifestKey, n) }

// ParseManifestCopyKey returns n for the key of manifest copy n (n ≥ 1);
// ok is false for any other key.
func ParseManifestCopyKey(key string) (n int, ok bool) {
	rest, found := strings.CutPrefix(key, ManifestKey+".")
	if !found || rest == "" || len(rest) > 3 || rest[0] == '0' {
		return 0, false
	}
	v, ok := parseDigits(rest, len(rest))
	return int(v), ok
}
