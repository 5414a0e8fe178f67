package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
)

// Exit codes, documented in every command's help (exitStatusHelp) and the
// README. They follow engine.KindOf, the one classification of errors.
const (
	exitOK          = 0
	exitRuntime     = 1   // a runtime failure; for a resumable one, the command that continues it is printed
	exitUsage       = 2   // usage error or bad input: nothing was written
	exitIntegrity   = 3   // damage found, or a device differs from the image
	exitInterrupted = 130 // SIGINT or SIGTERM; the command that continues it is printed
)

// exitStatusHelp ends every command's --help.
const exitStatusHelp = `
EXIT STATUS:
   0    success
   1    runtime error (I/O failure, full disk, dropped connection); when the work done so far
        is kept, the command that continues it is printed on stderr
   2    usage error or bad input (bad flag value, missing source, non-empty destination,
        target in use, command needs Linux); nothing was written
   3    integrity failure: damage found, the device differs from the image, or (--trust) the
        image's signature is missing, by an untrusted key, or does not match its manifest
   130  interrupted (SIGINT or SIGTERM); the command that continues it is printed on stderr`

// usageError marks command-line mistakes: bad flags, arguments or values.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// exitCode is the single map from errors to exit status: command-line
// mistakes are usage errors, everything else is classified by
// engine.KindOf.
func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) || isFlagError(err) {
		return exitUsage
	}
	switch engine.KindOf(err) {
	case engine.KindOK:
		return exitOK
	case engine.KindInterrupted:
		return exitInterrupted
	case engine.KindBadInput:
		return exitUsage
	case engine.KindIntegrity:
		return exitIntegrity
	}
	return exitRuntime // KindResumable and KindRuntime
}

// isFlagError recognises the flag package's own parse errors, which
// urfave/cli returns unwrapped for the application's flags.
func isFlagError(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "flag provided but not defined") || strings.HasPrefix(s, "invalid value") ||
		strings.Contains(s, "Required flag")
}

// continuable marks the error of a command that writes (capture, restore,
// copy, verify --repair): if it is resumable or interrupted, run prints the
// command that continues the work, which is the same command line, with
// --resume added when resume is set.
type continuable struct {
	err    error
	resume bool
}

func (e *continuable) Error() string { return e.err.Error() }
func (e *continuable) Unwrap() error { return e.err }

// canContinue wraps err (unless nil) as continuable.
func canContinue(err error, resume bool) error {
	if err == nil {
		return nil
	}
	return &continuable{err: err, resume: resume}
}

// continueCommand returns the shell command that continues the failed run
// argv, or "" when err is neither resumable nor interrupted, or its command
// does not keep partial work.
func continueCommand(argv []string, err error) string {
	var c *continuable
	if !errors.As(err, &c) {
		return ""
	}
	if k := engine.KindOf(err); k != engine.KindResumable && k != engine.KindInterrupted {
		return ""
	}
	return shellJoin(withResume(argv, c.resume))
}

// withResume returns argv with "--resume" as the command's first flag
// (urfave/cli takes flags only before the arguments) when resume is set,
// replacing any --resume=... already given; otherwise argv unchanged. A
// capture's continuation drops --recipient and --recipients-file: a
// resumed encrypted capture keeps the recipients it began with (spec
// §11.5) and refuses them.
func withResume(argv []string, resume bool) []string {
	if !resume {
		return argv
	}
	capture := commandName(argv) == "capture"
	out := make([]string, 0, len(argv)+1)
	added, skipValue := false, false
	for i, a := range argv {
		if skipValue {
			skipValue = false
			continue
		}
		if a == "--resume" || a == "-resume" || strings.HasPrefix(a, "--resume=") || strings.HasPrefix(a, "-resume=") {
			continue
		}
		if name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "="); capture && added && strings.HasPrefix(a, "-") &&
			(name == flagRecipient || name == flagRecipientsFile) {
			skipValue = !hasValue
			continue
		}
		out = append(out, a)
		// argv[0] is the program; the command is the first word after it
		// (seedship has no global flags other than --help and --version).
		if i > 0 && !added && !strings.HasPrefix(a, "-") {
			out = append(out, "--resume")
			added = true
		}
	}
	return out
}

// commandName is the seedship command argv runs, e.g. "capture"
// ("seedship" when there is none).
func commandName(argv []string) string {
	for _, a := range argv[min(1, len(argv)):] {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return "seedship"
}

// shellSafe matches words that need no quoting in a POSIX shell.
var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// shellQuote quotes s for a POSIX shell: unchanged when it is safe, else
// in single quotes (a single quote inside closes the quotes, is escaped
// with a backslash, and reopens them).
func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// shellJoin quotes every word of argv and joins them with spaces.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// hintTimeout bounds the look at a destination that decides the hint.
const hintTimeout = 10 * time.Second

// hintContext is a context for looking at a destination after the
// command's own context may have been cancelled by SIGINT.
func hintContext(c *cli.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(c.Context), hintTimeout)
}

// needsLinux is the error of a command that reads or writes block devices
// (capture, restore, verify --device) on a system other than Linux, where
// package device refuses every device call; nil on Linux.
func needsLinux(goos, what string) error {
	if goos == "linux" {
		return nil
	}
	return usagef("%s needs Linux: it reads and writes block devices through Linux interfaces, and this is %s; here, use info, verify (without --device) and copy", what, goos)
}
