package verify_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/verify"
)

// These tests capture real parity images into real directories with the
// engine, damage their files on disk and drive the verify package (and
// engine.CheckImage) directly.

const (
	kib = 1 << 10
	mib = 1 << 20
)

// sourceBytes returns n bytes cycling 64 KiB runs of random data, text and
// zeros, seeded by seed.
func sourceBytes(seed byte, n int) []byte {
	c := rand.NewChaCha8([32]byte{seed, 'v', 'f', 'y'})
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		run := make([]byte, 64*kib)
		switch i % 4 {
		case 0, 3:
			_, _ = c.Read(run)
		case 1:
			var t bytes.Buffer
			for j := 0; t.Len() < len(run); j++ {
				fmt.Fprintf(&t, "%05d/%d parity stripe text line for the verify tests\n", j, i)
			}
			copy(run, t.Bytes())
		case 2: // zeros
		}
		b.Write(run)
	}
	return b.Bytes()[:n]
}

// testImage is a pristine parity image in a directory.
type testImage struct {
	data  []byte
	dir   string
	m     *format.Manifest
	g     format.Geometry
	files map[string][]byte
}

// captureParity captures data with parity g (RowSize 0: the default for
// the segment size) into a new directory.
func captureParity(t testing.TB, root string, data []byte, g format.Geometry, segSize int64, chunk int) testImage {
	t.Helper()
	srcPath := filepath.Join(root, "source.img")
	if err := os.WriteFile(srcPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := engine.OpenSource(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	imgDir := filepath.Join(root, "image")
	st, err := dir.New(imgDir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := engine.Capture(context.Background(), src, st, engine.CaptureOptions{
		ChunkSize: chunk, SegmentSize: segSize, Parity: &g, Workers: 2, Level: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	geo, ok := res.Manifest.Geometry()
	if !ok {
		t.Fatal("no parity")
	}
	return testImage{data: data, dir: imgDir, m: res.Manifest, g: geo, files: readTree(t, imgDir)}
}

// readTree returns every file under root by key.
func readTree(t testing.TB, root string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeTree writes files into a new directory under root.
func writeTree(t testing.TB, root string, files map[string][]byte) string {
	t.Helper()
	for k, b := range files {
		p := filepath.Join(root, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// diffFiles names the keys whose content differs between a and b.
func diffFiles(a, b map[string][]byte) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, k+" (missing)")
		} else if !bytes.Equal(v, w) {
			out = append(out, fmt.Sprintf("%s (%d vs %d bytes)", k, len(v), len(w)))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+" (extra)")
		}
	}
	sort.Strings(out)
	return out
}

func (ti testImage) copy(t testing.TB, root string) (*dir.Store, string) {
	t.Helper()
	d := writeTree(t, filepath.Join(root, "copy"), ti.files)
	st, err := dir.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	return st, d
}

func path(d, key string) string { return filepath.Join(d, filepath.FromSlash(key)) }

func flip(t testing.TB, d, key string, off int64, mask byte) {
	t.Helper()
	b, err := os.ReadFile(path(d, key))
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= mask
	if err := os.WriteFile(path(d, key), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func remove(t testing.TB, d, key string) {
	t.Helper()
	if err := os.Remove(path(d, key)); err != nil {
		t.Fatal(err)
	}
}

func (ti testImage) dataKey(s uint32, pos int) string {
	return format.DataID(s*uint32(ti.g.K) + uint32(pos)).Key()
}

func (ti testImage) parityKey(s uint32, j int) string {
	return format.ParityID(ti.g.ParityNumber(s, j)).Key()
}

// stripeKeys returns every segment key of stripe s.
func (ti testImage) stripeKeys(s uint32) []string {
	var out []string
	for _, seg := range ti.m.Segments {
		if st, _ := ti.g.Stripe(format.DataID(seg.Number)); st == s {
			out = append(out, format.DataID(seg.Number).Key())
		}
	}
	for j := range ti.g.M {
		out = append(out, ti.parityKey(s, j))
	}
	return out
}

// multiStripe captures a 4+2 image of about 4.1 MiB with 256 KiB segments
// and 64 KiB chunks: several stripes, the last one short. The segments of
// a stripe grow together (spec §5.5), so a stripe is short only when its
// group gets fewer frames than K: the source ends 2 chunks and a few bytes
// after the second stripe's last chunk (chunk 63).
func multiStripe(t testing.TB) testImage {
	t.Helper()
	ti := captureParity(t, t.TempDir(), sourceBytes(1, 66*64*kib+123), format.Geometry{K: 4, M: 2}, 256*kib, 64*kib)
	if ti.m.Stripes() < 3 || len(ti.m.Segments)%ti.g.K == 0 {
		t.Fatalf("test image: %d data segments in %d stripes, want at least 3 stripes, the last short", len(ti.m.Segments), ti.m.Stripes())
	}
	return ti
}

// countingStore records every byte range read and every key written.
type countingStore struct {
	store.Store
	onPut func(key string) // called before each Put
	mu    sync.Mutex
	reads map[string][][2]int64 // key → [off, end) actually delivered
	puts  []string
}

func newCounting(st store.Store) *countingStore {
	return &countingStore{Store: st, reads: map[string][][2]int64{}}
}

// Unwrap reaches the wrapped store (for its writer lock).
func (c *countingStore) Unwrap() store.Store { return c.Store }

func (c *countingStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := c.Store.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, c: c, key: key, off: off}, nil
}

func (c *countingStore) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	c.mu.Lock()
	c.puts = append(c.puts, key)
	c.mu.Unlock()
	if c.onPut != nil {
		c.onPut(key)
	}
	return c.Store.Put(ctx, key, r, size)
}

type countingReader struct {
	io.ReadCloser
	c   *countingStore
	key string
	off int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.c.mu.Lock()
		r.c.reads[r.key] = append(r.c.reads[r.key], [2]int64{r.off, r.off + int64(n)})
		r.c.mu.Unlock()
		r.off += int64(n)
	}
	return n, err
}

// readBytes returns the bytes read of key and whether any byte was read
// twice.
func (c *countingStore) readBytes(key string) (total int64, overlap bool) {
	c.mu.Lock()
	rs := slices.Clone(c.reads[key])
	c.mu.Unlock()
	sort.Slice(rs, func(i, j int) bool { return rs[i][0] < rs[j][0] })
	var end int64 = -1
	for _, r := range rs {
		total += r[1] - r[0]
		if r[0] < end {
			overlap = true
		}
		end = max(end, r[1])
	}
	return total, overlap
}

func check(t testing.TB, st store.Store, m *format.Manifest) *verify.Report {
	t.Helper()
	rep, err := verify.Check(context.Background(), st, m, verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: 2}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return rep
}

// TestRepairReadsEachSurvivingSegmentOnce checks the repair's promise:
// each surviving segment of an affected stripe is read once, nothing of
// an undamaged stripe is read, and only the damaged files are written.
func TestRepairReadsEachSurvivingSegmentOnce(t *testing.T) {
	t.Parallel()
	ti := multiStripe(t)
	st, d := ti.copy(t, t.TempDir())
	last := uint32(ti.m.Stripes() - 1)
	// Stripe 0: a data segment gone and a parity row damaged; stripe 1
	// untouched; the last (short) stripe: a data segment's header.
	damaged := []string{ti.dataKey(0, 1), ti.parityKey(0, 0), ti.dataKey(last, 0)}
	remove(t, d, damaged[0])
	flip(t, d, damaged[1], format.SegmentHeaderSize+int64(ti.g.RowSize)+5, 0x01)
	flip(t, d, damaged[2], 13, 0x01)

	rep := check(t, st, ti.m)
	if rep.OK() || !rep.Repairable(ti.m) {
		t.Fatalf("Check: ok %v repairable %v, want damaged and repairable: %v", rep.OK(), rep.Repairable(ti.m), rep.Findings)
	}
	cs := newCounting(st)
	statuses, err := repair(context.Background(), cs, ti.m, rep.Findings)
	if err != nil {
		t.Fatal(err)
	}
	if len(statuses) != 2 || statuses[0].Stripe != 0 || statuses[1].Stripe != last || !statuses[0].Repairable || !statuses[1].Repairable {
		t.Errorf("Repair statuses %+v, want stripes 0 and %d repaired", statuses, last)
	}
	if got := sortedCopy(cs.puts); !slices.Equal(got, sortedCopy(damaged)) {
		t.Errorf("Repair wrote %v, want exactly the damaged files %v", got, sortedCopy(damaged))
	}
	for _, s := range []uint32{0, last} {
		for _, k := range ti.stripeKeys(s) {
			n, overlap := cs.readBytes(k)
			size := int64(len(ti.files[k]))
			if overlap {
				t.Errorf("Repair read some bytes of %s twice: %v", k, cs.reads[k])
			}
			if n > size {
				t.Errorf("Repair read %d bytes of the %d-byte %s", n, size, k)
			}
			if k == damaged[0] {
				continue // missing
			}
			// Every surviving shard is read in full (its rows):
			// data segments entirely, parity segments their rows.
			want := size
			if strings.HasPrefix(k, "parity/") {
				idx := mustIndex(t, ti, s)
				want = int64(idx.Rows) * int64(idx.RowSize)
			}
			if n < want {
				t.Errorf("Repair read %d bytes of %s, want its %d shard bytes once", n, k, want)
			}
		}
	}
	for s := uint32(1); s < last; s++ {
		for _, k := range ti.stripeKeys(s) {
			if n, _ := cs.readBytes(k); n != 0 {
				t.Errorf("Repair read %d bytes of %s in undamaged stripe %d", n, k, s)
			}
		}
	}
	if rep := check(t, st, ti.m); !rep.OK() {
		t.Errorf("after Repair: %v", rep.Findings)
	}
	if diff := diffFiles(ti.files, readTree(t, d)); len(diff) > 0 {
		t.Errorf("after Repair the image differs from the pristine capture: %v", diff)
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func mustIndex(t testing.TB, ti testImage, s uint32) *format.ParityIndex {
	t.Helper()
	k := ti.parityKey(s, 0)
	idx, err := ti.m.ReadParityIndexOf(bytes.NewReader(ti.files[k]), ti.g.ParityNumber(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// TestRepairInterrupted cancels a repair while it writes: every file is
// either as it was or fully repaired, no temporary file is left, and a
// second repair finishes the job.
func TestRepairInterrupted(t *testing.T) {
	t.Parallel()
	ti := multiStripe(t)
	st, d := ti.copy(t, t.TempDir())
	damaged := []string{ti.dataKey(0, 2), ti.parityKey(1, 0), ti.dataKey(1, 3)}
	for _, k := range damaged {
		remove(t, d, k)
	}
	before := readTree(t, d)
	rep := check(t, st, ti.m)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := newCounting(st)
	n := 0
	cs.onPut = func(string) {
		if n++; n == 2 {
			cancel()
		}
	}
	if _, err := repair(ctx, cs, ti.m, rep.Findings); !errors.Is(err, context.Canceled) {
		t.Errorf("interrupted Repair: %v, want context.Canceled", err)
	}
	after := readTree(t, d)
	for k, b := range after {
		if strings.Contains(k, dir.TempPrefix) {
			t.Errorf("temporary file %s left behind", k)
		} else if !bytes.Equal(b, ti.files[k]) && !bytes.Equal(b, before[k]) {
			t.Errorf("%s is neither the damaged nor the repaired file", k)
		}
	}
	res, err := engine.CheckImage(context.Background(), st, engine.CheckOptions{Repair: true, Workers: 2})
	if err != nil || res.After == nil || !res.After.OK() {
		t.Fatalf("second repair: %v", err)
	}
	if diff := diffFiles(ti.files, readTree(t, d)); len(diff) > 0 {
		t.Errorf("after the second repair: %v", diff)
	}
}

// TestStripesReadsOnlyDamagedRows: a single bad chunk costs reading only
// the rows its frame touches in the stripe's other shards (spec §9).
func TestStripesReadsOnlyDamagedRows(t *testing.T) {
	t.Parallel()
	ti := multiStripe(t)
	st, d := ti.copy(t, t.TempDir())
	seg := ti.dataKey(1, 2)
	chunks := ti.m.SegmentChunks()[1*uint32(ti.g.K)+2]
	k := chunks[len(chunks)/2]
	c := ti.m.Chunks[k]
	flip(t, d, seg, c.Offset+format.FrameHeaderSize+10, 0x01)
	rep, err := verify.Scan(context.Background(), st, ti.m, verify.ScanOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.BadChunks(); !slices.Equal(got, []uint64{k}) {
		t.Fatalf("Scan found %v, want [%d]", got, k)
	}
	cs := newCounting(st)
	ss, err := stripes(context.Background(), cs, ti.m, rep.Findings)
	if err != nil {
		t.Fatal(err)
	}
	rows := rowsOf(c.Offset, c.FrameLen(), ti.g.RowSize)
	if len(ss) != 1 || ss[0].Stripe != 1 || !ss[0].Repairable || ss[0].Rows != len(rows) || !slices.Equal(ss[0].Damaged, []string{seg}) {
		t.Fatalf("Stripes %+v, want stripe 1 repairable, %d row(s), %s damaged", ss, len(rows), seg)
	}
	for _, key := range ti.stripeKeys(1) {
		n, overlap := cs.readBytes(key)
		limit := int64(len(rows)) * int64(ti.g.RowSize)
		if strings.HasPrefix(key, "parity/") {
			idx := mustIndex(t, ti, 1)
			limit += idx.SegmentSize() - format.SegmentHeaderSize - idx.ShardLen() // the index and footer, read once
		}
		if n > limit || overlap {
			t.Errorf("Stripes read %d bytes of %s (overlap %v), want at most %d for %d row(s)", n, key, overlap, limit, len(rows))
		}
	}
	if len(cs.puts) != 0 {
		t.Errorf("Stripes wrote %v", cs.puts)
	}
	if diff := diffFiles(ti.files, readTree(t, d)); !slices.Equal(diff, []string{fmt.Sprintf("%s (%d vs %d bytes)", seg, len(ti.files[seg]), len(ti.files[seg]))}) {
		t.Errorf("Stripes changed the image: %v", diff)
	}
}

// TestRebuildChunks rebuilds the chunks of a lost segment without touching
// the image and hands over exactly the source bytes.
func TestRebuildChunks(t *testing.T) {
	t.Parallel()
	ti := multiStripe(t)
	st, d := ti.copy(t, t.TempDir())
	gone := ti.dataKey(1, 3)
	remove(t, d, gone)
	before := readTree(t, d)
	rep, err := verify.Scan(context.Background(), st, ti.m, verify.ScanOptions{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(ti.m.SegmentChunks()[1*uint32(ti.g.K)+3])
	if got := rep.BadChunks(); !slices.Equal(got, want) {
		t.Fatalf("Scan found %v, want the chunks of %s: %v", got, gone, want)
	}
	cs := newCounting(st)
	var got []uint64
	ss, err := rebuildChunks(context.Background(), cs, ti.m, rep.Findings, func(i uint64, raw []byte) error {
		off, n := ti.m.ChunkRange(i)
		if !bytes.Equal(raw, ti.data[off:off+n]) {
			t.Errorf("chunk %d rebuilt with bytes that are not the source's", i)
		}
		got = append(got, i)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || len(ss) != 1 || !ss[0].Repairable || len(ss[0].LostChunks) != 0 {
		t.Errorf("RebuildChunks rebuilt %v (stripes %+v), want %v", got, ss, want)
	}
	if len(cs.puts) != 0 {
		t.Errorf("RebuildChunks wrote %v", cs.puts)
	}
	if diff := diffFiles(before, readTree(t, d)); len(diff) > 0 {
		t.Errorf("RebuildChunks changed the image: %v", diff)
	}
}

// TestLostChunksExact deletes M+1 shards of a stripe and checks the lost
// chunk list, and that Repair leaves that stripe alone while it repairs
// another.
func TestLostChunksExact(t *testing.T) {
	t.Parallel()
	ti := multiStripe(t)
	st, d := ti.copy(t, t.TempDir())
	gone := []string{ti.dataKey(1, 0), ti.dataKey(1, 2), ti.parityKey(1, 1)}
	for _, k := range gone {
		remove(t, d, k)
	}
	other := ti.parityKey(0, 1)
	remove(t, d, other)
	rep := check(t, st, ti.m)
	want, lostRows := ti.expectedLost(t, 1, gone)
	if len(want) == 0 {
		t.Fatal("test bug: nothing lost")
	}
	if got := rep.LostChunks(ti.m); !slices.Equal(sortedU64(got), want) {
		t.Errorf("LostChunks %v, want %v", got, want)
	}
	if rep.Repairable(ti.m) {
		t.Errorf("Repairable with M+1 shards of stripe 1 gone")
	}
	for _, s := range rep.Stripes {
		switch s.Stripe {
		case 0:
			if !s.Repairable {
				t.Errorf("stripe 0 %+v, want repairable", s)
			}
		case 1:
			if s.Repairable || !slices.Equal(s.LostRows, lostRows) || s.Err != nil {
				t.Errorf("stripe 1: repairable %v, lost rows %v, err %v; want lost rows %v", s.Repairable, s.LostRows, s.Err, lostRows)
			}
		default:
			t.Errorf("stripe %d reported damaged", s.Stripe)
		}
	}
	res, err := engine.CheckImage(context.Background(), st, engine.CheckOptions{Repair: true, Workers: 2})
	if !errors.Is(err, engine.ErrIntegrity) || res == nil || res.After == nil {
		t.Fatalf("CheckImage repair: %v, want an integrity error after a repair", err)
	}
	if !slices.Equal(res.Rewritten, []string{other}) {
		t.Errorf("CheckImage rewrote %v, want [%s]", res.Rewritten, other)
	}
	if got := res.After.LostChunks(ti.m); !slices.Equal(sortedU64(got), want) {
		t.Errorf("after repair, lost %v, want %v", got, want)
	}
	for _, k := range []uint64{want[0], want[len(want)-1]} {
		off, n := ti.m.ChunkRange(k)
		if s := fmt.Sprintf("chunk %d bytes %d-%d", k, off, off+n-1); !strings.Contains(err.Error(), s) && len(want) <= 8 {
			t.Errorf("CheckImage error does not name %q: %v", s, err)
		}
	}
	after := readTree(t, d)
	if !bytes.Equal(after[other], ti.files[other]) {
		t.Errorf("%s not rebuilt byte for byte", other)
	}
	for _, k := range gone {
		if _, ok := after[k]; ok {
			t.Errorf("%s of a stripe beyond repair was written", k)
		}
	}
}

// expectedLost computes from the pristine parity index the rows of stripe
// s with more than M erased slices when the files keys are gone, and the
// stored chunks of the deleted data segments whose frames touch them.
func (ti testImage) expectedLost(t testing.TB, s uint32, keys []string) (chunks []uint64, rows []int) {
	t.Helper()
	idx := mustIndex(t, ti, s)
	R := int64(idx.RowSize)
	for r := range idx.Rows {
		n := 0
		for _, k := range keys {
			if strings.HasPrefix(k, "parity/") {
				n++
				continue
			}
			for _, d := range idx.Data {
				if d.Present() && format.DataID(d.Number).Key() == k && d.Size > int64(r)*R {
					n++
				}
			}
		}
		if n > ti.g.M {
			rows = append(rows, r)
		}
	}
	for _, k := range keys {
		for seg, cs := range ti.m.SegmentChunks() {
			if format.DataID(seg).Key() != k {
				continue
			}
			for _, i := range cs {
				c := ti.m.Chunks[i]
				for _, r := range rowsOf(c.Offset, c.FrameLen(), idx.RowSize) {
					if slices.Contains(rows, r) {
						chunks = append(chunks, i)
						break
					}
				}
			}
		}
	}
	slices.Sort(chunks)
	return chunks, rows
}

func sortedU64(s []uint64) []uint64 {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestCheckImageRepairMultiStripe repairs damage in every stripe and the
// main manifest through engine.CheckImage, and checks that only the
// damaged files are written and the result is the pristine capture.
func TestCheckImageRepairMultiStripe(t *testing.T) {
	t.Parallel()
	ti := multiStripe(t)
	st, d := ti.copy(t, t.TempDir())
	var damaged []string
	for s := range uint32(ti.m.Stripes()) {
		switch s % 3 {
		case 0: // a data segment and a parity segment gone
			damaged = append(damaged, ti.dataKey(s, 0), ti.parityKey(s, 1))
			remove(t, d, ti.dataKey(s, 0))
			remove(t, d, ti.parityKey(s, 1))
		case 1: // a bit flip in a data payload
			k := ti.dataKey(s, 1)
			damaged = append(damaged, k)
			flip(t, d, k, int64(len(ti.files[k]))/2, 0x08)
		case 2: // a truncated parity segment
			k := ti.parityKey(s, 0)
			damaged = append(damaged, k)
			if err := os.Truncate(path(d, k), 100); err != nil {
				t.Fatal(err)
			}
		}
	}
	flip(t, d, format.ManifestKey, 200, 0x01)
	damaged = append(damaged, format.ManifestKey)

	cs := newCounting(st)
	var told []string
	res, err := engine.CheckImage(context.Background(), cs, engine.CheckOptions{Repair: true, Workers: 2,
		OnRepaired: func(keys []string) { told = slices.Clone(keys) }})
	if err != nil {
		t.Fatalf("CheckImage repair: %v", err)
	}
	if res.Before.OK() || res.After == nil || !res.After.OK() {
		t.Fatalf("CheckImage: before ok %v, after %v", res.Before.OK(), res.After)
	}
	if len(res.Before.Stripes) != ti.m.Stripes() {
		t.Errorf("before repair %d damaged stripes reported, want %d", len(res.Before.Stripes), ti.m.Stripes())
	}
	for _, s := range res.Before.Stripes {
		if !s.Repairable {
			t.Errorf("stripe %d reported beyond repair: %+v", s.Stripe, s)
		}
	}
	if got, want := sortedCopy(res.Rewritten), sortedCopy(damaged); !slices.Equal(got, want) {
		t.Errorf("CheckImage rewrote %v, want %v", got, want)
	}
	if !slices.Equal(sortedCopy(told), sortedCopy(res.Rewritten)) {
		t.Errorf("OnRepaired told %v, Rewritten %v", told, res.Rewritten)
	}
	if got, want := sortedCopy(cs.puts), sortedCopy(damaged); !slices.Equal(got, want) {
		t.Errorf("CheckImage wrote %v, want exactly the damaged files %v", got, want)
	}
	if diff := diffFiles(ti.files, readTree(t, d)); len(diff) > 0 {
		t.Errorf("after repair the image differs from the pristine capture: %v", diff)
	}
	// Nothing to do on an intact image.
	cs2 := newCounting(st)
	res, err = engine.CheckImage(context.Background(), cs2, engine.CheckOptions{Repair: true, Workers: 2})
	if err != nil || res.After != nil || len(cs2.puts) != 0 {
		t.Errorf("CheckImage --repair of an intact image: err %v, after %v, wrote %v", err, res.After, cs2.puts)
	}
}

// TestLoadManifestVersionDamage: a bit flip in the version field of
// manifest.ssm is damage like any other (spec §9.5: a reader that finds
// manifest.ssm "missing or failing §6.6 tries the copies"); identical intact
// copies must keep the image readable.
func TestLoadManifestVersionDamage(t *testing.T) {
	t.Parallel()
	ti := captureParity(t, t.TempDir(), sourceBytes(2, 700*kib), format.Geometry{K: 2, M: 1}, 128*kib, 64*kib)
	st, d := ti.copy(t, t.TempDir())
	flip(t, d, format.ManifestKey, 8, 0x02) // version 1 → 3
	m, err := loadManifest(context.Background(), st)
	if err != nil {
		t.Fatalf("LoadManifest with a damaged version field and an intact copy: %v", err)
	}
	if m.Hash != ti.m.Hash {
		t.Errorf("LoadManifest returned another manifest")
	}
	// The same image without copies reports the version, as before.
	remove(t, d, ti.m.CopyKeys()[0])
	if _, err := loadManifest(context.Background(), st); !errors.Is(err, format.ErrVersion) {
		t.Errorf("LoadManifest without copies: %v, want ErrVersion", err)
	}
}

// TestLoadManifestCopies: any one manifest file suffices, and damaged
// copies are found.
func TestLoadManifestCopies(t *testing.T) {
	t.Parallel()
	ti := captureParity(t, t.TempDir(), sourceBytes(3, 600*kib), format.Geometry{K: 2, M: 2}, 128*kib, 64*kib)
	keys := append([]string{format.ManifestKey}, ti.m.CopyKeys()...)
	if len(keys) != 3 {
		t.Fatalf("manifest files %v, want manifest.ssm and 2 copies", keys)
	}
	for keep := range keys {
		st, d := ti.copy(t, t.TempDir())
		for i, k := range keys {
			if i == keep {
				continue
			}
			if i%2 == 0 {
				remove(t, d, k)
			} else {
				flip(t, d, k, int64(len(ti.files[k]))-45, 0x01)
			}
		}
		m, err := loadManifest(context.Background(), st)
		if err != nil || m.Hash != ti.m.Hash {
			t.Errorf("only %s intact: LoadManifest %v", keys[keep], err)
			continue
		}
		bad, findings := checkManifestCopies(context.Background(), st, m, m.CopyKeys())
		var want []string
		for i, k := range keys {
			if i != keep {
				want = append(want, k)
			}
		}
		if !slices.Equal(sortedCopy(bad), sortedCopy(want)) || len(findings) != len(want) {
			t.Errorf("only %s intact: CheckManifestCopies %v, want %v", keys[keep], bad, want)
		}
	}
	st, d := ti.copy(t, t.TempDir())
	for _, k := range keys {
		flip(t, d, k, 50, 0x01)
	}
	if _, err := loadManifest(context.Background(), st); !errors.Is(err, format.ErrCorrupt) {
		t.Errorf("every manifest file damaged: %v, want ErrCorrupt", err)
	}
}

// TestCheckDetectsEveryChangedDataByte: a data segment byte that changes
// while its chunk still decodes to the same bytes (here the unused bit of a
// zstd frame header descriptor, RFC 8878 §3.1.1.1.1) must not pass for
// intact in a parity image: the shard no longer matches its row CRCs, so
// the stripe silently lost one of its M erasures, and repair would leave
// the file different from the capture.
func TestCheckDetectsEveryChangedDataByte(t *testing.T) {
	t.Parallel()
	ti := multiStripe(t)
	st, d := ti.copy(t, t.TempDir())
	var k uint64
	found := false
	for i, c := range ti.m.Chunks {
		if c.Kind == format.KindStored && c.Codec != format.CodecRaw {
			k, found = uint64(i), true
			break
		}
	}
	if !found {
		t.Fatal("test image has no zstd chunk")
	}
	c := ti.m.Chunks[k]
	seg := format.DataID(c.Segment).Key()
	off := c.Offset + format.FrameHeaderSize + 4 // the zstd frame header descriptor
	flip(t, d, seg, off, 0x10)
	// Precondition: the chunk still decodes and passes its hash.
	codec, err := format.NewChunkCodec(0, 1, format.MaxChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	defer codec.Close()
	b, _ := os.ReadFile(path(d, seg))
	_, n := ti.m.ChunkRange(k)
	if _, err := codec.DecodeAt(k, c.Codec, b[c.Offset+format.FrameHeaderSize:c.Offset+c.FrameLen()], int(n), c.Hash, nil, nil); err != nil {
		t.Skipf("the decoder rejects the unused descriptor bit now (%v): nothing slips through", err)
	}
	rep := check(t, st, ti.m)
	if rep.OK() {
		t.Errorf("Check reports intact although byte %d of %s differs from the capture (its row CRC in the parity index no longer matches)", off, seg)
	}
}

// TestCheckDetectsGrownSegments: a segment file longer than the manifest
// records differs from the capture and must not pass for intact. Data
// segments are caught by the scan; parity segments are read only up to
// their recorded size.
func TestCheckDetectsGrownSegments(t *testing.T) {
	t.Parallel()
	ti := captureParity(t, t.TempDir(), sourceBytes(4, 700*kib), format.Geometry{K: 2, M: 1}, 128*kib, 64*kib)
	for _, key := range []string{format.DataID(1).Key(), format.ParityID(0).Key(), ti.m.CopyKeys()[0]} {
		st, d := ti.copy(t, t.TempDir())
		b := append(bytes.Clone(ti.files[key]), "trailing garbage"...)
		if err := os.WriteFile(path(d, key), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if rep := check(t, st, ti.m); rep.OK() {
			t.Errorf("%s grown by 16 bytes: Check reports the image intact", key)
		} else if !rep.Repairable(ti.m) {
			t.Errorf("%s grown by 16 bytes: not repairable: %v", key, rep.Findings)
		}
	}
}

// rowsOf returns the parity rows bytes [off, off+n) of a shard touch,
// computed here independently of package format.
func rowsOf(off, n int64, rowSize int) []int {
	var rows []int
	for r := off / int64(rowSize); n > 0 && r*int64(rowSize) < off+n; r++ {
		rows = append(rows, int(r))
	}
	return rows
}

// The image reader's operations, called as package verify once offered
// them (the tests below predate package seed).

func loadManifest(ctx context.Context, st store.Store) (*format.Manifest, error) {
	im, err := seed.Open(ctx, st)
	if err != nil {
		return nil, err
	}
	return im.Manifest(), nil
}

func repair(ctx context.Context, st store.Store, m *format.Manifest, findings []verify.Finding) ([]verify.StripeStatus, error) {
	return seed.New(st, m, nil).RebuildSegments(ctx, findings, func(id format.SegmentID, size int64) seed.SegmentSink {
		return store.PutPipe(ctx, st, id.Key(), size)
	})
}

func stripes(ctx context.Context, st store.Store, m *format.Manifest, findings []verify.Finding) ([]verify.StripeStatus, error) {
	return seed.New(st, m, nil).Stripes(ctx, findings)
}

func rebuildChunks(ctx context.Context, st store.Store, m *format.Manifest, findings []verify.Finding, fn func(uint64, []byte) error) ([]verify.StripeStatus, error) {
	return seed.New(st, m, nil).Rebuild(ctx, findings, fn)
}

func checkManifestCopies(ctx context.Context, st store.Store, m *format.Manifest, _ []string) ([]string, []verify.Finding) {
	mc, err := seed.New(st, m, nil).CheckManifests(ctx)
	if err != nil {
		return nil, []verify.Finding{{Key: format.ManifestKey, Err: err}}
	}
	return mc.Bad, mc.Damage
}
