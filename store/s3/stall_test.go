package s3_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/store/retry"
	"github.com/seedship/seedship/store/s3"
	"github.com/seedship/seedship/store/s3/s3test"
)

// newStalling is newFaulty with a short stall timeout.
func newStalling(t *testing.T, stall time.Duration) *faulty {
	t.Helper()
	f := newFaulty(t)
	f.cfg.StallTimeout = stall
	f.raw = open(t, f.cfg)
	f.retry = retry.New(f.raw, retry.Options{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	f.proxy.Reset()
	return f
}

// TestStalledGetResumes: a GET body that stops mid-way for longer than the
// stall timeout is aborted with a transient ErrStalled, and store/retry
// resumes from the byte reached. Before the fix the read waited as long as
// the server did (over 300 s in the field; a minute here).
func TestStalledGetResumes(t *testing.T) {
	const stall = 300 * time.Millisecond
	f := newStalling(t, stall)
	b := data(3<<20, 11)
	if err := f.raw.Put(t.Context(), "seg", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}

	// Raw: the stall is reported promptly, as a transient error.
	f.proxy.Inject(s3test.Fault{Kind: s3test.StallResponse, Method: "GET", N: 1 << 20, Delay: time.Minute})
	start := time.Now()
	rc, err := f.raw.Get(t.Context(), "seg", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	took := time.Since(start)
	if !errors.Is(err, s3.ErrStalled) || n != 1<<20 {
		t.Fatalf("raw Get stalled after 1 MiB: %d bytes, %v; want 1 MiB and ErrStalled", n, err)
	}
	mustTransient(t, "stalled Get", err)
	if took > 10*stall {
		t.Errorf("the stalled Get took %v to fail; the stall timeout is %v", took, stall)
	}

	// Through retry: two stalls, then the rest, every byte right, and the
	// second GET starts where the first stalled.
	f.proxy.Reset()
	f.proxy.Inject(s3test.Fault{Kind: s3test.StallResponse, Method: "GET", N: 700 << 10, Delay: time.Minute})
	f.proxy.Inject(s3test.Fault{Kind: s3test.StallResponse, Method: "GET", N: 5, Delay: time.Minute})
	if got := readAll(t, f.retry, "seg", 0, -1); !bytes.Equal(got, b) {
		t.Fatal("Get resumed after stalls returned different bytes")
	}
	var ranges []string
	for _, r := range f.proxy.Requests() {
		if r.Method == "GET" {
			ranges = append(ranges, r.Range)
		}
	}
	if len(ranges) != 3 || ranges[1] != "bytes="+itoa(700<<10)+"-" {
		t.Errorf("GET ranges %q; want 3, the second from byte %d", ranges, 700<<10)
	}

	// A link that stalls every time fails clearly after the attempts.
	f.proxy.Reset()
	f.proxy.Inject(s3test.Fault{Kind: s3test.StallResponse, Method: "GET", N: 100, Delay: time.Minute, Times: 100})
	r := retry.New(f.raw, retry.Options{Attempts: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	rc, err = r.Get(t.Context(), "seg", 0, -1)
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
	}
	if !errors.Is(err, s3.ErrStalled) || !strings.Contains(err.Error(), "attempts") {
		t.Errorf("Get over a link that always stalls: %v; want ErrStalled after the attempts", err)
	}
}

// TestStalledPutRetried: a server that stops taking an upload is caught
// too, and the PUT is sent again from its buffer.
func TestStalledPutRetried(t *testing.T) {
	const stall = 300 * time.Millisecond
	f := newStalling(t, stall)
	// Larger than the socket buffers on loopback, so that the client's
	// writes block while the proxy does not read.
	b := data(s3.MinPartSize, 12)
	f.proxy.Inject(s3test.Fault{Kind: s3test.StallRequest, Method: "PUT", N: 64 << 10, Delay: time.Minute})
	start := time.Now()
	if err := f.raw.Put(t.Context(), "obj", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("Put with one stalled attempt: %v", err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("Put took %v", took)
	}
	if n := f.count("PUT", ""); n != 2 {
		t.Errorf("%d PUTs; want the stalled one and one more", n)
	}
	if got := readAll(t, f.raw, "obj", 0, -1); !bytes.Equal(got, b) {
		t.Error("object differs after a stalled Put")
	}
}
