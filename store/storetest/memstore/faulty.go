package memstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/seedship/seedship/store"
)

// ErrInjected is wrapped by every error a [Faulty] makes up, unless the
// [Rule] supplies its own. It is transient: package retry retries it.
var ErrInjected = errors.New("memstore: injected fault")

// Op names the Store method a [Rule] acts on.
type Op string

// The operations a Rule can act on. OpLock is [store.Lock] through a
// Faulty; its key is "".
const (
	OpAny    Op = "" // every operation
	OpPut    Op = "put"
	OpGet    Op = "get"
	OpStat   Op = "stat"
	OpList   Op = "list"
	OpDelete Op = "delete"
	OpLock   Op = "lock"
)

// Kind is what a [Rule] does to a call it acts on. At is the Rule's At.
type Kind int

const (
	// Pass lets the call through; only the Rule's Delay applies.
	Pass Kind = iota
	// Fail returns the Rule's Err without calling the wrapped store.
	Fail
	// Cut breaks a stream after At units with the Rule's Err: a Get's body
	// after At bytes, a Put's reader after At bytes (so the Put fails and
	// stores nothing), a List after At keys. It is a dropped connection.
	Cut
	// Stall blocks a stream after At units until ctx is done (or a Get's
	// reader is closed), then fails with an error wrapping ctx's error:
	// a server that stops sending. Stat, Delete and Lock stall before the
	// call.
	Stall
	// Truncate ends a stream early after At units: a Get's body with
	// io.ErrUnexpectedEOF (as a store reports a short object), a Put's
	// reader with io.EOF (a Put with a declared size then fails; one with
	// size -1 stores the short object), a List without an error (the
	// listing silently misses keys).
	Truncate
	// Corrupt flips every bit of the byte at object offset At: in a Get's
	// body when its range covers it, or in what a Put stores (the Put
	// succeeds). It is damage at rest.
	Corrupt
	// SmallReads makes every Read of a Get's body or a Put's reader return
	// at most At bytes (at least 1): legal, and a test of readers that
	// assume full reads.
	SmallReads
)

var kindNames = [...]string{"pass", "fail", "cut", "stall", "truncate", "corrupt", "small reads"}

func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Rule chooses calls and says what to do to them.
type Rule struct {
	// Op is the operation acted on; OpAny means all of them (then Kind
	// must be Pass, Fail or Stall).
	Op Op
	// Key is a key prefix: the rule matches calls whose key begins with
	// it (a List's prefix argument, for List); "" matches every key.
	Key string
	// Skip lets the first Skip matching calls through; Times then bounds
	// the calls acted on (0: every later matching call). Skip 2, Times 1
	// acts on the third matching call only. Every rule counts its matching
	// calls on its own, whatever other rules do.
	Skip, Times int
	// Kind is what happens to the calls acted on.
	Kind Kind
	// At is where a stream is cut, stalled or truncated (bytes of a Get's
	// body or of a Put's reader, keys of a List), the object offset of the
	// byte Corrupt flips, or the largest Read of SmallReads.
	At int64
	// Err is the error of Fail and Cut; nil means one wrapping ErrInjected.
	Err error
	// Delay, when positive, is waited (or until ctx is done) before the
	// call, whatever the Kind: latency.
	Delay time.Duration
}

// Fault is a Rule added to a [Faulty].
type Fault struct {
	f    *Faulty
	rule Rule
	seen int // matching calls, under f.mu
	hits int // calls acted on, under f.mu
}

// Hits returns how many calls the fault has acted on so far, so a test can
// check that its fault was reached.
func (ft *Fault) Hits() int {
	ft.f.mu.Lock()
	defer ft.f.mu.Unlock()
	return ft.hits
}

// Remove stops the fault from acting on later calls.
func (ft *Fault) Remove() {
	ft.f.mu.Lock()
	defer ft.f.mu.Unlock()
	for i, x := range ft.f.faults {
		if x == ft {
			ft.f.faults = append(ft.f.faults[:i:i], ft.f.faults[i+1:]...)
			return
		}
	}
}

// Faulty wraps a [store.Store] and injects the faults its Rules describe.
// Without rules it is transparent. It is safe for concurrent use, and rules
// may be added and removed while calls run.
type Faulty struct {
	s store.Store

	mu     sync.Mutex
	faults []*Fault
	calls  map[Op]int
}

var (
	_ store.Store       = (*Faulty)(nil)
	_ store.Connections = (*Faulty)(nil)
	_ store.Locker      = (*Faulty)(nil)
	_ store.Unwrapper   = (*Faulty)(nil)
)

// NewFaulty wraps s, which may be any store (a memstore, a dir store).
func NewFaulty(s store.Store) *Faulty {
	return &Faulty{s: s, calls: map[Op]int{}}
}

// Add adds a rule and returns its Fault. Rules act in the order they were
// added: delays add up, the first Fail wins, stream faults stack. Add
// panics on a rule that cannot apply to its Op (Corrupt on a Stat, a
// negative At), since that is a bug in the test.
func (f *Faulty) Add(r Rule) *Fault {
	if err := r.check(); err != nil {
		panic("memstore: " + err.Error())
	}
	ft := &Fault{f: f, rule: r}
	f.mu.Lock()
	f.faults = append(f.faults, ft)
	f.mu.Unlock()
	return ft
}

// Reset removes every rule and zeroes the call counts.
func (f *Faulty) Reset() {
	f.mu.Lock()
	f.faults = nil
	f.calls = map[Op]int{}
	f.mu.Unlock()
}

// Calls returns how many calls of op went through f, faulty or not; OpAny
// counts all of them.
func (f *Faulty) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if op != OpAny {
		return f.calls[op]
	}
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (r Rule) check() error {
	if r.At < 0 || r.Skip < 0 || r.Times < 0 {
		return fmt.Errorf("rule %+v: At, Skip and Times must not be negative", r)
	}
	ok := false
	switch r.Kind {
	case Pass, Fail:
		ok = true
	case Stall:
		ok = r.Op != OpAny
	case Cut, Truncate:
		ok = r.Op == OpGet || r.Op == OpPut || r.Op == OpList
	case Corrupt, SmallReads:
		ok = r.Op == OpGet || r.Op == OpPut
	}
	if !ok {
		return fmt.Errorf("rule %+v: %v does not apply to op %q", r, r.Kind, r.Op)
	}
	return nil
}

// active counts a call and returns the faults that act on it, in order.
func (f *Faulty) active(op Op, key string) []*Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	var out []*Fault
	for _, ft := range f.faults {
		r := ft.rule
		if (r.Op != OpAny && r.Op != op) || !strings.HasPrefix(key, r.Key) {
			continue
		}
		ft.seen++
		if ft.seen > r.Skip && (r.Times == 0 || ft.seen <= r.Skip+r.Times) {
			ft.hits++
			out = append(out, ft)
		}
	}
	return out
}

// before applies the faults that act before a call: delays, Fail, and
// Stall when stall is true (for calls that have no stream).
func before(ctx context.Context, op Op, key string, faults []*Fault, stall bool) error {
	for _, ft := range faults {
		if d := ft.rule.Delay; d > 0 {
			if err := store.Sleep(ctx, d); err != nil {
				return fmt.Errorf("memstore: %s %s: during an injected delay: %w", op, key, err)
			}
		}
	}
	for _, ft := range faults {
		switch {
		case ft.rule.Kind == Fail:
			return ft.err(op, key, "failure")
		case ft.rule.Kind == Stall && stall:
			<-ctx.Done()
			return fmt.Errorf("memstore: %s %s: injected stall: %w", op, key, ctx.Err())
		}
	}
	return nil
}

func (ft *Fault) err(op Op, key, what string) error {
	if ft.rule.Err != nil {
		return ft.rule.Err
	}
	if ft.rule.Kind == Cut {
		what = fmt.Sprintf("cut after %d", ft.rule.At)
	}
	return fmt.Errorf("memstore: %s %s: injected %s: %w", op, key, what, ErrInjected)
}

// Unwrap returns the wrapped store.
func (f *Faulty) Unwrap() store.Store { return f.s }

// String returns the wrapped store's String.
func (f *Faulty) String() string { return f.s.String() }

// Connections returns the wrapped store's, or 1.
func (f *Faulty) Connections() int { return store.ConnectionsOf(f.s, 1) }

// Put applies the faults for key, then calls the wrapped Put with r
// wrapped by the stream faults.
func (f *Faulty) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	faults := f.active(OpPut, key)
	if err := before(ctx, OpPut, key, faults, false); err != nil {
		return err
	}
	if s := streamFaults(faults); len(s) > 0 {
		r = &faultStream{ctx: ctx, op: OpPut, key: key, r: r, faults: s, closed: make(chan struct{}), put: true}
	}
	return f.s.Put(ctx, key, r, size)
}

// Get applies the faults for key, then returns the wrapped Get's body
// wrapped by the stream faults.
func (f *Faulty) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	faults := f.active(OpGet, key)
	if err := before(ctx, OpGet, key, faults, false); err != nil {
		return nil, err
	}
	rc, err := f.s.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	if s := streamFaults(faults); len(s) > 0 {
		rc = &faultStream{ctx: ctx, op: OpGet, key: key, r: rc, c: rc, faults: s, off: off, closed: make(chan struct{})}
	}
	return rc, nil
}

// Stat applies the faults for key, then calls the wrapped Stat.
func (f *Faulty) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := before(ctx, OpStat, key, f.active(OpStat, key), true); err != nil {
		return store.Info{}, err
	}
	return f.s.Stat(ctx, key)
}

// Delete applies the faults for key, then calls the wrapped Delete.
func (f *Faulty) Delete(ctx context.Context, key string) error {
	if err := before(ctx, OpDelete, key, f.active(OpDelete, key), true); err != nil {
		return err
	}
	return f.s.Delete(ctx, key)
}

// Lock applies the faults for OpLock, then takes the wrapped store's lock
// with [store.Lock].
func (f *Faulty) Lock(ctx context.Context, owner string) (func(context.Context) error, error) {
	if err := before(ctx, OpLock, "", f.active(OpLock, ""), true); err != nil {
		return nil, err
	}
	return store.Lock(ctx, f.s, owner)
}

// List applies the faults for prefix, then calls the wrapped List, cutting,
// stalling or truncating it after a rule's At keys.
func (f *Faulty) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	faults := f.active(OpList, prefix)
	if err := before(ctx, OpList, prefix, faults, false); err != nil {
		return err
	}
	faults = streamFaults(faults)
	if len(faults) == 0 {
		return f.s.List(ctx, prefix, fn)
	}
	errTruncated := errors.New("truncated")
	var n int64
	var stop error
	err := f.s.List(ctx, prefix, func(info store.Info) error {
		for _, ft := range faults {
			if n < ft.rule.At {
				continue
			}
			switch ft.rule.Kind {
			case Cut:
				stop = ft.err(OpList, prefix, "")
			case Stall:
				<-ctx.Done()
				stop = fmt.Errorf("memstore: list %q: injected stall after %d keys: %w", prefix, n, ctx.Err())
			case Truncate:
				stop = errTruncated
			}
			return stop
		}
		n++
		return fn(info)
	})
	if errors.Is(stop, errTruncated) {
		return nil
	}
	if stop != nil {
		return stop
	}
	return err
}

// streamFaults returns the faults that act on a stream.
func streamFaults(faults []*Fault) []*Fault {
	var out []*Fault
	for _, ft := range faults {
		switch ft.rule.Kind {
		case Cut, Stall, Truncate, Corrupt, SmallReads:
			out = append(out, ft)
		}
	}
	return out
}

// faultStream applies stream faults to a Get's body or a Put's reader.
type faultStream struct {
	ctx    context.Context
	op     Op
	key    string
	r      io.Reader
	c      io.Closer // the Get's body, or nil
	faults []*Fault
	off    int64 // object offset of the stream's first byte
	pos    int64 // bytes delivered
	put    bool
	closed chan struct{}
	once   sync.Once
}

func (s *faultStream) Read(p []byte) (int, error) {
	for _, ft := range s.faults {
		r := ft.rule
		switch r.Kind {
		case Cut, Stall, Truncate:
			if s.pos < r.At {
				p = p[:min(int64(len(p)), r.At-s.pos)]
				continue
			}
			// A stream that ends right here ends normally: the fault lies
			// beyond it. The probed byte is lost, but the stream fails.
			if _, err := io.ReadFull(s.r, make([]byte, 1)); err != nil {
				return 0, err
			}
			return 0, s.stop(ft)
		case SmallReads:
			p = p[:min(int64(len(p)), max(r.At, 1))]
		}
	}
	n, err := s.r.Read(p)
	for _, ft := range s.faults {
		if at := ft.rule.At - s.off - s.pos; ft.rule.Kind == Corrupt && at >= 0 && at < int64(n) {
			p[at] ^= 0xff
		}
	}
	s.pos += int64(n)
	return n, err
}

// stop is what a stream does on reaching a Cut, Stall or Truncate.
func (s *faultStream) stop(ft *Fault) error {
	switch ft.rule.Kind {
	case Cut:
		return ft.err(s.op, s.key, "")
	case Stall:
		select {
		case <-s.ctx.Done():
			return fmt.Errorf("memstore: %s %s: injected stall after %d bytes: %w", s.op, s.key, s.pos, s.ctx.Err())
		case <-s.closed:
			return fmt.Errorf("memstore: %s %s: read after Close during an injected stall", s.op, s.key)
		}
	}
	if s.put {
		return io.EOF
	}
	return fmt.Errorf("memstore: get %s: injected truncation after %d bytes: %w (%w)", s.key, s.pos, io.ErrUnexpectedEOF, ErrInjected)
}

// Close closes the Get's body and wakes a stalled Read.
func (s *faultStream) Close() error {
	s.once.Do(func() { close(s.closed) })
	if s.c == nil {
		return nil
	}
	return s.c.Close()
}
