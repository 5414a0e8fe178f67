package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/seedship/seedship/engine"
)

// promptInput returns where capture reads the next drive's path when its
// volumes are full, and whether it asks at all: only on a terminal
// (stdin and stderr), and not with --json. Tests replace it.
var promptInput = func(p *printer) (io.Reader, bool) {
	if !p.tty || p.json || !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil, false
	}
	return os.Stdin, true
}

// promptNextDrives asks, each time a capture stops with its volumes full
// and the state to continue without them kept, for the next drive's
// directory, and continues onto it with run. An empty line (or the end of
// input) stops, with the error that says how to continue later. A
// continuation that fails otherwise says the command that continues it
// onto that drive (the command line given names the earlier drives).
func promptNextDrives(c *cli.Context, p *printer, in io.Reader, err error, run func(drive string) error, source string) error {
	lines := bufio.NewScanner(in)
	for {
		var full *volumesFullError
		if !errors.As(err, &full) || !full.oneBay {
			return err
		}
		fmt.Fprintf(p.errw, "seedship: %s\nattach the next empty drive and type its directory (Enter to stop here): ", full.Error())
		if !lines.Scan() {
			fmt.Fprintln(p.errw)
			return err
		}
		drive := strings.TrimSpace(lines.Text())
		if drive == "" {
			return err
		}
		stopped := err
		err = run(drive)
		switch {
		case err == nil:
			return nil
		case errors.As(err, &full):
		case engine.KindOf(err) == engine.KindBadInput:
			// The drive typed was refused and nothing was written: say
			// why and ask again.
			fmt.Fprintf(p.errw, "seedship: %v\n", err)
			err = stopped
		default:
			return promptedError(c, err, source, drive)
		}
	}
}

// continuedError is a failure of a continuation onto a drive typed at the
// prompt: its message ends with the command that continues it there.
type continuedError struct {
	err     error
	command string
}

func (e *continuedError) Error() string { return e.err.Error() + "; to continue, run: " + e.command }
func (e *continuedError) Unwrap() error { return e.err }

func promptedError(c *cli.Context, err error, source, drive string) error {
	var ce *continuable
	if k := engine.KindOf(err); !errors.As(err, &ce) || k != engine.KindResumable && k != engine.KindInterrupted {
		return err // integrity, or a refusal: nothing to continue
	}
	argv := append(append([]string{"seedship", "capture", "--resume"}, givenFlags(c, "resume", flagRecipient, flagRecipientsFile)...), source, drive)
	return &continuedError{err: ce.err, command: shellJoin(argv)}
}
