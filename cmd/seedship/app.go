package main

import (
	"io"
	"runtime"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

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
				return usagef("unknown command %q: see 'seedship --help' for the commands", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Commands: append([]*cli.Command{captureCommand(), infoCommand(), verifyCommand(), restoreCommand(), copyCommand()},
			registeredCommands()...),
	}
}

// laterCommands are the commands that live in files of their own (label,
// extend, delta, diff): each file's init adds its constructor, so a
// command and its wiring stay together.
var laterCommands []func() *cli.Command

func registeredCommands() []*cli.Command {
	cmds := make([]*cli.Command, 0, len(laterCommands))
	for _, f := range laterCommands {
		cmds = append(cmds, f())
	}
	return cmds
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

// command is what one seedship command states of its own; newCommand adds
// what every command shares.
type command struct {
	name      string
	usage     string     // one line, for the list of commands
	operands  []operand  // its positional arguments, in order
	linuxOnly bool       // it reads or writes block devices through Linux interfaces
	help      string     // its description; the EXIT STATUS section follows
	flags     []cli.Flag // its own; the object-storage and output flags follow
	// run does the work, given the operands once positional and their
	// checks have accepted them.
	run func(c *cli.Context, args []string) error
}

// operand is one positional argument and the check of its syntax, made
// before anything is opened.
type operand struct {
	name  string // in the usage line, e.g. SOURCE
	what  string // in error messages, e.g. "source"
	check func(what, loc string) error
}

// imageOperand is a positional argument naming an image location.
func imageOperand(name, what string) operand { return operand{name, what, checkImageLocation} }

// deviceOperand is a positional argument naming a device or file.
func deviceOperand(name, what string) operand { return operand{name, what, checkDeviceLocation} }

// newCommand builds the *cli.Command of cmd: its own flags followed by the
// object-storage and output flags every command has, the numeric flag
// checks (before the action), the one-line usage errors, and an action
// that checks the operands (their number, Linux where needed, then each
// one's syntax) before anything is opened.
func newCommand(cmd command) *cli.Command {
	names := make([]string, len(cmd.operands))
	for i, o := range cmd.operands {
		names[i] = o.name
	}
	return &cli.Command{
		Name:         cmd.name,
		Usage:        cmd.usage,
		ArgsUsage:    strings.Join(names, " "),
		Description:  strings.TrimSpace(cmd.help) + "\n" + exitStatusHelp,
		Flags:        slices.Concat(cmd.flags, s3Flags(), outputFlags()),
		Before:       checkFlags,
		OnUsageError: onUsageError,
		Action: func(c *cli.Context) error {
			args, err := positional(c, names...)
			if err != nil {
				return err
			}
			if cmd.linuxOnly {
				if err := needsLinux(runtime.GOOS, "seedship "+cmd.name); err != nil {
					return err
				}
			}
			for i, o := range cmd.operands {
				if err := o.check(o.what, args[i]); err != nil {
					return err
				}
			}
			return cmd.run(c, args)
		},
	}
}
