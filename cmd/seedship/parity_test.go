package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/seedship/seedship/format"
)

// Parity tests: capture --parity, then damage the image files on disk (bit
// flips, truncations, deletions) and drive verify, verify --repair and
// restore through run, as an operator would. Every case ends with cmp of
// the restored target against the source, or with the exact list of lost
// chunks and byte ranges.

// parityImage is a pristine parity image; tests damage copies of it.
type parityImage struct {
	src  string
	data []byte
	img  string // never modified
	m    *format.Manifest
	g    format.Geometry
	tree map[string]string // the pristine files, for byte comparisons
}

func newParityImage(t *testing.T, src string, flags ...string) parityImage {
	t.Helper()
	img := captureImage(t, src, flags...)
	pi := parityImage{src: src, data: readFile(t, src), img: img, m: loadManifest(t, img), tree: treeOf(t, img)}
	g, ok := pi.m.Geometry()
	if !ok {
		t.Fatalf("capture %v wrote no parity", flags)
	}
	pi.g = g
	return pi
}

// makeSmallExt4 makes a 12 MiB ext4 image holding random, text and
// structured binary files with mkfs.ext4 -d.
func makeSmallExt4(t *testing.T, d string) string {
	t.Helper()
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("needs mkfs.ext4 (e2fsprogs)")
	}
	root := filepath.Join(d, "tree")
	writeFile(t, filepath.Join(root, "notes.txt"), textBytes(300*kib))
	writeFile(t, filepath.Join(root, "photo.raw"), randBytes(41, 2*mib+4321))
	bin := make([]byte, 256*kib)
	for i := range bin {
		bin[i] = byte(i * 13 % 241)
	}
	writeFile(t, filepath.Join(root, "lib", "table.bin"), bin)
	writeFile(t, filepath.Join(root, "lib", "more.raw"), randBytes(42, 700*kib))
	img := filepath.Join(d, "ext4.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", root, img, "12M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	return img
}

// ext4ParityImage is a 4+2 image of a small ext4 file system with at least
// two full stripes.
func ext4ParityImage(t *testing.T) parityImage {
	t.Helper()
	d := t.TempDir()
	pi := newParityImage(t, makeSmallExt4(t, d), "--parity", "4+2", "--segment-size", "256KiB", "--chunk-size", "64KiB")
	if pi.g.K != 4 || pi.g.M != 2 || len(pi.m.Segments) < 2*pi.g.K+1 {
		t.Fatalf("test image: %d+%d with %d data segments, want 4+2 with at least 9", pi.g.K, pi.g.M, len(pi.m.Segments))
	}
	return pi
}

// shortStripeImage is a 3+1 image whose data segment count is not a
// multiple of 3: its last stripe is short.
func shortStripeImage(t *testing.T) parityImage {
	t.Helper()
	d := t.TempDir()
	data := append(mixed(12, 64*kib, 5000), randBytes(77, 3*64*kib)...)
	src := writeFile(t, filepath.Join(d, "mixed.img"), data)
	pi := newParityImage(t, src, "--parity", "3+1", "--segment-size", "128KiB", "--chunk-size", "64KiB")
	if n := len(pi.m.Segments); n < 4 || n%pi.g.K == 0 {
		t.Fatalf("test image has %d data segments, want a short last stripe of 3+1", n)
	}
	return pi
}

// --- damage helpers

func imgPath(img, key string) string { return filepath.Join(img, filepath.FromSlash(key)) }

func flipByte(t *testing.T, img, key string, off int64, mask byte) {
	t.Helper()
	p := imgPath(img, key)
	b := readFile(t, p)
	if off < 0 || off >= int64(len(b)) {
		t.Fatalf("flip %s at %d: file is %d bytes", key, off, len(b))
	}
	b[off] ^= mask
	writeFile(t, p, b)
}

func truncateKey(t *testing.T, img, key string, size int64) {
	t.Helper()
	if err := os.Truncate(imgPath(img, key), size); err != nil {
		t.Fatal(err)
	}
}

func removeKey(t *testing.T, img, key string) {
	t.Helper()
	if err := os.Remove(imgPath(img, key)); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, img, key string) int64 {
	t.Helper()
	fi, err := os.Stat(imgPath(img, key))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// segFooter returns the index offset and length from a segment's footer.
func segFooter(t *testing.T, img, key string) (indexOff, indexLen int64) {
	t.Helper()
	b := readFile(t, imgPath(img, key))
	f := b[len(b)-format.FooterSize:]
	return int64(binary.LittleEndian.Uint64(f[0:])), int64(binary.LittleEndian.Uint64(f[8:]))
}

// parityKeys returns the parity segment keys of stripe s.
func (pi parityImage) parityKeys(s uint32) []string {
	var out []string
	for j := range pi.g.M {
		out = append(out, format.ParityID(pi.g.ParityNumber(s, j)).Key())
	}
	return out
}

// dataKey returns the key of data segment position pos of stripe s.
func (pi parityImage) dataKey(s uint32, pos int) string {
	return format.DataID(s*uint32(pi.g.K) + uint32(pos)).Key()
}

// storedChunks returns the stored chunks of the data segment key.
func (pi parityImage) storedChunks(key string) []uint64 {
	for n, cs := range pi.m.SegmentChunks() {
		if format.DataID(n).Key() == key {
			return slices.Clone(cs)
		}
	}
	return nil
}

// chunksPast returns the stored chunks of a data segment whose frames do
// not lie entirely within its first size bytes.
func (pi parityImage) chunksPast(key string, size int64) []uint64 {
	var out []uint64
	for _, i := range pi.storedChunks(key) {
		c := pi.m.Chunks[i]
		if c.Offset+c.FrameLen() > size {
			out = append(out, i)
		}
	}
	return out
}

// stripeIndex reads the parity index of stripe s from the pristine image.
func (pi parityImage) stripeIndex(t *testing.T, s uint32) *format.ParityIndex {
	t.Helper()
	n := pi.g.ParityNumber(s, 0)
	if _, ok := pi.m.Summary(format.ParityID(n)); !ok {
		t.Fatalf("no parity segment %d", n)
	}
	f, err := os.Open(imgPath(pi.img, format.ParityID(n).Key()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	idx, err := pi.m.ReadParityIndexOf(f, n)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// expectedLost computes, from the pristine manifest and parity index, the
// chunks lost when the whole files keys of stripe s are gone: the stored
// chunks of the deleted data segments whose frames touch a row with more
// than M erased slices (a slice is erased when its shard is deleted and has
// bytes in that row; parity shards span every row).
func (pi parityImage) expectedLost(t *testing.T, s uint32, keys []string) []uint64 {
	t.Helper()
	idx := pi.stripeIndex(t, s)
	R := int64(idx.RowSize)
	erasedAt := func(r int64) int {
		n := 0
		for _, k := range keys {
			if strings.HasPrefix(k, "parity/") {
				n++
				continue
			}
			for _, d := range idx.Data {
				if d.Present() && format.DataID(d.Number).Key() == k && d.Size > r*R {
					n++
				}
			}
		}
		return n
	}
	var lost []uint64
	for _, k := range keys {
		for _, i := range pi.storedChunks(k) {
			c := pi.m.Chunks[i]
			for r := c.Offset / R; r*R < c.Offset+c.FrameLen(); r++ {
				if erasedAt(r) > pi.g.M {
					lost = append(lost, i)
					break
				}
			}
		}
	}
	slices.Sort(lost)
	return lost
}

// --- JSON shapes

type parityVerifyOut struct {
	OK          bool     `json:"ok"`
	Repairable  bool     `json:"repairable"`
	Repaired    []string `json:"repaired"`
	FoundBefore int      `json:"found_before_repair"`
	Stripes     []struct {
		Stripe     uint32   `json:"stripe"`
		Damaged    []string `json:"damaged"`
		Rows       int      `json:"rows"`
		LostRows   []int    `json:"lost_rows"`
		Repairable bool     `json:"repairable"`
		LostChunks []uint64 `json:"lost_chunks"`
		Error      string   `json:"error"`
	} `json:"stripes"`
	ChunksOK   uint64 `json:"chunks_ok"`
	ZeroChunks uint64 `json:"zero_chunks"`
	Findings   []struct {
		Chunk   *uint64 `json:"chunk"`
		Offset  int64   `json:"offset"`
		Length  int64   `json:"length"`
		Segment uint32  `json:"segment"`
		Error   string  `json:"error"`
	} `json:"findings"`
}

type lostOut struct {
	Chunk  uint64 `json:"chunk"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
}

type parityRestoreOut struct {
	Size          int64     `json:"size"`
	ChunksWritten uint64    `json:"chunks_written"`
	Rebuilt       []uint64  `json:"rebuilt_from_parity"`
	Lost          []lostOut `json:"lost"`
	SHA256        string    `json:"sha256"`
}

func cmpFiles(t *testing.T, a, b string) {
	t.Helper()
	if out, err := exec.Command("cmp", a, b).CombinedOutput(); err != nil {
		t.Errorf("cmp %s %s: %v %s", a, b, err, out)
	}
}

// diffTrees names the files that differ between two trees.
func diffTrees(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, k+" (only before)")
		} else if w != v {
			out = append(out, fmt.Sprintf("%s (%d vs %d bytes)", k, len(v), len(w)))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+" (only after)")
		}
	}
	slices.Sort(out)
	return out
}

func sortedU64(s []uint64) []uint64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func isManifestKey(k string) bool { return strings.HasPrefix(k, format.ManifestKey) }

// expectRepairable runs the whole operator path on a damaged copy img of
// pi whose damage is in the files keys and which parity (or a manifest
// copy) can repair: verify reports it repairable (exit 3), restore rebuilds
// the chunks rebuilt on the fly without touching the image and the target
// equals the source, verify --repair rewrites exactly keys (exit 0), a
// plain verify then passes and every file is byte-identical to the
// pristine capture.
func expectRepairable(t *testing.T, pi parityImage, img string, keys []string, rebuilt []uint64) {
	t.Helper()
	damaged := treeOf(t, img)
	if len(diffTrees(pi.tree, damaged)) == 0 {
		t.Fatalf("test bug: the damage left the image unchanged")
	}
	var segKeys []string
	for _, k := range keys {
		if !isManifestKey(k) {
			segKeys = append(segKeys, k)
		}
	}
	slices.Sort(segKeys)

	// verify: exit 3, repairable, per stripe what is damaged.
	r := seedshipCtx(context.Background(), "verify", img)
	if r.code != exitIntegrity {
		t.Fatalf("want exit %d, got %s", exitIntegrity, r)
	}
	if !strings.Contains(r.stderr, "repairable") || !strings.Contains(r.stderr, "verify --repair") {
		t.Errorf("verify does not say the damage is repairable with verify --repair: %s", r)
	}
	for _, k := range keys {
		if !strings.Contains(r.stderr, k) {
			t.Errorf("verify does not name the damaged file %s: %s", k, r)
		}
	}
	if strings.Contains(r.stderr, "BEYOND REPAIR") {
		t.Errorf("verify says beyond repair: %s", r)
	}
	var v parityVerifyOut
	decodeJSON(t, expect(t, exitIntegrity, "verify", "--json", img), &v)
	var inStripes []string
	for _, s := range v.Stripes {
		if !s.Repairable || len(s.LostChunks) != 0 || len(s.LostRows) != 0 || s.Error != "" {
			t.Errorf("verify --json: stripe %+v, want repairable with nothing lost", s)
		}
		for _, k := range s.Damaged {
			if want := fmt.Sprint(s.Stripe); !strings.Contains(r.stderr, "STRIPE "+want+":") {
				t.Errorf("verify text output has no STRIPE %s line: %s", want, r)
			}
			inStripes = append(inStripes, k)
		}
	}
	slices.Sort(inStripes)
	if v.OK || !v.Repairable || !slices.Equal(inStripes, segKeys) {
		t.Fatalf("verify --json: ok %v, repairable %v, damaged segments %v; want not ok, repairable, damaged %v", v.OK, v.Repairable, inStripes, segKeys)
	}
	if mapsEqual(damaged, treeOf(t, img)) == false {
		t.Fatalf("verify changed the image: %v", diffTrees(damaged, treeOf(t, img)))
	}

	// restore: rebuilds on the fly, the image is not modified.
	target := filepath.Join(t.TempDir(), "restored.img")
	var ro parityRestoreOut
	rr := expect(t, exitOK, "restore", "--json", img, target)
	decodeJSON(t, rr, &ro)
	if got := sortedU64(ro.Rebuilt); !slices.Equal(got, sortedU64(rebuilt)) {
		t.Errorf("restore rebuilt chunks %v from parity, want %v", got, sortedU64(rebuilt))
	}
	if len(ro.Lost) != 0 || ro.SHA256 != shaHex(pi.data) {
		t.Errorf("restore --json: lost %v, sha256 %s; want nothing lost, %s", ro.Lost, ro.SHA256, shaHex(pi.data))
	}
	cmpFiles(t, pi.src, target)
	if after := treeOf(t, img); !mapsEqual(damaged, after) {
		t.Errorf("restore modified the image: %v", diffTrees(damaged, after))
	}
	if len(rebuilt) > 0 {
		target2 := filepath.Join(t.TempDir(), "restored2.img")
		rr := expect(t, exitOK, "restore", img, target2)
		if want := fmt.Sprintf("rebuilt %d chunk(s) from parity", len(rebuilt)); !strings.Contains(rr.stderr+rr.stdout, want) {
			t.Errorf("restore does not report %q: %s", want, rr)
		}
		cmpFiles(t, pi.src, target2)
	}

	// verify --repair: rewrites exactly the damaged files, then verifies.
	var rep parityVerifyOut
	decodeJSON(t, expect(t, exitOK, "verify", "--repair", "--json", img), &rep)
	if got, want := sortedStrings(rep.Repaired), sortedStrings(keys); !rep.OK || !slices.Equal(got, want) || rep.FoundBefore == 0 {
		t.Errorf("verify --repair --json: ok %v, repaired %v, found before %d; want ok, repaired %v", rep.OK, got, rep.FoundBefore, want)
	}
	must(t, "verify", img)
	noTemps(t, img)
	if after := treeOf(t, img); !mapsEqual(pi.tree, after) {
		t.Errorf("after verify --repair the image differs from the pristine capture: %v", diffTrees(pi.tree, after))
	}
	// The repaired image restores as well.
	target3 := filepath.Join(t.TempDir(), "after-repair.img")
	must(t, "restore", img, target3)
	cmpFiles(t, pi.src, target3)
}

func sortedStrings(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// repairCase damages a copy of the image and returns the damaged files and
// the chunks restore must rebuild from parity.
type repairCase struct {
	name   string
	damage func(t *testing.T, pi parityImage, img string) (keys []string, rebuilt []uint64)
}

func runRepairCases(t *testing.T, pi parityImage, cases []repairCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := copyImage(t, pi.img)
			keys, rebuilt := tc.damage(t, pi, img)
			expectRepairable(t, pi, img, keys, rebuilt)
		})
	}
}

// middleChunk returns a stored chunk in the middle of data segment key.
func (pi parityImage) middleChunk(t *testing.T, key string) uint64 {
	t.Helper()
	cs := pi.storedChunks(key)
	if len(cs) == 0 {
		t.Fatalf("segment %s holds no chunk", key)
	}
	return cs[len(cs)/2]
}

// TestParityBitFlips flips bits in every kind of region of a parity image
// (spec §5, §9, §9.5) and checks the full repair path for each.
func TestParityBitFlips(t *testing.T) {
	t.Parallel()
	pi := ext4ParityImage(t)
	seg := pi.dataKey(1, 1) // a data segment in the middle of stripe 1
	par := pi.parityKeys(1)[1]
	runRepairCases(t, pi, []repairCase{
		{"data segment payload", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			k := pi.middleChunk(t, seg)
			c := pi.m.Chunks[k]
			flipByte(t, img, seg, c.Offset+format.FrameHeaderSize+int64(c.PayloadLen)/2, 0x10)
			return []string{seg}, []uint64{k}
		}},
		{"data segment payload, two chunks in two stripes", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			seg0 := pi.dataKey(0, 3)
			k0, k1 := pi.middleChunk(t, seg0), pi.middleChunk(t, seg)
			for _, k := range []uint64{k0, k1} {
				c := pi.m.Chunks[k]
				flipByte(t, img, format.DataID(c.Segment).Key(), c.Offset+format.FrameHeaderSize+int64(c.PayloadLen)-1, 0x01)
			}
			return []string{seg0, seg}, []uint64{k0, k1}
		}},
		{"data segment frame header", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			k := pi.middleChunk(t, seg)
			flipByte(t, img, seg, pi.m.Chunks[k].Offset+8, 0x02) // the chunk index
			return []string{seg}, []uint64{k}
		}},
		{"data segment header", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			flipByte(t, img, seg, 20, 0x80) // the image ID
			return []string{seg}, nil
		}},
		{"data segment index", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			off, n := segFooter(t, img, seg)
			flipByte(t, img, seg, off+n/2, 0x08)
			return []string{seg}, nil
		}},
		{"data segment footer", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			flipByte(t, img, seg, fileSize(t, img, seg)-format.FooterSize+30, 0x01) // the index hash
			return []string{seg}, nil
		}},
		{"parity segment row", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			flipByte(t, img, par, format.SegmentHeaderSize+int64(pi.g.RowSize)+100, 0x04)
			return []string{par}, nil
		}},
		{"parity segment header", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			flipByte(t, img, par, 16, 0x01) // the image ID
			return []string{par}, nil
		}},
		{"parity segment index", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			off, n := segFooter(t, img, par)
			flipByte(t, img, par, off+n-5, 0x20) // in the row CRC table
			return []string{par}, nil
		}},
		{"parity segment footer", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			flipByte(t, img, par, fileSize(t, img, par)-3, 0x01) // the end magic
			return []string{par}, nil
		}},
		{"main manifest", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			flipByte(t, img, format.ManifestKey, fileSize(t, img, format.ManifestKey)/2, 0x40)
			return []string{format.ManifestKey}, nil
		}},
		{"main manifest header JSON", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			flipByte(t, img, format.ManifestKey, 40, 0x01)
			return []string{format.ManifestKey}, nil
		}},
		{"main manifest version field", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			// A damaged version field must not make the image
			// unreadable while identical copies are intact (§9.5:
			// "missing or failing §6.6").
			flipByte(t, img, format.ManifestKey, 8, 0x02)
			return []string{format.ManifestKey}, nil
		}},
		{"manifest copy", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			k := pi.m.CopyKeys()[1]
			flipByte(t, img, k, 100, 0x01)
			return []string{k}, nil
		}},
		{"main manifest and a data segment", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			flipByte(t, img, format.ManifestKey, fileSize(t, img, format.ManifestKey)-50, 0x01)
			k := pi.middleChunk(t, seg)
			c := pi.m.Chunks[k]
			flipByte(t, img, seg, c.Offset+format.FrameHeaderSize+3, 0x01)
			return []string{format.ManifestKey, seg}, []uint64{k}
		}},
	})
}

// TestParityTruncation truncates data and parity segments.
func TestParityTruncation(t *testing.T) {
	t.Parallel()
	pi := ext4ParityImage(t)
	seg := pi.dataKey(1, 2)
	par := pi.parityKeys(0)[0]
	runRepairCases(t, pi, []repairCase{
		{"data segment cut in its frames", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			size := fileSize(t, img, seg) / 2
			truncateKey(t, img, seg, size)
			return []string{seg}, pi.chunksPast(seg, size)
		}},
		{"data segment cut in its footer", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			truncateKey(t, img, seg, fileSize(t, img, seg)-10)
			return []string{seg}, nil
		}},
		{"data segment cut to nothing", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			truncateKey(t, img, seg, 0)
			return []string{seg}, pi.storedChunks(seg)
		}},
		{"parity segment cut in its rows", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			truncateKey(t, img, par, fileSize(t, img, par)/3)
			return []string{par}, nil
		}},
		{"parity segment cut in its footer", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			truncateKey(t, img, par, fileSize(t, img, par)-1)
			return []string{par}, nil
		}},
		{"data and parity segment of one stripe cut", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			p := pi.parityKeys(1)[0]
			size := fileSize(t, img, seg) - 100_000
			truncateKey(t, img, seg, size)
			truncateKey(t, img, p, 1000)
			return []string{seg, p}, pi.chunksPast(seg, size)
		}},
	})
}

// TestParityDeletion deletes up to M segments of stripes, and manifest
// files.
func TestParityDeletion(t *testing.T) {
	t.Parallel()
	pi := ext4ParityImage(t)
	del := func(keys ...string) func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
		return func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			var rebuilt []uint64
			for _, k := range keys {
				removeKey(t, img, k)
				if strings.HasPrefix(k, "data/") {
					rebuilt = append(rebuilt, pi.storedChunks(k)...)
				}
			}
			return keys, rebuilt
		}
	}
	last := uint32(pi.m.Stripes() - 1)
	runRepairCases(t, pi, []repairCase{
		{"one data segment", del(pi.dataKey(0, 0))},
		{"M data segments of one stripe", del(pi.dataKey(1, 0), pi.dataKey(1, 3))},
		{"M segments of one stripe, data and parity", del(pi.dataKey(1, 2), pi.parityKeys(1)[0])},
		{"one data segment and a manifest copy", del(pi.dataKey(0, 1), pi.m.CopyKeys()[0])},
		{"up to M in each of several stripes", del(
			pi.dataKey(0, 0), pi.dataKey(0, 3), // stripe 0: two data
			pi.dataKey(1, 1), pi.parityKeys(1)[1], // stripe 1: data and parity
			pi.parityKeys(last)[0], // last stripe: one parity
		)},
		{"the last data segment", del(format.DataID(uint32(len(pi.m.Segments) - 1)).Key())},
		{"the main manifest", del(format.ManifestKey)},
		{"every manifest file but the last copy", del(format.ManifestKey, pi.m.CopyKeys()[0])},
		{"every manifest file but the main one", del(pi.m.CopyKeys()[0], pi.m.CopyKeys()[1])},
		{"the main manifest and M segments", del(format.ManifestKey, pi.dataKey(0, 2), pi.parityKeys(0)[1])},
		// All M parity segments of a stripe are M erasures: the data is
		// intact, the parity can be computed again, and the manifest
		// records each parity segment's index hash.
		{"all M parity segments of one stripe", del(pi.parityKeys(1)...)},
	})
}

// TestParityShortLastStripe damages the short last stripe of a 3+1 image.
func TestParityShortLastStripe(t *testing.T) {
	t.Parallel()
	pi := shortStripeImage(t)
	last := uint32(pi.m.Stripes() - 1)
	idx := pi.stripeIndex(t, last)
	present := 0
	for _, d := range idx.Data {
		if d.Present() {
			present++
		}
	}
	if present == 0 || present == pi.g.K {
		t.Fatalf("last stripe holds %d of %d data segments, want a short stripe", present, pi.g.K)
	}
	lastSeg := format.DataID(uint32(len(pi.m.Segments) - 1)).Key()
	par := pi.parityKeys(last)[0]
	runRepairCases(t, pi, []repairCase{
		{"last data segment deleted", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			removeKey(t, img, lastSeg)
			return []string{lastSeg}, pi.storedChunks(lastSeg)
		}},
		{"last data segment bit flip", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			k := pi.middleChunk(t, lastSeg)
			c := pi.m.Chunks[k]
			flipByte(t, img, lastSeg, c.Offset+format.FrameHeaderSize+int64(c.PayloadLen)/3, 0x01)
			return []string{lastSeg}, []uint64{k}
		}},
		{"last data segment truncated", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			size := fileSize(t, img, lastSeg) - 1000
			truncateKey(t, img, lastSeg, size)
			return []string{lastSeg}, pi.chunksPast(lastSeg, size)
		}},
		{"parity row of the short stripe", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			flipByte(t, img, par, format.SegmentHeaderSize+7, 0x01)
			return []string{par}, nil
		}},
		{"first data segment of the short stripe deleted", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			k := pi.dataKey(last, 0)
			removeKey(t, img, k)
			return []string{k}, pi.storedChunks(k)
		}},
		{"one data segment in each stripe deleted", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			var keys []string
			var rebuilt []uint64
			for s := range last + 1 {
				k := pi.dataKey(s, int(s)%present)
				removeKey(t, img, k)
				keys = append(keys, k)
				rebuilt = append(rebuilt, pi.storedChunks(k)...)
			}
			return keys, rebuilt
		}},
		// With M = 1 the index lives in one file per stripe.
		{"parity segment of the short stripe deleted", func(t *testing.T, pi parityImage, img string) ([]string, []uint64) {
			removeKey(t, img, par)
			return []string{par}, nil
		}},
	})
}

// TestParityBeyondRepair deletes M+1 segments of one stripe (and repairable
// damage in another) and checks that verify, restore and verify --repair
// fail cleanly, name exactly the chunks and byte ranges lost, restore
// everything else, and repair what can be repaired.
func TestParityBeyondRepair(t *testing.T) {
	t.Parallel()
	pi := ext4ParityImage(t)
	for _, tc := range []struct {
		name string
		keys []string // deleted from stripe 1
	}{
		{"two data and one parity", []string{pi.dataKey(1, 1), pi.dataKey(1, 2), pi.parityKeys(1)[0]}},
		{"three data", []string{pi.dataKey(1, 0), pi.dataKey(1, 1), pi.dataKey(1, 3)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const s = 1
			img := copyImage(t, pi.img)
			for _, k := range tc.keys {
				removeKey(t, img, k)
			}
			// Repairable damage in stripe 0 too.
			other := pi.dataKey(0, 2)
			removeKey(t, img, other)
			damaged := treeOf(t, img)

			lost := pi.expectedLost(t, s, tc.keys)
			if len(lost) == 0 {
				t.Fatal("test bug: nothing lost")
			}
			describe := func(i uint64) string {
				off, n := pi.m.ChunkRange(i)
				return fmt.Sprintf("chunk %d bytes %d-%d", i, off, off+n-1)
			}

			// verify: exit 3, the stripe is beyond repair, the lost
			// chunks and ranges are named.
			r := expect(t, exitIntegrity, "verify", img)
			if !strings.Contains(r.stderr, fmt.Sprintf("STRIPE %d:", s)) || !strings.Contains(r.stderr, "BEYOND REPAIR") {
				t.Errorf("verify does not report stripe %d beyond repair: %s", s, r)
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			final := lines[len(lines)-1]
			if !strings.Contains(final, "beyond repair") || !strings.Contains(final, fmt.Sprintf("%d chunk(s)", len(lost))) {
				t.Errorf("verify's error does not say %d chunk(s) are beyond repair: %q", len(lost), final)
			}
			for n, i := range lost {
				if n < 8 && !strings.Contains(final, describe(i)) {
					t.Errorf("verify's error does not name %s: %q", describe(i), final)
				}
				off, l := pi.m.ChunkRange(i)
				if !strings.Contains(r.stderr, fmt.Sprintf("source bytes %d-%d", off, off+l-1)) {
					t.Errorf("verify output does not give the byte range of lost chunk %d: %s", i, r)
				}
			}
			var v parityVerifyOut
			decodeJSON(t, expect(t, exitIntegrity, "verify", "--json", img), &v)
			if v.OK || v.Repairable {
				t.Errorf("verify --json: ok %v repairable %v, want neither", v.OK, v.Repairable)
			}
			found := false
			for _, st := range v.Stripes {
				switch st.Stripe {
				case s:
					found = true
					if st.Repairable || !slices.Equal(sortedU64(st.LostChunks), lost) || !slices.Equal(st.Damaged, sortedStrings(tc.keys)) {
						t.Errorf("verify --json stripe %d: repairable %v, damaged %v, lost chunks %v; want beyond repair, %v, %v",
							s, st.Repairable, st.Damaged, st.LostChunks, sortedStrings(tc.keys), lost)
					}
				case 0:
					if !st.Repairable || len(st.LostChunks) != 0 || !slices.Equal(st.Damaged, []string{other}) {
						t.Errorf("verify --json stripe 0: %+v, want repairable with %s damaged", st, other)
					}
				default:
					t.Errorf("verify --json reports undamaged stripe %d", st.Stripe)
				}
			}
			if !found {
				t.Errorf("verify --json does not report stripe %d", s)
			}
			ranges := map[uint64][2]int64{}
			for _, f := range v.Findings {
				if f.Chunk != nil {
					ranges[*f.Chunk] = [2]int64{f.Offset, f.Length}
				}
			}
			for _, i := range lost {
				off, n := pi.m.ChunkRange(i)
				if ranges[i] != [2]int64{off, n} {
					t.Errorf("verify --json: lost chunk %d has finding range %v, want [%d %d]", i, ranges[i], off, n)
				}
			}

			// restore without --allow-damaged: exit 3, the lost ranges
			// are not written.
			fresh := filepath.Join(t.TempDir(), "fresh.img")
			r = expect(t, exitIntegrity, "restore", img, fresh)
			if !strings.Contains(r.stderr, "beyond repair") || !strings.Contains(r.stderr, describe(lost[0])) || !strings.Contains(r.stderr, "--allow-damaged") {
				t.Errorf("restore does not name the lost chunks and --allow-damaged: %s", r)
			}
			absent(t, fresh, "a failed restore removes the file it created")
			prefill := func(name string) string {
				return writeFile(t, filepath.Join(t.TempDir(), name), bytes.Repeat([]byte{0xAA}, len(pi.data)))
			}
			untouched := func(t *testing.T, got []byte) {
				t.Helper()
				for _, i := range lost {
					off, n := pi.m.ChunkRange(i)
					if !bytes.Equal(got[off:off+n], bytes.Repeat([]byte{0xAA}, int(n))) {
						t.Errorf("lost chunk %d: bytes %d-%d of the target were written", i, off, off+n-1)
					}
				}
			}
			pre := prefill("pre.img")
			expect(t, exitIntegrity, "restore", img, pre)
			untouched(t, readFile(t, pre))

			// restore --allow-damaged: everything else, exit 3, lost
			// ranges listed and left untouched.
			pre2 := prefill("pre2.img")
			var ro parityRestoreOut
			decodeJSON(t, expect(t, exitIntegrity, "restore", "--allow-damaged", "--json", img, pre2), &ro)
			var wantLost []lostOut
			for _, i := range lost {
				off, n := pi.m.ChunkRange(i)
				wantLost = append(wantLost, lostOut{i, off, n})
			}
			if !slices.Equal(ro.Lost, wantLost) {
				t.Errorf("restore --allow-damaged --json lost %v, want %v", ro.Lost, wantLost)
			}
			if want := sortedU64(pi.storedChunks(other)); !slices.Equal(sortedU64(ro.Rebuilt), want) {
				t.Errorf("restore --allow-damaged rebuilt %v, want the chunks of %s: %v", sortedU64(ro.Rebuilt), other, want)
			}
			got := readFile(t, pre2)
			if len(got) != len(pi.data) {
				t.Fatalf("target is %d bytes, want %d", len(got), len(pi.data))
			}
			untouched(t, got)
			isLost := map[uint64]bool{}
			for _, i := range lost {
				isLost[i] = true
			}
			for i := range pi.m.Chunks {
				off, n := pi.m.ChunkRange(uint64(i))
				if !isLost[uint64(i)] && !bytes.Equal(got[off:off+n], pi.data[off:off+n]) {
					t.Errorf("restore --allow-damaged: chunk %d (bytes %d-%d) differs from the source", i, off, off+n-1)
				}
			}
			r = expect(t, exitIntegrity, "restore", "--allow-damaged", img, prefill("pre3.img"))
			for _, i := range lost {
				off, n := pi.m.ChunkRange(i)
				if want := fmt.Sprintf("LOST chunk %d: bytes %d-%d left untouched", i, off, off+n-1); !strings.Contains(r.stderr, want) {
					t.Errorf("restore --allow-damaged does not list %q: %s", want, r)
				}
			}
			if after := treeOf(t, img); !mapsEqual(damaged, after) {
				t.Errorf("restore modified the image: %v", diffTrees(damaged, after))
			}

			// verify --repair: exit 3, stripe 0 repaired, stripe 1
			// left as it was, no partial files.
			var rep parityVerifyOut
			r = expect(t, exitIntegrity, "verify", "--repair", "--json", img)
			decodeJSON(t, r, &rep)
			if !slices.Equal(rep.Repaired, []string{other}) || rep.OK {
				t.Errorf("verify --repair --json: ok %v, repaired %v, want not ok, repaired [%s]", rep.OK, rep.Repaired, other)
			}
			if len(rep.Stripes) != 1 || rep.Stripes[0].Stripe != s || rep.Stripes[0].Repairable ||
				!slices.Equal(sortedU64(rep.Stripes[0].LostChunks), lost) {
				t.Errorf("verify --repair --json stripes after repair %+v, want only stripe %d beyond repair with lost %v", rep.Stripes, s, lost)
			}
			noTemps(t, img)
			after := treeOf(t, img)
			if after[other] != pi.tree[other] {
				t.Errorf("verify --repair did not rebuild %s byte for byte", other)
			}
			for _, k := range tc.keys {
				if _, ok := after[k]; ok {
					t.Errorf("verify --repair wrote %s of a stripe beyond repair", k)
				}
			}
			want := maps2(pi.tree, tc.keys)
			if !mapsEqual(want, after) {
				t.Errorf("after verify --repair: %v", diffTrees(want, after))
			}
			r = expect(t, exitIntegrity, "verify", img)
			if strings.Contains(r.stderr, other) {
				t.Errorf("verify after repair still reports %s: %s", other, r)
			}
		})
	}
}

// maps2 returns a copy of m without keys.
func maps2(m map[string]string, without []string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		if !slices.Contains(without, k) {
			out[k] = v
		}
	}
	return out
}

// TestParityInfo checks that info shows the parity scheme and overhead,
// against the files on disk.
func TestParityInfo(t *testing.T) {
	t.Parallel()
	pi := shortStripeImage(t)
	var info struct {
		StoredBytes    int64    `json:"stored_bytes"`
		Segments       int      `json:"segments"`
		Parity         string   `json:"parity"`
		ParityBytes    int64    `json:"parity_bytes"`
		ParitySegments int      `json:"parity_segments"`
		ParityOverhead float64  `json:"parity_overhead"`
		Requires       []string `json:"requires"`
	}
	decodeJSON(t, must(t, "info", "--json", pi.img), &info)
	var parityBytes, dataBytes int64
	var parityFiles, dataFiles int
	for k, v := range pi.tree {
		switch {
		case strings.HasPrefix(k, "parity/"):
			parityBytes += int64(len(v))
			parityFiles++
		case strings.HasPrefix(k, "data/"):
			dataBytes += int64(len(v))
			dataFiles++
		}
	}
	stripes := (dataFiles + pi.g.K - 1) / pi.g.K
	if info.Parity != "3+1" || info.ParityBytes != parityBytes || info.ParitySegments != parityFiles || parityFiles != stripes*pi.g.M ||
		info.StoredBytes != dataBytes || info.Segments != dataFiles {
		t.Errorf("info --json %+v; want parity 3+1, %d parity bytes in %d segments (%d stripes), %d data bytes in %d segments",
			info, parityBytes, parityFiles, stripes, dataBytes, dataFiles)
	}
	if want := float64(parityBytes) / float64(dataBytes); math.Abs(info.ParityOverhead-want) > 1e-9 {
		t.Errorf("info --json parity_overhead %v, want %v", info.ParityOverhead, want)
	}
	r := must(t, "info", pi.img)
	pct := fmt.Sprintf("%.1f%% overhead", 100*float64(parityBytes)/float64(dataBytes))
	for _, want := range []string{"Reed-Solomon 3+1", pct, "copies"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("info does not show %q:\n%s", want, r.stdout)
		}
	}
	// Without parity, info --json has no parity fields.
	plain := captureImage(t, pi.src, "--chunk-size", "64KiB")
	var raw map[string]json.RawMessage
	decodeJSON(t, must(t, "info", "--json", plain), &raw)
	for _, k := range []string{"parity", "parity_bytes", "parity_segments", "parity_overhead"} {
		if _, ok := raw[k]; ok {
			t.Errorf("info --json of an image without parity has %q", k)
		}
	}
	if !strings.Contains(must(t, "info", plain).stdout, "parity:") {
		t.Errorf("info of an image without parity does not say so")
	}
	for k := range pi.tree {
		if strings.HasPrefix(k, "manifest.ssm.") && pi.tree[k] != pi.tree[format.ManifestKey] {
			t.Errorf("manifest copy %s differs from manifest.ssm", k)
		}
	}
	if _, ok := pi.tree[pi.m.CopyKeys()[0]]; !ok {
		t.Errorf("a 3+1 image has no manifest copy %s", pi.m.CopyKeys()[0])
	}
}

// TestParityBadFlags checks that a bad --parity is a usage error that
// writes nothing.
func TestParityBadFlags(t *testing.T) {
	t.Parallel()
	src := writeFile(t, filepath.Join(t.TempDir(), "s.img"), randBytes(9, 300*kib))
	for _, p := range []string{"0+1", "4+0", "4-2", "4", "+2", "200+100", "x+y", "4+2+1"} {
		dest := filepath.Join(t.TempDir(), "seed")
		r := expect(t, exitUsage, "capture", "--parity", p, "--segment-size", "64KiB", src, dest)
		oneLineError(t, r, p)
		absent(t, dest, "a bad --parity must not create the destination")
	}
}
