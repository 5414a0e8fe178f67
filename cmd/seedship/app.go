package main

import (
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

const exitStatusHelp = `
EXIT STATUS:
   0  success
   1  runtime error (I/O failure, interrupted)
   2  usage error or bad input; nothing was written
   3  integrity failure: damage found, or the device differs from the image`

// newApp builds the CLI with injectable output.
func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:    "seedship",
		Usage:   "seed a replication target from a verified block-device image instead of a full resync",
		Version: version,
		Description: "Typical use: capture the source device into a seed image, move the image (drive, courier,\n" +
			"object store), verify it at the target site, restore it onto the target device, then start the\n" +
			"mirror with a partial resync." + exitStatusHelp,
		Writer:    stdout,
		ErrWriter: stderr,
		// Exit codes are mapped in one place, run/exitCode.
		ExitErrHandler:       func(*cli.Context, error) {},
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return usagef("%v (see 'seedship --help')", err)
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("unknown command %q: use capture, info, verify, restore or copy (see 'seedship --help')", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: []*cli.Command{captureCommand(), infoCommand(), verifyCommand(), restoreCommand(), copyCommand()},
	}
}

// isFlagError recognises urfave/cli's own parse errors.
func isFlagError(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "flag provided but not defined") || strings.HasPrefix(s, "invalid value") ||
		strings.Contains(s, "Required flag")
}

// positional returns exactly n positional arguments, refusing anything that
// looks like a flag typed after them: urfave/cli stops parsing flags at the
// first argument, and a stray "--json" must never be taken as a path.
func positional(c *cli.Context, names ...string) ([]string, error) {
	args := c.Args().Slice()
	for _, a := range args {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			return nil, usagef("%s: flag %q after the arguments: put flags before %s", c.Command.Name, a, strings.Join(names, " "))
		}
	}
	if len(args) != len(names) {
		return nil, usagef("%s: want %d argument(s) %s, got %d (see 'seedship %s --help')",
			c.Command.Name, len(names), strings.Join(names, " "), len(args), c.Command.Name)
	}
	return args, nil
}

func commandHelp(desc string) string { return strings.TrimSpace(desc) + "\n" + exitStatusHelp }
