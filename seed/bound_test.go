package seed_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store/storetest/memstore"
)

// bombFrame returns a zstd frame of about 32 KiB that declares no content
// size and decodes to 1 GiB of zeros: 8192 RLE blocks of 128 KiB.
func bombFrame() []byte {
	b := []byte{0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x38} // magic; no FCS, not single segment; window 128 KiB
	const blocks = 8192
	for k := range blocks {
		hdr := uint32(128<<10)<<3 | 1<<1 // RLE block of 128 KiB
		if k == blocks-1 {
			hdr |= 1 // last block
		}
		b = append(b, byte(hdr), byte(hdr>>8), byte(hdr>>16), 0)
	}
	return b
}

// bombImage writes an image of n 64 KiB chunks whose every frame is a
// zstd bomb (the manifest and indexes agree with the frames: only
// decoding shows the damage).
func bombImage(t testing.TB, n int) *memstore.Store {
	st := memstore.New()
	codec, err := format.NewChunkCodec(3, 1, 65536)
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	w, err := format.NewImageWriter(func(key string) (io.WriteCloser, error) {
		return &putCloser{st: st, key: key}, nil
	}, [16]byte{9}, 16<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	bomb := bombFrame()
	src := bytes.Repeat([]byte("not zero "), 65536*n/9+1)[:65536*n]
	blocks := make([]format.BlockDigest, 1)
	for off := 0; off < len(src); off += 65536 {
		ec := codec.EncodeAt(uint64(off/65536), src[off:off+65536], nil, blocks)
		ec.Codec, ec.Payload = format.CodecZstd, bomb
		if err := w.Add(&ec); err != nil {
			t.Fatal(err)
		}
	}
	sum := sha256.Sum256(src)
	m, err := w.Finish(format.Header{Size: int64(len(src)), ChunkSize: 65536, SHA256: hex.EncodeToString(sum[:]),
		CaptureStart: time.Unix(0, 0).UTC(), CaptureEnd: time.Unix(0, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := m.Marshal()
	st.SetObject(format.ManifestKey, mb)
	return st
}

// TestFrameBombBounded: frames that expand to 1 GiB each are refused at
// their chunk's length (64 KiB), quickly and with bounded memory.
func TestFrameBombBounded(t *testing.T) {
	const n = 200
	im := open(t, bombImage(t, n))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, damage, err := readAll(t, im, seed.ReadOptions{Workers: 2})
	el := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if len(damage) != n {
		t.Fatalf("%d findings, want one per chunk (%d)", len(damage), n)
	}
	for _, d := range damage {
		if !d.IsChunk || !errors.Is(d.Err, format.ErrCorrupt) {
			t.Fatalf("finding %v: want chunk damage (corrupt)", d)
		}
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("reading %d bombs allocated %d MiB, want under 256 MiB", n, alloc>>20)
	}
	if el > 5*time.Second {
		t.Errorf("reading %d bombs took %v", n, el)
	}
	if _, err := im.Chunk(context.Background(), 0, nil); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("Chunk: %v, want corrupt", err)
	}
}
