package retry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/store/retry"
	"github.com/seedship/seedship/store/storetest"
)

var fast = retry.Options{MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}

// errFlaky is the transient failure flaky injects.
var errFlaky = fmt.Errorf("flaky: %w", syscall.ECONNRESET)

// flaky wraps a Store and fails calls transiently on demand: the next
// fail[op] calls of op fail, and each reader Get returns is cut once after
// cutAfter bytes while cuts > 0. List fails after listCut keys while
// listFails > 0.
type flaky struct {
	store.Store
	mu        sync.Mutex
	fail      map[string]int
	calls     map[string]int
	cutAfter  int64
	cuts      int
	listCut   int
	listFails int
}

// Unwrap lets store.Lock reach the directory's lock through the test
// wrappers, as through retry.Store itself.
func (f *flaky) Unwrap() store.Store { return f.Store }

func newFlaky(t *testing.T) *flaky {
	s, err := dir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &flaky{Store: s, fail: map[string]int{}, calls: map[string]int{}}
}

func (f *flaky) take(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.fail[op] > 0 {
		f.fail[op]--
		return errFlaky
	}
	return nil
}

// Connections passes the wrapped store's through.
func (f *flaky) Connections() int { return store.ConnectionsOf(f.Store, 0) }

func (f *flaky) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *flaky) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := f.take("put"); err != nil {
		_, _ = io.CopyN(io.Discard, r, 10) // consume some, as a failed upload does
		return err
	}
	return f.Store.Put(ctx, key, r, size)
}

func (f *flaky) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := f.take("get"); err != nil {
		return nil, err
	}
	rc, err := f.Store.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cuts > 0 {
		f.cuts--
		return &cutReader{ReadCloser: rc, n: f.cutAfter}, nil
	}
	return rc, nil
}

func (f *flaky) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := f.take("stat"); err != nil {
		return store.Info{}, err
	}
	return f.Store.Stat(ctx, key)
}

func (f *flaky) Delete(ctx context.Context, key string) error {
	if err := f.take("delete"); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

func (f *flaky) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if err := f.take("list"); err != nil {
		return err
	}
	f.mu.Lock()
	cut := -1
	if f.listFails > 0 {
		f.listFails--
		cut = f.listCut
	}
	f.mu.Unlock()
	n := 0
	return f.Store.List(ctx, prefix, func(i store.Info) error {
		if n == cut {
			return errFlaky
		}
		n++
		return fn(i)
	})
}

// cutReader fails with io.ErrUnexpectedEOF after n bytes.
type cutReader struct {
	io.ReadCloser
	n int64
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, fmt.Errorf("cut: %w", io.ErrUnexpectedEOF)
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.ReadCloser.Read(p)
	c.n -= int64(n)
	return n, err
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return retry.New(newFlaky(t), fast)
	})
}

// TestConformanceFlaky runs the suite while the first Stat, Get, List and
// Delete with each set of arguments fails. (Readers are not cut here:
// OverwriteIsAtomic overwrites objects while reading them, which resumption
// does not support.)
func TestConformanceFlaky(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return retry.New(&alternating{flaky: newFlaky(t)}, fast)
	})
}

// alternating fails the first call of Stat, Get, List and Delete with each
// set of arguments. (Failing every other call would not do: two goroutines
// calling alike could take turns and one see only failures.)
type alternating struct {
	*flaky
	mu   sync.Mutex
	seen map[string]bool
}

func (a *alternating) odd(op string, args ...any) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen == nil {
		a.seen = map[string]bool{}
	}
	k := fmt.Sprint(op, args)
	first := !a.seen[k]
	a.seen[k] = true
	return first
}

func (a *alternating) Stat(ctx context.Context, key string) (store.Info, error) {
	if a.odd("stat", key) {
		return store.Info{}, errFlaky
	}
	return a.flaky.Store.Stat(ctx, key)
}

func (a *alternating) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if a.odd("get", key, off, length) {
		return nil, errFlaky
	}
	return a.flaky.Store.Get(ctx, key, off, length)
}

func (a *alternating) Delete(ctx context.Context, key string) error {
	if a.odd("delete", key) {
		return errFlaky
	}
	return a.flaky.Store.Delete(ctx, key)
}

func (a *alternating) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if !a.odd("list", prefix) {
		return a.flaky.Store.List(ctx, prefix, fn)
	}
	n := 0
	return a.flaky.Store.List(ctx, prefix, func(i store.Info) error {
		if n == 1 {
			return errFlaky // fail after one key
		}
		n++
		return fn(i)
	})
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errFlaky, true},
		{io.ErrUnexpectedEOF, true},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{fmt.Errorf("x: %w", store.ErrPermanent), false},
		{fmt.Errorf("x: %w", store.ErrNotExist), false},
		{errors.Join(io.ErrUnexpectedEOF, store.ErrPermanent), false},
		{fmt.Errorf("x: %w", store.ErrNoSpace), false},
	} {
		if got := retry.Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestAttemptsAndPermanent(t *testing.T) {
	f := newFlaky(t)
	var calls []int
	s := retry.New(f, retry.Options{Attempts: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		OnRetry: func(op, key string, attempt int, err error, wait time.Duration) { calls = append(calls, attempt) }})

	f.fail["stat"] = 10
	_, err := s.Stat(t.Context(), "k")
	if !errors.Is(err, errFlaky) || f.count("stat") != 3 || !slices.Equal(calls, []int{1, 2}) {
		t.Errorf("Stat through 10 failures: %v after %d calls, OnRetry %v; want errFlaky after 3, [1 2]", err, f.count("stat"), calls)
	}

	// A missing key is not retried.
	f.fail["stat"] = 0
	before := f.count("stat")
	if _, err := s.Stat(t.Context(), "missing"); !errors.Is(err, store.ErrNotExist) || f.count("stat")-before != 1 {
		t.Errorf("Stat of a missing key: %v after %d calls; want ErrNotExist after 1", err, f.count("stat")-before)
	}

	// A done ctx stops the waiting.
	f.fail["delete"] = 100
	ctx, cancel := context.WithCancel(t.Context())
	slow := retry.New(f, retry.Options{MinBackoff: time.Hour})
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	start := time.Now()
	err = slow.Delete(ctx, "k")
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Errorf("Delete cancelled while waiting: %v after %v", err, time.Since(start))
	}
}

func TestPutSeeker(t *testing.T) {
	f := newFlaky(t)
	s := retry.New(f, fast)
	b := bytes.Repeat([]byte("0123456789"), 1000)

	// A ReadSeeker is rewound to where it stood, not to 0.
	r := bytes.NewReader(append([]byte("skip"), b...))
	if _, err := r.Seek(4, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	f.fail["put"] = 2
	if err := s.Put(t.Context(), "k", r, int64(len(b))); err != nil {
		t.Fatalf("Put of a ReadSeeker through 2 failures: %v", err)
	}
	if f.count("put") != 3 {
		t.Errorf("%d Put calls; want 3", f.count("put"))
	}
	got := get(t, s, "k", 0, -1)
	if !bytes.Equal(got, b) {
		t.Fatal("stored bytes differ")
	}

	// A plain reader gets one attempt.
	f.fail["put"] = 1
	before := f.count("put")
	err := s.Put(t.Context(), "k2", struct{ io.Reader }{bytes.NewReader(b)}, int64(len(b)))
	if !errors.Is(err, errFlaky) || f.count("put")-before != 1 {
		t.Errorf("Put of a plain reader: %v after %d calls; want errFlaky after 1", err, f.count("put")-before)
	}
}

func get(t *testing.T, s store.Store, key string, off, length int64) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, off, length)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return b
}

func TestGetResumes(t *testing.T) {
	f := newFlaky(t)
	s := retry.New(f, fast)
	b := make([]byte, 100_000)
	for i := range b {
		b[i] = byte(i * 31)
	}
	if err := f.Store.Put(t.Context(), "obj", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ off, length int64 }{{0, -1}, {10, 50_000}, {99_999, 1}, {500, -1}} {
		f.cutAfter, f.cuts = 3000, 4
		f.fail["get"] = 1
		end := int64(len(b))
		if tc.length >= 0 {
			end = tc.off + tc.length
		}
		if got := get(t, s, "obj", tc.off, tc.length); !bytes.Equal(got, b[tc.off:end]) {
			t.Errorf("Get(%d, %d) through cuts: %d bytes differ from the object's %d", tc.off, tc.length, len(got), end-tc.off)
		}
	}

	// Cuts that deliver nothing count as failures and end in giving up.
	f.cutAfter, f.cuts = 0, 100
	rc, err := s.Get(t.Context(), "obj", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("reading through endless cuts: %v; want io.ErrUnexpectedEOF", err)
	}
	f.cuts = 0
}

func TestListResumes(t *testing.T) {
	f := newFlaky(t)
	s := retry.New(f, fast)
	var want []string
	for i := range 10 {
		k := fmt.Sprintf("k%02d", i)
		want = append(want, k)
		if err := f.Store.Put(t.Context(), k, bytes.NewReader(nil), 0); err != nil {
			t.Fatal(err)
		}
	}
	f.listCut, f.listFails = 4, 2
	f.fail["list"] = 1
	var got []string
	if err := s.List(t.Context(), "", func(i store.Info) error { got = append(got, i.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("List through failures = %q; want each key once, %q", got, want)
	}
	// fn's error is returned at once.
	stop := errors.New("stop")
	calls := 0
	f.listCut, f.listFails = 4, 1
	err := s.List(t.Context(), "", func(store.Info) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with fn failing: %v after %d calls", err, calls)
	}
}

func TestPassThrough(t *testing.T) {
	f := newFlaky(t)
	s := retry.New(f, retry.Options{})
	if s.String() != f.String() || s.Unwrap() != store.Store(f) {
		t.Error("String or Unwrap does not pass through")
	}
	if got := store.ConnectionsOf(s, 99); got != store.ConnectionsOf(f.Store, 99) {
		t.Errorf("ConnectionsOf = %d, want the wrapped store's", got)
	}
}
