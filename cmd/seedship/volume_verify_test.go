package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestVolumesVerifyAndCopy: verify takes the volumes in any order and
// says what parity rebuilds when one is missing; copy gathers them into
// one directory image.
func TestVolumesVerifyAndCopy(t *testing.T) {
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "source.img"), mixed(48, 256*kib, 5))
	var vols []string
	for i := range 4 {
		vols = append(vols, filepath.Join(d, "vol"+strconv.Itoa(i+1)))
	}
	must(t, append([]string{"capture", "-q", "--parity", "3+1", "--chunk-size", "256KiB", "--segment-size", "1MiB", src}, vols...)...)
	must(t, "verify", "-q", vols[3], vols[1], vols[0], vols[2])
	oneLineError(t, expect(t, exitUsage, "verify", "--repair", vols[0], vols[1]), "--repair")
	oneLineError(t, expect(t, exitUsage, "verify", vols[0], vols[0]), vols[0], "same directory")
	one := filepath.Join(d, "one")
	must(t, "copy", "-q", vols[2], vols[0], vols[3], vols[1], one)
	must(t, "verify", "-q", one)
	if err := os.RemoveAll(vols[1]); err != nil {
		t.Fatal(err)
	}
	r := expect(t, exitIntegrity, "verify", vols[0], vols[2], vols[3])
	if !strings.Contains(r.stdout+r.stderr, "repairable from parity") {
		t.Errorf("verify without volume 2 does not say parity rebuilds it: %s", r)
	}
	target := filepath.Join(d, "restored.img")
	must(t, "restore", "-q", vols[3], vols[0], vols[2], target)
	sameBytes(t, src, target)
}
