// Command seedship ships a disk's worth of data to a replication target
// without a full resync over the WAN: it captures a raw block device into a
// verifiable seed image, verifies it, and restores it block for block.
//
// Exit status: 0 ok; 1 runtime error; 2 usage or bad input (nothing was
// written); 3 integrity failure (damage found, or a device differs).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/verify"
)

// Exit codes, documented in every command's help.
const (
	exitOK        = 0
	exitRuntime   = 1
	exitUsage     = 2
	exitIntegrity = 3
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// memoryLimit is the soft limit given to the Go runtime (unless GOMEMLIMIT
// says otherwise). Every buffer is bounded (about 280 MiB live at most,
// for a parity capture), but by default the collector lets the heap grow
// to twice what is live; the limit makes it collect sooner instead, so the
// process stays under 512 MiB whatever the device size.
const memoryLimit = 400 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// SEEDSHIP_CPUPROFILE=FILE writes a CPU profile, for performance work.
	if p := os.Getenv("SEEDSHIP_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
		}
	}
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	pprof.StopCPUProfile()
	// SEEDSHIP_MEMPROFILE=FILE writes a heap profile at exit.
	if p := os.Getenv("SEEDSHIP_MEMPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			runtime.GC()
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	stop()
	os.Exit(code)
}

// run executes the CLI and returns the exit code; it never calls os.Exit,
// so tests drive it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "seedship: %v\n", err)
	return exitCode(err)
}

// usageError marks command-line mistakes.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// exitCode is the single map from errors to exit status.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, engine.ErrIntegrity), errors.Is(err, verify.ErrDamaged),
		errors.Is(err, format.ErrCorrupt), errors.Is(err, format.ErrChecksum):
		return exitIntegrity
	case errors.As(err, &ue), errors.Is(err, engine.ErrBadInput), errors.Is(err, store.ErrPermanent),
		errors.Is(err, verify.ErrNoImage), errors.Is(err, format.ErrVersion), errors.Is(err, format.ErrFormat):
		return exitUsage
	case isFlagError(err):
		return exitUsage
	}
	return exitRuntime
}
