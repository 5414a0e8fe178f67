package seed_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
)

func TestChunk(t *testing.T) {
	ti := withParity(t)
	im := open(t, ti.st)
	var buf []byte
	for i := range ti.m.Chunks {
		raw, err := im.Chunk(context.Background(), uint64(i), buf)
		if err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		off, length := ti.m.ChunkRange(uint64(i))
		if !bytes.Equal(raw, ti.src[off:off+length]) {
			t.Fatalf("chunk %d differs", i)
		}
		buf = raw
	}
	c := ti.m.Chunks[1]
	flip(t, ti.st, format.DataID(c.Segment).Key(), c.Offset+30)
	var ce *format.ChunkError
	if _, err := im.Chunk(context.Background(), 1, nil); !errors.As(err, &ce) || ce.Index != 1 || !format.IsDamage(err) {
		t.Fatalf("damaged chunk 1: %v, want a ChunkError that is damage", err)
	}
}

// TestCopySegment checks every segment, data and parity, clean and with
// one changed byte anywhere in it.
func TestCopySegment(t *testing.T) {
	ti := withParity(t)
	im := open(t, ti.st)
	ctx := context.Background()
	for _, id := range ti.m.SegmentIDs() {
		var out bytes.Buffer
		if err := im.CopySegment(ctx, id, &out); err != nil {
			t.Fatalf("%s: %v", id.Key(), err)
		}
		orig, _ := ti.st.Object(id.Key())
		if !bytes.Equal(out.Bytes(), orig) {
			t.Fatalf("%s: copied bytes differ", id.Key())
		}
		for _, off := range []int64{0, 20, 40, int64(len(orig)) / 2, int64(len(orig)) - 70, int64(len(orig)) - 1} {
			b := bytes.Clone(orig)
			b[off] ^= 0x10
			err := im.CheckStream(ctx, id, bytes.NewReader(b), nil)
			if !format.IsDamage(err) {
				t.Fatalf("%s with byte %d changed: %v, want damage", id.Key(), off, err)
			}
		}
		if err := im.CheckStream(ctx, id, bytes.NewReader(append(bytes.Clone(orig), 0)), nil); !format.IsDamage(err) {
			t.Fatalf("%s with a byte appended: %v, want damage", id.Key(), err)
		}
	}
}

// TestRebuildAndSegments: damaged chunks are rebuilt from parity without
// touching the image, and rebuilt segments equal the originals.
func TestRebuildAndSegments(t *testing.T) {
	ti := withParity(t)
	ctx := context.Background()
	seg := format.DataID(2)
	orig, _ := ti.st.Object(seg.Key())
	_ = ti.st.Delete(ctx, seg.Key())
	im := open(t, ti.st)
	_, damage, err := readAll(t, im, seed.ReadOptions{Workers: 2})
	if err != nil || len(damage) == 0 {
		t.Fatalf("read: %v, damage %v", err, damage)
	}
	var rebuilt []uint64
	_, err = im.Rebuild(ctx, damage, func(i uint64, raw []byte) error {
		off, length := ti.m.ChunkRange(i)
		if !bytes.Equal(raw, ti.src[off:off+length]) {
			t.Errorf("chunk %d rebuilt wrong", i)
		}
		rebuilt = append(rebuilt, i)
		return nil
	})
	if err != nil || !slices.Equal(rebuilt, im.SegmentChunks(2)) {
		t.Fatalf("rebuild: %v, rebuilt %v, want %v", err, rebuilt, im.SegmentChunks(2))
	}
	if _, ok := ti.st.Object(seg.Key()); ok {
		t.Fatal("Rebuild wrote to the image")
	}
	sinks := map[format.SegmentID]*bufSink{}
	sts, err := im.RebuildSegments(ctx, damage, func(id format.SegmentID, size int64) seed.SegmentSink {
		sinks[id] = &bufSink{}
		return sinks[id]
	})
	if err != nil || len(sts) != 1 || !sts[0].Repairable {
		t.Fatalf("rebuild segments: %v %+v", err, sts)
	}
	if s := sinks[seg]; s == nil || !s.closed || !bytes.Equal(s.Bytes(), orig) {
		t.Fatalf("rebuilt %s differs from the original", seg.Key())
	}
	sv, err := im.Survey(ctx)
	if err != nil || len(sv.Damage) != 1 || len(sv.Lost) != 0 {
		t.Fatalf("survey: %v %+v", err, sv)
	}
}

type bufSink struct {
	bytes.Buffer
	closed bool
}

func (b *bufSink) Close() error                 { b.closed = true; return nil }
func (b *bufSink) CloseWithError(_ error) error { return nil }

// TestSurvey: listing alone finds missing and resized segments, and says
// which of them parity cannot rebuild.
func TestSurvey(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		ti     func(testing.TB) testImage
		damage func(testImage)
		found  int
		lost   []format.SegmentID
	}{
		{"intact", small, func(testImage) {}, 0, nil},
		{"missing without parity", small, func(ti testImage) { _ = ti.st.Delete(ctx, format.DataID(1).Key()) }, 1, []format.SegmentID{format.DataID(1)}},
		{"cut without parity", small, func(ti testImage) {
			b, _ := ti.st.Object(format.DataID(0).Key())
			ti.st.SetObject(format.DataID(0).Key(), b[:len(b)-1])
		}, 1, []format.SegmentID{format.DataID(0)}},
		{"one per stripe with parity", withParity, func(ti testImage) {
			_ = ti.st.Delete(ctx, format.DataID(0).Key())
			_ = ti.st.Delete(ctx, format.ParityID(1).Key())
		}, 2, nil},
		{"two in a 2+1 stripe", withParity, func(ti testImage) {
			_ = ti.st.Delete(ctx, format.DataID(2).Key())
			_ = ti.st.Delete(ctx, format.ParityID(1).Key())
		}, 2, []format.SegmentID{format.DataID(2)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti := tc.ti(t)
			im := open(t, ti.st)
			tc.damage(ti)
			sv, err := im.Survey(ctx)
			if err != nil || len(sv.Damage) != tc.found || !slices.Equal(sv.Lost, tc.lost) {
				t.Fatalf("survey: %v, damage %v, lost %v; want %d found, lost %v", err, sv.Damage, sv.Lost, tc.found, tc.lost)
			}
		})
	}
}
