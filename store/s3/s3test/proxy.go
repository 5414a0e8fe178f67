package s3test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FaultKind says what a [Fault] does to the request it applies to.
type FaultKind int

const (
	// Status answers with Fault.Code and an S3 XML error body, without
	// forwarding the request.
	Status FaultKind = iota + 1
	// DropRequest forwards Fault.N bytes of the request body, then closes
	// the client's connection without an answer. The server sees a request
	// whose body ends early.
	DropRequest
	// DropResponse forwards the request and the response headers and
	// Fault.N bytes of the response body, then closes the connection.
	DropResponse
	// Stall waits Fault.Delay (or until the client gives up or the proxy
	// closes) before forwarding the request normally.
	Stall
	// CorruptRequest flips the bits of byte Fault.N of the request body (as
	// sent on the wire) and forwards it.
	CorruptRequest
	// StallResponse forwards the request, the response headers and Fault.N
	// bytes of the response body, then sends nothing for Fault.Delay (or
	// until the client gives up or the proxy closes) before sending the
	// rest: a server or link that stops mid-body.
	StallResponse
	// StallRequest forwards Fault.N bytes of the request body, then stops
	// reading it for Fault.Delay (or until the client gives up or the
	// proxy closes) before forwarding the rest: a server that stops taking
	// an upload.
	StallRequest
)

// Fault is one programmed failure. It applies to the next Times requests
// (default 1) that match Method and Path, in arrival order; faults that match
// the same request are used first-added first.
type Fault struct {
	Kind   FaultKind
	Method string // match only this HTTP method ("GET", "PUT", ...); "" matches any
	Path   string // match only URL paths containing this string; "" matches any
	// Query matches only requests with this query parameter, such as
	// "partNumber" (the parts of a multipart upload) or "list-type", or with
	// this parameter and value, such as "partNumber=2"; "" matches any.
	Query string
	Times int           // how many matching requests to affect; 0 means 1
	Code  int           // Status: the HTTP status to answer with (e.g. 503)
	N     int64         // DropRequest, DropResponse, StallResponse, StallRequest: bytes to let through; CorruptRequest: offset
	Delay time.Duration // Stall, StallResponse, StallRequest: how long to wait
}

func (f *Fault) matches(r *http.Request) bool {
	if f.Method != "" && f.Method != r.Method {
		return false
	}
	if f.Path != "" && !strings.Contains(r.URL.Path, f.Path) {
		return false
	}
	if f.Query != "" {
		k, v, hasValue := strings.Cut(f.Query, "=")
		q := r.URL.Query()
		if !q.Has(k) || hasValue && q.Get(k) != v {
			return false
		}
	}
	return true
}

// Request is one request the proxy saw, and the fault it applied.
type Request struct {
	Method string
	Path   string
	Query  string
	Range  string    // the Range header, if any
	Fault  FaultKind // 0 when none
}

// Proxy is an HTTP reverse proxy on 127.0.0.1 that forwards to one target
// and applies programmed faults. It is deterministic: faults are counted,
// not random. It keeps the client's Host header, so S3 signatures made for
// the proxy's address verify at the target.
type Proxy struct {
	// URL is the proxy's endpoint, http://127.0.0.1:port.
	URL string

	target *url.URL
	srv    *httptest.Server
	tr     *http.Transport
	closed chan struct{}

	mu     sync.Mutex
	faults []*Fault
	log    []Request
}

// NewProxy starts a proxy to target (an http:// URL) and registers its Close
// with t.Cleanup.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		t.Fatalf("s3test: bad proxy target %q: %v", target, err)
	}
	p := &Proxy{
		target: u,
		tr:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
		closed: make(chan struct{}),
	}
	p.srv = httptest.NewServer(p)
	p.URL = p.srv.URL
	t.Cleanup(p.Close)
	return p
}

// Close stops the proxy, ending stalls early.
func (p *Proxy) Close() {
	select {
	case <-p.closed:
		return
	default:
	}
	close(p.closed)
	p.srv.CloseClientConnections()
	p.srv.Close()
	p.tr.CloseIdleConnections()
}

// Host returns the proxy's host:port.
func (p *Proxy) Host() string { return strings.TrimPrefix(p.URL, "http://") }

// Inject adds a fault.
func (p *Proxy) Inject(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, &f)
}

// FailNext answers the next n requests with method (any when "") with
// HTTP status code.
func (p *Proxy) FailNext(method string, n, code int) {
	p.Inject(Fault{Kind: Status, Method: method, Times: n, Code: code})
}

// Pending returns how many fault applications are still waiting for a
// matching request.
func (p *Proxy) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.faults {
		n += f.Times
	}
	return n
}

// Requests returns the requests seen so far.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.log...)
}

// Reset drops the pending faults and the request log.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults, p.log = nil, nil
}

// take returns the first fault matching r, consuming one application.
func (p *Proxy) take(r *http.Request) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	var got *Fault
	for i, f := range p.faults {
		if f.matches(r) {
			c := *f
			got = &c
			if f.Times--; f.Times == 0 {
				p.faults = append(p.faults[:i], p.faults[i+1:]...)
			}
			break
		}
	}
	req := Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Range: r.Header.Get("Range")}
	if got != nil {
		req.Fault = got.Kind
	}
	p.log = append(p.log, req)
	return got
}

// ServeHTTP forwards r to the target, applying the first pending fault that
// matches it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f := p.take(r)
	if f == nil {
		p.forward(w, r, nil)
		return
	}
	switch f.Kind {
	case Status:
		_, _ = io.Copy(io.Discard, r.Body)
		writeS3Error(w, f.Code)
	case Stall:
		if !stall(f.Delay, r.Context().Done(), p.closed) {
			return
		}
		p.forward(w, r, nil)
	default:
		p.forward(w, r, f)
	}
}

// forward sends r to the target and copies the answer back, applying f.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, f *Fault) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = p.target.Scheme
	out.URL.Host = p.target.Host
	out.Host = r.Host // the signature covers it
	for _, h := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer", "Upgrade"} {
		out.Header.Del(h)
	}
	if r.ContentLength == 0 {
		out.Body = nil
	}
	var dropped *dropReader
	if f != nil && out.Body != nil {
		switch f.Kind {
		case DropRequest:
			dropped = &dropReader{r: r.Body, n: f.N}
			out.Body = io.NopCloser(dropped)
		case CorruptRequest:
			out.Body = io.NopCloser(&corruptReader{r: r.Body, at: f.N})
		case StallRequest:
			out.Body = io.NopCloser(&stallReader{r: r.Body, n: f.N, delay: f.Delay, done: r.Context().Done(), closed: p.closed})
		}
	}
	resp, err := p.tr.RoundTrip(out)
	if dropped != nil && dropped.hit.Load() {
		if err == nil {
			resp.Body.Close()
		}
		panic(http.ErrAbortHandler) // close the client's connection, no answer
	}
	if err != nil {
		writeS3Error(w, http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	if f != nil && f.Kind == StallResponse {
		sendFirst(w, resp.Body, f.N)
		if !stall(f.Delay, r.Context().Done(), p.closed) {
			return
		}
	}
	if f != nil && f.Kind == DropResponse {
		sendFirst(w, resp.Body, f.N)
		panic(http.ErrAbortHandler) // cut the body short
	}
	_, _ = io.Copy(w, resp.Body)
}

// writeS3Error answers with code and an S3 error document.
func writeS3Error(w http.ResponseWriter, code int) {
	s3code := map[int]string{
		http.StatusInternalServerError: "InternalError",
		http.StatusServiceUnavailable:  "ServiceUnavailable",
		http.StatusBadGateway:          "BadGateway",
		http.StatusForbidden:           "AccessDenied",
		http.StatusNotFound:            "NoSuchKey",
	}[code]
	if s3code == "" {
		s3code = strings.ReplaceAll(http.StatusText(code), " ", "")
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(code)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>%s</Code><Message>injected by s3test.Proxy</Message><RequestId>s3test</RequestId></Error>`, s3code)
}

// dropReader passes n bytes, then fails.
type dropReader struct {
	r   io.Reader
	n   int64
	hit atomic.Bool // read after the transport's writer goroutine is done
}

func (d *dropReader) Read(b []byte) (int, error) {
	if d.n <= 0 {
		d.hit.Store(true)
		return 0, io.ErrUnexpectedEOF
	}
	if int64(len(b)) > d.n {
		b = b[:d.n]
	}
	n, err := d.r.Read(b)
	d.n -= int64(n)
	return n, err
}

// corruptReader flips byte at of the stream.
type corruptReader struct {
	r   io.Reader
	at  int64
	off int64
}

func (c *corruptReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if i := c.at - c.off; i >= 0 && i < int64(n) {
		b[i] ^= 0xff
	}
	c.off += int64(n)
	return n, err
}

// stall blocks for d, or until done (the request's context) or closed (the
// proxy's) is closed; it reports whether the whole of d passed.
func stall(d time.Duration, done, closed <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	case <-closed:
		return false
	}
}

// sendFirst sends the first n bytes of body to the client at once.
func sendFirst(w http.ResponseWriter, body io.Reader, n int64) {
	_, _ = io.CopyN(w, body, n)
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
}

// stallReader passes n bytes, then blocks for delay (or until done or
// closed) before passing the rest.
type stallReader struct {
	r       io.Reader
	n       int64
	delay   time.Duration
	done    <-chan struct{}
	closed  <-chan struct{}
	stalled bool
}

func (s *stallReader) Read(b []byte) (int, error) {
	if s.n <= 0 && !s.stalled {
		s.stalled = true
		if !stall(s.delay, s.done, s.closed) {
			return 0, io.ErrUnexpectedEOF
		}
	}
	if !s.stalled && int64(len(b)) > s.n {
		b = b[:s.n]
	}
	n, err := s.r.Read(b)
	s.n -= int64(n)
	return n, err
}
