package engine

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store/storetest/memstore"
)

// smallDelta captures a 1 MiB source into one store and writes the delta
// of a changed copy into another; it returns the delta image, its store
// and the changed source's path.
func smallDelta(t *testing.T) (*seed.Image, *memstore.Store, string) {
	t.Helper()
	d := t.TempDir()
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	p := filepath.Join(d, "src.img")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	open := func() *Source {
		s, err := OpenSource(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	base := memstore.New()
	if _, err := Capture(context.Background(), open(), base, CaptureOptions{ChunkSize: 256 << 10}); err != nil {
		t.Fatal(err)
	}
	data[3<<16] ^= 1
	data[9<<16+5] ^= 1
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	delta := memstore.New()
	if _, err := Delta(context.Background(), base, open(), delta, DeltaOptions{}); err != nil {
		t.Fatal(err)
	}
	im, err := seed.Open(context.Background(), delta)
	if err != nil {
		t.Fatal(err)
	}
	return im, delta, p
}

func TestCopyDeltaDigests(t *testing.T) {
	im, delta, _ := smallDelta(t)
	want, _ := delta.Object(format.BaseDigestsKey)

	dst := memstore.New()
	if err := copyDeltaDigests(context.Background(), im, dst); err != nil {
		t.Fatal(err)
	}
	if got, _ := dst.Object(format.BaseDigestsKey); !bytes.Equal(got, want) {
		t.Fatal("the copied base digests differ from the delta's")
	}

	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"a flipped digest", func(b []byte) []byte { b[len(b)-format.BaseDigestsTrailerSize-1] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"an entry removed", func(b []byte) []byte {
			// Header, then two entries of 16 + 8 bytes: drop the second
			// and fix the trailer's count, so only the manifest can tell.
			out := append(bytes.Clone(b[:format.BaseDigestsHeaderSize+24]), b[format.BaseDigestsHeaderSize+48:]...)
			out[len(out)-16] = 1
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := memstore.New()
			for _, k := range delta.Keys() {
				b, _ := delta.Object(k)
				src.SetObject(k, bytes.Clone(b))
			}
			src.SetObject(format.BaseDigestsKey, tc.mutate(bytes.Clone(want)))
			dst := memstore.New()
			err := copyDeltaDigests(context.Background(), im.In(src), dst)
			if KindOf(err) != KindIntegrity {
				t.Fatalf("copy of damaged base digests: %v, want an integrity failure", err)
			}
			if _, ok := dst.Object(format.BaseDigestsKey); ok {
				t.Fatal("damaged base digests were stored")
			}
		})
	}
}

// TestVerifyWritten: the read-back after a delta's writes fails when the
// target does not hold what the delta wrote, and passes when it does.
func TestVerifyWritten(t *testing.T) {
	im, _, src := smallDelta(t)
	m := im.Manifest()
	var stored []uint64
	for i, c := range m.Chunks {
		if c.Kind == format.KindStored {
			stored = append(stored, uint64(i))
		}
	}
	if len(stored) == 0 {
		t.Fatal("the delta stores no chunk")
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func([]byte)
		ok   bool
	}{
		{"as written", func([]byte) {}, true},
		{"one byte lost", func(b []byte) { off, _ := m.ChunkRange(stored[len(stored)-1]); b[off+100] ^= 1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(data)
			tc.edit(b)
			p := filepath.Join(t.TempDir(), "target.img")
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			n, err := verifyWritten(context.Background(), m, &restoreTarget{path: p, f: f, regular: true, size: m.Header.Size}, stored, 2)
			switch {
			case tc.ok && err != nil:
				t.Fatalf("verifyWritten: %v", err)
			case tc.ok && n != int64(len(stored))*int64(m.Header.ChunkSize):
				t.Errorf("verified %d bytes, want %d", n, len(stored)*m.Header.ChunkSize)
			case !tc.ok && KindOf(err) != KindIntegrity:
				t.Fatalf("verifyWritten of a target that lost a byte: %v, want an integrity failure", err)
			}
		})
	}
}
