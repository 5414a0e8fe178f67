package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/volume"
)

// --volume-size's bad values for TestNumericFlags.
func init() { badValues["volume-size"] = []string{"0", "-5", "garbage", "", "512KiB"} }

// realisticSource makes an ext4 image of sizeMiB MiB, about half full of
// text, binaries and random files, with scripts/mkimage.sh.
func realisticSource(t *testing.T, sizeMiB int) string {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			devicetest.Skipf(t, "needs %s for scripts/mkimage.sh", tool)
		}
	}
	out := filepath.Join(t.TempDir(), "source.img")
	cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "mkimage.sh"), out, strconv.Itoa(sizeMiB), "volumes")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/mkimage.sh: %v\n%s", err, b)
	}
	return out
}

// loopVolume makes an ext4 file system of size bytes on a loop device,
// mounts it, and returns a destination directory on it and the file
// behind the loop device.
func loopVolume(t *testing.T, size int64) (dest, backing string) {
	t.Helper()
	backing = devicetest.Image(t, size)
	dev := devicetest.Attach(t, backing)
	devicetest.Mkfs(t, "ext4", dev)
	return filepath.Join(devicetest.Mount(t, dev), "seed"), backing
}

// sameBytes compares two files with cmp.
func sameBytes(t *testing.T, a, b string) {
	t.Helper()
	if out, err := exec.Command("cmp", a, b).CombinedOutput(); err != nil {
		t.Fatalf("cmp %s %s: %v %s", a, b, err, out)
	}
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// volumeFiles lists the keys a volume directory holds (not its label).
func volumeFiles(t *testing.T, vol string) []string {
	t.Helper()
	var out []string
	for k := range treeOf(t, vol) {
		if k != volume.LabelKey && k != ".seedship.lock" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// TestVolumes captures a realistic ext4 image (192 MiB, scaled down from
// the 1 GiB of issue 9, which TestVolumesFullSize runs under the soak
// tag) onto loop-mounted ext4 volumes, and restores it from them.
func TestVolumes(t *testing.T) {
	devicetest.RequireLoop(t)
	t.Setenv("XDG_STATE_HOME", t.TempDir()) // the continuation state of a capture that fills its volumes
	src := realisticSource(t, 192)
	srcSum := fileSHA256(t, src)

	t.Run("four volumes, any order, labels, read-back from the drive", func(t *testing.T) {
		var vols, backings []string
		for range 4 {
			v, b := loopVolume(t, 80*mib)
			vols, backings = append(vols, v), append(backings, b)
		}
		r := must(t, append([]string{"capture", "--json", src}, vols...)...)
		var out captureJSON
		decodeJSON(t, r, &out)
		if len(out.Volumes) != 4 {
			t.Fatalf("capture --json lists %d volumes, want 4: %s", len(out.Volumes), r.stdout)
		}
		for i, v := range out.Volumes {
			if v.Volume != i+1 || v.ReadBack != "ok" || !v.CacheDropped || v.ReadBackBytes != v.Bytes || v.Bytes == 0 {
				t.Errorf("volume %d: %+v; want read back ok from the drive, every byte", i+1, v)
			}
			hasData := false
			for _, k := range volumeFiles(t, vols[i]) {
				if _, ok := format.ParseKey(k); ok {
					hasData = true
				}
			}
			if !hasData || !fileExists(filepath.Join(vols[i], format.ManifestKey)) {
				t.Errorf("volume %d holds %v: want segments and the manifest", i+1, volumeFiles(t, vols[i]))
			}
		}
		target := filepath.Join(t.TempDir(), "restored.img")
		must(t, append(append([]string{"restore", "-q"}, vols...), target)...)
		sameBytes(t, src, target)
		reversed := slices.Clone(vols)
		slices.Reverse(reversed)
		target2 := filepath.Join(t.TempDir(), "restored.img")
		must(t, append(append([]string{"restore", "-q"}, reversed...), target2)...)
		sameBytes(t, src, target2)

		// The label says what an operator needs, truthfully.
		var info infoJSON
		decodeJSON(t, must(t, append([]string{"info", "--json"}, vols[1])...), &info)
		text := must(t, "label", vols[1]).stdout
		for _, want := range []string{"VOLUME 2 OF 4", info.ImageID, src, srcSum, "captured:", "no parity: every volume is needed",
			"volume 1:", "volume 4:"} {
			if !strings.Contains(text, want) {
				t.Errorf("label text lacks %q:\n%s", want, text)
			}
		}
		if all := must(t, append([]string{"info", "--volumes"}, vols...)...).stdout; strings.Count(all, "SEEDSHIP COURIER VOLUME") != 4 {
			t.Errorf("info --volumes does not print the 4 labels:\n%s", all)
		}

		// A file damaged behind the page cache: the cached copy still
		// reads as written, the drive does not. label --check must read the
		// drive.
		seg := filepath.Join(vols[2], volumeFiles(t, vols[2])[0])
		good := readFile(t, seg)
		corruptOnDisk(t, seg, backings[2])
		if cached := readFile(t, seg); !slices.Equal(cached, good) {
			t.Logf("the page cache no longer held %s; the check is still a real read-back", seg)
		}
		bad := expect(t, exitIntegrity, "label", "--check", vols[2])
		if !strings.Contains(bad.stderr, filepath.Base(seg)) || !strings.Contains(bad.stderr, "do not ship") {
			t.Errorf("label --check of the damaged volume does not name %s: %s", seg, bad)
		}
		if ok := must(t, "label", "--check", vols[0]).stdout; !strings.Contains(ok, "OK") || !strings.Contains(ok, "page cache dropped") {
			t.Errorf("label --check of an intact volume: %s", ok)
		}
	})

	t.Run("full, then resume onto new volumes", func(t *testing.T) {
		a, _ := loopVolume(t, 80*mib)
		b, _ := loopVolume(t, 80*mib)
		r := seedshipCtx(t.Context(), "capture", "--volume-size", "16MiB", src, a, b)
		if r.code != exitRuntime {
			t.Fatalf("capture onto two 16 MiB volumes: want exit 1, got %s", r)
		}
		line := strings.TrimSpace(r.stderr)
		if strings.Count(line, "\n") != 0 || !strings.Contains(line, "the volumes are full") || !regexp.MustCompile(`about [0-9.]+ [KMG]iB more is needed`).MatchString(line) {
			t.Errorf("want one line saying the volumes are full and how much more is needed: %s", r)
		}
		_, cmdline, ok := strings.Cut(line, "and run: ")
		if !ok || !strings.HasSuffix(cmdline, " NEW-DRIVE") {
			t.Fatalf("no command to continue onto a new drive: %s", r)
		}
		for _, v := range []string{a, b} {
			absent(t, filepath.Join(v, format.ManifestKey), "a capture that ran out of volumes must not write a manifest")
			if len(volumeFiles(t, v)) < 2 {
				t.Errorf("%s holds %v: the capture did not fill it", v, volumeFiles(t, v))
			}
		}
		c, _ := loopVolume(t, 80*mib)
		d, _ := loopVolume(t, 80*mib)
		// The printed command continues onto new drives alone (one bay,
		// TestOneBay); with the full drives attached as well it works as
		// it did before, and updates their labels.
		argv := shellWords(t, strings.TrimSuffix(cmdline, " NEW-DRIVE"))
		must(t, append(append([]string{argv[1], "-q"}, argv[2:]...), a, b, c, d)...)
		target := filepath.Join(t.TempDir(), "restored.img")
		must(t, "restore", "-q", d, b, c, a, target)
		sameBytes(t, src, target)
		if text := must(t, "label", a).stdout; !strings.Contains(text, "VOLUME 1 OF 4") {
			t.Errorf("the first volume's label does not count the volumes added:\n%s", text)
		}
	})
}

// corruptOnDisk overwrites 4 KiB of file's first block on the drive
// itself (the loop device's backing file), not through the file system,
// so the file system's page cache does not see it.
func corruptOnDisk(t *testing.T, file, backing string) {
	t.Helper()
	out, err := exec.Command("filefrag", "-v", "-b4096", file).CombinedOutput()
	if err != nil {
		devicetest.Skipf(t, "needs filefrag (e2fsprogs): %v %s", err, out)
	}
	// "   0:        0..     255:      34816..     35071:    256: ..."
	m := regexp.MustCompile(`(?m)^\s*0:\s+0\.\.\s*\d+:\s+(\d+)\.\.`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("cannot find the first extent of %s in:\n%s", file, out)
	}
	block, _ := strconv.ParseInt(string(m[1]), 10, 64)
	f, err := os.OpenFile(backing, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes4k(0xA5), block*4096); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func bytes4k(b byte) []byte {
	out := make([]byte, 4096)
	for i := range out {
		out[i] = b
	}
	return out
}

// TestVolumesParityLoseOne captures with --parity 3+1 over four volumes,
// deletes one whole volume and restores from the other three.
func TestVolumesParityLoseOne(t *testing.T) {
	d := t.TempDir()
	data := mixed(96, 256*kib, 3) // 24 MiB: random, zero and text chunks
	src := writeFile(t, filepath.Join(d, "source.img"), data)
	var vols []string
	for i := range 4 {
		vols = append(vols, filepath.Join(d, "vol"+strconv.Itoa(i+1)))
	}
	r := must(t, append([]string{"capture", "--parity", "3+1", "--chunk-size", "256KiB", "--segment-size", "1MiB", src}, vols...)...)
	if !strings.Contains(r.stdout, "any 1 of the 4 volumes may be lost") {
		t.Errorf("capture does not say one volume may be lost: %s", r)
	}
	info := must(t, "info", vols[0]).stdout
	if !strings.Contains(info, "any 1 of the 4 volumes may be lost") || !strings.Contains(info, "missing 2, 3, 4") {
		t.Errorf("info of one volume does not say what else is needed and what may be lost:\n%s", info)
	}
	for lost := range vols {
		t.Run("without volume "+strconv.Itoa(lost+1), func(t *testing.T) {
			var present []string
			for i, v := range vols {
				if i != lost {
					present = append(present, v)
				}
			}
			hidden := vols[lost] + ".away"
			if err := os.Rename(vols[lost], hidden); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := os.Rename(hidden, vols[lost]); err != nil {
					t.Fatal(err)
				}
			}()
			target := filepath.Join(t.TempDir(), "restored.img")
			r := must(t, append(append([]string{"restore", "--json"}, present...), target)...)
			var out restoreJSON
			decodeJSON(t, r, &out)
			if len(out.Rebuilt) == 0 {
				t.Errorf("restore without volume %d rebuilt nothing from parity: %s", lost+1, r)
			}
			sameBytes(t, src, target)
		})
	}
	// Without two volumes, more is lost than parity covers: nothing is
	// written and the restore says which chunks.
	target := filepath.Join(t.TempDir(), "restored.img")
	expect(t, exitIntegrity, "restore", vols[0], vols[1], target)
	absent(t, target, "a restore beyond repair must write nothing")
}

// TestVolumesRefused gives restore and info a volume of another image, a
// duplicate and a stale volume: each is refused by name, exit 2, with
// nothing written.
func TestVolumesRefused(t *testing.T) {
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "a.img"), randBytes(21, 3*mib))
	other := writeFile(t, filepath.Join(d, "b.img"), randBytes(22, 3*mib))
	capture := func(name, source string) []string {
		v := []string{filepath.Join(d, name+"1"), filepath.Join(d, name+"2")}
		must(t, "capture", "-q", "--chunk-size", "256KiB", "--segment-size", "1MiB", source, v[0], v[1])
		return v
	}
	old := capture("old", src)
	cur := capture("cur", src) // a later capture of the same source
	foreign := capture("foreign", other)
	dup := copyImage(t, cur[1])
	for _, tc := range []struct {
		name  string
		vols  []string
		names []string
	}{
		{"another image", []string{cur[0], foreign[1]}, []string{foreign[1], "another image"}},
		{"stale", []string{cur[0], cur[1], old[1]}, []string{old[1], "stale", "earlier capture of the same source"}},
		{"same directory twice", []string{cur[0], cur[1], cur[1]}, []string{cur[1], "same directory"}},
		{"same volume twice", []string{cur[0], cur[1], dup}, []string{dup, "both volume 2 of 2"}},
		{"not a volume", []string{cur[0], d}, []string{d, "no volume label"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := treeOf(t, cur[0])
			target := filepath.Join(t.TempDir(), "restored.img")
			r := expect(t, exitUsage, append(append([]string{"restore"}, tc.vols...), target)...)
			oneLineError(t, r, tc.names...)
			absent(t, target, "a refused restore must write nothing")
			oneLineError(t, expect(t, exitUsage, append([]string{"info"}, tc.vols...)...), tc.names...)
			if !mapsEqual(before, treeOf(t, cur[0])) {
				t.Errorf("a refused command changed %s", cur[0])
			}
		})
	}
	// A fresh capture onto a drive that holds a volume is refused too.
	r := expect(t, exitUsage, "capture", src, old[0], filepath.Join(d, "new"))
	oneLineError(t, r, old[0], "already holds volume 1 of 2")
	absent(t, filepath.Join(d, "new", volume.LabelKey), "a refused capture must write nothing")
	// So is one onto a directory that holds anything.
	busy := filepath.Join(d, "busy")
	writeFile(t, filepath.Join(busy, "notes.txt"), []byte("keep me"))
	r = expect(t, exitUsage, "capture", src, filepath.Join(d, "new2"), busy)
	oneLineError(t, r, busy, "not empty", "notes.txt")
	absent(t, filepath.Join(d, "new2", volume.LabelKey), "a refused capture must write nothing")
}

// TestVolumesNoReadback: --no-readback skips the read-back and says so,
// in the summary and in --json; it is refused for a single destination,
// which is never read back.
func TestVolumesNoReadback(t *testing.T) {
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "source.img"), randBytes(41, 3*mib))
	a, b := filepath.Join(d, "a"), filepath.Join(d, "b")
	r := must(t, "capture", "--no-readback", "--chunk-size", "256KiB", "--segment-size", "1MiB", src, a, b)
	if strings.Count(r.stdout, "read-back SKIPPED (--no-readback)") != 2 || strings.Contains(r.stdout, ": OK") {
		t.Errorf("capture --no-readback does not say, for each volume, that it was not read back: %s", r)
	}
	a2, b2 := filepath.Join(d, "a2"), filepath.Join(d, "b2")
	var out captureJSON
	decodeJSON(t, must(t, "capture", "--json", "--no-readback", "--chunk-size", "256KiB", "--segment-size", "1MiB", src, a2, b2), &out)
	if len(out.Volumes) != 2 || out.Volumes[0].ReadBack != "skipped" || out.Volumes[1].ReadBack != "skipped" {
		t.Errorf("capture --json --no-readback: volumes %+v, want both read-back skipped", out.Volumes)
	}
	one := filepath.Join(d, "one")
	oneLineError(t, expect(t, exitUsage, "capture", "--no-readback", src, one), "--no-readback")
	absent(t, one, "a refused capture must write nothing")
}
