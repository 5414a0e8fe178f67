package engine_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// The diff tests compare real files (a realistic ext4 image made by
// scripts/mkimage.sh) and loop devices with real images, full and
// digest-only, in the directory store.

const diffBlock = 64 * kib

// diffCaptureOpts makes images of many chunks and several segments, so
// that diff crosses chunk and segment boundaries.
func diffCaptureOpts(digestOnly bool) engine.CaptureOptions {
	return engine.CaptureOptions{ChunkSize: 1 << 20, SegmentSize: 8 << 20, Workers: 2, DigestOnly: digestOnly}
}

var (
	ext4Once sync.Once
	ext4Data []byte
	ext4Err  error
)

// realisticSource returns a copy of a 64 MiB ext4 image made by
// scripts/mkimage.sh (text, binaries, random data, free space), written
// to a new file of the test's, and its bytes.
func realisticSource(t *testing.T) (string, []byte) {
	t.Helper()
	ext4Once.Do(func() {
		d, err := os.MkdirTemp("", "seedship-diff-ext4-")
		if err != nil {
			ext4Err = err
			return
		}
		defer os.RemoveAll(d)
		out := filepath.Join(d, "ext4.img")
		cmd := exec.Command("bash", filepath.Join("..", "scripts", "mkimage.sh"), out, "64", "diff")
		if b, err := cmd.CombinedOutput(); err != nil {
			ext4Err = errors.New("scripts/mkimage.sh: " + err.Error() + ": " + string(b))
			return
		}
		ext4Data, ext4Err = os.ReadFile(out)
	})
	if ext4Err != nil {
		t.Fatal(ext4Err)
	}
	data := slices.Clone(ext4Data)
	return writeSource(t, data), data
}

// diffRanges runs engine.Diff and returns its result and every range it
// reported.
func diffRanges(t *testing.T, img store.Store, dev string) (*engine.DiffResult, []engine.DiffRange) {
	t.Helper()
	var got []engine.DiffRange
	res, err := engine.Diff(context.Background(), img, dev, engine.DiffOptions{Workers: 2, OnRange: func(r engine.DiffRange) error {
		got = append(got, r)
		return nil
	}})
	if err != nil {
		t.Fatalf("Diff(%s): %v", dev, err)
	}
	return res, got
}

// blockRanges coalesces the given 64 KiB block numbers into the ranges
// diff must report, within a device of size bytes.
func blockRanges(blocks map[int64]bool, size int64) []engine.DiffRange {
	nums := make([]int64, 0, len(blocks))
	for b := range blocks {
		nums = append(nums, b)
	}
	slices.Sort(nums)
	var out []engine.DiffRange
	for _, b := range nums {
		off := b * diffBlock
		n := min(diffBlock, size-off)
		if l := len(out); l > 0 && out[l-1].End() == off {
			out[l-1].Length += n
			continue
		}
		out = append(out, engine.DiffRange{ByteRange: engine.ByteRange{Offset: off, Length: n}, Located: true})
	}
	return out
}

// randomWrites makes count writes of 4 KiB of random bytes at random
// offsets (not aligned) of data, and returns the 64 KiB blocks they touched.
func randomWrites(data []byte, count int, seed uint64) map[int64]bool {
	r := rand.New(rand.NewPCG(seed, 7))
	touched := map[int64]bool{}
	buf := make([]byte, 4*kib)
	for range count {
		off := r.Int64N(int64(len(data) - len(buf)))
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		copy(data[off:], buf)
		for b := off / diffBlock; b <= (off+int64(len(buf))-1)/diffBlock; b++ {
			touched[b] = true
		}
	}
	return touched
}

func TestDiffRealisticImage(t *testing.T) {
	srcPath, data := realisticSource(t)
	for _, digestOnly := range []bool{false, true} {
		name := map[bool]string{false: "full", true: "digest-only"}[digestOnly]
		t.Run(name, func(t *testing.T) {
			_, st, _ := capture(t, srcPath, diffCaptureOpts(digestOnly))
			t.Run("identical", func(t *testing.T) {
				res, got := diffRanges(t, st, srcPath)
				if !res.Identical() || len(got) != 0 || res.ChangedBytes != 0 || res.Compared != int64(len(data)) {
					t.Fatalf("diff of the captured file: identical %v, ranges %v, changed %d, compared %d of %d",
						res.Identical(), got, res.ChangedBytes, res.Compared, len(data))
				}
			})
			t.Run("1000 random 4 KiB writes", func(t *testing.T) {
				changed := slices.Clone(data)
				touched := randomWrites(changed, 1000, 1)
				dev := writeSource(t, changed)
				res, got := diffRanges(t, st, dev)
				want := blockRanges(touched, int64(len(changed)))
				if !slices.Equal(got, want) {
					t.Fatalf("diff after 1000 writes: %d ranges, want %d (the touched blocks, coalesced)\ngot  %v\nwant %v", len(got), len(want), head(got), head(want))
				}
				var sum int64
				for _, r := range want {
					sum += r.Length
				}
				if res.Identical() || res.ChangedBytes != sum || res.Ranges != int64(len(want)) || res.Unlocated != 0 {
					t.Fatalf("totals: identical %v, changed %d (want %d), ranges %d (want %d), unlocated %d",
						res.Identical(), res.ChangedBytes, sum, res.Ranges, len(want), res.Unlocated)
				}
			})
			t.Run("one changed byte", func(t *testing.T) {
				changed := slices.Clone(data)
				off := int64(len(changed)/2 + 12345)
				changed[off] ^= 0x01
				res, got := diffRanges(t, st, writeSource(t, changed))
				want := blockRanges(map[int64]bool{off / diffBlock: true}, int64(len(changed)))
				if !slices.Equal(got, want) || res.ChangedChunks != 1 {
					t.Fatalf("one byte changed at %d: ranges %v in %d chunk(s), want %v in 1", off, got, res.ChangedChunks, want)
				}
			})
			t.Run("other sizes", func(t *testing.T) {
				size := int64(len(data))
				for _, tc := range []struct {
					name   string
					size   int64
					ranges []engine.DiffRange // within the common part
				}{
					{"shorter at a block boundary", size - 3*diffBlock, nil},
					{"shorter inside a block", size - 3*diffBlock - 1000,
						[]engine.DiffRange{{ByteRange: engine.ByteRange{Offset: size - 4*diffBlock, Length: diffBlock - 1000}, Located: true}}},
					{"longer", size + 5000, nil},
				} {
					t.Run(tc.name, func(t *testing.T) {
						dev := make([]byte, tc.size)
						copy(dev, data)
						res, got := diffRanges(t, st, writeSource(t, dev))
						if !slices.Equal(got, tc.ranges) {
							t.Fatalf("ranges %v, want %v", got, tc.ranges)
						}
						if res.Identical() || res.Compared != min(size, tc.size) || res.DeviceSize != tc.size {
							t.Fatalf("identical %v, compared %d, device size %d: want a difference, %d compared, size %d",
								res.Identical(), res.Compared, res.DeviceSize, min(size, tc.size), tc.size)
						}
						missing, extra := res.Missing(), res.Extra()
						wantMissing, wantExtra := engine.ByteRange{}, engine.ByteRange{}
						if tc.size < size {
							wantMissing = engine.ByteRange{Offset: tc.size, Length: size - tc.size}
						} else {
							wantExtra = engine.ByteRange{Offset: size, Length: tc.size - size}
						}
						if missing != wantMissing || extra != wantExtra {
							t.Fatalf("missing %v, extra %v; want %v, %v", missing, extra, wantMissing, wantExtra)
						}
					})
				}
			})
		})
	}
}

func head(rs []engine.DiffRange) []engine.DiffRange { return rs[:min(len(rs), 5)] }

// TestDiffDamagedIndex: an index diff needs that fails its checks is the
// image's integrity failure, never a wrong answer; damage in an index it
// does not need (no chunk of that segment differs) does not stop it.
func TestDiffDamagedIndex(t *testing.T) {
	data := chunkPlan("RTRRTRRR").build(64*kib, 0, 'R')
	srcPath := writeSource(t, data)
	res, st, root := capture(t, srcPath, engine.CaptureOptions{ChunkSize: 64 * kib, SegmentSize: 128 * kib, Workers: 2})
	m := res.Manifest
	if len(m.Segments) < 2 {
		t.Fatalf("test image has %d segments, want at least 2", len(m.Segments))
	}
	// Damage the last byte of segment 0's index (a block digest).
	seg := filepath.Join(root, filepath.FromSlash(format.DataID(0).Key()))
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-65] ^= 0x01
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	first, last := m.SegmentChunks()[0][0], m.SegmentChunks()[uint32(len(m.Segments)-1)][0]
	for _, tc := range []struct {
		name  string
		chunk uint64
		kind  engine.Kind
	}{
		{"change in the damaged segment", first, engine.KindIntegrity},
		{"change elsewhere", last, engine.KindOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := slices.Clone(data)
			off, _ := m.ChunkRange(tc.chunk)
			changed[off+100] ^= 1
			_, err := engine.Diff(context.Background(), st, writeSource(t, changed), engine.DiffOptions{Workers: 2})
			if k := engine.KindOf(err); k != tc.kind {
				t.Fatalf("Diff: %v (kind %s), want kind %s", err, k, tc.kind)
			}
		})
	}
}
