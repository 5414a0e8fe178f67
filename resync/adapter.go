package resync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Errors. The CLI maps them to exit codes: [ErrConfig] is bad input
// (nothing was run), [ErrCheck] a failed check before extend, [ErrStep] a
// product command that failed.
var (
	// ErrConfig marks a bad configuration file or section: nothing was
	// run.
	ErrConfig = errors.New("resync: bad configuration")
	// ErrCheck marks a failed check before extend (the token does not
	// match the configuration or the state of the mirror): it wraps the
	// condition, and nothing was changed because of it.
	ErrCheck = errors.New("resync: check failed")
	// ErrStep marks a product command (or a file edit) that failed; the
	// error names the argv and carries its stderr.
	ErrStep = errors.New("resync: step failed")
)

// Token is the seed token: what the capture-side steps record in the
// manifest's "resync" header field (format.Header.Resync, raw JSON) so
// the target side can check it before extend.
type Token struct {
	// Adapter names the adapter that made the token: "sios", "drbd",
	// "mdraid", "exec".
	Adapter string `json:"adapter"`
	// Mark is the product's mark point (UTC): its change tracking covers
	// every write after it, so it must not be after the capture started.
	Mark time.Time `json:"mark"`
	// Fields are the adapter's facts: bitmap file and clear time, DRBD
	// UUIDs, md array UUID, role and event count...
	Fields map[string]string `json:"fields,omitempty"`
}

// Adapter is one replication product. Capture side: Preflight, Mark,
// (capture), PostCapture; target side: Preflight, PreExtend, Extend.
// Cleanup always runs last on both sides, also after a failure or an
// interrupt (with a fresh context), and must undo every temporary change.
// Adapters do everything through the [Session], so dry run and the step
// log work for all of them. [RunCapture] and [RunExtend] drive the steps.
type Adapter interface {
	// Name is the adapter's registered name.
	Name() string
	// Preflight runs read-only checks.
	Preflight(ctx context.Context, s *Session) error
	// Mark sets the product's mark point, before or at capture.
	Mark(ctx context.Context, s *Session) error
	// PostCapture runs after the source was read, before the manifest is
	// written, and returns the token to record.
	PostCapture(ctx context.Context, s *Session) (*Token, error)
	// PreExtend checks the restored target and the source's state against
	// the token and prepares the extend (temporary settings).
	PreExtend(ctx context.Context, s *Session, t *Token, target string) error
	// Extend adds target to the mirror with a partial resync.
	Extend(ctx context.Context, s *Session, t *Token, target string) error
	// Cleanup undoes every temporary change of the session's steps.
	Cleanup(ctx context.Context, s *Session) error
}

var registry = struct {
	sync.Mutex
	m map[string]func(*Config) (Adapter, error)
}{m: make(map[string]func(*Config) (Adapter, error))}

// Register makes an adapter available to [New] and [LoadConfig]; each
// adapter's file calls it from init. newAdapter must check cfg (its
// section: required commands, paths) and build the adapter without
// touching the world: LoadConfig calls it to refuse a bad file before any
// step runs. Its errors should come from [Config.FieldError]. Register
// panics on an empty or duplicate name (a programming error).
func Register(name string, newAdapter func(*Config) (Adapter, error)) {
	registry.Lock()
	defer registry.Unlock()
	if name == "" || newAdapter == nil {
		panic("resync: Register with an empty name or nil constructor")
	}
	if _, dup := registry.m[name]; dup {
		panic("resync: adapter " + name + " registered twice")
	}
	registry.m[name] = newAdapter
}

// New builds the adapter cfg.Adapter names. An unknown name is an
// [ErrConfig] error listing the known ones.
func New(cfg *Config) (Adapter, error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: no configuration", ErrConfig)
	}
	registry.Lock()
	newAdapter, ok := registry.m[cfg.Adapter]
	registry.Unlock()
	if !ok {
		return nil, cfg.FieldError("adapter", "unknown adapter %q: use one of %s", cfg.Adapter, strings.Join(Names(), ", "))
	}
	return newAdapter(cfg)
}

// Names lists the registered adapters, sorted.
func Names() []string {
	registry.Lock()
	defer registry.Unlock()
	names := make([]string, 0, len(registry.m))
	for n := range registry.m {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
