package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
)

// TestExitCode checks the one map from errors to exit codes, with each
// kind wrapped as the engine and the commands wrap it.
func TestExitCode(t *testing.T) {
	t.Parallel()
	runtimeErr := errors.New("read /dev/sdb: input/output error")
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"usage", usagef("capture: want 2 arguments"), exitUsage},
		{"flag parse", errors.New(`invalid value "x" for flag -workers: parse error`), exitUsage},
		{"unknown flag", errors.New("flag provided but not defined: -fast"), exitUsage},
		{"bad input", fmt.Errorf("%w: destination /x is not empty", engine.ErrBadInput), exitUsage},
		{"integrity", fmt.Errorf("%w: 2 chunks differ", engine.ErrIntegrity), exitIntegrity},
		{"format damage", fmt.Errorf("segment 3: %w", format.ErrChecksum), exitIntegrity},
		{"format corrupt", fmt.Errorf("manifest: %w", format.ErrCorrupt), exitIntegrity},
		{"resumable", engine.Resumable(fmt.Errorf("put data/00000003.seg: %w", runtimeErr)), exitRuntime},
		{"resumable, continuable", canContinue(engine.Resumable(runtimeErr), true), exitRuntime},
		{"runtime", runtimeErr, exitRuntime},
		{"interrupted", fmt.Errorf("capture: %w", context.Canceled), exitInterrupted},
		{"interrupted, continuable", canContinue(fmt.Errorf("restore: %w", context.Canceled), true), exitInterrupted},
		{"interrupted while resumable", errors.Join(engine.ErrResumable, context.Canceled), exitInterrupted},
		{"bad input, continuable", canContinue(fmt.Errorf("%w: x", engine.ErrBadInput), true), exitUsage},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestContinueCommand checks which failures print the command that
// continues them, and how it is built from the command line.
func TestContinueCommand(t *testing.T) {
	t.Parallel()
	argv := []string{"seedship", "capture", "--parity", "10+2", "/dev/sdb1", "s3://seeds/site a/it's"}
	resumed := `seedship capture --resume --parity 10+2 /dev/sdb1 's3://seeds/site a/it'\''s'`
	same := `seedship capture --parity 10+2 /dev/sdb1 's3://seeds/site a/it'\''s'`
	ioErr := errors.New("no space left on device")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"resumable", canContinue(engine.Resumable(ioErr), true), resumed},
		{"interrupted", canContinue(fmt.Errorf("x: %w", context.Canceled), true), resumed},
		{"interrupted before anything was stored", canContinue(context.Canceled, false), same},
		{"plain runtime error", canContinue(ioErr, true), ""},
		{"bad input", canContinue(fmt.Errorf("%w: x", engine.ErrBadInput), true), ""},
		{"integrity", canContinue(fmt.Errorf("%w: x", engine.ErrIntegrity), true), ""},
		{"not from a writing command", engine.Resumable(ioErr), ""},
	} {
		if got := continueCommand(argv, tc.err); got != tc.want {
			t.Errorf("%s: continueCommand = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestWithResume puts --resume first among the command's flags, once.
func TestWithResume(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want []string }{
		{[]string{"seedship", "restore", "img", "/dev/sdc"}, []string{"seedship", "restore", "--resume", "img", "/dev/sdc"}},
		{[]string{"/usr/bin/seedship", "restore", "--resume", "img", "t"}, []string{"/usr/bin/seedship", "restore", "--resume", "img", "t"}},
		{[]string{"seedship", "capture", "--resume=false", "-q", "s", "d"}, []string{"seedship", "capture", "--resume", "-q", "s", "d"}},
	} {
		if got := withResume(tc.in, true); !slices.Equal(got, tc.want) {
			t.Errorf("withResume(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := withResume(tc.in, false); !slices.Equal(got, tc.in) {
			t.Errorf("withResume(%q, false) changed it to %q", tc.in, got)
		}
	}
}

// TestCommandName finds the command in a command line.
func TestCommandName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"seedship", "capture", "-q", "a", "b"}, "capture"},
		{[]string{"./bin/seedship", "--help"}, "seedship"},
		{[]string{"seedship"}, "seedship"},
		{nil, "seedship"},
	} {
		if got := commandName(tc.argv); got != tc.want {
			t.Errorf("commandName(%q) = %q, want %q", tc.argv, got, tc.want)
		}
	}
}

// TestShellQuote gives awkward arguments to a real shell and checks that
// it hands back exactly the original words.
func TestShellQuote(t *testing.T) {
	t.Parallel()
	sh, err := exec.LookPath("sh")
	if err != nil {
		devicetest.Skipf(t, "no sh to check the quoting against: %v", err)
	}
	words := []string{"plain", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4-part1", "with space", "it's", `"double"`,
		"$HOME", "`id`", "a;b", "a|b&c", "*", "~", "tab\there", "new\nline", "", "back\\slash", "s3://b/p?x", "-–dash", "ünïcødé"}
	out, err := exec.Command(sh, "-c", `for a in `+shellJoin(words)+`; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if !slices.Equal(got, words) {
		t.Errorf("the shell read %q back as %q", words, got)
	}
	for _, w := range []string{"plain", "/dev/sdb1", "s3://bucket/a-b_c.d", "10+2", "--chunk-size=1MiB"} {
		if q := shellQuote(w); q != w {
			t.Errorf("shellQuote(%q) = %q: a safe word needs no quotes", w, q)
		}
	}
}

// TestNeedsLinux checks the one-line refusal of device commands on other
// systems, for each system seedship is built for.
func TestNeedsLinux(t *testing.T) {
	t.Parallel()
	if err := needsLinux("linux", "seedship capture"); err != nil {
		t.Errorf("needsLinux(linux) = %v, want nil", err)
	}
	for _, goos := range []string{"darwin", "windows", "freebsd"} {
		err := needsLinux(goos, "seedship restore")
		if err == nil {
			t.Errorf("needsLinux(%s) = nil, want a refusal", goos)
			continue
		}
		msg := err.Error()
		if exitCode(err) != exitUsage || strings.Contains(msg, "\n") || !strings.Contains(msg, "seedship restore needs Linux") ||
			!strings.Contains(msg, goos) || !strings.Contains(msg, "info, verify") {
			t.Errorf("needsLinux(%s) = %q (exit %d), want one line naming the command, Linux, %s and what works, exit 2",
				goos, msg, exitCode(err), goos)
		}
	}
}
