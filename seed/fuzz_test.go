package seed_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"filippo.io/age"

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

// checkAll opens and checks an image; see FuzzImageDamage. It checks it
// twice: by a transport read (stored digests only), then by a deep one
// (every chunk opened, after unlocking an encrypted image with ids);
// each must find the damage of a changed image, and neither any in an
// intact one.
func checkAll(t *testing.T, st *memstore.Store, src []byte, changed bool, ids ...age.Identity) {
	ctx := context.Background()
	im, err := seed.Open(ctx, st)
	if err != nil {
		if !changed {
			t.Fatalf("intact image: %v", err)
		}
		return
	}
	if im.Encrypted() != (len(ids) > 0) {
		t.Fatalf("image encrypted %v, with %d identities", im.Encrypted(), len(ids))
	}
	for _, transport := range []bool{true, false} {
		if !transport {
			if err := im.Unlock(ids); err != nil {
				if !changed || !format.IsDamage(err) {
					t.Fatalf("Unlock (changed %v): %v", changed, err)
				}
				return
			}
		}
		checkOnce(t, im, src, changed, transport)
	}
}

// checkOnce is one check of checkAll.
func checkOnce(t *testing.T, im *seed.Image, src []byte, changed, transport bool) {
	ctx := context.Background()
	var damage []seed.Damage
	add := func(d seed.Damage) { damage = append(damage, d) }
	indexes, err := im.CheckParity(ctx, add)
	if err != nil {
		t.Fatalf("CheckParity failed instead of reporting damage: %v", err)
	}
	m := im.Manifest()
	opts := seed.ReadOptions{Workers: 2, Parity: indexes, Transport: transport,
		OnDamage: func(d seed.Damage) error { add(d); return nil }}
	if !transport {
		opts.OnChunk = func(i uint64, raw []byte) error {
			if off, n := m.ChunkRange(i); !bytes.Equal(raw, src[off:off+n]) {
				t.Errorf("chunk %d delivered with wrong bytes", i)
			}
			return nil
		}
	}
	stats, err := im.Read(ctx, opts)
	if err != nil {
		t.Fatalf("Read (transport %v) failed instead of reporting damage: %v", transport, err)
	}
	if stats.Transport != transport {
		t.Fatalf("Read (transport %v): stats %+v", transport, stats)
	}
	mc, err := im.CheckManifests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	damage = append(damage, mc.Damage...)
	if changed && len(damage) == 0 {
		t.Fatalf("changed image reported intact (transport %v)", transport)
	}
	if !changed && len(damage) != 0 {
		t.Fatalf("intact image reported damaged (transport %v): %v", transport, damage)
	}
	for _, d := range damage {
		if !format.IsDamage(d.Err) {
			t.Fatalf("finding %v is not damage", d)
		}
	}
}

// FuzzEncryptedImageDamage is FuzzImageDamage on an encrypted image with
// parity, made here (random keys and nonces, the same layout every
// time): the transport check without the key and the deep one with it
// must each find any change, and the deep one never deliver wrong bytes.
func FuzzEncryptedImageDamage(f *testing.F) {
	ti, id := encParity(f)
	files := map[string][]byte{}
	for _, k := range ti.st.Keys() {
		b, _ := ti.st.Object(k)
		files[k] = b
	}
	keys := slices.Sorted(maps.Keys(files))
	f.Add(uint8(0), uint32(0), byte(0), uint8(0))        // untouched
	f.Add(uint8(0), uint32(20000), byte(1), uint8(0))    // a data segment's byte
	f.Add(uint8(1), uint32(131000), byte(8), uint8(0))   // near its index
	f.Add(uint8(3), uint32(50), byte(0), uint8(1))       // a cut
	f.Add(uint8(5), uint32(0), byte(0), uint8(2))        // a deletion
	f.Add(uint8(30), uint32(70000), byte(4), uint8(0))   // a parity segment
	f.Add(uint8(255), uint32(700), byte(0x80), uint8(0)) // the manifest or a copy
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
		checkAll(t, st, ti.src, changed, id)
	})
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

// FuzzHostileEncryptedManifest changes bytes of an encrypted image's
// manifest and makes its SHA-256 trailer agree (what anyone without the
// key can do): a keyless check of whatever decodes must fail only with
// damage, never a panic or a hang, and Unlock must refuse every changed
// manifest (its MAC), as integrity damage.
func FuzzHostileEncryptedManifest(f *testing.F) {
	ti, id := encParity(f)
	f.Add(uint32(0), byte(0), uint32(0), byte(0))
	f.Add(uint32(500), byte(1), uint32(900), byte(0x80))
	f.Add(uint32(3000), byte(0xff), uint32(3100), byte(2))
	f.Fuzz(func(t *testing.T, p1 uint32, x1 byte, p2 uint32, x2 byte) {
		b := bytes.Clone(ti.mb)
		body := len(b) - 72
		b[int(p1)%body] ^= x1
		b[int(p2)%body] ^= x2
		changed := !bytes.Equal(b, ti.mb)
		h := sha256.Sum256(b[:body])
		copy(b[body:], h[:])
		m, err := format.DecodeManifest(b)
		if err != nil {
			return
		}
		st := memstore.New()
		for _, k := range ti.st.Keys() {
			v, _ := ti.st.Object(k)
			st.SetObject(k, v)
		}
		st.SetObject(format.ManifestKey, b)
		im := seed.New(st, m, b)
		ctx := context.Background()
		var damage []seed.Damage
		if _, err := im.CheckParity(ctx, func(d seed.Damage) { damage = append(damage, d) }); err != nil && !format.IsDamage(err) {
			t.Fatalf("CheckParity: %v", err)
		}
		if im.Encrypted() {
			stats, err := im.Read(ctx, seed.ReadOptions{Workers: 2,
				OnDamage: func(d seed.Damage) error { damage = append(damage, d); return nil }})
			if err != nil || !stats.Transport {
				t.Fatalf("Read: %v (stats %+v)", err, stats)
			}
		}
		if _, err := im.Stripes(ctx, damage); err != nil && !format.IsDamage(err) {
			t.Fatalf("Stripes: %v", err)
		}
		err = im.Unlock([]age.Identity{id})
		switch {
		case !im.Encrypted():
		case changed && err == nil:
			t.Fatal("a changed manifest unlocked: its MAC did not catch the change")
		case changed && !format.IsDamage(err) && !errors.Is(err, format.ErrNoKey):
			t.Fatalf("Unlock of a changed manifest: %v, want damage (or no key, if the wrapped keys changed)", err)
		case !changed && err != nil:
			t.Fatalf("Unlock of the intact manifest: %v", err)
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
