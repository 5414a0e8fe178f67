//go:build soak

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
)

// TestVolumesFullSize is issue 9's test at full size: a realistic 1 GiB
// ext4 image over four loop-mounted ext4 volumes of 300 MiB; restored from
// all of them, in reverse order; with --parity 3+1 restored without one
// whole volume; and, capped so that the four volumes are not enough,
// continued with --resume onto two more. About two minutes on two cores;
// TestVolumes runs the same at 192 MiB in every test run.
//
//	go test -tags soak -count=1 -run TestVolumesFullSize ./cmd/seedship/
func TestVolumesFullSize(t *testing.T) {
	devicetest.RequireLoop(t)
	src := realisticSource(t, 1024)
	volumes := func(n int) []string {
		var out []string
		for range n {
			v, _ := loopVolume(t, 300*mib)
			out = append(out, v)
		}
		return out
	}
	restoreFrom := func(vols []string) {
		t.Helper()
		target := filepath.Join(t.TempDir(), "restored.img")
		must(t, append(append([]string{"restore", "-q"}, vols...), target)...)
		sameBytes(t, src, target)
		if err := os.Remove(target); err != nil {
			t.Fatal(err)
		}
	}

	vols := volumes(4)
	r := must(t, append([]string{"capture", src}, vols...)...)
	t.Logf("%s", r.stdout)
	if strings.Count(r.stdout, ": OK") != 4 {
		t.Errorf("want four volumes read back OK: %s", r)
	}
	restoreFrom(vols)
	rev := slices.Clone(vols)
	slices.Reverse(rev)
	restoreFrom(rev)

	pvols := volumes(4)
	must(t, append([]string{"capture", "-q", "--parity", "3+1", src}, pvols...)...)
	if err := os.RemoveAll(pvols[1]); err != nil {
		t.Fatal(err)
	}
	restoreFrom([]string{pvols[3], pvols[0], pvols[2]})

	fvols := volumes(4)
	r = seedshipCtx(t.Context(), append([]string{"capture", "--volume-size", "60MiB", src}, fvols...)...)
	_, cmdline, ok := strings.Cut(strings.TrimSpace(r.stderr), "and run: ")
	if r.code != exitRuntime || !ok || !strings.HasSuffix(cmdline, " NEW-DRIVE") {
		t.Fatalf("capture onto four 60 MiB volumes: want exit 1 with the command to continue, got %s", r)
	}
	argv := shellWords(t, strings.TrimSuffix(cmdline, " NEW-DRIVE"))
	more := volumes(2)
	must(t, append(append([]string{argv[1], "-q"}, argv[2:]...), more...)...)
	restoreFrom(append(more, fvols...))
}

// TestOneBayFullSize is TestOneBay at issue 9's size: a realistic 1 GiB
// ext4 image onto loop-mounted 300 MiB drives capped at 100 MiB, filled
// one at a time with only the new drive attached.
//
//	go test -tags soak -count=1 -run TestOneBayFullSize ./cmd/seedship/
func TestOneBayFullSize(t *testing.T) {
	testOneBay(t, 1024, 300*mib, "--volume-size", "100MiB")
}
