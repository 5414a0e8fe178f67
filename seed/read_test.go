package seed_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
)

func TestReadClean(t *testing.T) {
	for name, ti := range map[string]testImage{"plain": small(t), "parity": withParity(t)} {
		t.Run(name, func(t *testing.T) {
			im := open(t, ti.st)
			out, damage, err := readAll(t, im, seed.ReadOptions{Workers: 2})
			if err != nil || len(damage) != 0 {
				t.Fatalf("read: %v, damage %v", err, damage)
			}
			if !bytes.Equal(out, ti.src) {
				t.Fatal("read bytes differ from the source")
			}
		})
	}
}

func TestReadDamage(t *testing.T) {
	ti := small(t)
	m := ti.m
	c := m.Chunks[4] // a stored chunk
	if c.Kind != format.KindStored {
		t.Fatal("chunk 4 not stored")
	}
	key := format.DataID(c.Segment).Key()
	cases := []struct {
		name    string
		damage  func()
		cause   error
		chunk   bool
		segment bool
	}{
		{"payload", func() { flip(t, ti.st, key, c.Offset+format.FrameHeaderSize+int64(c.PayloadLen)/2) }, format.ErrChecksum, true, false},
		{"frame header", func() { flip(t, ti.st, key, c.Offset) }, format.ErrCorrupt, true, false},
		{"footer", func() { flip(t, ti.st, key, -1) }, format.ErrCorrupt, false, true},
		{"missing", func() { _ = ti.st.Delete(context.Background(), key) }, format.ErrMissing, true, true},
		{"cut short", func() {
			b, _ := ti.st.Object(key)
			ti.st.SetObject(key, b[:c.Offset+10])
		}, format.ErrMissing, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ti = small(t)
			tc.damage()
			_, damage, err := readAll(t, open(t, ti.st), seed.ReadOptions{Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			var chunk, segment bool
			for _, d := range damage {
				if !format.IsDamage(d.Err) || !errors.Is(d.Err, tc.cause) && !(tc.segment && !d.IsChunk) {
					t.Errorf("damage %v: want format.IsDamage and cause %v", d, tc.cause)
				}
				chunk = chunk || d.IsChunk && d.Chunk == 4
				segment = segment || !d.IsChunk && d.Key == key
			}
			if chunk != tc.chunk || segment != tc.segment {
				t.Fatalf("damage %v: chunk 4 reported %v (want %v), segment %v (want %v)", damage, chunk, tc.chunk, segment, tc.segment)
			}
		})
	}
}

// TestBlockDigestsChecked plants a wrong block digest in a segment index
// (and makes the index hash agree, as a crafted image would): the chunk's
// hash still matches, but the read must not pass it.
func TestBlockDigestsChecked(t *testing.T) {
	ti := small(t)
	i := uint64(4)
	c := ti.m.Chunks[i]
	key := format.DataID(c.Segment).Key()
	craftDigest(t, ti, c.Segment, i)
	im := open(t, ti.st)
	_, damage, err := readAll(t, im, seed.ReadOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(damage) != 1 || !damage[0].IsChunk || damage[0].Chunk != i || !errors.Is(damage[0].Err, format.ErrCorrupt) {
		t.Fatalf("damage %v, want chunk %d with a block digest mismatch", damage, i)
	}
	if _, err := im.Chunk(context.Background(), i, nil); !format.IsDamage(err) {
		t.Fatalf("Chunk(%d): %v, want damage", i, err)
	}
	if err := im.CopySegment(context.Background(), format.DataID(c.Segment), nil); !format.IsDamage(err) {
		t.Fatalf("CopySegment(%s): %v, want damage", key, err)
	}
}

// TestReadChunks reads only some chunks: just their frames are fetched,
// each verified; damage to one of them is reported, others untouched.
func TestReadChunks(t *testing.T) {
	ti := withParity(t)
	im := open(t, ti.st)
	var want []uint64
	for i, c := range ti.m.Chunks {
		if c.Kind == format.KindStored && i%3 != 0 {
			want = append(want, uint64(i))
		}
	}
	got := map[uint64]bool{}
	var mu sync.Mutex
	stats, err := im.Read(context.Background(), seed.ReadOptions{Workers: 2, Chunks: want,
		OnChunk: func(i uint64, raw []byte) error {
			off, n := ti.m.ChunkRange(i)
			if !bytes.Equal(raw, ti.src[off:off+n]) {
				t.Errorf("chunk %d wrong", i)
			}
			mu.Lock()
			got[i] = true
			mu.Unlock()
			return nil
		},
		OnDamage: func(d seed.Damage) error { t.Errorf("damage %v", d); return nil }})
	if err != nil || len(got) != len(want) || stats.ChunksOK != uint64(len(want)) {
		t.Fatalf("read %d of %d chunks (stats %+v): %v", len(got), len(want), stats, err)
	}
	c := ti.m.Chunks[want[1]]
	flip(t, ti.st, format.DataID(c.Segment).Key(), c.Offset+format.FrameHeaderSize+2)
	var damage []seed.Damage
	_, err = im.Read(context.Background(), seed.ReadOptions{Workers: 2, Chunks: want[:3],
		OnDamage: func(d seed.Damage) error { damage = append(damage, d); return nil }})
	if err != nil || len(damage) != 1 || damage[0].Chunk != want[1] {
		t.Fatalf("err %v, damage %v: want chunk %d damaged", err, damage, want[1])
	}
	_, err = im.Read(context.Background(), seed.ReadOptions{Workers: 2, StopOnDamage: true})
	if !format.IsDamage(err) {
		t.Fatalf("StopOnDamage: %v, want a damage error", err)
	}
}
