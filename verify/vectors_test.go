package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store/storetest/memstore"
	"github.com/seedship/seedship/verify"
)

const vectorDir = "../testdata/vectors"

// vectorSpec is the part of a vector.json this test needs (the full
// schema is in format/vectors_test.go and testdata/vectors/README.md).
type vectorSpec struct {
	Base   string `json:"base"`
	Mutate *struct {
		Key      string `json:"key"`
		Offset   int64  `json:"offset"`
		Xor      byte   `json:"xor"`
		Truncate *int64 `json:"truncate"`
		Delete   bool   `json:"delete"`
	} `json:"mutate"`
	ExpectErr string   `json:"expect_error"`
	BadChunks []uint64 `json:"bad_chunks"`
}

// loadVector puts a vector's image, mutated for a corrupt vector, into a
// memory store.
func loadVector(t *testing.T, name string) (*memstore.Store, vectorSpec) {
	t.Helper()
	var v vectorSpec
	b, err := os.ReadFile(filepath.Join(vectorDir, name, "vector.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	base := name
	if v.Base != "" {
		base = v.Base
	}
	st := memstore.New()
	root := filepath.Join(vectorDir, base, "image")
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		st.SetObject(filepath.ToSlash(rel), b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if mu := v.Mutate; mu != nil {
		b, _ := st.Object(mu.Key)
		switch {
		case mu.Delete:
			if err := st.Delete(context.Background(), mu.Key); err != nil {
				t.Fatal(err)
			}
		case mu.Truncate != nil:
			n := *mu.Truncate
			if n < 0 {
				n += int64(len(b))
			}
			st.SetObject(mu.Key, b[:n])
		default:
			off := mu.Offset
			if off < 0 {
				off += int64(len(b))
			}
			b[off] ^= mu.Xor
			st.SetObject(mu.Key, b)
		}
	}
	return st, v
}

// TestVectorsAgreeWithVerify runs the tool's check on every test vector:
// each clean vector verifies with no finding and every check listed, each
// corrupt one fails with its documented error class (and bad chunks).
func TestVectorsAgreeWithVerify(t *testing.T) {
	ents, err := os.ReadDir(vectorDir)
	if err != nil {
		t.Fatal(err)
	}
	class := map[string]error{"corrupt": format.ErrCorrupt, "format": format.ErrFormat, "version": format.ErrVersion,
		"checksum": format.ErrChecksum, "missing": format.ErrMissing}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		t.Run(e.Name(), func(t *testing.T) {
			ctx := context.Background()
			st, v := loadVector(t, e.Name())
			im, err := seed.Open(ctx, st)
			if v.Mutate != nil && v.Mutate.Key == format.ManifestKey {
				if !errors.Is(err, class[v.ExpectErr]) {
					t.Fatalf("open: %v, want an error wrapping %v", err, class[v.ExpectErr])
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rep, err := verify.CheckImage(ctx, im, verify.CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if v.Base == "" {
				if !rep.OK() {
					t.Fatalf("clean vector has findings: %v", rep.Findings)
				}
				want := []verify.CheckKind{verify.CheckChunkHashes, verify.CheckBlockDigests, verify.CheckSegments}
				if im.Manifest().Stripes() > 0 {
					want = append(want, verify.CheckParityRows)
				}
				if want = append(want, verify.CheckManifests); !slices.Equal(rep.Checked, want) {
					t.Fatalf("checked %v, want %v", rep.Checked, want)
				}
				return
			}
			found := slices.ContainsFunc(rep.Findings, func(f verify.Finding) bool { return errors.Is(f.Err, class[v.ExpectErr]) })
			if !found || !format.IsDamage(rep.Findings[0].Err) {
				t.Fatalf("findings %v: want damage wrapping %v", rep.Findings, class[v.ExpectErr])
			}
			if v.BadChunks != nil && !slices.Equal(rep.BadChunks(), v.BadChunks) {
				t.Fatalf("bad chunks %v, want %v", rep.BadChunks(), v.BadChunks)
			}
		})
	}
}

// TestParityVectorsLoseSegments: in each stripe of the parity vectors
// (spec §9: "parity" 2+1 with a short last stripe, "parity-balanced" 3+2
// whose segments grew together), losing any M segments leaves the image
// repairable, and the chunks parity rebuilds are the source's; losing M+1
// is reported with the lost chunks named.
func TestParityVectorsLoseSegments(t *testing.T) {
	for _, name := range []string{"parity", "parity-balanced"} {
		src, err := os.ReadFile(filepath.Join(vectorDir, name, "source.bin"))
		if err != nil {
			t.Fatal(err)
		}
		st, _ := loadVector(t, name)
		im0, err := seed.Open(context.Background(), st)
		if err != nil {
			t.Fatal(err)
		}
		m := im0.Manifest()
		g, _ := m.Geometry()
		for s := range uint32(m.Stripes()) {
			var shards []format.SegmentID
			for i := range g.K + g.M {
				if id := g.Shard(s, i); id.Kind == format.SegmentParity || slices.ContainsFunc(m.Segments, func(x format.SegmentSummary) bool { return x.Number == id.Number }) {
					shards = append(shards, id)
				}
			}
			// The first M shards of the stripe (data first), then
			// the last M (parity last), then M+1.
			lose := [][]format.SegmentID{shards[:g.M], shards[len(shards)-g.M:]}
			if len(shards) > g.M+1 {
				lose = append(lose, shards[:g.M+1])
			}
			for _, gone := range lose {
				t.Run(fmt.Sprintf("%s/stripe %d/lose %d", name, s, len(gone)), func(t *testing.T) {
					ctx := context.Background()
					st, _ := loadVector(t, name)
					for _, id := range gone {
						if err := st.Delete(ctx, id.Key()); err != nil {
							t.Fatal(err)
						}
					}
					im, err := seed.Open(ctx, st)
					if err != nil {
						t.Fatal(err)
					}
					rep, err := verify.CheckImage(ctx, im, verify.CheckOptions{})
					if err != nil {
						t.Fatal(err)
					}
					if rep.OK() {
						t.Fatal("verify found nothing missing")
					}
					if len(gone) > g.M {
						if rep.Repairable(m) || len(rep.LostChunks(m)) == 0 {
							t.Fatalf("%d segments of a %d+%d stripe lost: repairable %v, lost chunks %v", len(gone), g.K, g.M, rep.Repairable(m), rep.LostChunks(m))
						}
						return
					}
					if !rep.Repairable(m) || len(rep.LostChunks(m)) != 0 {
						t.Fatalf("%v lost: repairable %v, lost chunks %v", gone, rep.Repairable(m), rep.LostChunks(m))
					}
					rebuilt := 0
					_, err = im.Rebuild(ctx, rep.Findings, func(i uint64, raw []byte) error {
						off, length := m.ChunkRange(i)
						if !bytes.Equal(raw, src[off:off+length]) {
							t.Errorf("chunk %d rebuilt wrong", i)
						}
						rebuilt++
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					if want := len(rep.BadChunks()); rebuilt != want {
						t.Fatalf("rebuilt %d chunks, %d were damaged", rebuilt, want)
					}
				})
			}
		}
	}
}
