package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/retry"
	"github.com/seedship/seedship/store/s3"
	"github.com/seedship/seedship/store/s3/s3test"
)

// faulty is an s3.Store reached through a fault-injecting proxy, and the
// same store wrapped in store/retry with short waits.
type faulty struct {
	srv   *s3test.Service
	proxy *s3test.Proxy
	cfg   s3.Config
	raw   *s3.Store
	retry *retry.Store
	waits int // OnRetry calls
}

func newFaulty(t *testing.T) *faulty {
	t.Helper()
	srv := s3test.Server(t)
	f := &faulty{srv: srv, proxy: s3test.NewProxy(t, srv.Endpoint)}
	f.cfg = config(t, srv, f.proxy.URL, "img")
	f.raw = open(t, f.cfg)
	f.retry = retry.New(f.raw, retry.Options{
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 20 * time.Millisecond,
		OnRetry: func(op, key string, attempt int, err error, wait time.Duration) {
			f.waits++
			t.Logf("retry %s %s after attempt %d: %v", op, key, attempt, err)
		},
	})
	f.proxy.Reset()
	return f
}

// count returns how many requests with method (and query parameter q, when
// not "") the proxy saw.
func (f *faulty) count(method, q string) int {
	n := 0
	for _, r := range f.proxy.Requests() {
		if r.Method == method && (q == "" || strings.Contains(r.Query, q)) {
			n++
		}
	}
	return n
}

func mustTransient(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if !retry.Retryable(err) {
		t.Fatalf("%s: %v; want a transient error", what, err)
	}
}

func TestRetry503ThenSuccess(t *testing.T) {
	f := newFaulty(t)
	b := data(300<<10, 1)
	if err := f.raw.Put(t.Context(), "data/x", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}

	f.proxy.FailNext("GET", 1, 503)
	_, err := f.raw.Get(t.Context(), "data/x", 0, -1)
	mustTransient(t, "raw Get through a 503", err)

	f.proxy.FailNext("GET", 2, 503)
	if got := readAll(t, f.retry, "data/x", 0, -1); !bytes.Equal(got, b) {
		t.Fatal("Get after 503s returned different bytes")
	}
	f.proxy.FailNext("HEAD", 3, 500)
	if info, err := f.retry.Stat(t.Context(), "data/x"); err != nil || info.Size != int64(len(b)) {
		t.Fatalf("Stat after 500s = %+v, %v", info, err)
	}
	f.proxy.Inject(s3test.Fault{Kind: s3test.Status, Method: "GET", Query: "list-type", Code: 503, Times: 2})
	var keys []string
	if err := f.retry.List(t.Context(), "", func(i store.Info) error { keys = append(keys, i.Key); return nil }); err != nil || len(keys) != 1 || keys[0] != "data/x" {
		t.Fatalf("List after 503s = %q, %v", keys, err)
	}
	f.proxy.FailNext("DELETE", 1, 503)
	if err := f.retry.Delete(t.Context(), "data/x"); err != nil {
		t.Fatalf("Delete after a 503: %v", err)
	}
	if n := f.proxy.Pending(); n != 0 {
		t.Errorf("%d injected faults unused", n)
	}
	if f.waits != 8 {
		t.Errorf("%d retries; want 8", f.waits)
	}

	// Too many: gives up after the default 6 attempts with the last error.
	f.proxy.FailNext("HEAD", 10, 503)
	before := f.count("HEAD", "")
	_, err = f.retry.Stat(t.Context(), "x")
	mustTransient(t, "Stat through 10 503s", err)
	if n := f.count("HEAD", "") - before; n != retry.DefaultAttempts {
		t.Errorf("Stat made %d attempts; want %d", n, retry.DefaultAttempts)
	}

	// Permanent errors are not retried.
	f.proxy.Reset()
	f.proxy.FailNext("GET", 3, 403)
	_, err = f.retry.Get(t.Context(), "data/x", 0, -1)
	if !errors.Is(err, s3.ErrAccessDenied) || f.count("GET", "") != 1 {
		t.Fatalf("Get through a 403: %v after %d requests; want ErrAccessDenied after 1", err, f.count("GET", ""))
	}
}

func TestRetryGetResumes(t *testing.T) {
	f := newFaulty(t)
	b := data(3<<20, 2)
	if err := f.raw.Put(t.Context(), "seg", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}

	// Without retry, the cut shows as a transient io.ErrUnexpectedEOF.
	f.proxy.Inject(s3test.Fault{Kind: s3test.DropResponse, Method: "GET", N: 1 << 20})
	rc, err := f.raw.Get(t.Context(), "seg", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if !errors.Is(err, io.ErrUnexpectedEOF) || n != 1<<20 {
		t.Fatalf("raw Get cut after 1 MiB: %d bytes, %v; want 1 MiB and io.ErrUnexpectedEOF", n, err)
	}
	mustTransient(t, "raw Get cut short", err)

	// With retry: two cuts, then the rest; every byte right.
	for _, tc := range []struct{ off, length int64 }{{0, -1}, {100, 2 << 20}, {1000, -1}} {
		f.proxy.Reset()
		f.proxy.Inject(s3test.Fault{Kind: s3test.DropResponse, Method: "GET", N: 700 << 10})
		f.proxy.Inject(s3test.Fault{Kind: s3test.DropResponse, Method: "GET", N: 5})
		end := int64(len(b))
		if tc.length >= 0 {
			end = tc.off + tc.length
		}
		if got := readAll(t, f.retry, "seg", tc.off, tc.length); !bytes.Equal(got, b[tc.off:end]) {
			t.Fatalf("Get(%d, %d) resumed after cuts returned different bytes (%d, want %d)", tc.off, tc.length, len(got), end-tc.off)
		}
		var ranges []string
		for _, r := range f.proxy.Requests() {
			if r.Method == "GET" {
				ranges = append(ranges, r.Range)
			}
		}
		t.Logf("Get(%d, %d) ranges: %q", tc.off, tc.length, ranges)
		if len(ranges) != 3 {
			t.Fatalf("Get(%d, %d) made %d GETs; want 3", tc.off, tc.length, len(ranges))
		}
		second := tc.off + 700<<10
		want := "bytes=" + itoa(second) + "-"
		if tc.length >= 0 {
			want += itoa(end - 1)
		}
		if ranges[1] != want {
			t.Errorf("second GET asked for %q; want %q", ranges[1], want)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestRetryPut(t *testing.T) {
	f := newFaulty(t)
	b := data(200<<10, 3)

	// Put resends an object that fits one part from its own buffer, so
	// one 500 is survived even with a plain reader; a 500 on every one
	// of its attempts fails it for good (the reader cannot be read again,
	// so store/retry cannot help).
	f.proxy.FailNext("PUT", 1, 500)
	if err := f.retry.Put(t.Context(), "obj0", onlyReader{bytes.NewReader(b)}, int64(len(b))); err != nil {
		t.Fatalf("Put of a plain reader through one 500: %v", err)
	}
	f.proxy.FailNext("PUT", 6, 500)
	err := f.retry.Put(t.Context(), "obj", onlyReader{bytes.NewReader(b)}, int64(len(b)))
	mustTransient(t, "Put of a plain reader through a 500", err)
	if _, err := f.raw.Stat(t.Context(), "obj"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat after a failed Put: %v", err)
	}

	// A ReadSeeker is rewound and sent again.
	f.proxy.FailNext("PUT", 2, 500)
	if err := f.retry.Put(t.Context(), "obj", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("Put of a ReadSeeker through 500s: %v", err)
	}
	if got := readAll(t, f.raw, "obj", 0, -1); !bytes.Equal(got, b) {
		t.Fatal("object differs after retried Put")
	}

	// The connection dropped in the middle of the request body, on
	// every attempt: the old object stays.
	f.proxy.Inject(s3test.Fault{Kind: s3test.DropRequest, Method: "PUT", N: 64 << 10, Times: 6})
	b2 := data(200<<10, 4)
	if err := f.raw.Put(t.Context(), "obj", bytes.NewReader(b2), int64(len(b2))); err == nil {
		t.Fatal("Put through a dropped connection: no error")
	} else {
		mustTransient(t, "Put through a dropped connection", err)
	}
	if got := readAll(t, f.raw, "obj", 0, -1); !bytes.Equal(got, b) {
		t.Fatal("a Put cut short changed the object")
	}
	f.proxy.Inject(s3test.Fault{Kind: s3test.DropRequest, Method: "PUT", N: 64 << 10})
	if err := f.retry.Put(t.Context(), "obj", bytes.NewReader(b2), int64(len(b2))); err != nil {
		t.Fatalf("retried Put through a dropped connection: %v", err)
	}
	if got := readAll(t, f.raw, "obj", 0, -1); !bytes.Equal(got, b2) {
		t.Fatal("object differs after a retried Put")
	}
}

// TestCorruptUploadRejected flips one byte of a request body in transit:
// the server must refuse it (Content-MD5, and over plain HTTP the chunk
// signatures), so the corrupted bytes are never stored; Put then sends the
// object again from its buffer and succeeds. Corruption on every attempt
// fails the Put, with nothing stored.
func TestCorruptUploadRejected(t *testing.T) {
	f := newFaulty(t)
	b := data(100<<10, 5)
	f.proxy.Inject(s3test.Fault{Kind: s3test.CorruptRequest, Method: "PUT", N: 50 << 10})
	if err := f.raw.Put(t.Context(), "obj", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("Put after one corrupted attempt: %v", err)
	}
	if n := f.count("PUT", ""); n != 2 {
		t.Fatalf("%d PUT requests; want 2 (the corrupted one refused, then resent)", n)
	}
	if got := readAll(t, f.raw, "obj", 0, -1); !bytes.Equal(got, b) {
		t.Fatal("stored object differs")
	}
	f.proxy.Inject(s3test.Fault{Kind: s3test.CorruptRequest, Method: "PUT", N: 50 << 10, Times: 6})
	err := f.raw.Put(t.Context(), "obj2", bytes.NewReader(b), int64(len(b)))
	mustTransient(t, "Put of a body corrupted on every attempt", err)
	t.Logf("corrupted Put: %v", err)
	if _, err := f.raw.Stat(t.Context(), "obj2"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat after a corrupted Put: %v; want ErrNotExist", err)
	}
}

// TestMultipartPartRetry fails and corrupts parts of a multipart upload:
// the part is re-sent from its buffer and the Put succeeds without help.
func TestMultipartPartRetry(t *testing.T) {
	f := newFaulty(t)
	b := data(2*s3.MinPartSize+1000, 6)
	f.proxy.Inject(s3test.Fault{Kind: s3test.Status, Method: "PUT", Query: "partNumber=1", Code: 500, Times: 2})
	f.proxy.Inject(s3test.Fault{Kind: s3test.CorruptRequest, Method: "PUT", Query: "partNumber=2", N: 1 << 20})
	f.proxy.Inject(s3test.Fault{Kind: s3test.DropRequest, Method: "PUT", Query: "partNumber=3", N: 200})
	if err := f.raw.Put(t.Context(), "big", onlyReader{bytes.NewReader(b)}, -1); err != nil {
		t.Fatalf("multipart Put through part failures: %v", err)
	}
	if n := f.proxy.Pending(); n != 0 {
		t.Errorf("%d faults unused", n)
	}
	if n := f.count("PUT", "partNumber"); n != 3+4 {
		t.Errorf("%d part uploads; want 7 (3 parts, 4 failures)", n)
	}
	if got := readAll(t, f.raw, "big", 0, -1); !bytes.Equal(got, b) {
		t.Fatal("stored object differs")
	}
	noUploads(t, f.srv, f.cfg.Bucket)

	// A part that keeps failing fails the Put and aborts the upload
	// (parts upload concurrently, so the faults target one part).
	f.proxy.Inject(s3test.Fault{Kind: s3test.Status, Method: "PUT", Query: "partNumber=2", Code: 503, Times: 6})
	err := f.raw.Put(t.Context(), "big2", bytes.NewReader(b), int64(len(b)))
	mustTransient(t, "Put with a part failing 3 times", err)
	if _, err := f.raw.Stat(t.Context(), "big2"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat after a failed multipart Put: %v", err)
	}
	noUploads(t, f.srv, f.cfg.Bucket)
}

func TestStallWithTimeout(t *testing.T) {
	f := newFaulty(t)
	b := data(1000, 7)
	if err := f.raw.Put(t.Context(), "obj", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	f.proxy.Inject(s3test.Fault{Kind: s3test.Stall, Method: "GET", Delay: 30 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.retry.Get(ctx, "obj", 0, -1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get from a stalled server: %v; want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Get took %v to give up; want about 300ms", took)
	}
	if n := f.count("GET", ""); n != 1 {
		t.Errorf("%d GETs; a done ctx must not be retried", n)
	}

	// A stall shorter than the deadline is only slow.
	f.proxy.Inject(s3test.Fault{Kind: s3test.Stall, Method: "GET", Delay: 100 * time.Millisecond})
	if got := readAll(t, f.retry, "obj", 0, -1); !bytes.Equal(got, b) {
		t.Fatal("Get after a short stall returned different bytes")
	}
}
