package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/seedship/seedship/store"
)

// Defaults for the zero values of [Options].
const (
	DefaultAttempts   = 6
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// Options tune a [Store]. The zero value means the defaults.
type Options struct {
	// Attempts is the number of tries of one operation, the first
	// included; zero means DefaultAttempts, 1 disables retrying. For the
	// reader Get returns, it bounds the consecutive failed resumptions that
	// deliver no byte.
	Attempts int
	// MinBackoff is the wait before the second attempt; each further wait
	// doubles, up to MaxBackoff. Each wait is drawn uniformly from
	// [d/2, d) ("equal jitter") so that parallel workers spread out.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// OnRetry, when not nil, is called before each wait with the operation
	// ("put", "get", "read", "stat", "list", "delete"), the key (the prefix
	// for list), the attempt that failed (1 for the first), its error and
	// the wait. It may be called from several goroutines at once.
	OnRetry func(op, key string, attempt int, err error, wait time.Duration)
}

func (o Options) withDefaults() Options {
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	return o
}

// Store retries the transient failures of the Store it wraps. It is safe for
// concurrent use when the wrapped Store is.
type Store struct {
	s    store.Store
	opts Options
}

var _ store.Store = (*Store)(nil)
var _ store.Connections = (*Store)(nil)

// New wraps s.
func New(s store.Store, opts Options) *Store {
	return &Store{s: s, opts: opts.withDefaults()}
}

// Unwrap returns the wrapped Store.
func (s *Store) Unwrap() store.Store { return s.s }

// String returns the wrapped Store's String.
func (s *Store) String() string { return s.s.String() }

// Connections returns the wrapped Store's preferred parallelism, or 1 when
// it does not say.
func (s *Store) Connections() int { return store.ConnectionsOf(s.s, 1) }

// Retryable reports whether another attempt may get past err: it is not nil,
// not a context's error, and matches none of [store.ErrPermanent],
// [store.ErrNoSpace] and [store.ErrNotExist].
func Retryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded),
		store.IsFinal(err),
		errors.Is(err, store.ErrNotExist):
		return false
	}
	return true
}

// backoff returns the wait after the given failed attempt (1-based).
func (s *Store) backoff(attempt int) time.Duration {
	d := s.opts.MinBackoff
	for i := 1; i < attempt && d < s.opts.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, s.opts.MaxBackoff)
	half := d / 2
	return half + rand.N(d-half+1)
}

// do runs fn until it succeeds, fails for good, or runs out of attempts.
// The error returned is fn's last one, noting the attempts when more than one
// was made, and the first one too when it differed.
func (s *Store) do(ctx context.Context, op, key string, attempts int, fn func() error) error {
	var first error
	for attempt := 1; ; attempt++ {
		err := fn()
		if first == nil {
			first = err
		}
		if !Retryable(err) || ctx.Err() != nil {
			if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				// Say that the caller gave up, whatever else went wrong.
				err = fmt.Errorf("%w (%w)", err, ctx.Err())
			}
			if err != nil && attempt > 1 {
				return &gaveUp{attempts: attempt, err: err, first: first}
			}
			return err
		}
		if attempt >= attempts {
			return &gaveUp{attempts: attempt, err: err, first: first}
		}
		wait := s.backoff(attempt)
		if s.opts.OnRetry != nil {
			s.opts.OnRetry(op, key, attempt, err, wait)
		}
		if serr := store.Sleep(ctx, wait); serr != nil {
			return &gaveUp{attempts: attempt, err: fmt.Errorf("%w (%w)", err, serr), first: first}
		}
	}
}

// gaveUp notes how many attempts an error took. It unwraps to the last
// error and, when it differed, the first.
type gaveUp struct {
	attempts int
	err      error
	first    error // or nil
}

func (e *gaveUp) Error() string {
	if e.first != nil && e.first.Error() != e.err.Error() {
		return fmt.Sprintf("%v (after %d attempts; the first failed with: %v)", e.err, e.attempts, e.first)
	}
	return fmt.Sprintf("%v (after %d attempts)", e.err, e.attempts)
}

func (e *gaveUp) Unwrap() []error {
	if e.first != nil && e.first != e.err { //nolint:errorlint // the same value, not a match
		return []error{e.err, e.first}
	}
	return []error{e.err}
}

// Put stores r under key. When r is an io.Seeker it is rewound to its
// position at the call before each new attempt; otherwise Put makes exactly
// one attempt, since the bytes read by a failed attempt are gone.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	seeker, ok := r.(io.Seeker)
	if !ok {
		return s.s.Put(ctx, key, r, size)
	}
	start, err := seeker.Seek(0, io.SeekCurrent)
	if err != nil {
		return s.s.Put(ctx, key, r, size)
	}
	first := true
	return s.do(ctx, "put", key, s.opts.Attempts, func() error {
		if !first {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("retry: rewinding the reader of %s: %w (%w)", key, err, store.ErrPermanent)
			}
		}
		first = false
		return s.s.Put(ctx, key, r, size)
	})
}

// Stat retries the wrapped Stat.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	var info store.Info
	err := s.do(ctx, "stat", key, s.opts.Attempts, func() error {
		var err error
		info, err = s.s.Stat(ctx, key)
		return err
	})
	return info, err
}

// Delete retries the wrapped Delete.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.do(ctx, "delete", key, s.opts.Attempts, func() error { return s.s.Delete(ctx, key) })
}

// List retries the wrapped List from the start, skipping keys that fn has
// already seen, so each key reaches fn once and in order. An error from fn
// is returned at once and never retried.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	var last string
	seen := false
	var fnErr error
	err := s.do(ctx, "list", prefix, s.opts.Attempts, func() error {
		err := s.s.List(ctx, prefix, func(info store.Info) error {
			if seen && info.Key <= last {
				return nil
			}
			if err := fn(info); err != nil {
				fnErr = err
				return err
			}
			last, seen = info.Key, true
			return nil
		})
		if fnErr != nil {
			return errFnStopped
		}
		return err
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// errFnStopped ends List's attempts when fn has returned an error.
var errFnStopped = fmt.Errorf("retry: list stopped by its callback: %w", store.ErrPermanent)

// Get opens key with retries, and returns a reader that resumes after a
// transient read failure with a ranged Get from the first byte it has not
// yet delivered.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	err := s.do(ctx, "get", key, s.opts.Attempts, func() error {
		var err error
		rc, err = s.s.Get(ctx, key, off, length)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &resumingReader{s: s, ctx: ctx, key: key, off: off, length: length, rc: rc}, nil
}

// resumingReader reads one Get's range, reopening it where it broke.
type resumingReader struct {
	s       *Store
	ctx     context.Context
	key     string
	off     int64 // start of the range
	length  int64 // its length, or < 0 for to the end
	done    int64 // bytes delivered
	rc      io.ReadCloser
	fails   int   // consecutive failures with no byte delivered in between
	readErr error // the latest failure of a body read, which started the resumption
	lastErr error // the latest transient failure, of a read or a reopen
	err     error // sticky
}

func (r *resumingReader) Read(p []byte) (int, error) {
	for r.err == nil {
		if r.rc == nil {
			if err := r.reopen(); err != nil {
				if !Retryable(err) || r.ctx.Err() != nil {
					r.err = err
					break
				}
				r.fail(err)
				continue
			}
		}
		n, err := r.rc.Read(p)
		r.done += int64(n)
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF:
			r.err = io.EOF
			return n, io.EOF
		case !Retryable(err) || r.ctx.Err() != nil:
			r.err = err
			return n, err
		}
		// Transient: drop this body; the next round reopens after a wait.
		r.rc.Close()
		r.rc = nil
		if n > 0 {
			r.fails = 0
		}
		r.readErr = err
		r.fail(err)
		if n > 0 {
			return n, nil
		}
	}
	return 0, r.err
}

// fail records a transient failure and gives up when it is one too many.
func (r *resumingReader) fail(err error) {
	r.fails++
	r.lastErr = err
	if r.fails >= r.s.opts.Attempts {
		if r.readErr != nil && r.readErr != err { //nolint:errorlint // the same value, not a match
			// Keep the read's failure visible (io.ErrUnexpectedEOF, say)
			// when reopening failed differently.
			err = errors.Join(r.readErr, err)
		}
		r.err = &gaveUp{attempts: r.fails, err: err}
	}
}

// reopen waits after a failure, then issues a Get for the rest of the range.
func (r *resumingReader) reopen() error {
	if r.fails > 0 {
		wait := r.s.backoff(r.fails)
		if r.s.opts.OnRetry != nil {
			r.s.opts.OnRetry("read", r.key, r.fails, r.lastErr, wait)
		}
		if err := store.Sleep(r.ctx, wait); err != nil {
			return errors.Join(r.lastErr, err)
		}
	}
	length := r.length
	if length >= 0 {
		length -= r.done
	}
	rc, err := r.s.s.Get(r.ctx, r.key, r.off+r.done, length)
	if err != nil {
		return err
	}
	r.rc = rc
	return nil
}

// Close closes the current body, if any. Reading after Close fails.
func (r *resumingReader) Close() error {
	if r.err == nil {
		r.err = errors.New("retry: read after Close")
	}
	if r.rc == nil {
		return nil
	}
	err := r.rc.Close()
	r.rc = nil
	return err
}
