package verify_test

import (
	"context"
	"os"
	"slices"
	"sort"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/verify"
)

// damageOp is one piece of damage decoded from fuzz input: 6 bytes
// [kind, file, off0, off1, off2, value].
const damageOpLen = 6

// applyDamage damages the image files in d as ops says, and returns a
// description of what it did.
func applyDamage(t *testing.T, d string, keys []string, files map[string][]byte, ops []byte) []string {
	t.Helper()
	var did []string
	for len(ops) >= damageOpLen && len(did) < 4 {
		op := ops[:damageOpLen]
		ops = ops[damageOpLen:]
		key := keys[int(op[1])%len(keys)]
		p := path(d, key)
		b, err := os.ReadFile(p)
		if err != nil {
			continue // deleted by an earlier op
		}
		off := int(op[2]) | int(op[3])<<8 | int(op[4])<<16
		val := op[5]
		switch op[0] % 8 {
		case 0, 1, 7: // flip bits
			if len(b) == 0 {
				continue
			}
			off %= len(b)
			mask := val
			if mask == 0 {
				mask = 1 << (op[2] % 8)
			}
			b[off] ^= mask
			did = append(did, "flip "+key+" at "+itoa(off)+" by "+itoa(int(mask)))
		case 2: // overwrite a byte
			if len(b) == 0 {
				continue
			}
			off %= len(b)
			b[off] = val
			did = append(did, "set "+key+" at "+itoa(off)+" to "+itoa(int(val)))
		case 4: // truncate
			off %= len(b) + 1
			if off == len(b) && off > 0 {
				off--
			}
			b = b[:off]
			did = append(did, "truncate "+key+" to "+itoa(off))
		case 6: // delete
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			did = append(did, "delete "+key)
			continue
		case 5: // append bytes
			n := int(val)%64 + 1
			for i := range n {
				b = append(b, byte(off+i))
			}
			did = append(did, "append "+itoa(n)+" bytes to "+key)
		case 3: // overwrite a run of bytes
			if len(b) == 0 {
				continue
			}
			off %= len(b)
			n := min(int(val)+1, len(b)-off)
			for i := range n {
				b[off+i] ^= byte(i*31 + 7)
			}
			did = append(did, "scribble "+key+" at "+itoa(off)+" for "+itoa(n))
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return did
}

func itoa(n int) string {
	var b []byte
	if n == 0 {
		return "0"
	}
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// FuzzParityDamage damages a small parity image at random (bit flips,
// byte overwrites, truncations, appended bytes, deletions in any file: data and parity
// segments, the manifest and its copies) and checks that verify.Check never
// reports an image intact while any file differs from the capture, never
// fails instead of reporting damage, and that whenever it says the damage
// is repairable, a repair succeeds and restores every file byte for byte.
func FuzzParityDamage(f *testing.F) {
	ti := captureParity(f, f.TempDir(), sourceBytes(9, 640*kib+777), format.Geometry{K: 3, M: 2}, 64*kib, 64*kib)
	var keys []string
	for k := range ti.files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if ti.m.Stripes() < 2 {
		f.Fatalf("fuzz image has %d stripes, want at least 2", ti.m.Stripes())
	}
	idx := func(key string) byte { return byte(slices.Index(keys, key)) }
	op := func(kind byte, key string, off int, val byte) []byte {
		return []byte{kind, idx(key), byte(off), byte(off >> 8), byte(off >> 16), val}
	}
	seg0, seg1 := format.DataID(0).Key(), format.DataID(1).Key()
	par0, par1 := format.ParityID(0).Key(), format.ParityID(1).Key()
	f.Add([]byte{})                                                               // no damage: must be intact
	f.Add(op(0, seg0, 1000, 0x01))                                                // a flip in a payload
	f.Add(op(0, seg1, 5, 0x80))                                                   // in a header
	f.Add(op(3, par0, 100, 0))                                                    // a parity row byte
	f.Add(op(4, seg1, 50000, 0))                                                  // a truncation
	f.Add(op(6, par1, 0, 0))                                                      // a parity segment deleted
	f.Add(op(6, format.ManifestKey, 0, 0))                                        // the manifest deleted
	f.Add(op(0, ti.m.CopyKeys()[0], 9, 0x4))                                      // a copy damaged
	f.Add(slices.Concat(op(6, seg0, 0, 0), op(6, seg1, 0, 0), op(6, par0, 0, 0))) // M+1 of stripe 0
	f.Add(slices.Concat(op(7, seg0, 40, 200), op(2, format.ManifestKey, 60, 1), op(4, par1, 70000, 0)))

	f.Fuzz(func(t *testing.T, ops []byte) {
		d := writeTree(t, t.TempDir(), ti.files)
		did := applyDamage(t, d, keys, ti.files, ops)
		changed := len(diffFiles(ti.files, readTree(t, d))) > 0
		st, err := dir.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		m, err := loadManifest(ctx, st)
		if err != nil {
			if !changed {
				t.Fatalf("undamaged image: LoadManifest: %v", err)
			}
			return // unreadable is not intact
		}
		rep, err := verify.Check(ctx, st, m, verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: 1, Readers: 1}})
		if err != nil {
			t.Fatalf("after %v: Check failed instead of reporting damage: %v", did, err)
		}
		if rep.OK() {
			if changed {
				t.Fatalf("after %v: Check reports the image intact; files differing from the capture: %v",
					did, diffFiles(ti.files, readTree(t, d)))
			}
			return
		}
		if !changed {
			t.Fatalf("undamaged image reported damaged: %v", rep.Findings)
		}
		if !rep.Repairable(m) {
			return
		}
		res, err := engine.CheckImage(ctx, st, engine.CheckOptions{Repair: true, Workers: 1})
		if err != nil {
			t.Fatalf("after %v: Check said repairable (%v), the repair failed: %v", did, rep.Findings, err)
		}
		if res.After == nil || !res.After.OK() {
			t.Fatalf("after %v: repair did not leave an intact image", did)
		}
		if diff := diffFiles(ti.files, readTree(t, d)); len(diff) > 0 {
			t.Fatalf("after %v: repaired image differs from the capture: %v", did, diff)
		}
	})
}
