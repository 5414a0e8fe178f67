package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/store/volume"
)

// TestVolumesMixedS3 captures onto two directories and an S3 prefix as
// one volume set with --parity 2+1, then restores from all three in
// another order, and from the S3 volume and one directory alone.
func TestVolumesMixedS3(t *testing.T) {
	e := newS3Env(t)
	src, _ := s3Source(t, 31, 40, 1234)
	d := t.TempDir()
	a, b, s3vol := filepath.Join(d, "a"), filepath.Join(d, "b"), e.url("vol2")
	r := must(t, append([]string{"capture", "--parity", "2+1"}, append(s3ImgFlags, src, a, s3vol, b)...)...)
	if !strings.Contains(r.stdout, "any 1 of the 3 volumes may be lost") || strings.Count(r.stdout, ": OK") != 3 {
		t.Errorf("capture over a, s3 and b: %s", r)
	}
	if !e.exists(t, "vol2", volume.LabelKey) || !e.exists(t, "vol2", "manifest.ssm") {
		t.Errorf("the S3 volume has no label or manifest: %v", e.objects(t, "vol2"))
	}
	if text := must(t, "label", s3vol).stdout; !strings.Contains(text, "VOLUME 2 OF 3") {
		t.Errorf("label of the S3 volume:\n%s", text)
	}
	target := filepath.Join(t.TempDir(), "restored.img")
	must(t, "restore", "-q", b, s3vol, a, target)
	s3Cmp(t, src, target)
	if err := os.RemoveAll(a); err != nil {
		t.Fatal(err)
	}
	target2 := filepath.Join(t.TempDir(), "restored.img")
	must(t, "restore", "-q", s3vol, b, target2)
	s3Cmp(t, src, target2)
}
