//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// holdsFlock reports whether process pid holds a flock on the file at
// path, from /proc/locks (asking with flock(2) would take the lock when
// nobody holds it, and so disturb the holder-to-be).
func holdsFlock(t *testing.T, pid int, path string) bool {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return false
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	ino := ":" + strconv.FormatUint(st.Ino, 10)
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "FLOCK" && f[4] == strconv.Itoa(pid) && strings.HasSuffix(f[5], ino) {
			return true
		}
	}
	return false
}

// TestRestoreTwoOntoOneFileCLI: while one seedship restore writes a file,
// a second restore onto the same file is refused with exit 2 and a
// one-line error naming it, and the first completes unharmed.
func TestRestoreTwoOntoOneFileCLI(t *testing.T) {
	d := t.TempDir()
	data := randBytes(21, 48*mib+123)
	src := writeFile(t, filepath.Join(d, "source.img"), data)
	img := captureImage(t, src, "--chunk-size", "1MiB")
	other := captureImage(t, writeFile(t, filepath.Join(d, "other.img"), textBytes(3*mib)))
	target := filepath.Join(d, "target.img")

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	first := exec.Command(exe, "restore", "--quiet", "--workers", "1", img, target)
	first.Env = append(os.Environ(), execMainEnv+"=1")
	var out bytes.Buffer
	first.Stdout, first.Stderr = &out, &out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- first.Wait() }()
	defer func() {
		_ = first.Process.Signal(syscall.SIGCONT)
		_ = first.Process.Kill()
	}()

	// Stop the first restore once it holds the target, so that the
	// second one certainly runs while it does.
	caught := false
	for deadline := time.Now().Add(30 * time.Second); !caught && time.Now().Before(deadline); {
		select {
		case err := <-done:
			t.Fatalf("the first restore ended (%v) before the test saw it hold %s: %s", err, target, out.String())
		default:
		}
		if _, err := os.Stat(target); err == nil {
			if err := first.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			if caught = holdsFlock(t, first.Process.Pid, target); !caught {
				if err := first.Process.Signal(syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
			}
		}
		if !caught {
			time.Sleep(time.Millisecond)
		}
	}
	if !caught {
		t.Fatalf("the first restore never held %s", target)
	}
	r := seedshipCtx(context.Background(), "restore", other, target)
	if r.code != exitUsage {
		t.Errorf("second restore onto %s while the first runs: want exit %d, got %s", target, exitUsage, r)
	}
	oneLineError(t, r, target)
	if err := first.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the first restore failed: %v: %s", err, out.String())
	}
	if got := readFile(t, target); !bytes.Equal(got, data) {
		t.Errorf("target differs from the first restore's source (%d bytes, want %d)", len(got), len(data))
	}
}

// TestRestoreKeepsTargetOnDamageCLI: restore from an image without parity
// that is damaged leaves an existing longer file at its size, and exits
// 3; one refused before writing leaves it as it was.
func TestRestoreKeepsTargetOnDamageCLI(t *testing.T) {
	im := newImage(t)
	for _, tc := range []struct {
		name      string
		damage    func(img string)
		untouched bool
	}{
		{"segment missing", func(img string) { os.Remove(segPath(img, 2)) }, true},
		{"chunk damaged", func(img string) {
			p := segPath(img, uint32(len(im.m.Segments)-1))
			b := readFile(t, p)
			b[100] ^= 0x01
			writeFile(t, p, b)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := copyImage(t, im.img)
			tc.damage(img)
			before := bytes.Repeat([]byte{0xEE}, len(im.data)+5*mib)
			target := writeFile(t, filepath.Join(t.TempDir(), "target.img"), before)
			r := expect(t, exitIntegrity, "restore", img, target)
			got := readFile(t, target)
			if len(got) != len(before) {
				t.Errorf("the failed restore made %s %d bytes, it was %d: %s", target, len(got), len(before), r)
			}
			if tc.untouched && !bytes.Equal(got, before) {
				t.Errorf("a restore refused before writing changed %s", target)
			}
		})
	}
}

// TestRestoreSaysWhatItChecked: restore --json and its human output name
// the checks that ran over every chunk it wrote: chunk hashes and block
// digests for an intact image; with a segment missing and rebuilt from
// parity, chunk hashes and parity rows, and not the block digests (the
// missing segment's index went with it).
func TestRestoreSaysWhatItChecked(t *testing.T) {
	d := t.TempDir()
	data := randBytes(23, 3*mib+777)
	src := writeFile(t, filepath.Join(d, "source.img"), data)
	img := captureImage(t, src, "--chunk-size", "64KiB", "--segment-size", "256KiB", "--parity", "2+1")
	damaged := copyImage(t, img)
	if err := os.Remove(segPath(damaged, 1)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		img        string
		want, not  []string
		humanWords string
	}{
		{img, []string{"chunk-hashes", "block-digests"}, []string{"parity-rows", "source-sha256"}, "checked: chunk hashes, block digests"},
		{damaged, []string{"chunk-hashes", "parity-rows"}, []string{"block-digests", "source-sha256"}, "checked: chunk hashes, parity rows"},
	} {
		var r checkedOut
		target := filepath.Join(t.TempDir(), "t.img")
		decodeJSON(t, must(t, "restore", "--json", tc.img, target), &r)
		for _, k := range tc.want {
			if !slices.Contains(r.Checked, k) {
				t.Errorf("restore --json of %s: checked %q, want it to list %q", tc.img, r.Checked, k)
			}
		}
		for _, k := range tc.not {
			if slices.Contains(r.Checked, k) {
				t.Errorf("restore --json of %s: checked %q, which claims %q", tc.img, r.Checked, k)
			}
		}
		if !bytes.Equal(readFile(t, target), data) {
			t.Fatalf("restore of %s did not restore the source", tc.img)
		}
		target = filepath.Join(t.TempDir(), "human.img")
		if h := must(t, "restore", tc.img, target); !strings.Contains(h.stdout, tc.humanWords) {
			t.Errorf("restore of %s does not say %q: %s", tc.img, tc.humanWords, h)
		}
	}
}
