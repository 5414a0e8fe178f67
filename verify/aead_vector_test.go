package verify_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"filippo.io/age"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store/storetest/memstore"
	"github.com/seedship/seedship/verify"
)

// The encrypted test vector (spec §11.8): an image made from fixed keys,
// which testdata/seal/identity-1.txt opens.
const (
	aeadVectorDir = "../format/testdata/aead"
	aeadIdentity  = "../testdata/seal/identity-1.txt"
)

// aeadVector returns the files of the encrypted vector image by key and
// the identity that opens it.
func aeadVector(t testing.TB) (map[string][]byte, []age.Identity) {
	t.Helper()
	files := map[string][]byte{}
	root := filepath.Join(aeadVectorDir, "image")
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(aeadIdentity)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids, err := seal.ParseIdentitiesFile(aeadIdentity, f)
	if err != nil {
		t.Fatal(err)
	}
	return files, ids
}

// memImage opens files as an image in a memory store, unlocked with ids
// when given.
func memImage(t testing.TB, files map[string][]byte, ids []age.Identity) *seed.Image {
	t.Helper()
	st := memstore.New()
	for k, b := range files {
		st.SetObject(k, bytes.Clone(b))
	}
	im, err := seed.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if ids != nil {
		if err := im.Unlock(ids); err != nil {
			t.Fatal(err)
		}
	}
	return im
}

// TestAEADVectorVerify: the encrypted vector checks clean without its
// key (transport) and with it (deep), and its source matches it through
// verify --device, whose whole-source SHA-256 is the sealed one.
func TestAEADVectorVerify(t *testing.T) {
	files, ids := aeadVector(t)
	ctx := context.Background()
	for _, keyed := range []bool{false, true} {
		var use []age.Identity
		if keyed {
			use = ids
		}
		im := memImage(t, files, use)
		rep, err := verify.CheckImage(ctx, im, verify.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := verify.DepthTransport
		if keyed {
			want = verify.DepthDeep
		}
		if !rep.OK() || rep.Depth != want || rep.ChunksOK != storedChunks(im.Manifest()) || slices.Contains(rep.Checked, verify.CheckStoredDigests) == keyed {
			t.Fatalf("keyed %v: ok %v depth %q chunks %d checked %v findings %v", keyed, rep.OK(), rep.Depth, rep.ChunksOK, rep.Checked, rep.Findings)
		}
	}
	im := memImage(t, files, ids)
	src := filepath.Join(aeadVectorDir, "source.bin")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	rep, err := verify.Device(ctx, im.Manifest(), src, verify.DeviceOptions{Workers: 2, Store: im.Store()})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || rep.SourceSHA256 != hex.EncodeToString(sum[:]) || !slices.Contains(rep.Checked, verify.CheckBlockDigests) {
		t.Fatalf("Device: ok %v sha %s checked %v findings %v", rep.OK(), rep.SourceSHA256, rep.Checked, rep.Findings)
	}
}

// FuzzEncryptedDamage flips bits of one byte anywhere in a data segment
// of the encrypted vector: a check finds it with and without the key,
// and a changed byte of a frame is named as damage of that frame's chunk.
func FuzzEncryptedDamage(f *testing.F) {
	files, ids := aeadVector(f)
	m := memImage(f, files, nil).Manifest()
	for _, c := range m.Chunks {
		if c.Kind != format.KindStored {
			continue
		}
		for _, k := range []int64{0, 8, 23, 24, 30, int64(c.PayloadLen) / 2, c.FrameLen() - 1} {
			f.Add(uint8(c.Segment), uint32(c.Offset+k), uint8(0x01))
		}
	}
	f.Add(uint8(0), uint32(3), uint8(0x80))        // segment header
	f.Add(uint8(1), uint32(65784-70), uint8(0x10)) // index
	f.Add(uint8(2), uint32(1247), uint8(0xff))     // footer
	f.Fuzz(func(t *testing.T, segSel uint8, off uint32, mask uint8) {
		if mask == 0 {
			return
		}
		n := uint32(segSel) % uint32(len(m.Segments))
		key := format.DataID(n).Key()
		b := bytes.Clone(files[key])
		o := int64(off) % int64(len(b))
		b[o] ^= mask
		damaged := map[string][]byte{}
		for k, v := range files {
			damaged[k] = v
		}
		damaged[key] = b
		chunk, inFrame := uint64(0), false
		for i, c := range m.Chunks {
			if c.Kind == format.KindStored && c.Segment == n && o >= c.Offset && o < c.Offset+c.FrameLen() {
				chunk, inFrame = uint64(i), true
			}
		}
		for _, keyed := range []bool{false, true} {
			var use []age.Identity
			if keyed {
				use = ids
			}
			st := memstore.New()
			for k, v := range damaged {
				st.SetObject(k, bytes.Clone(v))
			}
			im, err := seed.Open(context.Background(), st)
			if format.IsDamage(err) {
				// Segment 0's header names another image: the image is
				// refused as a whole, which is finding it too.
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if keyed {
				if err := im.Unlock(use); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := verify.CheckImage(context.Background(), im, verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: 2}})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatalf("keyed %v: byte %d of %s changed (^%#x) and the check passes", keyed, o, key, mask)
			}
			if inFrame && !slices.Contains(rep.BadChunks(), chunk) {
				t.Fatalf("keyed %v: byte %d of %s is in the frame of chunk %d, bad chunks %v: %v", keyed, o, key, chunk, rep.BadChunks(), rep.Findings)
			}
		}
	})
}
