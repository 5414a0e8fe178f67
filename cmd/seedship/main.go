// Command seedship ships a disk's worth of data to a replication target
// without a full resync over the WAN: it captures a raw block device into a
// verifiable seed image, verifies it, and restores it block for block.
//
// Exit status: 0 ok; 1 runtime error (with the command that continues it
// when the work done is kept); 2 usage or bad input (nothing was written);
// 3 integrity failure (damage found, or a device differs); 130 interrupted
// by SIGINT or SIGTERM (with the command that continues it).
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
	"strings"
	"syscall"
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
	// The first SIGINT or SIGTERM cancels the context: the command stops,
	// keeps what it finished and exits 130 with the command that continues
	// it. Once it has arrived the default handling returns, so a second one
	// ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() { <-ctx.Done(); stop() }()
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
			if err := errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close()); err != nil {
				fmt.Fprintf(os.Stderr, "seedship: heap profile %s: %v\n", p, err)
			}
		}
	}
	stop()
	os.Exit(code)
}

// run executes the CLI and returns the exit code; it never calls os.Exit,
// so tests drive it directly. An error is printed as one line; a resumable
// or interrupted run of a command that keeps its partial work adds a second
// line with the command that continues it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	if code == exitInterrupted && !strings.Contains(msg, "interrupted") {
		msg = commandName(args) + " interrupted: " + msg
	}
	fmt.Fprintf(stderr, "seedship: %s\n", msg)
	if cmd := continueCommand(args, err); cmd != "" {
		fmt.Fprintf(stderr, "seedship: to continue, run: %s\n", cmd)
	}
	return code
}
