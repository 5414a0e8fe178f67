package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/volume"
)

// oneBayArgs checks a capture stopped on full volumes and returns the
// command it prints to continue onto a new drive alone, without the
// NEW-DRIVE placeholder, and the continuation state it names.
func oneBayArgs(t *testing.T, r cliResult) (argv []string, state string) {
	t.Helper()
	line := strings.TrimSpace(r.stderr)
	if r.code != exitRuntime || strings.Count(line, "\n") != 0 || !strings.Contains(line, "the volumes are full") {
		t.Fatalf("want exit 1 and one line saying the volumes are full, got %s", r)
	}
	head, cmdline, ok := strings.Cut(line, "and run: ")
	if !ok || !strings.HasSuffix(cmdline, " NEW-DRIVE") {
		t.Fatalf("no command to continue onto a new drive: %s", r)
	}
	_, rest, ok := strings.Cut(head, "is kept in ")
	if !ok {
		t.Fatalf("the message does not name the continuation state: %s", r)
	}
	state, _, _ = strings.Cut(rest, ",")
	return shellWords(t, strings.TrimSuffix(cmdline, " NEW-DRIVE")), state
}

// detach moves a volume's directory aside (the drive gone to the
// courier) and returns the function that brings it back.
func detach(t *testing.T, vol string) func() {
	t.Helper()
	away := vol + ".away"
	if err := os.Rename(vol, away); err != nil {
		t.Fatal(err)
	}
	return func() {
		t.Helper()
		if err := os.Rename(away, vol); err != nil {
			t.Fatal(err)
		}
	}
}

func labelOf(t *testing.T, vol string) *volume.Label {
	t.Helper()
	l, err := volume.ParseLabel(readFile(t, filepath.Join(vol, volume.LabelKey)))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestOneBay fills drive after drive with only the new one attached: the
// earlier, full drives are moved away before each continuation. The image
// restores cmp-equal from all of them in any order; the refusals of a
// tampered state, a drive that is not empty and a volume of another
// image write nothing; an interrupted continuation continues.
func TestOneBay(t *testing.T) {
	t.Run("plain", func(t *testing.T) { testOneBay(t, 128, 64*mib, "--volume-size", "12MiB") })
	// Parity in one-bay mode: each stripe on one drive, so it repairs
	// damage but a whole lost drive is not covered, and info says so.
	t.Run("parity 2+1", func(t *testing.T) { testOneBay(t, 64, 64*mib, "--volume-size", "10MiB", "--parity", "2+1") })
}

// testOneBay is TestOneBay with a realistic source of srcMiB MiB, drives
// of driveSize bytes and the capture flags given.
func testOneBay(t *testing.T, srcMiB int, driveSize int64, flags ...string) {
	devicetest.RequireLoop(t)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	src := realisticSource(t, srcMiB)

	first, _ := loopVolume(t, driveSize)
	r := seedshipCtx(t.Context(), append(append([]string{"capture"}, flags...), src, first)...)
	argv, state := oneBayArgs(t, r)
	if want := append(append([]string{"seedship", "capture", "--resume"}, flags...), src); !slices.Equal(sortedWords(argv), sortedWords(want)) || argv[len(argv)-1] != src {
		t.Errorf("continue with %q, want %q (flags in any order)", argv, want)
	}
	if fi, err := os.Stat(state); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("continuation state %s: %v, want mode 0600", state, err)
	}
	if l := labelOf(t, first); !l.CountUnknown || l.ImageID == "" || l.Volume != 1 {
		t.Errorf("the full drive's label does not say volume 1, its image and that the count is unknown: %+v", l)
	}
	absent(t, filepath.Join(first, format.ManifestKey), "a capture that ran out of volumes must not write a manifest")

	vols := []string{first}
	var back []func()
	back = append(back, detach(t, first))

	// Refusals, each before anything is written to the new drive.
	t.Run("refused", func(t *testing.T) {
		fresh, _ := loopVolume(t, driveSize)
		// A drive that is not empty.
		writeFile(t, filepath.Join(fresh, "stray.txt"), []byte("not a volume"))
		bad := expect(t, exitUsage, append(argv[1:], fresh)...)
		if !strings.Contains(bad.stderr, fresh) || !strings.Contains(bad.stderr, "not empty") {
			t.Errorf("a drive that is not empty is not refused by name: %s", bad)
		}
		if err := os.Remove(filepath.Join(fresh, "stray.txt")); err != nil {
			t.Fatal(err)
		}
		// A volume of another image.
		other, _ := loopVolume(t, driveSize)
		small := writeFile(t, filepath.Join(t.TempDir(), "small.img"), randBytes(7, 2*mib))
		must(t, "capture", "-q", "--volume-size", "8MiB", small, other)
		bad = expect(t, exitUsage, append(argv[1:], other)...)
		if !strings.Contains(bad.stderr, other) {
			t.Errorf("a volume of another image is not refused by name: %s", bad)
		}
		// A tampered continuation state.
		good := readFile(t, state)
		var f map[string]any
		if err := json.Unmarshal(good, &f); err != nil {
			t.Fatal(err)
		}
		f["saved"] = "2001-01-01T00:00:00Z"
		b, _ := json.Marshal(f)
		if err := os.WriteFile(state, b, 0o600); err != nil {
			t.Fatal(err)
		}
		bad = expect(t, exitUsage, append(argv[1:], fresh)...)
		if !strings.Contains(bad.stderr, state) || strings.Count(strings.TrimSpace(bad.stderr), "\n") != 0 {
			t.Errorf("a tampered state is not refused in one line by name: %s", bad)
		}
		if err := os.WriteFile(state, good, 0o600); err != nil {
			t.Fatal(err)
		}
		// The source changed: another size, then the same size with
		// other bytes in the part already captured.
		orig := readFile(t, src)
		writeFile(t, src, orig[:len(orig)-4096])
		bad = expect(t, exitUsage, append(argv[1:], fresh)...)
		if !strings.Contains(bad.stderr, state) || !strings.Contains(bad.stderr, "not of this source") {
			t.Errorf("a source of another size is not refused naming the state: %s", bad)
		}
		changed := slices.Clone(orig)
		changed[4096] ^= 0xff
		writeFile(t, src, changed)
		bad = expect(t, exitUsage, append(argv[1:], fresh)...)
		if !strings.Contains(bad.stderr, "differs from the one the interrupted capture read") {
			t.Errorf("a source with other bytes is not refused: %s", bad)
		}
		writeFile(t, src, orig)
		if files := volumeFiles(t, fresh); len(files) != 0 || fileExists(filepath.Join(fresh, volume.LabelKey)) {
			t.Errorf("a refused continuation wrote %v to %s", files, fresh)
		}
	})

	// Interrupted continuation: cancelled once the new drive holds a
	// segment, then the same command again.
	next, _ := loopVolume(t, driveSize)
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer cancel()
		for ctx.Err() == nil {
			if m, _ := filepath.Glob(filepath.Join(next, "data", "*")); len(m) > 0 {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	r = seedshipCtx(ctx, append(argv[1:], next)...)
	cancel()
	t.Logf("interrupted continuation: exit %d", r.code)
	for range 12 {
		r = seedshipCtx(t.Context(), append(argv[1:], next)...)
		vols = append(vols, next)
		if r.code == exitOK {
			break
		}
		var again []string
		again, state = oneBayArgs(t, r)
		if !slices.Equal(again, argv) {
			t.Fatalf("continue with %q, want %q", again, argv)
		}
		t.Logf("drive %d holds %d files", len(vols), len(volumeFiles(t, next)))
		if l := labelOf(t, next); !l.CountUnknown || l.Volume != len(vols) {
			t.Errorf("full drive %d's label: %+v", len(vols), l)
		}
		back = append(back, detach(t, next))
		next, _ = loopVolume(t, driveSize)
	}
	if r.code != exitOK {
		t.Fatalf("the capture did not finish on %d drives: %s", len(vols), r)
	}
	if len(vols) < 3 {
		t.Fatalf("the capture fitted on %d drives: the test needs at least 3", len(vols))
	}
	absent(t, state, "the continuation state must go once the image is complete")
	for _, b := range back {
		b()
	}
	last := labelOf(t, vols[len(vols)-1])
	if !last.Complete || last.Volumes != len(vols) || len(last.Set) != len(vols) {
		t.Errorf("the last drive's label does not complete the set of %d: %+v", len(vols), last)
	}
	if text := must(t, "label", vols[0]).stdout; !strings.Contains(text, "OF AT LEAST 1") || !strings.Contains(text, last.ImageID) {
		t.Errorf("the first drive's label text does not say its count was unknown, with the image id:\n%s", text)
	}

	restoreFrom := func(order []string) {
		t.Helper()
		target := filepath.Join(t.TempDir(), "restored.img")
		must(t, append(append([]string{"restore", "-q"}, order...), target)...)
		sameBytes(t, src, target)
		if out, err := exec.Command("e2fsck", "-fn", target).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn of the restored image: %v\n%s", err, out)
		}
	}
	restoreFrom(vols)
	rev := slices.Clone(vols)
	slices.Reverse(rev)
	restoreFrom(rev)
	must(t, append([]string{"verify", "-q"}, rev...)...)

	// One bay at the target too: the last drive first (it holds the
	// manifest, which is kept for the others), then the others one by one.
	// A target host of its own: nothing kept from the restores above.
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	target := filepath.Join(t.TempDir(), "partial.img")
	early := expect(t, exitUsage, "restore", "--partial", vols[0], target)
	if !strings.Contains(early.stderr, "the manifest is on the last drive") {
		t.Errorf("an earlier drive first is not refused with what to do: %s", early)
	}
	absent(t, target, "a refused partial restore must not create the target")
	order := append([]string{vols[len(vols)-1]}, vols[1:len(vols)-1]...)
	order = append(order, vols[0])
	for i, v := range order {
		r := must(t, "restore", "--partial", v, target)
		if done := strings.Contains(r.stdout+r.stderr, "restore complete"); done != (i == len(order)-1) {
			t.Errorf("partial restore of drive %d of %d: complete %v: %s", i+1, len(order), done, r)
		}
	}
	sameBytes(t, src, target)
	if out, err := exec.Command("e2fsck", "-fn", target).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn of the image restored drive by drive: %v\n%s", err, out)
	}

	if slices.Contains(flags, "--parity") {
		if text := must(t, append([]string{"info"}, vols...)...).stdout; !strings.Contains(text, "a whole lost volume is not covered") {
			t.Errorf("info does not say that a whole lost drive is not covered:\n%s", text)
		}
	}

	// A refusal of today still holds: a volume given twice.
	expect(t, exitUsage, append(append([]string{"verify"}, vols...), vols[0])...)
}

func sortedWords(w []string) []string {
	w = slices.Clone(w)
	slices.Sort(w)
	return w
}

// TestOneBayPrompt: on a terminal, a capture whose drive is full asks for
// the next drive's directory and continues onto it in the same run; a
// drive that is refused is asked for again; Enter stops with the command
// that continues later.
func TestOneBayPrompt(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	data := randBytes(91, 10*mib)
	src := writeFile(t, filepath.Join(t.TempDir(), "disk.img"), data)
	base := t.TempDir()
	drive := func(n int) string { return filepath.Join(base, fmt.Sprintf("drive%d", n)) }
	var input string
	old := promptInput
	promptInput = func(*printer) (io.Reader, bool) { return strings.NewReader(input), true }
	t.Cleanup(func() { promptInput = old })

	// Enter at the first prompt: stopped, with the command for later.
	input = "\n"
	r := seedshipCtx(t.Context(), "capture", "--volume-size", "4MiB", src, drive(1))
	_, final, ok := strings.Cut(r.stderr, "attach the next empty drive and type its directory (Enter to stop here): ")
	if !ok {
		t.Fatalf("no prompt: %s", r)
	}
	stopped := r
	stopped.stderr = final // what remains once the operator pressed Enter
	argv, _ := oneBayArgs(t, stopped)
	// The printed command, answering the prompts: a drive that is not
	// empty (refused, asked again), then new drives until the end.
	writeFile(t, filepath.Join(drive(99), "stray"), []byte("x"))
	lines := []string{drive(99)}
	for n := 3; n < 12; n++ {
		lines = append(lines, drive(n))
	}
	input = strings.Join(lines, "\n") + "\n"
	r = must(t, append(argv[1:], drive(2))...)
	if !strings.Contains(r.stderr, drive(99)) || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("the refused drive is not named: %s", r)
	}
	var used []string
	for n := 1; n < 12; n++ {
		if fileExists(filepath.Join(drive(n), volume.LabelKey)) {
			used = append(used, drive(n))
		}
	}
	if len(used) < 3 {
		t.Fatalf("the capture used %d drives: the test needs at least 3", len(used))
	}
	target := filepath.Join(t.TempDir(), "restored.img")
	must(t, append(append([]string{"restore", "-q"}, used...), target)...)
	if !slices.Equal(readFile(t, target), data) {
		t.Fatal("the image captured at the prompt does not restore the source")
	}
}
