package seed_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store/storetest/memstore"
)

// FuzzImageDamage changes one byte of, or cuts, or deletes one file of
// the parity test vector and checks the whole image with seed (manifest,
// copies, every data and parity segment): a check must never fail instead
// of reporting damage, never report an image intact that differs from the
// vector, and whatever chunks it delivers must be the source's bytes.
func FuzzImageDamage(f *testing.F) {
	root, files := parityVectorFiles(f)
	src, err := os.ReadFile(filepath.Join(root, "source.bin"))
	if err != nil {
		f.Fatal(err)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	})
	f.Add(uint8(0), uint32(0), byte(0), uint8(0))      // untouched
	f.Add(uint8(1), uint32(200), byte(1), uint8(0))    // a byte flipped
	f.Add(uint8(5), uint32(50), byte(0), uint8(1))     // a cut
	f.Add(uint8(9), uint32(0), byte(0), uint8(2))      // a deletion
	f.Add(uint8(11), uint32(70000), byte(4), uint8(0)) // the manifest or a copy
	f.Fuzz(func(t *testing.T, which uint8, pos uint32, xor byte, op uint8) {
		st := memstore.New()
		key := keys[int(which)%len(keys)]
		changed := false
		for k, b := range files {
			b = bytes.Clone(b)
			if k == key {
				switch op % 3 {
				case 0:
					b[int(pos)%len(b)] ^= xor
					changed = xor != 0
				case 1:
					b = b[:int(pos)%len(b)]
					changed = true
				case 2:
					changed = true
					continue
				}
			}
			st.SetObject(k, b)
		}
		checkAll(t, st, src, changed)
	})
}

// checkAll opens and checks an image; see FuzzImageDamage.
func checkAll(t *testing.T, st *memstore.Store, src []byte, changed bool) {
	ctx := context.Background()
	im, err := seed.Open(ctx, st)
	if err != nil {
		if !changed {
			t.Fatalf("intact image: %v", err)
		}
		return
	}
	var damage []seed.Damage
	add := func(d seed.Damage) { damage = append(damage, d) }
	indexes, err := im.CheckParity(ctx, add)
	if err != nil {
		t.Fatalf("CheckParity failed instead of reporting damage: %v", err)
	}
	m := im.Manifest()
	_, err = im.Read(ctx, seed.ReadOptions{Workers: 2, Parity: indexes,
		OnDamage: func(d seed.Damage) error { add(d); return nil },
		OnChunk: func(i uint64, raw []byte) error {
			if off, n := m.ChunkRange(i); !bytes.Equal(raw, src[off:off+n]) {
				t.Errorf("chunk %d delivered with wrong bytes", i)
			}
			return nil
		}})
	if err != nil {
		t.Fatalf("Read failed instead of reporting damage: %v", err)
	}
	mc, err := im.CheckManifests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	damage = append(damage, mc.Damage...)
	if changed && len(damage) == 0 {
		t.Fatal("changed image reported intact")
	}
	if !changed && len(damage) != 0 {
		t.Fatalf("intact image reported damaged: %v", damage)
	}
	for _, d := range damage {
		if !format.IsDamage(d.Err) {
			t.Fatalf("finding %v is not damage", d)
		}
	}
}

// FuzzHostileManifest changes bytes of the parity vector's manifest and
// seals it again (a correct trailer hash, as a crafted image would have):
// whatever decodes must be read, checked and rebuilt without a panic, a
// hang or a failure that is not damage, and never deliver wrong bytes.
func FuzzHostileManifest(f *testing.F) {
	_, files := parityVectorFiles(f)
	f.Add(uint32(0), byte(0), uint32(0), byte(0))
	f.Add(uint32(500), byte(1), uint32(900), byte(0x80))
	f.Add(uint32(1000), byte(0xff), uint32(1100), byte(2))
	mb := files[format.ManifestKey]
	f.Fuzz(func(t *testing.T, p1 uint32, x1 byte, p2 uint32, x2 byte) {
		b := bytes.Clone(mb)
		body := len(b) - 40
		b[int(p1)%body] ^= x1
		b[int(p2)%body] ^= x2
		h := sha256.Sum256(b[:body])
		copy(b[body:], h[:])
		m, err := format.DecodeManifest(b)
		if err != nil {
			return
		}
		st := memstore.New()
		for k, v := range files {
			st.SetObject(k, v)
		}
		st.SetObject(format.ManifestKey, b)
		im := seed.New(st, m, b)
		ctx := context.Background()
		var damage []seed.Damage
		if _, err := im.CheckParity(ctx, func(d seed.Damage) { damage = append(damage, d) }); err != nil {
			t.Fatalf("CheckParity: %v", err)
		}
		_, err = im.Read(ctx, seed.ReadOptions{Workers: 2,
			OnDamage: func(d seed.Damage) error { damage = append(damage, d); return nil },
			OnChunk: func(i uint64, raw []byte) error {
				if ce := m.Chunks[i]; format.ChunkHash(raw, nil) != ce.Hash {
					t.Errorf("chunk %d delivered with bytes that fail its hash", i)
				}
				return nil
			}})
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		if _, err := im.Stripes(ctx, damage); err != nil && !format.IsDamage(err) {
			t.Fatalf("Stripes: %v", err)
		}
		if _, err := im.Survey(ctx); err != nil {
			t.Fatalf("Survey: %v", err)
		}
	})
}

// parityVectorFiles reads every file of the parity test vector's image,
// by key; root is the vector's directory.
func parityVectorFiles(f *testing.F) (root string, files map[string][]byte) {
	f.Helper()
	root = filepath.Join("..", "testdata", "vectors", "parity")
	files = map[string][]byte{}
	err := filepath.WalkDir(filepath.Join(root, "image"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(filepath.Join(root, "image"), p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	return root, files
}
