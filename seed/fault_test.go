package seed_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/store/storetest/memstore"
)

// toDir writes an image held in memory into a directory store.
func toDir(t *testing.T, ti testImage) (string, *dir.Store) {
	t.Helper()
	root := t.TempDir()
	for _, k := range ti.st.Keys() {
		b, _ := ti.st.Object(k)
		p := filepath.Join(root, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, err := dir.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return root, st
}

// TestOperationalFailureIsNotDamage: a failing, stalled or cut read stops
// the read with an error that is not damage; corrupted bytes are damage.
func TestOperationalFailureIsNotDamage(t *testing.T) {
	ti := small(t)
	seg := format.DataID(1).Key()
	for _, tc := range []struct {
		name   string
		rule   memstore.Rule
		damage bool
	}{
		{"fail", memstore.Rule{Op: memstore.OpGet, Key: seg, Kind: memstore.Fail}, false},
		{"cut", memstore.Rule{Op: memstore.OpGet, Key: seg, Kind: memstore.Cut, At: 1000}, false},
		{"stall", memstore.Rule{Op: memstore.OpGet, Key: seg, Kind: memstore.Stall, At: 1000}, false},
		{"corrupt", memstore.Rule{Op: memstore.OpGet, Key: seg, Kind: memstore.Corrupt, At: 100}, true},
		// A body that ends early (io.ErrUnexpectedEOF) while the store
		// holds the whole object was cut in transit, as a dropped S3
		// connection is: not damage.
		{"truncated body of a complete object", memstore.Rule{Op: memstore.OpGet, Key: seg, Kind: memstore.Truncate, At: 1000}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := memstore.NewFaulty(ti.st)
			im := seed.New(f, ti.m, ti.mb)
			f.Add(tc.rule)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			var damage []seed.Damage
			_, err := im.Read(ctx, seed.ReadOptions{Workers: 2, Readers: 1,
				OnDamage: func(d seed.Damage) error { damage = append(damage, d); return nil }})
			if tc.damage {
				if err != nil || len(damage) == 0 || !format.IsDamage(damage[0].Err) {
					t.Fatalf("err %v, damage %v: want damage reported, read completed", err, damage)
				}
				return
			}
			if err == nil || format.IsDamage(err) || len(damage) != 0 {
				t.Fatalf("err %v (damage %v), findings %v: want an operational error and no damage", err, format.IsDamage(err), damage)
			}
		})
	}
}
