package volume

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/store/storetest"
)

// segClassify is the tests' stand-in for package format's key parser:
// "data/N" and "parity/N" are segments, everything else goes everywhere.
func segClassify(key string) Role {
	var n uint32
	if _, err := fmt.Sscanf(key, "data/%d", &n); err == nil {
		return Role{Kind: Data, Number: n}
	}
	if _, err := fmt.Sscanf(key, "parity/%d", &n); err == nil {
		return Role{Kind: Parity, Number: n}
	}
	return Role{Kind: Everywhere}
}

// hashClassify spreads arbitrary keys over the volumes as data segments.
func hashClassify(key string) Role {
	h := fnv.New32a()
	h.Write([]byte(key))
	return Role{Kind: Data, Number: h.Sum32() % 1000}
}

// members makes n empty directories as volumes.
func members(t *testing.T, n int) []Member {
	t.Helper()
	base := t.TempDir()
	out := make([]Member, n)
	for i := range out {
		p := filepath.Join(base, fmt.Sprintf("vol%d", i+1))
		st, err := dir.New(p)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = Member{Loc: p, Store: st, Dir: p}
	}
	return out
}

func reopen(t *testing.T, ms []Member) []Member {
	t.Helper()
	out := make([]Member, len(ms))
	for i, m := range ms {
		st, err := dir.Open(m.Dir)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = Member{Loc: m.Loc, Store: st, Dir: m.Dir}
	}
	return out
}

func create(t *testing.T, ms []Member, opts CreateOptions) *Set {
	t.Helper()
	if opts.Classify == nil {
		opts.Classify = segClassify
	}
	s, err := Create(t.Context(), ms, opts)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return s
}

func put(t *testing.T, s store.Store, key string, b []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
}

func get(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, 0, -1)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	return b
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return create(t, members(t, 3), CreateOptions{Layout: RotateLayout(2, 1), Classify: hashClassify})
	})
}

// where returns the volume numbers whose directory holds key.
func where(ms []Member, key string) []int {
	var out []int
	for i, m := range ms {
		if _, err := os.Stat(filepath.Join(m.Dir, filepath.FromSlash(key))); err == nil {
			out = append(out, i+1)
		}
	}
	return out
}

// TestPlacementRotate checks the rule of spec §10 on a set with room:
// data n of stripe s at position p on volume (s+p) mod V, parity j on
// (s+K+j) mod V, and the everywhere keys on every volume.
func TestPlacementRotate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		k, m, v int
	}{{"3+1 over 4", 3, 1, 4}, {"4+2 over 3", 4, 2, 3}, {"no parity over 3", 0, 0, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			ms := members(t, tc.v)
			s := create(t, ms, CreateOptions{Layout: RotateLayout(tc.k, tc.m)})
			k, m := max(tc.k, 1), tc.m
			for n := range 3 * k {
				key := fmt.Sprintf("data/%08d", n)
				put(t, s, key, []byte(key))
				s, p := n/k, n%k
				if got, want := where(ms, key), []int{(s+p)%tc.v + 1}; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s on volumes %v, want %v", key, got, want)
				}
			}
			for j := range 3 * m {
				key := fmt.Sprintf("parity/%08d", j)
				put(t, s, key, []byte(key))
				if got, want := where(ms, key), []int{(j/m+k+j%m)%tc.v + 1}; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s on volumes %v, want %v", key, got, want)
				}
			}
			put(t, s, "manifest.ssm", []byte("m"))
			if got := where(ms, "manifest.ssm"); len(got) != tc.v {
				t.Errorf("manifest.ssm on volumes %v, want all %d", got, tc.v)
			}
			if got := where(ms, LabelKey); len(got) != tc.v {
				t.Errorf("labels on volumes %v, want all %d", got, tc.v)
			}
		})
	}
}

func TestNominalAndMayLose(t *testing.T) {
	for _, tc := range []struct{ k, m, v, want int }{
		{3, 1, 4, 1}, {4, 2, 6, 2}, {4, 2, 3, 1}, {10, 2, 4, 0}, {10, 2, 12, 2}, {0, 0, 4, 0}, {2, 2, 2, 1},
	} {
		if got := Nominal(tc.k, tc.m, tc.v); got != tc.want {
			t.Errorf("Nominal(%d, %d, %d) = %d, want %d", tc.k, tc.m, tc.v, got, tc.want)
		}
		// The placement the rule achieves with room everywhere agrees.
		ms := members(t, tc.v)
		s := create(t, ms, CreateOptions{Layout: RotateLayout(tc.k, tc.m)})
		k := max(tc.k, 1)
		for n := range 2 * k {
			put(t, s, fmt.Sprintf("data/%08d", n), []byte("d"))
		}
		for j := range 2 * tc.m {
			put(t, s, fmt.Sprintf("parity/%08d", j), []byte("p"))
		}
		if got := s.MayLose(); got != tc.want {
			t.Errorf("MayLose of %d+%d over %d = %d, want %d", tc.k, tc.m, tc.v, got, tc.want)
		}
	}
}

// TestCapFailsCleanly fills capped volumes: the write that does not fit
// fails with an error wrapping store.ErrNoSpace that names the volume,
// leaves no file behind, and the volumes that still have room take the
// next files.
func TestCapFailsCleanly(t *testing.T) {
	ms := members(t, 2)
	s := create(t, ms, CreateOptions{VolumeSize: 10 << 10})
	seg := bytes.Repeat([]byte("x"), 4<<10)
	for n := range 4 {
		put(t, s, fmt.Sprintf("data/%08d", n), seg)
	}
	// Both volumes hold 8 KiB of 10: no room for another 4 KiB file.
	err := s.Put(t.Context(), "data/00000004", bytes.NewReader(seg), -1)
	var full *FullError
	if !errors.Is(err, store.ErrNoSpace) || !errors.As(err, &full) {
		t.Fatalf("Put past the caps = %v, want a FullError wrapping store.ErrNoSpace", err)
	}
	if !strings.Contains(err.Error(), "every volume is full") {
		t.Errorf("error does not say the volumes are full: %v", err)
	}
	if got := where(ms, "data/00000004"); len(got) != 0 {
		t.Errorf("the file that did not fit is on volumes %v", got)
	}
	// One file larger than the largest so far, of unknown size, is cut
	// off while it is written.
	ms2 := members(t, 1)
	s2 := create(t, ms2, CreateOptions{VolumeSize: 10 << 10})
	err = s2.Put(t.Context(), "data/00000000", bytes.NewReader(make([]byte, 12<<10)), -1)
	if !errors.As(err, &full) || !full.Partial || full.Volume != 1 || !strings.Contains(err.Error(), ms2[0].Loc) {
		t.Fatalf("Put of 12 KiB onto a 10 KiB volume = %v, want a partial FullError naming volume 1 and its path", err)
	}
	noTemps(t, ms2[0].Dir)
}

func noTemps(t *testing.T, root string) {
	t.Helper()
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasPrefix(fi.Name(), dir.TempPrefix) {
			t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

// TestLabelsRecordWhatIsWritten checks each label lists exactly its
// volume's files with the SHA-256 of their bytes.
func TestLabelsRecordWhatIsWritten(t *testing.T) {
	ms := members(t, 3)
	s := create(t, ms, CreateOptions{Layout: RotateLayout(2, 1), Source: Source{Host: "h", Path: "/dev/x"}})
	for n := range 4 {
		put(t, s, fmt.Sprintf("data/%08d", n), []byte(strings.Repeat("d", n+1)))
	}
	put(t, s, "capture.ckpt", []byte("ck"))
	if err := s.Delete(t.Context(), "capture.ckpt"); err != nil {
		t.Fatal(err)
	}
	for i, m := range reopen(t, ms) {
		l, _, err := ReadLabel(t.Context(), m.Store)
		if err != nil || l == nil {
			t.Fatalf("volume %d label: %v", i+1, err)
		}
		if l.Volume != i+1 || l.Volumes != 3 || l.Source.Path != "/dev/x" {
			t.Errorf("label %d says volume %d of %d, source %q", i+1, l.Volume, l.Volumes, l.Source.Path)
		}
		var onDisk []string
		_ = m.Store.List(t.Context(), "", func(i store.Info) error {
			if i.Key != LabelKey {
				onDisk = append(onDisk, i.Key)
			}
			return nil
		})
		var listed []string
		for _, f := range l.Files {
			listed = append(listed, f.Key)
			b, _ := os.ReadFile(filepath.Join(m.Dir, f.Key))
			if sum, _, _ := hashObject(t.Context(), m.Store, f.Key); sum != f.SHA256 || int64(len(b)) != f.Size {
				t.Errorf("volume %d: %s recorded as %d bytes %s, is %d bytes %s", i+1, f.Key, f.Size, f.SHA256, len(b), sum)
			}
		}
		if fmt.Sprint(listed) != fmt.Sprint(onDisk) {
			t.Errorf("volume %d label lists %v, holds %v", i+1, listed, onDisk)
		}
	}
}

// TestOpenRefuses checks the refusals of Open: each names the path.
func TestOpenRefuses(t *testing.T) {
	src := Source{Host: "h", Path: "/dev/sdb"}
	capture := func(source Source) []Member {
		ms := members(t, 3)
		s := create(t, ms, CreateOptions{Layout: RotateLayout(2, 1), Source: source})
		for n := range 2 {
			put(t, s, fmt.Sprintf("data/%08d", n), []byte("d"))
		}
		return reopen(t, ms)
	}
	a := capture(src)
	earlier := a
	b := capture(src) // a later capture of the same source
	other := capture(Source{Host: "h", Path: "/dev/sdc"})
	// Make the first set clearly older.
	if err := backdate(t, earlier); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		ms     []Member
		reason error
		names  string
	}{
		{"another image", []Member{b[0], b[1], other[2]}, ErrForeign, other[2].Loc},
		{"stale", []Member{b[0], b[1], earlier[2]}, ErrStale, earlier[2].Loc},
		{"same volume twice", []Member{b[0], b[1], copyVolume(t, b[1])}, ErrDuplicate, b[1].Loc},
		{"same directory twice", []Member{b[0], b[1], b[1]}, ErrDuplicate, b[1].Loc},
		{"no label", []Member{b[0], members(t, 1)[0]}, ErrNoLabel, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := OpenMembers(t.Context(), tc.ms)
			if !errors.Is(err, ErrRefused) || !errors.Is(err, tc.reason) {
				t.Fatalf("OpenMembers = %v, want a refusal for %v", err, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.names) || strings.Contains(err.Error(), "\n") {
				t.Errorf("refusal %q does not name %s in one line", err, tc.names)
			}
		})
	}
	if s, err := OpenMembers(t.Context(), []Member{b[2], b[0]}); err != nil || fmt.Sprint(s.Missing()) != "[2]" {
		t.Fatalf("two of three volumes: %v, missing %v; want volume 2 missing", err, s.Missing())
	}
}

// backdate moves the creation time of a set's labels a day back.
func backdate(t *testing.T, ms []Member) error {
	for _, m := range ms {
		l, _, err := ReadLabel(t.Context(), m.Store)
		if err != nil {
			return err
		}
		l.Created = l.Created.Add(-24 * 60 * 60 * 1e9)
		b, _ := l.marshal()
		if err := os.WriteFile(filepath.Join(m.Dir, LabelKey), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// copyVolume copies a volume's files into a new directory.
func copyVolume(t *testing.T, m Member) Member {
	n := members(t, 1)[0]
	err := m.Store.List(t.Context(), "", func(i store.Info) error {
		put(t, n.Store, i.Key, get(t, m.Store, i.Key))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(m.Dir, LabelKey))
	if err := os.WriteFile(filepath.Join(n.Dir, LabelKey), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestResumeOntoNewVolume fills a set, then continues it with one more
// volume: the stored files stay where they are, the new ones go to the
// volume with room, and the labels say there are now three volumes.
func TestResumeOntoNewVolume(t *testing.T) {
	ms := members(t, 3)
	first := ms[:2]
	s := create(t, first, CreateOptions{VolumeSize: 8 << 10})
	seg := bytes.Repeat([]byte("y"), 4<<10)
	for n := range 4 {
		put(t, s, fmt.Sprintf("data/%08d", n), seg)
	}
	if err := s.Put(t.Context(), "data/00000004", bytes.NewReader(seg), int64(len(seg))); !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("Put onto full volumes = %v, want ErrNoSpace", err)
	}
	before := map[string][]int{}
	for n := range 4 {
		k := fmt.Sprintf("data/%08d", n)
		before[k] = where(ms, k)
	}
	s2 := create(t, reopen(t, ms), CreateOptions{Resume: true, VolumeSize: 8 << 10})
	put(t, s2, "data/00000004", seg)
	put(t, s2, "data/00000005", seg)
	for k, w := range before {
		if got := where(ms, k); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("%s moved from %v to %v", k, w, got)
		}
	}
	for _, k := range []string{"data/00000004", "data/00000005"} {
		if got := where(ms, k); fmt.Sprint(got) != "[3]" {
			t.Errorf("%s on %v, want the new volume 3", k, got)
		}
	}
	for i, m := range reopen(t, ms) {
		l, _, _ := ReadLabel(t.Context(), m.Store)
		if l.Volumes != 3 || l.Volume != i+1 {
			t.Errorf("label %d: volume %d of %d, want %d of 3", i+1, l.Volume, l.Volumes, i+1)
		}
	}
	// A resume without one of the old volumes is refused.
	_, err := Create(t.Context(), reopen(t, []Member{ms[0], ms[2]}), CreateOptions{Resume: true, Classify: segClassify})
	if !errors.Is(err, ErrMissingVolume) {
		t.Errorf("resume without volume 2 = %v, want ErrMissingVolume", err)
	}
	// A fresh capture onto a labelled volume is refused.
	_, err = Create(t.Context(), reopen(t, []Member{ms[0]}), CreateOptions{Classify: segClassify})
	if !errors.Is(err, ErrTaken) {
		t.Errorf("fresh capture onto a volume = %v, want ErrTaken", err)
	}
}

// TestReadBackFindsCorruption corrupts one file after it was written:
// its volume's read-back names it, the others pass.
func TestReadBackFindsCorruption(t *testing.T) {
	ms := members(t, 2)
	s := create(t, ms, CreateOptions{})
	for n := range 4 {
		put(t, s, fmt.Sprintf("data/%08d", n), bytes.Repeat([]byte{byte(n)}, 100<<10))
	}
	put(t, s, "manifest.ssm", []byte("manifest"))
	checks, err := s.ReadBack(t.Context())
	if err != nil || !checks[0].OK() || !checks[1].OK() {
		t.Fatalf("read-back of intact volumes: %v %+v", err, checks)
	}
	p := filepath.Join(ms[1].Dir, "data", "00000003")
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, 5000); err != nil {
		t.Fatal(err)
	}
	f.Close()
	checks, err = s.ReadBack(t.Context())
	if err != nil || !checks[0].OK() || checks[1].OK() {
		t.Fatalf("read-back after corrupting volume 2: %v %+v", err, checks)
	}
	if !strings.Contains(checks[1].Failures[0], "data/00000003") || !strings.Contains(checks[1].Failures[0], "SHA-256") {
		t.Errorf("failure %q does not name the file and the mismatch", checks[1].Failures[0])
	}
	c, _, err := CheckVolume(t.Context(), reopen(t, ms)[1])
	if err != nil || c.OK() {
		t.Errorf("CheckVolume of the corrupted volume: %v, %+v", err, c)
	}
}

func TestParseLabelRefusesBadLabels(t *testing.T) {
	good := `{"format":"seedship-volume","version":1,"set_id":"0123456789abcdef0123456789abcdef","volume":1,"volumes":2,"layout":{"name":"rotate","data":1,"parity":0},"source":{"path":"/dev/x","size":1},"created":"2026-01-01T00:00:00Z","updated":"2026-01-01T00:00:00Z","complete":false,"files":[]}`
	if _, err := ParseLabel([]byte(good)); err != nil {
		t.Fatalf("good label: %v", err)
	}
	for _, bad := range []string{
		strings.Replace(good, `"volume":1`, `"volume":3`, 1),
		strings.Replace(good, `"version":1`, `"version":2`, 1),
		strings.Replace(good, `"set_id":"0123`, `"set_id":"x123`, 1),
		strings.Replace(good, `"files":[]`, `"files":[{"key":"../x","size":1,"sha256":"`+strings.Repeat("0", 64)+`"}]`, 1),
		strings.Replace(good, `"data":1`, `"data":2`, 1),
		`{`,
	} {
		if _, err := ParseLabel([]byte(bad)); !errors.Is(err, ErrBadLabel) {
			t.Errorf("ParseLabel(%s) = %v, want ErrBadLabel", bad, err)
		}
	}
}

func FuzzParseLabel(f *testing.F) {
	f.Add([]byte(`{"format":"seedship-volume","version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseLabel(b)
		if err == nil {
			if _, err := l.marshal(); err != nil {
				t.Fatal(err)
			}
			if l.Volume < 1 || l.Volume > l.Volumes {
				t.Fatalf("accepted volume %d of %d", l.Volume, l.Volumes)
			}
		}
	})
}

// TestMayLoseFromPlacement judges what may be lost from where the shards
// are, not from the rule: a stripe with two shards on one volume (a
// volume that filled up, a resumed capture) lowers it.
func TestMayLoseFromPlacement(t *testing.T) {
	shard := func(s uint32, i int) *Shard { return &Shard{Stripe: s, Index: i} }
	label := func(vol int, shards ...*Shard) *Label {
		l := &Label{Volume: vol}
		for _, sh := range shards {
			l.Files = append(l.Files, File{Shard: sh})
		}
		l.Files = append(l.Files, File{Key: "manifest.ssm"})
		return l
	}
	for _, tc := range []struct {
		name   string
		layout Layout
		labels []*Label
		count  int
		want   int
	}{
		{"3+1 spread", RotateLayout(3, 1), []*Label{label(1, shard(0, 0)), label(2, shard(0, 1)), label(3, shard(0, 2)), label(4, shard(0, 3))}, 4, 1},
		{"3+1, two shards on one volume", RotateLayout(3, 1), []*Label{label(1, shard(0, 0), shard(0, 3)), label(2, shard(0, 1)), label(3, shard(0, 2)), label(4)}, 4, 0},
		{"4+2 over 3, two per volume", RotateLayout(4, 2), []*Label{label(1, shard(0, 0), shard(0, 3)), label(2, shard(0, 1), shard(0, 4)), label(3, shard(0, 2), shard(0, 5))}, 3, 1},
		{"no parity", RotateLayout(0, 0), []*Label{label(1, shard(0, 0)), label(2, shard(1, 0))}, 2, 0},
		{"no segments at all", RotateLayout(0, 0), []*Label{label(1), label(2), label(3)}, 3, 2},
		{"short last stripe on the other volumes", RotateLayout(2, 2), []*Label{label(1, shard(0, 0), shard(1, 0)), label(2, shard(0, 1), shard(1, 2)), label(3, shard(0, 2), shard(1, 3)), label(4, shard(0, 3))}, 4, 2},
	} {
		if got := MayLose(tc.labels, tc.layout, tc.count); got != tc.want {
			t.Errorf("%s: MayLose = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestResumeKeepsReserve: a volume that joins a resumed capture keeps the
// room for the manifest the others keep, so the manifest still fits on
// every volume at the end.
func TestResumeKeepsReserve(t *testing.T) {
	ms := members(t, 3)
	s := create(t, ms[:2], CreateOptions{VolumeSize: 64 << 10, Reserve: 8 << 10})
	put(t, s, "data/00000000", []byte("d"))
	s2 := create(t, reopen(t, ms), CreateOptions{Resume: true, VolumeSize: 64 << 10})
	for _, v := range s2.Volumes() {
		if v.Label.Reserve != 8<<10 {
			t.Errorf("volume %d keeps %d bytes for the manifest, want %d", v.Volume, v.Label.Reserve, 8<<10)
		}
	}
	// Segments fill the new volume only up to its cap less the reserve.
	for n := 1; ; n++ {
		err := s2.Put(t.Context(), fmt.Sprintf("data/%08d", n), bytes.NewReader(make([]byte, 4<<10)), 4<<10)
		if err != nil {
			if !errors.Is(err, store.ErrNoSpace) {
				t.Fatal(err)
			}
			break
		}
	}
	manifest := make([]byte, 6<<10)
	if err := s2.Put(t.Context(), "manifest.ssm", bytes.NewReader(manifest), int64(len(manifest))); err != nil {
		t.Errorf("the manifest does not fit on volumes filled with segments: %v", err)
	}
}

// TestGetPrefersIntactCopy: a file every volume holds, damaged on the
// first volume, is read from another whose copy matches its label.
func TestGetPrefersIntactCopy(t *testing.T) {
	ms := members(t, 3)
	s := create(t, ms, CreateOptions{})
	want := []byte("the manifest, byte for byte")
	put(t, s, "manifest.ssm", want)
	if err := os.WriteFile(filepath.Join(ms[0].Dir, "manifest.ssm"), []byte("the manifest, bit for bit!!"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := OpenMembers(t.Context(), reopen(t, ms))
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, r, "manifest.ssm"); !bytes.Equal(got, want) {
		t.Errorf("Get of a copy damaged on volume 1 = %q, want the intact %q", got, want)
	}
}
