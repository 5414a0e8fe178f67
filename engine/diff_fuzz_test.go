package engine_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/storetest/memstore"
)

// FuzzDiffHostileImage: diff reads an image's manifest and segment
// indexes, which are hostile input. Any byte of them changed, diff must
// either give the right answer (damage to bytes it does not read, such as
// a payload, cannot change it) or fail as bad input or an integrity
// failure; never panic, misclassify damage as a runtime failure, accept a
// changed manifest, or report wrong ranges.
func FuzzDiffHostileImage(f *testing.F) {
	data := chunkPlan("RTZRLR").build(64*kib, 5000, 'T')
	dir := f.TempDir()
	srcPath := filepath.Join(dir, "source.img")
	if err := os.WriteFile(srcPath, data, 0o600); err != nil {
		f.Fatal(err)
	}
	changed := append([]byte(nil), data...)
	changed[70*kib] ^= 1 // chunk 1, block 0
	devPath := filepath.Join(dir, "device.img")
	if err := os.WriteFile(devPath, changed, 0o600); err != nil {
		f.Fatal(err)
	}
	files := map[string][]byte{}
	for _, digestOnly := range []bool{false, true} {
		src, err := engine.OpenSource(srcPath)
		if err != nil {
			f.Fatal(err)
		}
		st := memstore.New()
		_, err = engine.Capture(context.Background(), src, st, engine.CaptureOptions{ChunkSize: 64 * kib, SegmentSize: 128 * kib, Workers: 1, DigestOnly: digestOnly})
		src.Close()
		if err != nil {
			f.Fatal(err)
		}
		prefix := map[bool]string{false: "full/", true: "digests/"}[digestOnly]
		for _, k := range st.Keys() {
			b, _ := st.Object(k)
			files[prefix+k] = b
		}
	}
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i := range keys {
		f.Add(uint8(i), uint32(0), byte(1))
		f.Add(uint8(i), uint32(len(files[keys[i]])-1), byte(0x80))
		f.Add(uint8(i), uint32(len(files[keys[i]])-70), byte(0xff))
	}
	f.Fuzz(func(t *testing.T, which uint8, off uint32, mask byte) {
		key := keys[int(which)%len(keys)]
		prefix := key[:len(key)-len(trimPrefix(key))]
		st := memstore.New()
		for k, b := range files {
			if len(k) < len(prefix) || k[:len(prefix)] != prefix {
				continue
			}
			b = append([]byte(nil), b...)
			if k == key && len(b) > 0 {
				b[int(off)%len(b)] ^= mask
			}
			st.SetObject(k[len(prefix):], b)
		}
		want := map[string][]engine.DiffRange{
			srcPath: nil,
			devPath: {{ByteRange: engine.ByteRange{Offset: 64 * kib, Length: 64 * kib}, Located: true}},
		}
		for _, dev := range []string{srcPath, devPath} {
			var got []engine.DiffRange
			_, err := engine.Diff(context.Background(), st, dev, engine.DiffOptions{Workers: 2, OnRange: func(r engine.DiffRange) error {
				got = append(got, r)
				return nil
			}})
			if err != nil {
				if k := engine.KindOf(err); k != engine.KindBadInput && k != engine.KindIntegrity {
					t.Fatalf("%s damaged at %d: Diff failed with an error of kind %s, not bad input or integrity: %v", key, off, k, err)
				}
				continue
			}
			if trimPrefix(key) == format.ManifestKey && mask != 0 {
				t.Fatalf("Diff accepted a manifest with byte %d changed", int(off)%len(files[key]))
			}
			// Diff reads no payload, so damage there cannot change its
			// answer; damage to what it reads is refused above.
			if !slices.Equal(got, want[dev]) {
				t.Fatalf("%s damaged at %d: Diff of %s reports %v, want %v", key, off, dev, got, want[dev])
			}
		}
	})
}

// trimPrefix drops the fuzz image's "full/" or "digests/" prefix.
func trimPrefix(k string) string {
	for i := range k {
		if k[i] == '/' {
			return k[i+1:]
		}
	}
	return k
}
