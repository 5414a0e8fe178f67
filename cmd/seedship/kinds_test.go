package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Each error kind of the CLI, end to end on real parts: the built program
// as a separate process interrupted with SIGINT, a real full filesystem on
// a loop device, a real S3 server behind a proxy that drops connections.
// Each failure must exit with its code and print the command that
// continues it; that command, run by a real shell, must finish the job.

// proc is seedship running as a separate process: this test binary,
// re-executed with execMainEnv=1 so that TestMain calls main().
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
}

// startSeedship starts seedship with args in its own process.
func startSeedship(t *testing.T, args ...string) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(exe, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), execMainEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// result waits (at most a minute) for the process and returns its run.
func (p *proc) result(t *testing.T) cliResult {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("seedship %s still running after a minute", strings.Join(p.cmd.Args[1:], " "))
	}
	return cliResult{args: p.cmd.Args[1:], code: p.cmd.ProcessState.ExitCode(), stdout: p.stdout.String(), stderr: p.stderr.String()}
}

// signalWhen sends sig to p once ready reports true, and fails the test
// if p ends first or ready takes more than a minute.
func (p *proc) signalWhen(t *testing.T, sig os.Signal, what string, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ready() {
		if p.exited() {
			t.Fatalf("seedship ended before %s, so it could not be interrupted: %s", what, p.result(t))
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after a minute", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// runContinue runs the command line that seedship printed to continue a
// run, with a real shell, as the separate program, and returns its run.
func runContinue(t *testing.T, r cliResult) cliResult {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	const prefix = "seedship: to continue, run: "
	if len(lines) != 2 || !strings.HasPrefix(lines[1], prefix) {
		t.Fatalf("want an error line and %q on stderr, got %s", prefix+"...", r)
	}
	cmdline := strings.TrimPrefix(lines[1], prefix)
	sh := exec.Command("sh", "-c", cmdline)
	sh.Env = append(os.Environ(), execMainEnv+"=1")
	var stdout, stderr bytes.Buffer
	sh.Stdout, sh.Stderr = &stdout, &stderr
	err := sh.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("sh -c %q: %v", cmdline, err)
	}
	return cliResult{args: []string{"sh", "-c", cmdline}, code: sh.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

// hexBytes is n bytes of random hex digits: they compress to half, slowly
// at high zstd levels, so a capture of them runs long enough to interrupt.
func hexBytes(seed byte, n int) []byte {
	return []byte(hex.EncodeToString(randBytes(seed, n/2)))
}

// fileExists reports whether path exists.
func fileExists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// checkRestores restores img and checks it holds exactly data.
func checkRestores(t *testing.T, img string, data []byte) {
	t.Helper()
	must(t, "verify", "-q", img)
	target := filepath.Join(t.TempDir(), "restored.img")
	must(t, "restore", "-q", img, target)
	if !bytes.Equal(readFile(t, target), data) {
		t.Errorf("%s does not restore the source", img)
	}
}

// TestBadInputWritesNothing: bad input of each command exits 2 with one
// line and leaves every location as it was.
func TestBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	im := newImage(t)
	d := t.TempDir()
	notEmpty := writeFile(t, filepath.Join(d, "full", "keep.txt"), []byte("keep"))
	for _, tc := range []struct {
		args  []string
		names []string
	}{
		{[]string{"capture", filepath.Join(d, "missing.img"), filepath.Join(d, "seed")}, []string{"missing.img"}},
		{[]string{"capture", im.src, filepath.Dir(notEmpty)}, []string{"not empty"}},
		{[]string{"capture", "--resume", im.src, filepath.Join(d, "seed")}, []string{filepath.Join(d, "seed")}},
		{[]string{"restore", filepath.Join(d, "no-image"), filepath.Join(d, "target.img")}, []string{"no-image"}},
		{[]string{"restore", im.img, d}, []string{d}},
		{[]string{"copy", filepath.Join(d, "no-image"), filepath.Join(d, "copy")}, []string{"no-image"}},
		{[]string{"verify", "--repair", "--device", im.src, im.img}, []string{"--repair"}},
	} {
		before := treeOf(t, d)
		img := treeOf(t, im.img)
		r := expect(t, exitUsage, tc.args...)
		oneLineError(t, r, tc.names...)
		if !mapsEqual(before, treeOf(t, d)) || !mapsEqual(img, treeOf(t, im.img)) {
			t.Errorf("seedship %s wrote something", strings.Join(tc.args, " "))
		}
		for _, p := range []string{"seed", "target.img", "copy"} {
			absent(t, filepath.Join(d, p), fmt.Sprintf("seedship %s is bad input", strings.Join(tc.args, " ")))
		}
	}
}
