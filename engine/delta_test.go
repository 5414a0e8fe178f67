package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/store/storetest/memstore"
)

// The delta tests use real files, the real directory and in-memory
// stores, and a realistic ext4 image from scripts/mkimage.sh changed by
// 1,000 random 4 KiB writes into its files through a loop mount (when
// root) so that the changed file system is still clean.

// deltaExt4MiB is the size of the ext4 image of the default run; the
// soak build (delta_soak_test.go) runs the 1 GiB case.
const deltaExt4MiB = 64

// makeExt4Image makes a realistic ext4 image of mib MiB in d with
// scripts/mkimage.sh, or skips the test when its tools are missing.
func makeExt4Image(t testing.TB, d string, mib int, seed string) string {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/sbin/" + tool); err != nil {
				t.Skipf("%s not found: the delta tests need e2fsprogs and openssl", tool)
			}
		}
	}
	img := filepath.Join(d, "ext4-"+seed+".img")
	out, err := exec.Command("bash", "../scripts/mkimage.sh", img, strconv.Itoa(mib), seed).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/mkimage.sh: %v\n%s", err, out)
	}
	return img
}

// scatterWrites makes n random 4 KiB writes into img. As root it mounts
// img through a loop device and writes into its regular files (the file
// system stays clean: e2fsck can check the result); otherwise it writes
// at random 4 KiB-aligned offsets of the image itself. It reports
// whether the file system is still meant to be clean.
func scatterWrites(t testing.TB, img string, n int, seed uint64) (clean bool) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	page := make([]byte, 4096)
	if os.Geteuid() == 0 {
		mnt := t.TempDir()
		if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err == nil {
			var files []string
			var sizes []int64
			_ = filepath.Walk(mnt, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() && fi.Size() >= 4096 {
					files, sizes = append(files, p), append(sizes, fi.Size())
				}
				return nil
			})
			var total int64
			for _, sz := range sizes {
				total += sz / 4096
			}
			werr := func() error {
				for range n {
					// A random 4 KiB page of all the files' data.
					k, p := 0, r.Int64N(total)
					for ; p >= sizes[k]/4096; k++ {
						p -= sizes[k] / 4096
					}
					f, err := os.OpenFile(files[k], os.O_WRONLY, 0)
					if err != nil {
						return err
					}
					fillRand(r, page)
					_, err = f.WriteAt(page, p*4096)
					if cerr := f.Close(); err == nil {
						err = cerr
					}
					if err != nil {
						return err
					}
				}
				return nil
			}()
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Fatalf("umount %s: %v\n%s", mnt, err, out)
			}
			if werr != nil {
				t.Fatal(werr)
			}
			return true
		} else {
			t.Logf("mount -o loop failed (%v: %s): writing into the raw image instead", err, out)
		}
	}
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	for range n {
		fillRand(r, page)
		if _, err := f.WriteAt(page, r.Int64N(fi.Size()/4096)*4096); err != nil {
			t.Fatal(err)
		}
	}
	return false
}

// fillRand fills b with pseudo-random bytes, each one changed (a byte
// that kept its value would not be a change).
func fillRand(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] ^= byte(1 + r.IntN(255))
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func fileSHA(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func sameFiles(t testing.TB, a, b string) {
	t.Helper()
	if out, err := exec.Command("cmp", a, b).CombinedOutput(); err != nil {
		t.Fatalf("cmp %s %s: %v: %s", a, b, err, out)
	}
}

// captureStore captures src into st.
func captureStore(t testing.TB, src string, st store.Store, opts engine.CaptureOptions) *format.Manifest {
	t.Helper()
	s, err := engine.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := engine.Capture(context.Background(), s, st, opts)
	if err != nil {
		t.Fatalf("Capture %s: %v", src, err)
	}
	return res.Manifest
}

// deltaInto writes the delta of src against base into dst.
func deltaInto(t testing.TB, base store.Store, src string, dst store.Store, opts engine.DeltaOptions) (*engine.DeltaResult, error) {
	t.Helper()
	s, err := engine.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return engine.Delta(context.Background(), base, s, dst, opts)
}

func dirStore(t testing.TB, name string) *dir.Store {
	t.Helper()
	st, err := dir.New(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func storeBytes(t testing.TB, st store.Store) int64 {
	t.Helper()
	var n int64
	if err := st.List(context.Background(), "", func(i store.Info) error { n += i.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeltaExt4 is the case on a realistic ext4 image (64 MiB in
// the default run, 1 GiB with -tags soak): 1,000 random 4 KiB writes
// after capture, a delta, the base restored onto a target, the delta
// applied, the target equal to the changed source and its file system
// clean; applied twice; refused on another image; resumed after an
// interruption.
func TestDeltaExt4(t *testing.T) {
	runDeltaExt4(t, deltaExt4MiB)
}

func runDeltaExt4(t *testing.T, mib int) {
	d := t.TempDir()
	orig := makeExt4Image(t, d, mib, "1")
	base := dirStore(t, "base")
	captureStore(t, orig, base, engine.CaptureOptions{})
	changed := filepath.Join(d, "changed.img")
	copyFile(t, orig, changed)
	clean := scatterWrites(t, changed, 1000, 7)

	dst := dirStore(t, "delta")
	res, err := deltaInto(t, base, changed, dst, engine.DeltaOptions{})
	if err != nil {
		t.Fatalf("Delta: %v", err)
	}
	size := storeBytes(t, dst)
	t.Logf("delta of a %d MiB ext4 image after 1,000 random 4 KiB writes: %d of %d chunks of %d KiB changed (%d blocks), delta image %d bytes (%.1f MiB), base digests %d bytes, %s",
		mib, res.ChangedChunks, res.Manifest.Header.Chunks, res.Manifest.Header.ChunkSize>>10, res.ChangedBlocks, size, float64(size)/(1<<20), res.DigestsBytes, res.Elapsed)
	if limit := int64(80) << 20; size > limit {
		t.Errorf("delta image is %d bytes, more than the issue's 80 MiB", size)
	}
	if res.ChangedChunks == 0 || res.ChangedChunks > 1100+uint64(mib) {
		t.Errorf("%d changed chunks for 1,000 scattered 4 KiB writes", res.ChangedChunks)
	}
	if h := res.Manifest.Header; h.SHA256 != fileSHA(t, changed) || h.Base == nil || h.Base.ManifestSHA256 != hex.EncodeToString(res.Base.Hash[:]) {
		t.Errorf("delta header sha256 %s base %+v: want the changed source's SHA-256 and the base's manifest hash", h.SHA256, h.Base)
	}

	target := filepath.Join(d, "target.img")
	if _, err := engine.Restore(context.Background(), base, target, engine.RestoreOptions{}); err != nil {
		t.Fatalf("restore the base: %v", err)
	}
	pristine := filepath.Join(d, "pristine.img")
	copyFile(t, target, pristine)

	t.Run("apply", func(t *testing.T) {
		rres, err := engine.Restore(context.Background(), dst, target, engine.RestoreOptions{})
		if err != nil {
			t.Fatalf("apply the delta: %v", err)
		}
		sameFiles(t, target, changed)
		if rres.Delta == nil || rres.Delta.Written != int(res.ChangedChunks) || rres.Delta.AlreadyApplied != 0 || rres.Delta.Checked != int(res.ChangedChunks) {
			t.Errorf("apply reported %+v, want %d chunks checked and written", rres.Delta, res.ChangedChunks)
		}
		if rres.Delta.VerifiedBytes == 0 {
			t.Error("nothing was read back after the write")
		}
		if clean {
			if out, err := exec.Command("e2fsck", "-fn", target).CombinedOutput(); err != nil {
				t.Fatalf("e2fsck -fn of the target after the delta: %v\n%s", err, out)
			}
		}
	})
	t.Run("apply twice", func(t *testing.T) {
		rres, err := engine.Restore(context.Background(), dst, target, engine.RestoreOptions{})
		if err != nil {
			t.Fatalf("apply the delta again: %v", err)
		}
		sameFiles(t, target, changed)
		if rres.Delta.Written != 0 || rres.Delta.AlreadyApplied != int(res.ChangedChunks) {
			t.Errorf("second apply wrote %d chunks (%d already applied); want 0 and %d", rres.Delta.Written, rres.Delta.AlreadyApplied, res.ChangedChunks)
		}
	})
	t.Run("wrong base refused", func(t *testing.T) {
		other := makeExt4Image(t, t.TempDir(), mib, "2")
		otherImg := dirStore(t, "other")
		captureStore(t, other, otherImg, engine.CaptureOptions{})
		wrong := filepath.Join(t.TempDir(), "wrong.img")
		if _, err := engine.Restore(context.Background(), otherImg, wrong, engine.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		before := fileSHA(t, wrong)
		_, err := engine.Restore(context.Background(), dst, wrong, engine.RestoreOptions{})
		if !errors.Is(err, engine.ErrNotBaseState) || engine.KindOf(err) != engine.KindBadInput {
			t.Fatalf("delta onto another image: %v, want bad input naming the base state", err)
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "bytes ") || !strings.Contains(msg, res.Manifest.Header.Base.ManifestSHA256) {
			t.Errorf("refusal %q: want one line naming the first range and the base", msg)
		}
		if after := fileSHA(t, wrong); after != before {
			t.Fatal("the refused target changed")
		}
	})
	t.Run("interrupted apply resumes", func(t *testing.T) {
		tgt := filepath.Join(t.TempDir(), "tgt.img")
		copyFile(t, pristine, tgt)
		// The delta's segment is cut after a third of it: chunks before
		// the cut are written, the rest not.
		seg := res.Manifest.Segments[0]
		mem := memstore.New()
		copyStore(t, dst, mem)
		faulty := memstore.NewFaulty(mem)
		// Every read of a segment longer than that is cut (the index
		// reads of the check before writing are shorter).
		faulty.Add(memstore.Rule{Op: memstore.OpGet, Key: "data/", Kind: memstore.Cut, At: seg.Size / 3})
		_, err := engine.Restore(context.Background(), faulty, tgt, engine.RestoreOptions{Workers: 1, Readers: 1})
		if err == nil || engine.KindOf(err) != engine.KindResumable {
			t.Fatalf("apply through a store that fails: %v, want a resumable failure", err)
		}
		if fileSHA(t, tgt) == fileSHA(t, pristine) {
			t.Fatal("the failed apply wrote nothing: the test does not interrupt it midway")
		}
		rres, err := engine.Restore(context.Background(), mem, tgt, engine.RestoreOptions{Resume: true})
		if err != nil {
			t.Fatalf("apply again after the interruption: %v", err)
		}
		sameFiles(t, tgt, changed)
		if rres.Delta.AlreadyApplied == 0 || rres.Delta.Written == 0 {
			t.Errorf("resumed apply: %d already applied, %d written; want both > 0", rres.Delta.AlreadyApplied, rres.Delta.Written)
		}
	})
	t.Run("cancelled apply resumes", func(t *testing.T) {
		tgt := filepath.Join(t.TempDir(), "tgt.img")
		copyFile(t, pristine, tgt)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// Cancelled once a third of the delta's segment has been read:
		// what was read before is written, the rest not.
		cs := &cancelStore{Store: dst, at: res.Manifest.Segments[0].Size / 3, cancel: cancel}
		_, err := engine.Restore(ctx, cs, tgt, engine.RestoreOptions{Workers: 1, Readers: 1})
		if engine.KindOf(err) != engine.KindInterrupted {
			t.Fatalf("cancelled apply: %v, want interrupted", err)
		}
		if fileSHA(t, tgt) == fileSHA(t, pristine) {
			t.Fatal("the cancelled apply wrote nothing: the test does not interrupt it midway")
		}
		if _, err := engine.Restore(context.Background(), dst, tgt, engine.RestoreOptions{Resume: true}); err != nil {
			t.Fatalf("apply again after the cancellation: %v", err)
		}
		sameFiles(t, tgt, changed)
	})
}

// cancelStore calls cancel once at bytes of a data segment have been
// read through it.
type cancelStore struct {
	store.Store
	at     int64
	cancel func()
}

func (c *cancelStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := c.Store.Get(ctx, key, off, length)
	if err != nil || !strings.HasPrefix(key, "data/") {
		return rc, err
	}
	return &cancelReader{ReadCloser: rc, left: c.at, cancel: c.cancel}, nil
}

type cancelReader struct {
	io.ReadCloser
	left   int64
	cancel func()
}

func (r *cancelReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	if r.left -= int64(n); r.left <= 0 {
		r.cancel()
	}
	return n, err
}

// copyStore copies every object of from into to.
func copyStore(t testing.TB, from, to store.Store) {
	t.Helper()
	ctx := context.Background()
	err := from.List(ctx, "", func(i store.Info) error {
		rc, err := from.Get(ctx, i.Key, 0, -1)
		if err != nil {
			return err
		}
		defer rc.Close()
		return to.Put(ctx, i.Key, rc, i.Size)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// changedCopy writes a copy of data with the given byte ranges
// overwritten by pseudo-random bytes, grown (or cut) to size.
func changedCopy(data []byte, size int, seed uint64, ranges ...[2]int) []byte {
	out := make([]byte, size)
	copy(out, data)
	r := rand.New(rand.NewPCG(seed, 2))
	for _, rg := range ranges {
		fillRand(r, out[rg[0]:rg[1]])
	}
	return out
}

// TestDeltaGeometry covers sources whose size is no multiple of a block,
// sources that grew (also from a base ending inside a block), a source
// that did not change, changes to zeros, larger delta chunks and parity.
func TestDeltaGeometry(t *testing.T) {
	t.Parallel()
	const B = 64 * kib
	base := randBytes(3, 10*B+1000)
	copy(base[2*B:4*B], make([]byte, 2*B)) // zero blocks in the base
	tests := []struct {
		name    string
		source  []byte
		opts    engine.DeltaOptions
		changed uint64 // chunks the delta writes
		// written is how many of them the first apply writes: a grown
		// file target reads as zeros past its end, so a grown source's
		// zeros there are found already applied.
		written int
	}{
		{"unchanged", changedCopy(base, len(base), 1), engine.DeltaOptions{}, 0, 0},
		{"scattered writes", changedCopy(base, len(base), 2, [2]int{100, 200}, [2]int{5*B + 7, 5*B + 9}, [2]int{10*B + 999, 10*B + 1000}), engine.DeltaOptions{}, 3, 3},
		{"written into zero blocks", changedCopy(base, len(base), 3, [2]int{2*B + 5, 2*B + 6}), engine.DeltaOptions{}, 1, 1},
		{"zeroed", func() []byte { c := changedCopy(base, len(base), 4); clear(c[6*B : 7*B]); return c }(), engine.DeltaOptions{}, 1, 1},
		{"grown, base ends inside a block", changedCopy(base, 13*B+17, 5, [2]int{B, B + 1}, [2]int{11 * B, 12 * B}), engine.DeltaOptions{}, 5, 2},
		{"grown, written across the base's end", changedCopy(base, 12*B, 5, [2]int{10*B + 900, 10*B + 1100}), engine.DeltaOptions{}, 2, 1},
		{"grown with zeros only", changedCopy(base, 12*B, 6), engine.DeltaOptions{}, 2, 0},
		{"256 KiB delta chunks", changedCopy(base, len(base), 7, [2]int{100, 200}, [2]int{9 * B, 9*B + 1}), engine.DeltaOptions{ChunkSize: 4 * B}, 2, 2},
		{"parity", changedCopy(base, len(base), 8, [2]int{3 * B, 3*B + 10}, [2]int{8 * B, 8*B + 10}), engine.DeltaOptions{Parity: &format.Geometry{K: 2, M: 1}, SegmentSize: B}, 2, 2},
	}
	baseSt := dirStore(t, "base")
	captureStore(t, writeSource(t, base), baseSt, engine.CaptureOptions{ChunkSize: 4 * B})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := writeSource(t, tt.source)
			dst := dirStore(t, "delta")
			res, err := deltaInto(t, baseSt, src, dst, tt.opts)
			if err != nil {
				t.Fatalf("Delta: %v", err)
			}
			if res.ChangedChunks != tt.changed {
				t.Errorf("delta writes %d chunks, want %d", res.ChangedChunks, tt.changed)
			}
			target := filepath.Join(t.TempDir(), "target.img")
			if _, err := engine.Restore(context.Background(), baseSt, target, engine.RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				rres, err := engine.Restore(context.Background(), dst, target, engine.RestoreOptions{})
				if err != nil {
					t.Fatalf("apply %d: %v", round+1, err)
				}
				got, _ := os.ReadFile(target)
				if !bytes.Equal(got, tt.source) {
					t.Fatalf("apply %d: target (%d bytes) differs from the changed source (%d bytes)", round+1, len(got), len(tt.source))
				}
				if want := map[int]int{0: tt.written, 1: 0}[round]; rres.Delta.Written != want {
					t.Errorf("apply %d wrote %d chunks, want %d", round+1, rres.Delta.Written, want)
				}
			}
		})
	}
}

// TestDeltaChain: deltas of deltas, three deep, each applied onto the
// target that received the one before; and a delta of a delta refused on
// a target that did not.
func TestDeltaChain(t *testing.T) {
	t.Parallel()
	const B = 64 * kib
	states := [][]byte{randBytes(6, 12*B+300)}
	states = append(states, changedCopy(states[0], len(states[0]), 1, [2]int{B, B + 9}, [2]int{5 * B, 5*B + 1}))
	states = append(states, changedCopy(states[1], 14*B, 2, [2]int{B + 4, B + 5}, [2]int{13 * B, 13*B + 1}))   // the same block again; grown
	states = append(states, changedCopy(states[2], 14*B, 3, [2]int{7 * B, 7*B + 1}, [2]int{13 * B, 13*B + 2})) // a grown block again
	images := []store.Store{dirStore(t, "full")}
	captureStore(t, writeSource(t, states[0]), images[0], engine.CaptureOptions{ChunkSize: 4 * B})
	target := filepath.Join(t.TempDir(), "target.img")
	if _, err := engine.Restore(context.Background(), images[0], target, engine.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for n := 1; n < len(states); n++ {
		dst := dirStore(t, "delta")
		// The chain below the base, nearest first.
		var chain []store.Store
		for k := n - 2; k >= 0; k-- {
			chain = append(chain, images[k])
		}
		if _, err := deltaInto(t, images[n-1], writeSource(t, states[n]), dst, engine.DeltaOptions{Chain: chain}); err != nil {
			t.Fatalf("delta %d: %v", n, err)
		}
		images = append(images, dst)
		if n == 2 {
			// Onto a target that holds the full image only, not the
			// first delta: refused where the first delta wrote.
			other := filepath.Join(t.TempDir(), "other.img")
			if _, err := engine.Restore(context.Background(), images[0], other, engine.RestoreOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := engine.Restore(context.Background(), dst, other, engine.RestoreOptions{}); !errors.Is(err, engine.ErrNotBaseState) {
				t.Fatalf("delta of a delta onto the full image's target: %v, want refused", err)
			}
		}
		if _, err := engine.Restore(context.Background(), dst, target, engine.RestoreOptions{}); err != nil {
			t.Fatalf("apply delta %d: %v", n, err)
		}
		if got, _ := os.ReadFile(target); !bytes.Equal(got, states[n]) {
			t.Fatalf("after delta %d the target differs from the source", n)
		}
	}
}

// TestDeltaRefusals: what delta and restore refuse, each before writing.
func TestDeltaRefusals(t *testing.T) {
	t.Parallel()
	const B = 64 * kib
	data := randBytes(4, 8*B)
	baseSt := dirStore(t, "base")
	captureStore(t, writeSource(t, data), baseSt, engine.CaptureOptions{ChunkSize: 2 * B})
	changed := changedCopy(data, len(data), 9, [2]int{B, B + 1})
	deltaSt := dirStore(t, "delta")
	if _, err := deltaInto(t, baseSt, writeSource(t, changed), deltaSt, engine.DeltaOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("shrunk source", func(t *testing.T) {
		dst := dirStore(t, "d")
		_, err := deltaInto(t, baseSt, writeSource(t, data[:7*B]), dst, engine.DeltaOptions{})
		if engine.KindOf(err) != engine.KindBadInput || !strings.Contains(err.Error(), "smaller") {
			t.Fatalf("delta of a shrunk source: %v, want bad input", err)
		}
		if storeBytes(t, dst) != 0 {
			t.Error("the refused delta wrote to its destination")
		}
	})
	t.Run("delta of a delta without its chain", func(t *testing.T) {
		_, err := deltaInto(t, deltaSt, writeSource(t, changed), dirStore(t, "d"), engine.DeltaOptions{})
		if engine.KindOf(err) != engine.KindBadInput || !strings.Contains(err.Error(), "--chain") {
			t.Fatalf("delta against a delta: %v, want bad input", err)
		}
	})
	t.Run("delta of a delta with a wrong chain", func(t *testing.T) {
		_, err := deltaInto(t, deltaSt, writeSource(t, changed), dirStore(t, "d"), engine.DeltaOptions{Chain: []store.Store{deltaSt}})
		if engine.KindOf(err) != engine.KindBadInput || !strings.Contains(err.Error(), "is not the base of") {
			t.Fatalf("delta against a delta with a wrong chain: %v, want bad input", err)
		}
	})
	t.Run("target missing", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "none.img")
		_, err := engine.Restore(context.Background(), deltaSt, target, engine.RestoreOptions{})
		if engine.KindOf(err) != engine.KindBadInput {
			t.Fatalf("delta onto a missing target: %v, want bad input", err)
		}
		if _, serr := os.Stat(target); !errors.Is(serr, os.ErrNotExist) {
			t.Error("the refused restore created the target")
		}
	})
	t.Run("damaged base digests", func(t *testing.T) {
		mem := memstore.New()
		copyStore(t, deltaSt, mem)
		b, _ := mem.Object(format.BaseDigestsKey)
		b[len(b)-30] ^= 1 // a digest of the last entry
		mem.SetObject(format.BaseDigestsKey, b)
		target := filepath.Join(t.TempDir(), "target.img")
		if _, err := engine.Restore(context.Background(), baseSt, target, engine.RestoreOptions{}); err != nil {
			t.Fatal(err)
		}
		before := fileSHA(t, target)
		_, err := engine.Restore(context.Background(), mem, target, engine.RestoreOptions{})
		if engine.KindOf(err) != engine.KindIntegrity {
			t.Fatalf("delta with a damaged base.digests: %v, want an integrity failure", err)
		}
		if fileSHA(t, target) != before {
			t.Fatal("the target changed")
		}
	})
	t.Run("digest-only image", func(t *testing.T) {
		// An all-zero source's digest-only image has no frames: its
		// manifest is all it takes.
		mem := memstore.New()
		captureStore(t, writeSource(t, make([]byte, 2*B)), mem, engine.CaptureOptions{ChunkSize: B})
		mb0, _ := mem.Object(format.ManifestKey)
		m, err := format.DecodeManifest(mb0)
		if err != nil {
			t.Fatal(err)
		}
		m.Header.Requires = append(m.Header.Requires, format.FeatureDigestOnly)
		mb, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		mem.SetObject(format.ManifestKey, mb)
		target := filepath.Join(t.TempDir(), "target.img")
		_, err = engine.Restore(context.Background(), mem, target, engine.RestoreOptions{})
		if engine.KindOf(err) != engine.KindBadInput || !strings.Contains(err.Error(), "digest-only") {
			t.Fatalf("restore of a digest-only image: %v, want bad input", err)
		}
		if _, serr := os.Stat(target); !errors.Is(serr, os.ErrNotExist) {
			t.Error("the refused restore created the target")
		}
	})
}

// rangeStore records the ranges asked of each key of the store it
// wraps, and counts the bytes served.
type rangeStore struct {
	countingStore
	mu     sync.Mutex
	ranges map[string][][2]int64 // key → [off, length] of each Get
}

func (c *rangeStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	c.mu.Lock()
	if c.ranges == nil {
		c.ranges = map[string][][2]int64{}
	}
	c.ranges[key] = append(c.ranges[key], [2]int64{off, length})
	c.mu.Unlock()
	return c.countingStore.Get(ctx, key, off, length)
}

// TestDeltaReadsOnlyBaseIndexes: computing a delta reads of its base the
// manifest and the segments' indexes and footers, never a frame.
func TestDeltaReadsOnlyBaseIndexes(t *testing.T) {
	t.Parallel()
	const B = 64 * kib
	data := randBytes(5, 64*B)
	mem := memstore.New()
	captureStore(t, writeSource(t, data), mem, engine.CaptureOptions{ChunkSize: 4 * B, SegmentSize: 8 * B})
	mb0, _ := mem.Object(format.ManifestKey)
	m, err := format.DecodeManifest(mb0)
	if err != nil {
		t.Fatal(err)
	}
	counted := &rangeStore{countingStore: countingStore{Store: mem}}
	changed := changedCopy(data, len(data), 11, [2]int{3 * B, 3*B + 1}, [2]int{40 * B, 40*B + 1})
	res, err := deltaInto(t, counted, writeSource(t, changed), dirStore(t, "d"), engine.DeltaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.ChangedChunks != 2 {
		t.Errorf("%d changed chunks, want 2", res.ChangedChunks)
	}
	var stored int64
	for _, s := range m.Segments {
		stored += s.Size
	}
	var frames int64
	for key, rs := range counted.ranges {
		id, ok := format.ParseKey(key)
		if !ok {
			continue
		}
		s, _ := m.Summary(id)
		chunks := m.SegmentChunks()[id.Number]
		last := m.Chunks[chunks[len(chunks)-1]]
		indexAt := last.Offset + last.FrameLen()
		for _, r := range rs {
			// The segment header (its image ID) and the index and
			// footer are not payloads.
			if r[0] < indexAt && r[0]+r[1] > format.SegmentHeaderSize {
				frames++
				t.Errorf("read %s bytes %d+%d, before its index at %d (of %d bytes)", key, r[0], r[1], indexAt, s.Size)
			}
		}
	}
	mb := int64(len(mb0))
	t.Logf("base: %d segments, %d stored bytes; the delta read %d bytes of it (manifest %d)", len(m.Segments), stored, counted.read.Load(), mb)
	if got := counted.read.Load(); got > mb+int64(len(m.Segments))*(64+92+8*64)*4 {
		t.Errorf("the delta read %d bytes of the base, more than its manifest and indexes", got)
	}
}

// TestDeltaInterruptedLeavesNothing: a delta cancelled midway removes
// what it wrote, so that the same command can be run again.
func TestDeltaInterruptedLeavesNothing(t *testing.T) {
	t.Parallel()
	const B = 64 * kib
	data := randBytes(8, 256*B) // 16 MiB: four of the delta's read units
	mem := memstore.New()
	captureStore(t, writeSource(t, data), mem, engine.CaptureOptions{ChunkSize: 4 * B})
	var ranges [][2]int
	for k := 0; k < 256; k += 3 {
		ranges = append(ranges, [2]int{k * B, k*B + 1})
	}
	src := writeSource(t, changedCopy(data, len(data), 12, ranges...))
	dst := dirStore(t, "delta")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancelled once the delta's first segment is stored.
	hooked := &putHookStore{Store: dst, prefix: "data/", hook: cancel}
	s, err := engine.OpenSource(src)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = engine.Delta(ctx, mem, s, hooked, engine.DeltaOptions{SegmentSize: B, Workers: 1})
	if engine.KindOf(err) != engine.KindInterrupted {
		t.Fatalf("cancelled delta: %v, want interrupted", err)
	}
	if !hooked.fired.Load() {
		t.Fatal("no segment was stored before the cancellation: the test does not interrupt the delta midway")
	}
	if n := storeBytes(t, dst); n != 0 {
		t.Fatalf("the cancelled delta left %d bytes in its destination", n)
	}
	if _, err := deltaInto(t, mem, src, dst, engine.DeltaOptions{}); err != nil {
		t.Fatalf("the same delta again: %v", err)
	}
}

// putHookStore calls hook once a Put of a key with prefix succeeded.
type putHookStore struct {
	store.Store
	prefix string
	hook   func()
	fired  atomic.Bool
}

func (p *putHookStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	err := p.Store.Put(ctx, key, r, size)
	if err == nil && strings.HasPrefix(key, p.prefix) && p.fired.CompareAndSwap(false, true) {
		p.hook()
	}
	return err
}

func (p *putHookStore) Unwrap() store.Store { return p.Store }

// TestDeltaGrownPastAReadUnit: a source that grew by more than the
// delta's read unit (4 MiB), so whole units lie past the base's end.
func TestDeltaGrownPastAReadUnit(t *testing.T) {
	t.Parallel()
	const B = 64 * kib
	base := randBytes(31, 64*B)
	changed := changedCopy(base, 150*B+5, 13, [2]int{2 * B, 2*B + 1}, [2]int{70 * B, 71 * B}, [2]int{149 * B, 150*B + 5})
	baseSt := dirStore(t, "base")
	captureStore(t, writeSource(t, base), baseSt, engine.CaptureOptions{})
	deltaSt := dirStore(t, "delta")
	if _, err := deltaInto(t, baseSt, writeSource(t, changed), deltaSt, engine.DeltaOptions{}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "target.img")
	if _, err := engine.Restore(context.Background(), baseSt, target, engine.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Restore(context.Background(), deltaSt, target, engine.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, changed) {
		t.Fatal("target differs from the grown source")
	}
}

// TestDeltaTornChunk: an apply interrupted inside a chunk leaves some of
// its blocks with the delta's bytes and the rest with the base's; applying
// again accepts that chunk and completes it. A block with other bytes in
// the same chunk is refused.
func TestDeltaTornChunk(t *testing.T) {
	t.Parallel()
	const B = 64 * kib
	base := randBytes(41, 16*B)
	changed := changedCopy(base, len(base), 14, [2]int{4*B + 1, 4*B + 2}, [2]int{6*B + 1, 6*B + 2}) // blocks 4 and 6: delta chunk 1
	baseSt := dirStore(t, "base")
	captureStore(t, writeSource(t, base), baseSt, engine.CaptureOptions{})
	deltaSt := dirStore(t, "delta")
	if _, err := deltaInto(t, baseSt, writeSource(t, changed), deltaSt, engine.DeltaOptions{ChunkSize: 4 * B}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		torn    []byte // what block 4 holds before the apply
		refused bool
	}{
		{"half applied", changed[4*B : 5*B], false},
		{"foreign block", randBytes(42, B), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "target.img")
			before := bytes.Clone(base)
			copy(before[4*B:], tc.torn)
			if err := os.WriteFile(target, before, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := engine.Restore(context.Background(), deltaSt, target, engine.RestoreOptions{})
			got, _ := os.ReadFile(target)
			if tc.refused {
				if !errors.Is(err, engine.ErrNotBaseState) || !strings.Contains(err.Error(), "bytes 262144-524287") {
					t.Fatalf("apply onto a foreign block: %v, want refused naming bytes 262144-524287", err)
				}
				if !bytes.Equal(got, before) {
					t.Fatal("the refused target changed")
				}
				return
			}
			if err != nil {
				t.Fatalf("apply onto a torn chunk: %v", err)
			}
			if !bytes.Equal(got, changed) {
				t.Fatal("target differs from the changed source")
			}
		})
	}
}

// TestDeltaAgainstDigestOnlyImage: when the whole disk was shipped and a
// digest-only image recorded it, a delta against that image catches the
// shipped disk up; the digest-only image itself cannot be restored.
func TestDeltaAgainstDigestOnlyImage(t *testing.T) {
	t.Parallel()
	const B = 64 * kib
	data := randBytes(51, 40*B)
	clear(data[20*B : 30*B])
	digests := dirStore(t, "digests")
	captureStore(t, writeSource(t, data), digests, engine.CaptureOptions{DigestOnly: true, ChunkSize: 4 * B})
	shipped := writeSource(t, data) // the disk that travelled
	changed := changedCopy(data, len(data), 15, [2]int{3 * B, 3*B + 2}, [2]int{25 * B, 25*B + 1})
	deltaSt := dirStore(t, "delta")
	res, err := deltaInto(t, digests, writeSource(t, changed), deltaSt, engine.DeltaOptions{})
	if err != nil {
		t.Fatalf("delta against a digest-only image: %v", err)
	}
	if res.ChangedChunks != 2 {
		t.Errorf("%d changed chunks, want 2", res.ChangedChunks)
	}
	if _, err := engine.Restore(context.Background(), deltaSt, shipped, engine.RestoreOptions{}); err != nil {
		t.Fatalf("apply onto the shipped disk: %v", err)
	}
	if got, _ := os.ReadFile(shipped); !bytes.Equal(got, changed) {
		t.Fatal("the shipped disk differs from the source after the delta")
	}
	target := filepath.Join(t.TempDir(), "target.img")
	if _, err := engine.Restore(context.Background(), digests, target, engine.RestoreOptions{}); engine.KindOf(err) != engine.KindBadInput {
		t.Fatalf("restore of a digest-only image: %v, want bad input", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Error("the refused restore created its target")
	}
}
