//go:build soak

// Package soak kills seedship's capture, copy, verify --repair and restore
// at random points, many times, and checks after each kill that what is
// left is either complete and correct or clearly incomplete and resumable
// (issue 8, "Done when"). It drives the real binary on a realistic ext4
// source made by scripts/mkimage.sh, with small chunks and segments so that
// a kill lands between many segment writes.
//
//	make soak SOAK_ROUNDS=200 [SOAK_SEED=N]
//	go test -tags soak -count=1 -v ./soak/
//
// Each round picks a command, its options, a signal (SIGKILL, SIGINT or
// SIGTERM) and a delay from the round's seed, derived from one seed that
// the test prints first: SEEDSHIP_SOAK_SEED=N runs the same rounds again
// (the timing of the machine still decides where exactly a kill lands).
// After each kill:
//
//   - capture: the destination has a manifest and verifies and restores to
//     the source, or it has none and `verify` and `info` exit 2 saying the
//     capture did not finish (also when killed between the manifest copies
//     and the manifest: its checkpoint says it did not finish); the command printed to continue (or `capture --resume`)
//     then completes it, and the result restores to the source;
//   - copy: likewise at the destination (killed between the manifest
//     copies and the manifest, `info` reads a copy and `verify` says it is
//     repairable), continued by copying again;
//   - verify --repair on a damaged parity image: the image still verifies
//     (exit 0) or is still damaged (exit 3), and a repair run to completion
//     makes it verify and restore to the source;
//   - restore: the target equals the source, or `restore --resume` (or a
//     plain restore) makes it equal, and `verify --device` agrees.
//
// The target or image of a round may start over several kills (up to
// three) before a last run goes to the end. A command that was sent SIGINT
// or SIGTERM must end within ten seconds with exit 130 (or 0 if it had
// finished, or die of the signal if it came before seedship's handler was
// installed) and say it was interrupted; a continuation it prints must be
// the same command (with --resume) and is the one the round runs next.
// The source images of copy, restore and repair rounds must verify at the
// end.
//
// Environment: SEEDSHIP_SOAK_ROUNDS (default 20), SEEDSHIP_SOAK_SEED
// (default: from the clock), SEEDSHIP_SOAK_SIZE_MIB (default 48),
// SEEDSHIP_SOAK_OPS (comma-separated subset of capture,copy,repair,restore),
// SEEDSHIP_SOAK_DIR (default a new directory under $TMPDIR; kept when a
// round fails), SEEDSHIP_SOAK_BIN (a seedship binary to test instead of
// building ./cmd/seedship).
package soak

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

const (
	mib = 1 << 20
	// stopWithin is how long a command may take to end after SIGINT or
	// SIGTERM ("every command stops promptly").
	stopWithin = 10 * time.Second
	// commandTimeout bounds any one command, so a hang fails the round
	// instead of the whole test run.
	commandTimeout = 2 * time.Minute
	// maxFailures stops the run early: later rounds rarely add news.
	maxFailures = 5
)

// soak is the state shared by all rounds.
type soak struct {
	t      *testing.T
	bin    string
	dir    string
	src    string // the source "disk"
	plain  string // a complete image without parity
	parity string // a complete image with parity 4+2
	// full is how long each command line takes uninterrupted, measured
	// once per command and options ("repair", "copy SRC", ...); kill delays
	// are drawn from [0, 1.2*full], a quarter of them from [0, 0.1*full]
	// and a quarter from [0.8*full, 1.1*full].
	full map[string]time.Duration
}

func TestSoak(t *testing.T) {
	rounds := envInt(t, "SEEDSHIP_SOAK_ROUNDS", 20)
	sizeMiB := envInt(t, "SEEDSHIP_SOAK_SIZE_MIB", 48)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("SEEDSHIP_SOAK_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SEEDSHIP_SOAK_SEED=%q: want an unsigned integer", v)
		}
		seed = n
	}
	ops := []string{"capture", "copy", "repair", "restore"}
	if v := os.Getenv("SEEDSHIP_SOAK_OPS"); v != "" {
		ops = strings.Split(v, ",")
		for _, op := range ops {
			if !slices.Contains([]string{"capture", "copy", "repair", "restore"}, op) {
				t.Fatalf("SEEDSHIP_SOAK_OPS=%q: %q is not one of capture, copy, repair, restore", v, op)
			}
		}
	}
	fmt.Printf("soak: seed %d, %d rounds, %d MiB source, ops %s (again: SEEDSHIP_SOAK_SEED=%d, or make soak SOAK_SEED=%d SOAK_ROUNDS=%d)\n",
		seed, rounds, sizeMiB, strings.Join(ops, ","), seed, seed, rounds)

	s := setup(t, sizeMiB)
	rng := rand.New(rand.NewPCG(seed, 0x5eed5417))
	failures := 0
	start := time.Now()
	for i := range rounds {
		roundSeed := rng.Uint64()
		op := ops[rng.IntN(len(ops))]
		r := &round{s: s, n: i, op: op, seed: roundSeed, rng: rand.New(rand.NewPCG(roundSeed, 1)),
			dir: filepath.Join(s.dir, fmt.Sprintf("round-%03d-%s", i, op))}
		if err := os.MkdirAll(r.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		err := r.run()
		fmt.Printf("soak: round %d (%s, round seed %d): %s\n", i, op, roundSeed, strings.Join(r.log, "; "))
		if err != nil {
			failures++
			t.Errorf("round %d (%s, seed %d, files kept in %s; paths below are relative to %s): %v\n\tsteps: %s",
				i, op, seed, r.dir, s.dir, strings.ReplaceAll(err.Error(), s.dir+string(filepath.Separator), ""), strings.Join(r.log, "; "))
			if failures >= maxFailures {
				t.Errorf("stopping after %d failed rounds", failures)
				break
			}
			continue
		}
		os.RemoveAll(r.dir)
	}
	// Nothing a round did may have touched the images it read from.
	for _, img := range []string{s.plain, s.parity} {
		if res := s.cmd(nil, "verify", "-q", img); res.code != 0 {
			t.Errorf("the round's source image %s no longer verifies: %s", img, res)
		}
	}
	fmt.Printf("soak: %d rounds in %s, %d failed (seed %d)\n", rounds, time.Since(start).Round(time.Millisecond), failures, seed)
	if !t.Failed() {
		os.RemoveAll(s.dir)
	} else {
		fmt.Printf("soak: files kept in %s\n", s.dir)
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// setup builds the binary, makes the source and the two reference images,
// checks that uninterrupted commands work at all, and times them.
func setup(t *testing.T, sizeMiB int) *soak {
	t.Helper()
	root := repoRoot(t)
	dir := os.Getenv("SEEDSHIP_SOAK_DIR")
	if dir == "" {
		d, err := os.MkdirTemp("", "seedship-soak-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &soak{t: t, dir: dir, full: map[string]time.Duration{}}
	s.bin = os.Getenv("SEEDSHIP_SOAK_BIN")
	if s.bin == "" {
		s.bin = filepath.Join(dir, "seedship")
		// go test puts its own GOROOT/bin first on PATH.
		gobin, err := exec.LookPath("go")
		if err != nil {
			t.Fatalf("the soak test builds seedship with go: %v", err)
		}
		build := exec.Command(gobin, "build", "-o", s.bin, "./cmd/seedship")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/seedship: %v\n%s", err, out)
		}
	}
	s.src = filepath.Join(dir, "source.img")
	mk := exec.Command("bash", filepath.Join(root, "scripts", "mkimage.sh"), s.src, strconv.Itoa(sizeMiB), "soak")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("scripts/mkimage.sh: %v\n%s", err, out)
	}

	s.plain = filepath.Join(dir, "image-plain")
	s.parity = filepath.Join(dir, "image-parity")
	capture := s.mustRun("capture", "-q", "--chunk-size", "64KiB", "--segment-size", "256KiB", s.src, s.plain)
	s.mustRun("capture", "-q", "--parity", "4+2", "--chunk-size", "64KiB", "--segment-size", "256KiB", s.src, s.parity)
	s.mustRun("verify", "-q", s.plain)
	s.mustRun("verify", "-q", s.parity)
	tgt := filepath.Join(dir, "setup-target")
	restore := s.mustRun("restore", "-q", s.parity, tgt)
	if err := sameFile(s.src, tgt); err != nil {
		t.Fatalf("setup: an uninterrupted restore: %v", err)
	}
	os.Remove(tgt)
	cp := filepath.Join(dir, "setup-copy")
	s.full["copy "+s.parity] = s.mustRun("copy", "-q", s.parity, cp)
	s.mustRun("verify", "-q", cp)
	os.RemoveAll(cp)
	dmg := filepath.Join(dir, "setup-damaged")
	if err := copyTree(s.parity, dmg); err != nil {
		t.Fatal(err)
	}
	segs, err := segments(dmg)
	if err != nil || len(segs) == 0 {
		t.Fatalf("setup: no segments in %s: %v", dmg, err)
	}
	if err := os.Remove(segs[0]); err != nil {
		t.Fatal(err)
	}
	s.full["repair"] = s.mustRun("verify", "-q", "--repair", dmg)
	s.mustRun("verify", "-q", dmg)
	os.RemoveAll(dmg)
	fmt.Printf("soak: uninterrupted: capture %s, copy %s, repair %s, restore %s; %d segment files in the parity image\n",
		capture.Round(time.Millisecond), s.full["copy "+s.parity].Round(time.Millisecond),
		s.full["repair"].Round(time.Millisecond), restore.Round(time.Millisecond), len(segs))
	return s
}

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if d == filepath.Dir(d) {
			t.Fatalf("no go.mod above %s", wd)
		}
	}
}

// result is one finished seedship command.
type result struct {
	argv    []string
	code    int            // exit code; -1 when killed by a signal
	signal  syscall.Signal // the signal that killed it, if any
	stderr  string
	elapsed time.Duration
	err     error // the command could not be run, or hung
}

func (r result) String() string {
	s := fmt.Sprintf("%s: exit %d", strings.Join(r.argv[1:], " "), r.code)
	if r.signal != 0 {
		s = fmt.Sprintf("%s: killed by %s", strings.Join(r.argv[1:], " "), signalName(r.signal))
	}
	if r.err != nil {
		s += fmt.Sprintf(" (%v)", r.err)
	}
	if e := strings.TrimSpace(r.stderr); e != "" {
		e = strings.ReplaceAll(e, "\n", " | ")
		if len(e) > maxStderr {
			e = e[:maxStderr/2] + " ... " + e[len(e)-maxStderr/2:]
		}
		s += ": " + e
	}
	return s
}

// maxStderr is how much of a command's stderr a log line shows.
const maxStderr = 400

// signalName is the short name of the signals the soak sends.
func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}

// hint returns the command seedship printed to continue, or nil.
func (r result) hint() []string {
	const prefix = "seedship: to continue, run: "
	sc := bufio.NewScanner(strings.NewReader(r.stderr))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return shellSplit(rest)
		}
	}
	return nil
}

// kill describes the signal to send and when; a nil kill runs to the end.
type kill struct {
	sig   syscall.Signal
	after time.Duration
}

func (k *kill) String() string {
	return fmt.Sprintf("%s after %s", signalName(k.sig), k.after.Round(time.Microsecond))
}

// cmd runs seedship with args, sending k's signal after its delay if the
// command is still running then.
func (s *soak) cmd(k *kill, args ...string) result {
	return s.exec(k, append([]string{s.bin}, args...))
}

// exec runs argv (the program first) as cmd does.
func (s *soak) exec(k *kill, argv []string) result {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr bytes.Buffer
	c.Stdout = io.Discard
	c.Stderr = &stderr
	res := result{argv: argv}
	start := time.Now()
	if err := c.Start(); err != nil {
		res.err = err
		return res
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var waitErr error
	stuck := false // did not stop after SIGINT or SIGTERM
	if k == nil {
		waitErr = <-done
	} else {
		select {
		case waitErr = <-done:
		case <-time.After(k.after):
			// The process may have ended just now; a signal to a
			// zombie is harmless, and its exit code says what happened.
			_ = c.Process.Signal(k.sig)
			if k.sig == syscall.SIGKILL {
				waitErr = <-done
			} else {
				select {
				case waitErr = <-done:
				case <-time.After(stopWithin):
					stuck = true
					_ = c.Process.Kill()
					waitErr = <-done
				}
			}
		}
	}
	res.elapsed = time.Since(start)
	res.stderr = stderr.String()
	res.code = c.ProcessState.ExitCode()
	if ws, ok := c.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.signal = ws.Signal()
	}
	var ee *exec.ExitError
	switch {
	case stuck:
		res.err = fmt.Errorf("still running %s after %s", stopWithin, signalName(k.sig))
	case ctx.Err() != nil:
		res.err = fmt.Errorf("hung: still running after %s", commandTimeout)
	case waitErr != nil && !errors.As(waitErr, &ee):
		res.err = waitErr
	}
	return res
}

// mustRun runs an uninterrupted command that must succeed, during setup.
func (s *soak) mustRun(args ...string) time.Duration {
	s.t.Helper()
	res := s.cmd(nil, args...)
	if res.code != 0 || res.err != nil {
		s.t.Fatalf("setup: %s", res)
	}
	return res.elapsed
}

// round is one kill-and-check scenario.
type round struct {
	s    *soak
	n    int
	op   string
	seed uint64
	rng  *rand.Rand
	dir  string
	log  []string
	outN int // numbers the restore targets of checks
}

// logf records a step of the round, with paths relative to the soak
// directory (the failure message names it once).
func (r *round) logf(format string, a ...any) {
	r.log = append(r.log, strings.ReplaceAll(fmt.Sprintf(format, a...), r.s.dir+string(filepath.Separator), ""))
}

func (r *round) run() error {
	switch r.op {
	case "capture":
		return r.capture()
	case "copy":
		return r.copyImage()
	case "repair":
		return r.repair()
	case "restore":
		return r.restore()
	}
	return fmt.Errorf("unknown op %q", r.op)
}

// kills is how many times a round interrupts its command: the first run
// and then possibly its continuations, before one last uninterrupted run.
func (r *round) kills() int { return 1 + r.rng.IntN(3) }

// timed returns how long argv takes uninterrupted, running it once (its
// output at out, removed afterwards) the first time key is asked for.
func (r *round) timed(key string, out string, argv []string) (time.Duration, error) {
	if d, ok := r.s.full[key]; ok {
		return d, nil
	}
	res := r.s.exec(nil, argv)
	os.RemoveAll(out)
	if res.code != 0 || res.err != nil {
		return 0, fmt.Errorf("timing an uninterrupted run: %s", res)
	}
	r.s.full[key] = res.elapsed
	return res.elapsed, nil
}

// randomKill draws a signal and a delay for a command that takes full
// uninterrupted.
func (r *round) randomKill(full time.Duration) *kill {
	sig := syscall.SIGKILL
	switch p := r.rng.IntN(10); {
	case p < 3:
		sig = syscall.SIGINT
	case p < 4:
		sig = syscall.SIGTERM
	}
	// A quarter of the kills land in the first tenth of the run, where
	// the first segment and checkpoint are written, and a quarter near its
	// end, where the last checkpoint and the manifest are.
	f := float64(full)
	from, span := 0.0, 1.2*f
	switch r.rng.IntN(4) {
	case 0:
		span = 0.1 * f
	case 1:
		from, span = 0.8*f, 0.3*f
	}
	return &kill{sig: sig, after: time.Duration(from + r.rng.Float64()*span)}
}

// interrupted runs argv under k and checks what the exit says: a command
// killed by the signal, or that had finished (0), is fine; one that
// handled SIGINT or SIGTERM must stop promptly with 130 and say it was
// interrupted. Any other exit is a failure.
func (r *round) interrupted(k *kill, argv []string) (result, error) {
	res := r.s.exec(k, argv)
	r.logf("%s: %s", k, res)
	if res.err != nil {
		return res, fmt.Errorf("%s", res)
	}
	switch {
	case res.code == 0:
	case res.signal == k.sig:
		// SIGKILL; or SIGINT or SIGTERM that arrived before the Go
		// runtime installed seedship's handler: the default action.
	case res.code == 130 && k.sig != syscall.SIGKILL:
		if !strings.Contains(res.stderr, "interrupted") {
			return res, fmt.Errorf("exit 130 without saying the command was interrupted: %s", res)
		}
	default:
		return res, fmt.Errorf("unexpected end after %s: %s (want 0, 130, or death by the signal)", k, res)
	}
	return res, nil
}

// checkComplete checks that img is a complete image that verifies and
// restores to the source.
func (r *round) checkComplete(img string) error {
	if res := r.s.cmd(nil, "verify", "-q", img); res.code != 0 {
		return fmt.Errorf("image has a manifest but does not verify: %s", res)
	}
	r.outN++
	tgt := filepath.Join(r.dir, fmt.Sprintf("check-%d.img", r.outN))
	defer os.Remove(tgt)
	if res := r.s.cmd(nil, "restore", "-q", img, tgt); res.code != 0 {
		return fmt.Errorf("image verifies but does not restore: %s", res)
	}
	if err := sameFile(r.s.src, tgt); err != nil {
		return fmt.Errorf("image verifies but restores something else: %w", err)
	}
	return nil
}

// checkUnfinished checks that img, which has no manifest, is refused by
// verify and info as a capture that did not finish (exit 2).
func (r *round) checkUnfinished(img string) error {
	for _, cmd := range []string{"verify", "info"} {
		res := r.s.cmd(nil, cmd, img)
		if res.code != 2 || !strings.Contains(res.stderr, "did not finish") {
			return fmt.Errorf("an image without a manifest: want exit 2 saying the capture did not finish, got %s", res)
		}
	}
	return nil
}

// checkImageState checks img after an interrupted writer: complete and
// correct, or clearly unfinished. It reports whether it is complete.
func (r *round) checkImageState(img string) (bool, error) {
	if exists(filepath.Join(img, "manifest.ssm")) {
		return true, r.checkComplete(img)
	}
	if !exists(img) {
		// Killed before it made the destination: no image, bad input.
		if res := r.s.cmd(nil, "verify", img); res.code != 2 {
			return false, fmt.Errorf("no destination: want verify to exit 2, got %s", res)
		}
		return false, nil
	}
	// A capture's checkpoint marks it unfinished even when its manifest
	// copies are already written; a copy writes no checkpoint.
	if copies, _ := filepath.Glob(filepath.Join(img, "manifest.ssm.*")); len(copies) > 0 && !exists(filepath.Join(img, "capture.ckpt")) {
		return false, r.checkCopiesOnly(img)
	}
	return false, r.checkUnfinished(img)
}

// checkCopiesOnly checks an image that a copy left killed while it wrote
// its manifests:
// the copies (written first, spec §9.5) are there, manifest.ssm (written
// last) is not. Every segment is stored by then, so the image reads as one
// whose manifest was lost: info shows it (exit 0) and verify reports it
// damaged and repairable (exit 3). The round then checks that continuing
// the interrupted command completes it.
func (r *round) checkCopiesOnly(img string) error {
	r.logf("state: manifest copies without manifest.ssm")
	if res := r.s.cmd(nil, "info", img); res.code != 0 {
		return fmt.Errorf("manifest copies without manifest.ssm: want info to read a copy (exit 0), got %s", res)
	}
	if res := r.s.cmd(nil, "verify", "-q", img); res.code != 3 || !strings.Contains(res.stderr, "repair") {
		return fmt.Errorf("manifest copies without manifest.ssm: want verify to report it repairable (exit 3), got %s", res)
	}
	return nil
}

// continuation is the command to run after res: the one seedship printed,
// if any, else def. The printed one must be the same command as def apart
// from --resume (it may also be exactly def).
func (r *round) continuation(res result, def []string) ([]string, error) {
	h := res.hint()
	if h == nil {
		return def, nil
	}
	if !slices.Equal(without(h, "--resume"), without(def, "--resume")) {
		return nil, fmt.Errorf("the printed continuation %q is not the interrupted command %q with --resume", h, def)
	}
	return h, nil
}

func without(argv []string, flag string) []string {
	return slices.DeleteFunc(slices.Clone(argv), func(a string) bool { return a == flag })
}

func (r *round) captureOpts() []string {
	opts := []string{"-q",
		"--chunk-size", []string{"64KiB", "128KiB"}[r.rng.IntN(2)],
		"--segment-size", []string{"256KiB", "1MiB"}[r.rng.IntN(2)],
		"--workers", strconv.Itoa(1 + r.rng.IntN(4))}
	if p := []string{"", "2+1", "4+2"}[r.rng.IntN(3)]; p != "" {
		opts = append(opts, "--parity", p)
	}
	return opts
}

// capture: kill a capture, check the destination, resume, repeat; the
// last resume runs to the end.
func (r *round) capture() error {
	dst := filepath.Join(r.dir, "image")
	opts := r.captureOpts()
	argv := append(append([]string{r.s.bin, "capture"}, opts...), r.s.src, dst)
	resume := append(append([]string{r.s.bin, "capture", "--resume"}, opts...), r.s.src, dst)
	scratch := filepath.Join(r.dir, "timing")
	full, err := r.timed("capture "+strings.Join(opts, " "), scratch,
		append(append([]string{r.s.bin, "capture"}, opts...), r.s.src, scratch))
	if err != nil {
		return err
	}
	next, done, err := r.killImageRuns(full, argv, dst, func(res result) ([]string, error) {
		if res.code == 130 && exists(filepath.Join(dst, "capture.ckpt")) && !strings.Contains(res.stderr, "--resume") {
			return nil, fmt.Errorf("capture interrupted with a checkpoint kept, but it does not say how to continue (--resume): %s", res)
		}
		if empty(dst) {
			// Nothing was kept: a fresh capture starts again (and the
			// printed continuation, if any, must be that capture).
			if h := res.hint(); h != nil && !slices.Equal(h, argv) {
				return nil, fmt.Errorf("nothing was kept, but the printed continuation is %q, not the capture again", h)
			}
			return argv, nil
		}
		return r.continuation(res, resume)
	})
	if err != nil || done {
		return err
	}
	res := r.s.exec(nil, next)
	r.logf("to the end: %s", res)
	if res.code == 2 && slices.Contains(next, "--resume") && empty(dst) {
		// Nothing to resume is bad input; a new capture starts it.
		res = r.s.exec(nil, argv)
		r.logf("fresh: %s", res)
	}
	if res.code != 0 {
		return fmt.Errorf("continuing the interrupted capture failed: %s", res)
	}
	return r.checkComplete(dst)
}

// killImageRuns runs argv and kills it at a random point, r.kills()
// times, each time checking that the image at dst is complete or holds
// only what a continuation keeps; then is given each killed run's result
// and returns the command that continues it. It returns the command that
// runs to the end, or done when a killed run had already completed the
// image (checked).
func (r *round) killImageRuns(full time.Duration, argv []string, dst string, then func(result) ([]string, error)) (next []string, done bool, err error) {
	next = argv
	for range r.kills() {
		res, err := r.interrupted(r.randomKill(full), next)
		if err != nil {
			return nil, false, err
		}
		complete, err := r.checkImageState(dst)
		if err != nil || complete {
			return nil, complete, err
		}
		if next, err = then(res); err != nil {
			return nil, false, err
		}
	}
	return next, false, nil
}

func (r *round) pick(a, b []string) []string {
	if r.rng.IntN(2) == 0 {
		return a
	}
	return b
}

func (r *round) sourceImage() string {
	if r.rng.IntN(2) == 0 {
		return r.s.plain
	}
	return r.s.parity
}

// copyImage: kill a copy, check the destination, copy again, repeat.
func (r *round) copyImage() error {
	src := r.sourceImage()
	dst := filepath.Join(r.dir, "copy")
	argv := []string{r.s.bin, "copy", "-q", src, dst}
	scratch := filepath.Join(r.dir, "timing")
	full, err := r.timed("copy "+src, scratch, []string{r.s.bin, "copy", "-q", src, scratch})
	if err != nil {
		return err
	}
	next, done, err := r.killImageRuns(full, argv, dst, func(res result) ([]string, error) {
		return r.continuation(res, argv)
	})
	if err != nil || done {
		return err
	}
	res := r.s.exec(nil, next)
	r.logf("to the end: %s", res)
	if res.code != 0 {
		return fmt.Errorf("copying again after the interruption failed: %s", res)
	}
	return r.checkComplete(dst)
}

// repair: damage a copy of the parity image, kill its repair, check that
// it still verifies or is still (repairably) damaged, repeat; the last
// repair runs to the end.
func (r *round) repair() error {
	img := filepath.Join(r.dir, "image")
	if err := copyTree(r.s.parity, img); err != nil {
		return err
	}
	what, err := r.damage(img)
	if err != nil {
		return err
	}
	r.logf("damage: %s", what)
	if res := r.s.cmd(nil, "verify", "-q", img); res.code != 3 {
		return fmt.Errorf("after damage (%s) verify should find it (exit 3): %s", what, res)
	}
	argv := []string{r.s.bin, "verify", "-q", "--repair", img}
	next := argv
	for range r.kills() {
		res, err := r.interrupted(r.randomKill(r.s.full["repair"]), next)
		if err != nil {
			return err
		}
		v := r.s.cmd(nil, "verify", "-q", img)
		r.logf("then verify: exit %d", v.code)
		switch v.code {
		case 0:
			return r.checkComplete(img)
		case 3:
		default:
			return fmt.Errorf("after an interrupted repair the image neither verifies nor is reported damaged: %s", v)
		}
		if next, err = r.continuation(res, argv); err != nil {
			return err
		}
	}
	res := r.s.exec(nil, next)
	r.logf("to the end: %s", res)
	if res.code != 0 {
		return fmt.Errorf("repair after an interrupted repair failed: %s", res)
	}
	return r.checkComplete(img)
}

// damage breaks one segment of the parity image img (deleted, a byte
// flipped, or cut short) or deletes a manifest copy; parity 4+2 rebuilds
// any of them.
func (r *round) damage(img string) (string, error) {
	segs, err := segments(img)
	if err != nil {
		return "", err
	}
	if len(segs) == 0 {
		return "", fmt.Errorf("no segments in %s", img)
	}
	seg := segs[r.rng.IntN(len(segs))]
	rel, _ := filepath.Rel(img, seg)
	switch r.rng.IntN(4) {
	case 0:
		return "deleted " + rel, os.Remove(seg)
	case 1:
		b, err := os.ReadFile(seg)
		if err != nil {
			return "", err
		}
		off := r.rng.IntN(len(b))
		b[off] ^= 0x5a
		return fmt.Sprintf("flipped byte %d of %s", off, rel), os.WriteFile(seg, b, 0o644)
	case 2:
		fi, err := os.Stat(seg)
		if err != nil {
			return "", err
		}
		n := r.rng.Int64N(fi.Size())
		return fmt.Sprintf("cut %s to %d bytes", rel, n), os.Truncate(seg, n)
	}
	copies, _ := filepath.Glob(filepath.Join(img, "manifest.ssm.*"))
	if len(copies) == 0 {
		return "deleted " + rel, os.Remove(seg)
	}
	c := copies[r.rng.IntN(len(copies))]
	// A missing manifest copy alone is no damage to verify; delete a
	// segment too so the repair has work to do.
	if err := os.Remove(c); err != nil {
		return "", err
	}
	return fmt.Sprintf("deleted %s and %s", filepath.Base(c), rel), os.Remove(seg)
}

// restore: kill a restore onto a new file or onto an existing file of
// garbage (as large as the source or larger), then continue it with
// --resume or a plain restore, repeat; the last one runs to the end.
func (r *round) restore() error {
	img := r.sourceImage()
	tgt := filepath.Join(r.dir, "target.img")
	switch r.rng.IntN(3) {
	case 1, 2:
		size := fileSize(r.s.src)
		if r.rng.IntN(2) == 0 {
			size += mib
		}
		if err := garbage(tgt, size, r.rng); err != nil {
			return err
		}
		r.logf("target: %d bytes of garbage", size)
	default:
		r.logf("target: absent")
	}
	workers := []string{"--workers", strconv.Itoa(1 + r.rng.IntN(4))}
	argv := append(append([]string{r.s.bin, "restore", "-q"}, workers...), img, tgt)
	resume := append(append([]string{r.s.bin, "restore", "-q", "--resume"}, workers...), img, tgt)
	scratch := filepath.Join(r.dir, "timing.img")
	full, err := r.timed("restore "+img+" "+strings.Join(workers, " "), scratch,
		append(append([]string{r.s.bin, "restore", "-q"}, workers...), img, scratch))
	if err != nil {
		return err
	}
	next := argv
	finished := false
	for range r.kills() {
		res, err := r.interrupted(r.randomKill(full), next)
		if err != nil {
			return err
		}
		if res.code == 0 {
			finished = true
			break
		}
		if next, err = r.continuation(res, resume); err != nil {
			return err
		}
		if res.hint() == nil {
			next = r.pick(argv, resume)
		}
	}
	if !finished {
		res := r.s.exec(nil, next)
		r.logf("to the end: %s", res)
		if res.code == 2 && slices.Contains(next, "--resume") && !exists(tgt) {
			// Nothing to resume onto is bad input; a plain restore starts it.
			res = r.s.exec(nil, argv)
			r.logf("fresh: %s", res)
		}
		if res.code != 0 {
			return fmt.Errorf("continuing the interrupted restore failed: %s", res)
		}
	}
	if err := sameFile(r.s.src, tgt); err != nil {
		return fmt.Errorf("restore exited 0 after an interruption but the target is not the source: %w", err)
	}
	if res := r.s.cmd(nil, "verify", "-q", "--device", tgt, img); res.code != 0 {
		return fmt.Errorf("the restored target equals the source but verify --device disagrees: %s", res)
	}
	return nil
}

// segments lists the segment files of the directory image img.
func segments(img string) ([]string, error) {
	var out []string
	for _, sub := range []string{"data", "parity"} {
		m, err := filepath.Glob(filepath.Join(img, sub, "*"))
		if err != nil {
			return nil, err
		}
		for _, p := range m {
			if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
				out = append(out, p)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// empty reports whether dir is absent or holds no image data: only
// hidden files, such as the writer lock or the temporary file of a write
// that was killed, which no store lists.
func empty(dir string) bool {
	es, err := os.ReadDir(dir)
	if err != nil {
		return true
	}
	for _, e := range es {
		if !strings.HasPrefix(e.Name(), ".") {
			return false
		}
	}
	return true
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// garbage writes size pseudo-random bytes to p.
func garbage(p string, size int64, rng *rand.Rand) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	buf := make([]byte, mib)
	for off := int64(0); off < size; off += int64(len(buf)) {
		for i := 0; i+8 <= len(buf); i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		n := min(int64(len(buf)), size-off)
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// sameFile says where b first differs from a, or nil when they are equal.
func sameFile(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ba, bb := make([]byte, mib), make([]byte, mib)
	var off int64
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			for i := range min(na, nb) {
				if ba[i] != bb[i] {
					return fmt.Errorf("%s differs from %s at byte %d", b, a, off+int64(i))
				}
			}
			return fmt.Errorf("%s and %s differ in size (%d and %d bytes)", b, a, fileSize(b), fileSize(a))
		}
		off += int64(na)
		if ea != nil || eb != nil {
			if (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF) {
				return nil
			}
			return errors.Join(ea, eb)
		}
	}
}

// copyTree copies the directory image src to dst (regular files only).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// shellSplit splits a POSIX-shell-quoted command line as seedship prints
// it: words separated by spaces, single-quoted words, and backslash
// escapes outside quotes.
func shellSplit(s string) []string {
	var out []string
	var cur strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case inQuote:
			if ch == '\'' {
				inQuote = false
			} else {
				cur.WriteByte(ch)
			}
		case ch == '\'':
			inQuote, inWord = true, true
		case ch == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		case ch == ' ' || ch == '\t':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// TestShellSplit checks the parser of the printed continuation against the
// quoting seedship uses (cmd/seedship shellQuote).
func TestShellSplit(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"seedship capture --resume /dev/sdb1 /mnt/seed", []string{"seedship", "capture", "--resume", "/dev/sdb1", "/mnt/seed"}},
		{"seedship copy 'a b' c", []string{"seedship", "copy", "a b", "c"}},
		{`seedship copy 'it'\''s' x`, []string{"seedship", "copy", "it's", "x"}},
		{"seedship  verify   ''  x", []string{"seedship", "verify", "", "x"}},
		{`a\ b`, []string{"a b"}},
		{"", nil},
	}
	for _, tc := range tests {
		if got := shellSplit(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("shellSplit(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
