package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seedship/seedship/store"
)

// chunk is the most bytes one Read passes before waiting, so that a large
// buffer does not turn into one long sleep and one burst.
const chunk = 64 << 10

// Limiter is a token bucket of bytes. It is safe for concurrent use; all the
// readers sharing it share its rate.
type Limiter struct {
	rate  float64 // bytes per second
	burst float64 // most tokens that can accrue

	mu     sync.Mutex
	tokens float64
	last   time.Time
	now    func() time.Time
}

// NewLimiter returns a Limiter of bytesPerSec, with a burst of a tenth of a
// second's worth (at least 64 KiB). It returns nil, meaning no limit, when
// bytesPerSec <= 0; a nil *Limiter is valid and never waits.
func NewLimiter(bytesPerSec int64) *Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	rate := float64(bytesPerSec)
	l := &Limiter{rate: rate, burst: max(rate/10, chunk), now: time.Now}
	l.tokens = l.burst
	l.last = l.now()
	return l
}

// Rate returns the limit in bytes per second, 0 for a nil Limiter.
func (l *Limiter) Rate() int64 {
	if l == nil {
		return 0
	}
	return int64(l.rate)
}

// WaitN takes n tokens, waiting until they have accrued or ctx is done. On
// ctx's end the tokens are given back and ctx's error returned.
func (l *Limiter) WaitN(ctx context.Context, n int) error {
	if l == nil || n <= 0 {
		return nil
	}
	l.mu.Lock()
	now := l.now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	var wait time.Duration
	if l.tokens < 0 {
		wait = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	if wait <= 0 {
		return ctx.Err()
	}
	if err := store.Sleep(ctx, wait); err != nil {
		l.mu.Lock()
		l.tokens += float64(n) // not spent: give them back
		l.mu.Unlock()
		return err
	}
	return nil
}

// Reader returns r limited by l. The result keeps r's Seek (so that
// store/retry can rewind it) and Close, when r has them. A nil l returns r.
func (l *Limiter) Reader(ctx context.Context, r io.Reader) io.Reader {
	if l == nil {
		return r
	}
	lr := &reader{ctx: ctx, r: r, l: l}
	_, seek := r.(io.Seeker)
	_, closer := r.(io.Closer)
	switch {
	case seek && closer:
		return struct {
			*reader
			io.Seeker
			io.Closer
		}{lr, r.(io.Seeker), r.(io.Closer)}
	case seek:
		return struct {
			*reader
			io.Seeker
		}{lr, r.(io.Seeker)}
	case closer:
		return struct {
			*reader
			io.Closer
		}{lr, r.(io.Closer)}
	}
	return lr
}

type reader struct {
	ctx context.Context
	r   io.Reader
	l   *Limiter
}

func (r *reader) Read(p []byte) (int, error) {
	if len(p) > chunk {
		p = p[:chunk]
	}
	n, err := r.r.Read(p)
	if werr := r.l.WaitN(r.ctx, n); werr != nil && err == nil {
		err = werr
	}
	return n, err
}

// Store limits the bodies of another Store's Put and Get.
type Store struct {
	s        store.Store
	put, get *Limiter
}

var _ store.Store = (*Store)(nil)
var _ store.Connections = (*Store)(nil)

// New wraps s so that Put bodies are read no faster than put allows and Get
// bodies no faster than get allows. Either may be nil (no limit), and both
// may be the same Limiter to cap the sum.
func New(s store.Store, put, get *Limiter) *Store {
	return &Store{s: s, put: put, get: get}
}

// Unwrap returns the wrapped Store.
func (s *Store) Unwrap() store.Store { return s.s }

// String returns the wrapped Store's String.
func (s *Store) String() string { return s.s.String() }

// Connections returns the wrapped Store's preferred parallelism, or 1 when
// it does not say.
func (s *Store) Connections() int { return store.ConnectionsOf(s.s, 1) }

// Put stores r, read through the upload limiter.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.s.Put(ctx, key, s.put.Reader(ctx, r), size)
}

// Get returns the wrapped Get's reader, read through the download limiter.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	rc, err := s.s.Get(ctx, key, off, length)
	if err != nil || s.get == nil {
		return rc, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&reader{ctx: ctx, r: rc, l: s.get}, rc}, nil
}

// Stat is not limited.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	return s.s.Stat(ctx, key)
}

// List is not limited.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	return s.s.List(ctx, prefix, fn)
}

// Delete is not limited.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.s.Delete(ctx, key)
}

// units maps a unit, lower-cased, to its multiplier. One-letter prefixes
// and the IEC names are binary; SI names with a B are decimal.
var units = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// ErrInvalidRate is wrapped by the errors of [ParseRate].
var ErrInvalidRate = errors.New("ratelimit: invalid rate")

// ParseRate parses a rate in bytes per second: a non-negative number, an
// optional unit and an optional "/s", such as "50MiB/s", "10M", "1.5GB/s",
// "800k" or "0". Units are case-insensitive: K, M, G, T and KiB, MiB, GiB,
// TiB are powers of 1024; KB, MB, GB, TB powers of 1000; B or none is bytes.
// "0", "" and "off" mean no limit and return 0. Bits are not accepted, and a
// lower-case b after a prefix ("Mb", "kib") is refused as ambiguous.
func ParseRate(s string) (int64, error) {
	in := strings.TrimSpace(s)
	switch strings.ToLower(in) {
	case "", "off", "none":
		return 0, nil
	}
	body := in
	if len(body) >= 2 && strings.EqualFold(body[len(body)-2:], "/s") {
		body = body[:len(body)-2]
	}
	i := strings.IndexFunc(body, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	num, unit := body, ""
	if i >= 0 {
		num, unit = body[:i], strings.TrimSpace(body[i:])
	}
	// "Mb", "kb", "Mib": a lower-case b after a prefix reads as bits.
	if len(unit) >= 2 && strings.HasSuffix(unit, "b") {
		return 0, fmt.Errorf("%w %q: %q may mean bits; write bytes with a capital B (MB, MiB)", ErrInvalidRate, in, unit)
	}
	unit = strings.ToLower(unit)
	mult, ok := units[unit]
	if !ok {
		return 0, fmt.Errorf("%w %q: unknown unit %q (use B, KiB, MiB, GiB, K, M, G, KB, MB or GB, optionally with /s)", ErrInvalidRate, in, unit)
	}
	if num == "" {
		return 0, fmt.Errorf("%w %q: no number", ErrInvalidRate, in)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %q: %v", ErrInvalidRate, in, err)
	}
	v *= mult
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("%w %q: too large", ErrInvalidRate, in)
	}
	r := int64(math.Round(v))
	if v > 0 && r == 0 {
		return 0, fmt.Errorf("%w %q: less than one byte per second", ErrInvalidRate, in)
	}
	return r, nil
}
