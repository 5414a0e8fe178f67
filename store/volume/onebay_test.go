package volume

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

const testImageID = "0123456789abcdef0123456789abcdef"

// TestOneBaySet fills three volumes one at a time, each created with
// only the new drive and the earlier ones' labels (Detached): numbering,
// labels that say the count was unknown, the final labels, reading the
// whole set, one early drive completed from the kept manifest (Adopt),
// and the refusals of a continuation.
func TestOneBaySet(t *testing.T) {
	ctx := t.Context()
	ms := members(t, 3)
	seg := bytes.Repeat([]byte("s"), 4<<10)
	layout := RotateLayout(2, 1)

	s1 := create(t, ms[:1], CreateOptions{Layout: layout})
	put(t, s1, "data/00000000", seg)
	put(t, s1, "data/00000001", seg)
	put(t, s1, "parity/00000000", seg)
	put(t, s1, "capture.ckpt", []byte("checkpoint 1"))
	if _, err := s1.Suspend(ctx, "not hex"); err == nil {
		t.Error("Suspend with a bad image id succeeded")
	}
	labels1, err := s1.Suspend(ctx, testImageID)
	if err != nil {
		t.Fatal(err)
	}
	if len(labels1) != 1 || !labels1[0].CountUnknown || labels1[0].ImageID != testImageID {
		t.Fatalf("Suspend returned %+v", labels1)
	}
	if l, _, _ := ReadLabel(ctx, ms[0].Store); !l.CountUnknown || l.ImageID != testImageID || l.Volume != 1 {
		t.Errorf("the full drive's label on disk: %+v", l)
	}

	// Refusals, before anything is written.
	other := members(t, 1)
	so := create(t, other, CreateOptions{})
	put(t, so, "data/00000000", seg)
	notEmpty := members(t, 1)
	if err := notEmpty[0].Store.Put(ctx, "stray", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	badSet := slices.Clone(labels1)
	badSet[0].SetID = "ffffffffffffffffffffffffffffffff"
	badSet = append(badSet, labels1[0])
	badSet[1].Volume = 2
	for _, tc := range []struct {
		name     string
		ms       []Member
		detached []Label
		want     error
	}{
		{"the full drive again", reopen(t, ms[:1]), labels1, ErrDuplicate},
		{"a volume of another capture of the same source", reopen(t, other), labels1, ErrStale},
		{"a drive that is not empty", notEmpty, labels1, ErrTaken},
		{"labels of two sets", reopen(t, ms[1:2]), badSet, ErrBadLabel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Create(ctx, tc.ms, CreateOptions{Resume: true, Detached: tc.detached, Classify: segClassify})
			if !errors.Is(err, ErrRefused) || !errors.Is(err, tc.want) {
				t.Fatalf("Create = %v, want %v", err, tc.want)
			}
		})
	}
	if fileCount(t, ms[1]) != 0 {
		t.Fatal("a refused continuation wrote to the new drive")
	}

	s2 := create(t, reopen(t, ms[1:2]), CreateOptions{Resume: true, Detached: labels1})
	put(t, s2, "data/00000002", seg)
	put(t, s2, "data/00000003", seg)
	put(t, s2, "parity/00000001", seg)
	labels2, err := s2.Suspend(ctx, testImageID)
	if err != nil {
		t.Fatal(err)
	}
	if len(labels2) != 2 || labels2[0].Volume != 1 || labels2[1].Volume != 2 || !labels2[1].CountUnknown {
		t.Fatalf("the second Suspend returned %+v", labels2)
	}

	s3 := create(t, reopen(t, ms[2:3]), CreateOptions{Resume: true, Detached: labels2})
	put(t, s3, "data/00000004", seg)
	put(t, s3, "parity/00000002", seg)
	put(t, s3, "manifest", []byte("the manifest"))
	now := time.Now()
	if err := s3.Finish(ctx, Facts{ImageID: testImageID, Size: 1, SHA256: fmt.Sprintf("%064x", 1), CaptureStart: now, CaptureEnd: now,
		ManifestSHA256: fmt.Sprintf("%064x", 2)}); err != nil {
		t.Fatal(err)
	}
	last, _, _ := ReadLabel(ctx, ms[2].Store)
	if !last.Complete || last.CountUnknown || last.Volume != 3 || last.Volumes != 3 || len(last.Set) != 3 ||
		fmt.Sprint(last.Detached) != "[1 2]" || last.MayLose == nil || *last.MayLose != 0 {
		t.Fatalf("the last drive's label: %+v", last)
	}
	if l, _, _ := ReadLabel(ctx, ms[0].Store); !l.CountUnknown || l.Volumes != 1 || l.Complete {
		t.Errorf("the first drive's label was changed after it was detached: %+v", l)
	}

	// All drives, any order: one set of three.
	all, err := OpenMembers(ctx, reopen(t, []Member{ms[2], ms[0], ms[1]}))
	if err != nil {
		t.Fatal(err)
	}
	if all.Count() != 3 || len(all.Missing()) != 0 || !all.CountKnown() {
		t.Errorf("the whole set: count %d, missing %v, count known %v", all.Count(), all.Missing(), all.CountKnown())
	}
	for _, k := range []string{"data/00000000", "data/00000003", "parity/00000002", "manifest"} {
		if !bytes.Equal(get(t, all, k), map[bool][]byte{true: []byte("the manifest"), false: seg}[k == "manifest"]) {
			t.Errorf("%s reads wrong from the whole set", k)
		}
	}

	// The first drive alone: no manifest, the count unknown, until the
	// kept manifest of the last drive completes it.
	one, err := OpenMembers(ctx, reopen(t, ms[:1]))
	if err != nil {
		t.Fatal(err)
	}
	if one.CountKnown() {
		t.Error("the first drive alone claims to know the count")
	}
	if _, err := one.Stat(ctx, "manifest"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("the first drive alone has a manifest: %v", err)
	}
	keptDir := t.TempDir()
	kept, _ := dir.New(keptDir)
	put(t, kept, "manifest", []byte("the manifest"))
	wrong := *last
	wrong.SetID = "ffffffffffffffffffffffffffffffff"
	if err := one.Adopt(&wrong, kept); err == nil {
		t.Error("Adopt took the label of another set")
	}
	if err := one.Adopt(labels1[0].clone(), kept); err == nil {
		t.Error("Adopt took a label that is not complete")
	}
	if err := one.Adopt(last, kept); err != nil {
		t.Fatal(err)
	}
	if got := get(t, one, "manifest"); string(got) != "the manifest" || one.Count() != 3 || fmt.Sprint(one.Missing()) != "[2 3]" {
		t.Errorf("after Adopt: manifest %q, count %d, missing %v", got, one.Count(), one.Missing())
	}
}

func (l Label) clone() *Label { return &l }

func fileCount(t *testing.T, m Member) int {
	t.Helper()
	n := 0
	if err := m.Store.List(t.Context(), "", func(store.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
