package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrStalled is wrapped by the error of a transfer that made no progress
// for Config.StallTimeout: a response body that stopped delivering bytes,
// or a request body the connection stopped taking. It is transient:
// store/retry resumes a stalled Get from the byte it reached, and a Put's
// part is sent again.
var ErrStalled = errors.New("s3: transfer stalled")

// stallTransport aborts a request whose bytes stop moving for timeout.
// Every request gets its own context; a watchdog timer, armed only while
// the network (not the caller) is what the transfer waits for, cancels it
// when it fires:
//
//   - while the transport sends the request body: from the moment our
//     body's Read returns until the transport asks for more;
//   - while the caller reads the response body: during each Read.
//
// The wait for the response headers is bounded by the transport's
// ResponseHeaderTimeout instead, since a server may take a while to answer
// a completed upload.
//
// It also notes the server's clock from the Date header of every response,
// for the lease of the writer lock (see [Store.Lock]).
type stallTransport struct {
	base    http.RoundTripper
	timeout time.Duration // <= 0: no stall check
	clock   *serverClock
}

func (t *stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.timeout <= 0 {
		resp, err := t.base.RoundTrip(req)
		if err == nil {
			t.clock.observe(resp.Header)
		}
		return resp, err
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watchdog{timeout: t.timeout, cancel: cancel}
	req = req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = &watchedRequestBody{ReadCloser: req.Body, w: w}
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		w.disarm()
		cancel(nil)
		if w.hasFired() {
			return nil, w.err("sending the request")
		}
		return nil, err
	}
	w.disarm()
	t.clock.observe(resp.Header)
	resp.Body = &watchedResponseBody{body: resp.Body, w: w, cancel: cancel}
	return resp, nil
}

// serverClock is the offset of the server's clock from ours, as its Date
// headers tell (to the second). Leases are judged on the server's clock,
// which also stamps LastModified, so that a skewed local clock neither
// steals a live lock nor keeps a dead one.
type serverClock struct {
	offset atomic.Int64 // server minus local, in nanoseconds
}

func (c *serverClock) observe(h http.Header) {
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		c.offset.Store(int64(time.Until(d)))
	}
}

// now is the server's time now, as well as we know it.
func (c *serverClock) now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// watchdog cancels a request when armed for longer than timeout.
type watchdog struct {
	timeout time.Duration
	cancel  context.CancelCauseFunc

	mu    sync.Mutex
	timer *time.Timer
	fired bool
}

func (w *watchdog) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fired {
		return
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.timeout, w.fire)
		return
	}
	w.timer.Reset(w.timeout)
}

func (w *watchdog) disarm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
	}
}

func (w *watchdog) fire() {
	w.mu.Lock()
	w.fired = true
	w.mu.Unlock()
	w.cancel(ErrStalled)
}

func (w *watchdog) hasFired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fired
}

// err is the error of a stalled transfer, for what it was doing.
func (w *watchdog) err(doing string) error {
	return fmt.Errorf("no progress for %v while %s: %w", w.timeout, doing, ErrStalled)
}

// watchedRequestBody arms the watchdog whenever the transport holds bytes
// it has yet to send, that is between our Reads.
type watchedRequestBody struct {
	io.ReadCloser
	w *watchdog
}

func (b *watchedRequestBody) Read(p []byte) (int, error) {
	b.w.disarm()
	n, err := b.ReadCloser.Read(p)
	if err == nil {
		b.w.arm()
	}
	return n, err
}

// watchedResponseBody arms the watchdog during each Read, and reports a
// stall as ErrStalled instead of the context's cancellation.
type watchedResponseBody struct {
	body   io.ReadCloser
	w      *watchdog
	cancel context.CancelCauseFunc
	read   int64
}

func (b *watchedResponseBody) Read(p []byte) (int, error) {
	b.w.arm()
	n, err := b.body.Read(p)
	b.w.disarm()
	b.read += int64(n)
	if err != nil && b.w.hasFired() {
		return n, b.w.err(fmt.Sprintf("reading the response body (after %d bytes)", b.read))
	}
	return n, err
}

func (b *watchedResponseBody) Close() error {
	err := b.body.Close()
	b.w.disarm()
	b.cancel(nil)
	return err
}
