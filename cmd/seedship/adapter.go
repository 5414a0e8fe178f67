package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/resync"
)

// The replication product's steps around capture and extend (package
// resync): the flags, the adapter and its session, and the map from
// resync's errors to the engine's kinds (and so to exit codes).

// adapterFlags are the flags that select and configure an adapter; side
// is "capture" or "extend", for the help text.
func adapterFlags(side string) []cli.Flag {
	what := "mark point before the capture, seed token into the manifest after it"
	if side == "extend" {
		what = "checks, then the product's partial-resync extend"
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "adapter", Usage: "run this replication product's " + side + "-side steps (" + strings.Join(resync.Names(), ", ") + "): " + what},
		&cli.StringFlag{Name: "config", Usage: "with --adapter: the resync configuration file (JSON): hosts, executables, the adapter's section"},
		&cli.BoolFlag{Name: "dry-run", Usage: "with --adapter: print every command (argv) and a diff of every file edit the steps would make, and change nothing"},
	}
}

// adapterRun is a configured adapter and the session its steps run in.
type adapterRun struct {
	adapter resync.Adapter
	session *resync.Session
	config  string // the configuration file, for messages
}

// openAdapter loads --config, checks that it names the adapter --adapter
// names, and builds the adapter and a session (dry run with --dry-run)
// writing its step log to out. cmd names the command, for messages.
func openAdapter(c *cli.Context, cmd string, out io.Writer) (*adapterRun, error) {
	name, path := c.String("adapter"), c.String("config")
	if path == "" {
		return nil, usagef("%s: --adapter %s needs --config FILE (the resync configuration: see 'seedship %s --help')", cmd, name, cmd)
	}
	cfg, err := resync.LoadConfig(path)
	if err != nil {
		return nil, resyncError(err)
	}
	if cfg.Adapter != name {
		return nil, usagef("%s: --adapter %s, but %s configures adapter %q: give the same name to both", cmd, name, path, cfg.Adapter)
	}
	a, err := resync.New(cfg)
	if err != nil {
		return nil, resyncError(err)
	}
	return &adapterRun{adapter: a, session: resync.NewSession(cfg, out, c.Bool("dry-run")), config: path}, nil
}

// stepLog is where the adapter's steps are logged: stdout in a dry run
// (the steps are its output), else stderr, and stderr always with --json
// (stdout is the one JSON object).
func stepLog(c *cli.Context) io.Writer {
	if c.Bool("dry-run") && !c.Bool("json") {
		return c.App.Writer
	}
	return c.App.ErrWriter
}

// resyncError classifies an error of package resync for the exit code: a
// check that found the target differing from the image is an integrity
// failure (3); a failed check or a bad configuration, which changed
// nothing, is bad input (2); a product command that failed stays a
// runtime error (1), and an interrupt an interrupt (130), also when a
// check failed beside them.
func resyncError(err error) error {
	var ce *resync.CheckError
	switch {
	case err == nil || errors.Is(err, context.Canceled) || errors.Is(err, resync.ErrStep):
		return err
	case errors.As(err, &ce) && ce.Differs:
		return &classified{kind: engine.ErrIntegrity, err: err}
	case errors.Is(err, resync.ErrCheck) || errors.Is(err, resync.ErrConfig):
		return &classified{kind: engine.ErrBadInput, err: err}
	}
	return err
}

// classified gives err an engine kind for the exit code without adding
// the kind's words to the message: "check failed: ..." says it already.
type classified struct {
	kind error // engine.ErrBadInput or engine.ErrIntegrity
	err  error
}

func (c *classified) Error() string   { return c.err.Error() }
func (c *classified) Unwrap() []error { return []error{c.kind, c.err} }

// adapterCapture runs a capture inside an adapter's capture-side steps.
// A nil *adapterCapture (no --adapter) runs the capture alone.
type adapterCapture struct {
	*adapterRun
}

// prepareAdapterCapture checks capture's adapter flags and loads the
// adapter, before the source is opened or DEST created. Without
// --adapter it returns nil (and refuses --config or --dry-run alone).
// With --dry-run it runs the capture-side steps in dry run, printing on
// stdout every command and file edit and where the capture would run, and
// returns done: capture must then stop, having opened and created nothing.
// --resume is refused: a resumed capture keeps its first start time, and a
// new mark point after it is what extend refuses. So is a volume set
// (several destinations), which capture writes on a path of its own.
func prepareAdapterCapture(c *cli.Context, args []string) (ac *adapterCapture, done bool, err error) {
	if c.String("adapter") == "" {
		if c.String("config") != "" || c.Bool("dry-run") {
			return nil, false, usagef("capture: --config and --dry-run are for the replication product's steps: add --adapter NAME (%s)", strings.Join(resync.Names(), ", "))
		}
		return nil, false, nil
	}
	if c.Bool("resume") {
		return nil, false, usagef("capture: --resume cannot be combined with --adapter: the interrupted capture started before a new mark point, so its seed could not be extended; capture afresh into an empty DEST")
	}
	if len(args) > 2 || c.IsSet("volume-size") || c.IsSet("no-readback") {
		return nil, false, usagef("capture: --adapter captures into one destination (a drive or s3://): give one DEST, and copy the image to more drives afterwards (seedship copy)")
	}
	run, err := openAdapter(c, "capture", stepLog(c))
	if err != nil {
		return nil, false, err
	}
	ac = &adapterCapture{run}
	if !c.Bool("dry-run") {
		return ac, false, nil
	}
	run.session.Logf("dry run: capture of %s into %s with adapter %s (%s): nothing is changed", args[0], args[1], run.adapter.Name(), run.config)
	err = resync.RunCapture(c.Context, run.adapter, run.session, func(context.Context, func(context.Context) (json.RawMessage, error)) error {
		return errors.New("dry run: the capture must not run") // RunCapture does not call it in dry run
	})
	return ac, true, resyncError(err)
}

// run runs capture inside the adapter's capture-side steps: Preflight,
// Mark, then capture with opts.BeforeManifest set to the post-capture step
// (its seed token becomes the manifest's "resync" field), and Cleanup
// always, also after a failure or an interrupt. capture must run the
// engine capture with *opts. On a nil receiver it runs capture alone.
func (ac *adapterCapture) run(ctx context.Context, opts *engine.CaptureOptions, capture func(context.Context) error) error {
	if ac == nil {
		return capture(ctx)
	}
	var token json.RawMessage
	err := resync.RunCapture(ctx, ac.adapter, ac.session, func(ctx context.Context, postCapture func(context.Context) (json.RawMessage, error)) error {
		opts.BeforeManifest = func(ctx context.Context) (json.RawMessage, error) {
			t, err := postCapture(ctx)
			token = t
			return t, err
		}
		return capture(ctx)
	})
	if err != nil {
		return resyncError(err)
	}
	ac.session.Logf("seed token recorded in the manifest: %s", token)
	return nil
}
