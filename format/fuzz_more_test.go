package format

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseKey checks that key parsing and key making agree: every key
// ParseKey accepts is exactly the key of the ID it returns.
func FuzzParseKey(f *testing.F) {
	for _, k := range []string{"data/00000000.seg", "parity/00000003.par", "data/99999999.seg", "data/1.seg",
		"data/0000000a.seg", "manifest.ssm", "manifest.ssm.1", "data/00000000.par", "parity/-0000001.par"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if id, ok := ParseKey(key); ok && id.Key() != key {
			t.Fatalf("ParseKey(%q) = %+v, whose key is %q", key, id, id.Key())
		}
		if n, ok := ParseManifestCopyKey(key); ok && (n < 1 || manifestCopyKey(n) != key) {
			t.Fatalf("ParseManifestCopyKey(%q) = %d, whose key is %q", key, n, manifestCopyKey(n))
		}
	})
}

// FuzzReadManifestBytes checks the streaming manifest reader against
// DecodeManifest: it accepts exactly what DecodeManifest accepts, returns
// the same bytes, and fails with a sentinel.
func FuzzReadManifestBytes(f *testing.F) {
	seedFiles(f, ManifestKey)
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, got, err := ReadManifestBytes(bytes.NewReader(b))
		_, derr := DecodeManifest(b)
		if (err == nil) != (derr == nil) {
			t.Fatalf("ReadManifestBytes: %v, DecodeManifest: %v", err, derr)
		}
		if err != nil {
			if !IsDamage(err) && !errors.Is(err, ErrFormat) && !errors.Is(err, ErrVersion) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		if !bytes.Equal(got, b) || m.Hash != sha256Sum(b[:len(b)-manifestTrailerSize]) {
			t.Fatal("accepted manifest bytes differ from the input")
		}
	})
}

// parityVector loads the parity vector's manifest and segments.
func parityVector(tb testing.TB) (*Manifest, map[string][]byte) {
	files := map[string][]byte{}
	root := filepath.Join(vectorDir, "parity", "image")
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	m, err := DecodeManifest(files[ManifestKey])
	if err != nil {
		tb.Fatal(err)
	}
	return m, files
}

// FuzzSegmentReaders damages one byte of, or cuts, a data or parity
// segment of the parity vector and reads it with the manifest-guided
// readers: the index readers must refuse a changed index or footer, and
// the parity stream check must accept exactly the original bytes.
func FuzzSegmentReaders(f *testing.F) {
	m, files := parityVector(f)
	f.Add(uint8(0), uint32(100), byte(1), uint32(0))
	f.Add(uint8(1), uint32(70000), byte(0x80), uint32(0))
	f.Add(uint8(7), uint32(0), byte(0), uint32(300))
	f.Add(uint8(8), uint32(5), byte(2), uint32(0))
	ids := m.SegmentIDs()
	f.Fuzz(func(t *testing.T, which uint8, pos uint32, xor byte, cut uint32) {
		id := ids[int(which)%len(ids)]
		orig := files[id.Key()]
		b := bytes.Clone(orig)
		b[int(pos)%len(b)] ^= xor
		if cut > 0 {
			b = b[:len(b)-int(cut)%len(b)]
		}
		same := bytes.Equal(b, orig)
		r := bytes.NewReader(b)
		if id.Kind == SegmentData {
			entries, err := m.ReadIndexOf(r, id.Number, m.SegmentChunks()[id.Number])
			if same && err != nil {
				t.Fatalf("intact %s: %v", id.Key(), err)
			}
			if err == nil && len(entries) != int(m.Segments[id.Number].Frames) {
				t.Fatalf("%s: %d entries", id.Key(), len(entries))
			}
			// With the index intact, the stored digests alone find
			// exactly the frames whose bytes changed.
			for _, e := range entries {
				end := e.Offset + FrameHeaderSize + int64(e.PayloadLen)
				changed := end > int64(len(b)) || !bytes.Equal(b[e.Offset:end], orig[e.Offset:end])
				var serr error
				if end <= int64(len(b)) {
					serr = e.CheckStored(b[e.Offset:end])
				}
				if changed != (serr != nil || end > int64(len(b))) || (serr != nil && !errors.Is(serr, ErrChecksum)) {
					t.Fatalf("%s chunk %d (changed %v): CheckStored: %v", id.Key(), e.Index, changed, serr)
				}
			}
			return
		}
		idx, err := m.ReadParityIndexOf(r, id.Number)
		if err != nil {
			if same {
				t.Fatalf("intact %s: %v", id.Key(), err)
			}
			return
		}
		id16, _ := m.ImageID()
		err = CheckParityStream(bytes.NewReader(b), id16, idx)
		if same != (err == nil) || (err != nil && !IsDamage(err)) {
			t.Fatalf("%s (changed %v): CheckParityStream: %v", id.Key(), !same, err)
		}
	})
}
