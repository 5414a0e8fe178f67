package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/engine"
)

// partialVolumes captures src onto n fresh volume directories (small
// chunks and segments, so that each volume holds several), with extra
// capture flags, and returns the volumes in number order.
func partialVolumes(t *testing.T, src string, n int, flags ...string) []string {
	t.Helper()
	root := t.TempDir()
	var vols []string
	for i := range n {
		vols = append(vols, filepath.Join(root, fmt.Sprintf("d%d", i+1), "seed"))
	}
	args := append([]string{"capture", "-q", "--chunk-size", "256KiB", "--segment-size", "1MiB"}, flags...)
	must(t, append(append(args, src), vols...)...)
	return vols
}

// partialRun runs restore --partial with args and returns its --json.
func partialRun(t *testing.T, args ...string) partialJSON {
	t.Helper()
	var out partialJSON
	decodeJSON(t, must(t, append([]string{"restore", "--partial", "--json"}, args...)...), &out)
	return out
}

// TestRestorePartial restores a realistic image from four courier volumes
// one at a time, as at a target site with a single bay.
func TestRestorePartial(t *testing.T) {
	src := realisticSource(t, 32)
	vols := partialVolumes(t, src, 4)

	oneByOne := func(t *testing.T, order []int, stateFlag ...string) {
		target := filepath.Join(t.TempDir(), "restored.img")
		state := target + ".seedship-partial"
		if len(stateFlag) > 0 {
			state = stateFlag[1]
		}
		var seen []int
		for n, v := range order {
			args := append(slices.Clone(stateFlag), vols[v-1], target)
			if n == len(order)-1 {
				r := must(t, append([]string{"restore", "--partial"}, args...)...)
				if !strings.Contains(r.stdout, "restore complete") || !strings.Contains(r.stdout, "source sha256") {
					t.Errorf("the last volume does not finish with the whole-image verification: %s", r)
				}
				break
			}
			out := partialRun(t, args...)
			seen = append(seen, v)
			var unseen []int
			for w := 1; w <= 4; w++ {
				if !slices.Contains(seen, w) {
					unseen = append(unseen, w)
				}
			}
			slices.Sort(seen)
			if out.Complete || out.ChunksWritten == 0 || out.MissingChunks == 0 || len(out.MissingSegments) == 0 ||
				!slices.Equal(out.Seen, seen) || !slices.Equal(out.Unseen, unseen) || out.State != state {
				t.Fatalf("after volume %d: %+v; want chunks written, some missing, seen %v, not seen %v, state %s", v, out, seen, unseen, state)
			}
			// What is missing is exactly what the unseen volumes hold.
			var want []string
			for _, w := range unseen {
				for _, k := range volumeFiles(t, vols[w-1]) {
					if strings.HasPrefix(k, "data/") {
						want = append(want, k)
					}
				}
			}
			slices.Sort(want)
			if !slices.Equal(out.MissingSegments, want) {
				t.Errorf("after volume %d the report lists missing segments %v; volumes %v hold %v", v, out.MissingSegments, unseen, want)
			}
			text := must(t, append([]string{"restore", "--partial"}, args...)...).stdout
			if want := fmt.Sprintf("volume(s) not seen yet: %s of 4", joinInts(unseen)); !strings.Contains(text, want) {
				t.Errorf("the report lacks %q:\n%s", want, text)
			}
			if !strings.Contains(text, " 0 chunk(s)") {
				t.Errorf("giving volume %d again wrote chunks again:\n%s", v, text)
			}
		}
		sameBytes(t, src, target)
		absent(t, state, "a completed partial restore must remove its state")
	}
	t.Run("in order", func(t *testing.T) { oneByOne(t, []int{1, 2, 3, 4}) })
	t.Run("reverse order, --state", func(t *testing.T) {
		oneByOne(t, []int{4, 3, 2, 1}, "--state", filepath.Join(t.TempDir(), "progress.json"))
	})

	t.Run("refusals", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "restored.img")
		state := target + ".seedship-partial"
		partialRun(t, vols[0], target)
		unchanged := func(t *testing.T, what string) func() {
			before := map[string]string{target: fileSHA256(t, target), state: fileSHA256(t, state)}
			return func() {
				for p, sum := range before {
					if fileSHA256(t, p) != sum {
						t.Errorf("%s: %s changed", what, p)
					}
				}
			}
		}
		// A stale volume: another capture of the same source.
		other := partialVolumes(t, src, 2)
		check := unchanged(t, "another image")
		r := expect(t, exitUsage, "restore", "--partial", other[1], target)
		oneLineError(t, r, other[1], state, "another")
		check()

		// The state of this target given for another one.
		elsewhere := filepath.Join(t.TempDir(), "other.img")
		writeFile(t, elsewhere, []byte("someone else's disk"))
		check = unchanged(t, "another target")
		r = expect(t, exitUsage, "restore", "--partial", "--state", state, vols[1], elsewhere)
		oneLineError(t, r, state, elsewhere, "another target")
		if got := string(readFile(t, elsewhere)); got != "someone else's disk" {
			t.Errorf("the other target was written: %q", got)
		}
		check()

		// The target replaced under its name.
		moved := target + ".moved"
		if err := os.Rename(target, moved); err != nil {
			t.Fatal(err)
		}
		writeFile(t, target, readFile(t, moved))
		r = expect(t, exitUsage, "restore", "--partial", vols[1], target)
		oneLineError(t, r, state, "another file")
		if err := os.Rename(moved, target); err != nil {
			t.Fatal(err)
		}

		// A damaged state file.
		good := readFile(t, state)
		writeFile(t, state, append(good[:len(good)/2:len(good)/2], '}'))
		check = unchanged(t, "damaged state")
		r = expect(t, exitUsage, "restore", "--partial", vols[1], target)
		oneLineError(t, r, state, "damaged")
		check()
		writeFile(t, state, good)

		// Flags of a whole restore do not mix in.
		expect(t, exitUsage, "restore", "--partial", "--resume", vols[1], target)

		// With the state back, the rest continues to the end.
		for _, v := range vols[1:] {
			must(t, "restore", "--partial", "-q", v, target)
		}
		sameBytes(t, src, target)
		absent(t, state, "a completed partial restore must remove its state")
	})
}

// TestRestorePartialLostVolume: with parity 3+1 over four volumes one may
// be lost; one bay cannot rebuild it (parity needs the stripe's other
// shards at once), and the report says so and what does: the other
// volumes together, with restore --resume.
func TestRestorePartialLostVolume(t *testing.T) {
	src := realisticSource(t, 32)
	vols := partialVolumes(t, src, 4, "--parity", "3+1")
	target := filepath.Join(t.TempDir(), "restored.img")
	var last string
	for _, v := range vols[:3] {
		last = must(t, "restore", "--partial", v, target).stdout
	}
	for _, want := range []string{"volume(s) not seen yet: 4 of 4", "if volume(s) 4 are lost", "restore --resume VOL..."} {
		if !strings.Contains(last, want) {
			t.Errorf("the report after three of four volumes lacks %q:\n%s", want, last)
		}
	}
	if err := os.RemoveAll(filepath.Dir(vols[3])); err != nil {
		t.Fatal(err)
	}
	must(t, "restore", "-q", "--resume", vols[0], vols[1], vols[2], target)
	sameBytes(t, src, target)
}

// TestRestorePartialBlockDevice restores onto a loop device one volume at
// a time: the state goes to engine.PartialStateDir by default (a device
// has no directory beside it) and is bound to that device.
func TestRestorePartialBlockDevice(t *testing.T) {
	devicetest.RequireLoop(t)
	src := realisticSource(t, 32)
	vols := partialVolumes(t, src, 2)
	old := engine.PartialStateDir
	engine.PartialStateDir = filepath.Join(t.TempDir(), "var", "lib", "seedship", "partial")
	t.Cleanup(func() { engine.PartialStateDir = old })
	dev := devicetest.Attach(t, devicetest.Image(t, 32*mib))
	other := devicetest.Attach(t, devicetest.Image(t, 32*mib))

	out := partialRun(t, vols[0], dev)
	if filepath.Dir(out.State) != engine.PartialStateDir || !fileExists(out.State) {
		t.Fatalf("the state of a device restore is %s; want it in %s", out.State, engine.PartialStateDir)
	}
	before := fileSHA256(t, other)
	r := expect(t, exitUsage, "restore", "--partial", "--state", out.State, vols[1], other)
	oneLineError(t, r, out.State, other, "another target")
	if fileSHA256(t, other) != before {
		t.Errorf("the refused device %s was written", other)
	}
	must(t, "restore", "--partial", "-q", vols[1], dev)
	sameBytes(t, src, dev)
	absent(t, out.State, "a completed partial restore must remove its state")
}

// TestRestorePartialDamagedVolume: a chunk damaged on a volume (and no
// parity) is not written; the rest of the volume is, and recorded; the
// run exits 3 naming it, and once every volume was given the report says
// that what is left cannot come from one bay.
func TestRestorePartialDamagedVolume(t *testing.T) {
	src := realisticSource(t, 32)
	vols := partialVolumes(t, src, 2)
	target := filepath.Join(t.TempDir(), "restored.img")
	seg := ""
	for _, k := range volumeFiles(t, vols[1]) {
		if strings.HasPrefix(k, "data/") && seg == "" {
			seg = filepath.Join(vols[1], k)
		}
	}
	b := readFile(t, seg)
	for i := len(b) / 3; i < len(b)/3+64; i++ {
		b[i] ^= 0x5a
	}
	writeFile(t, seg, b)

	r := expect(t, exitIntegrity, "restore", "--partial", vols[1], target)
	if !strings.Contains(r.stderr, "DAMAGED chunk") || !strings.Contains(r.stderr, "damaged beyond what parity") || !strings.Contains(r.stdout, "still missing") {
		t.Errorf("a damaged volume: want the damaged chunks named and what is missing: %s", r)
	}
	var out partialJSON
	r = seedshipCtx(t.Context(), "restore", "--partial", "--json", vols[0], target)
	decodeJSON(t, r, &out)
	if r.code != exitOK || out.ChunksWritten == 0 || out.MissingChunks == 0 || len(out.Unseen) != 0 {
		t.Fatalf("the intact volume after the damaged one: %+v, %s", out, r)
	}
	text := must(t, "restore", "--partial", vols[0], target).stdout
	if !strings.Contains(text, "every volume has been given") {
		t.Errorf("the report does not say every volume was given:\n%s", text)
	}
}

// TestRestorePartialTrust: with --trust every partial run checks the
// signature of the manifest it is given, as restore does, before writing.
func TestRestorePartialTrust(t *testing.T) {
	keys := t.TempDir()
	key, _ := sshKey(t, keys, "ops")
	other, _ := sshKey(t, keys, "other")
	src := writeFile(t, filepath.Join(t.TempDir(), "source.img"), mixed(24, 256*kib, 1000))
	vols := partialVolumes(t, src, 2, "--sign-key", key)
	target := filepath.Join(t.TempDir(), "restored.img")
	r := expect(t, exitIntegrity, "restore", "--partial", "--trust", other+".pub", vols[0], target)
	oneLineError(t, r)
	absent(t, target, "a partial restore of an image the trust file does not sign must write nothing")
	absent(t, target+".seedship-partial", "a refused partial restore must write no state")
	for _, v := range vols {
		must(t, "restore", "--partial", "-q", "--trust", key+".pub", v, target)
	}
	sameBytes(t, src, target)
}

// TestRestorePartialStage: with --stage, one bay rebuilds a lost volume:
// parity 3+1 over four volumes, the fourth never arrives, and the third
// run rebuilds its segments from the shards staged from the first two and
// the third volume, then verifies the whole target. The stage empties as
// stripes complete.
func TestRestorePartialStage(t *testing.T) {
	src := realisticSource(t, 32)
	vols := partialVolumes(t, src, 4, "--parity", "3+1")
	if err := os.RemoveAll(filepath.Dir(vols[3])); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restored.img")
	stage := filepath.Join(t.TempDir(), "stage")
	for _, v := range vols[:2] {
		out := partialRun(t, "--stage", stage, v, target)
		if out.Complete || out.MissingChunks == 0 {
			t.Fatalf("after %s: %+v; want chunks still missing", v, out)
		}
	}
	if len(segmentFilesIn(t, stage)) == 0 {
		t.Fatal("the stage holds no shards after two volumes of a parity image")
	}
	r := must(t, "restore", "--partial", "--stage", stage, vols[2], target)
	if !strings.Contains(r.stdout, "rebuilt from parity") || !strings.Contains(r.stdout, "restore complete") {
		t.Errorf("the third volume with the stage does not rebuild the lost fourth and finish: %s", r)
	}
	sameBytes(t, src, target)
	if left := segmentFilesIn(t, stage); len(left) != 0 {
		t.Errorf("the stage still holds %v after the restore completed", left)
	}

	// Without parity --stage is refused: it could never help.
	plain := partialVolumes(t, src, 2)
	r = expect(t, exitUsage, "restore", "--partial", "--stage", stage, plain[0], filepath.Join(t.TempDir(), "t.img"))
	oneLineError(t, r, "no parity")
}

// segmentFilesIn lists the segment files under a stage directory.
func segmentFilesIn(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	for k := range treeOf(t, root) {
		if strings.HasSuffix(k, ".seg") || strings.HasSuffix(k, ".par") {
			out = append(out, k)
		}
	}
	return out
}
