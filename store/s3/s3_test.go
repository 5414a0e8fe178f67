package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/ratelimit"
	"github.com/seedship/seedship/store/retry"
	"github.com/seedship/seedship/store/s3"
	"github.com/seedship/seedship/store/s3/s3test"
	"github.com/seedship/seedship/store/storetest"
)

// config returns a Config for a fresh bucket of srv, reached through
// endpoint (srv's own, or a proxy's).
func config(t *testing.T, srv *s3test.Service, endpoint, prefix string) s3.Config {
	t.Helper()
	return s3.Config{
		Bucket:    srv.NewBucket(t),
		Prefix:    prefix,
		Endpoint:  endpoint,
		Region:    srv.Region,
		AccessKey: srv.AccessKey,
		SecretKey: srv.SecretKey,
		PartSize:  s3.MinPartSize,
	}
}

func open(t *testing.T, cfg s3.Config) *s3.Store {
	t.Helper()
	s, err := s3.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("s3.New(%s): %v", cfg, err)
	}
	return s
}

func TestConformance(t *testing.T) {
	for _, prefix := range []string{"", "images/host1"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				srv := s3test.Server(t)
				return open(t, config(t, srv, srv.Endpoint, prefix))
			})
		})
	}
}

// TestConformanceWrapped runs the suite on the stack the CLI builds: retry
// over the rate limiter over S3.
func TestConformanceWrapped(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		srv := s3test.Server(t)
		l := ratelimit.NewLimiter(1 << 30)
		return retry.New(ratelimit.New(open(t, config(t, srv, srv.Endpoint, "w")), l, l), retry.Options{MinBackoff: time.Millisecond})
	})
}

// data returns n deterministic pseudo-random bytes.
func data(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func readAll(t *testing.T, s store.Store, key string, off, length int64) []byte {
	t.Helper()
	rc, err := s.Get(t.Context(), key, off, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, off, length, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading Get(%q, %d, %d): %v", key, off, length, err)
	}
	return b
}

// onlyReader hides everything but Read.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// TestMultipart stores objects larger than a part, of known and unknown
// size, including an exact multiple of the part size, and reads ranges that
// straddle part boundaries.
func TestMultipart(t *testing.T) {
	srv := s3test.Server(t)
	cfg := config(t, srv, srv.Endpoint, "mp")
	s := open(t, cfg)
	for i, n := range []int{2*s3.MinPartSize + 12345, 2 * s3.MinPartSize} {
		b := data(n, uint64(i))
		for _, size := range []int64{int64(n), -1} {
			key := fmt.Sprintf("data/%d.%d", n, size)
			if err := s.Put(t.Context(), key, onlyReader{bytes.NewReader(b)}, size); err != nil {
				t.Fatalf("Put(%s): %v", key, err)
			}
			info, err := s.Stat(t.Context(), key)
			if err != nil || info.Size != int64(n) {
				t.Fatalf("Stat(%s) = %+v, %v; want size %d", key, info, err, n)
			}
			if got := readAll(t, s, key, 0, -1); !bytes.Equal(got, b) {
				t.Fatalf("Get(%s) returned different bytes", key)
			}
			off := int64(s3.MinPartSize - 100)
			if got := readAll(t, s, key, off, 200); !bytes.Equal(got, b[off:off+200]) {
				t.Fatalf("ranged Get(%s) across a part boundary returned different bytes", key)
			}
		}
	}
	// One byte too many, on a part boundary: refused before completion.
	b := data(2*s3.MinPartSize+1, 7)
	err := s.Put(t.Context(), "toolong", onlyReader{bytes.NewReader(b)}, 2*s3.MinPartSize)
	if !errors.Is(err, store.ErrPermanent) {
		t.Fatalf("Put of one byte more than declared: %v; want a permanent error", err)
	}
	if _, err := s.Stat(t.Context(), "toolong"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat after a refused Put: %v; want ErrNotExist", err)
	}
	noUploads(t, srv, cfg.Bucket)
}

// noUploads checks that no multipart upload was left behind in bucket.
func noUploads(t *testing.T, srv *s3test.Service, bucket string) {
	t.Helper()
	for up := range srv.Client(t).ListIncompleteUploads(t.Context(), bucket, "", true) {
		if up.Err != nil {
			t.Fatalf("listing uploads: %v", up.Err)
		}
		t.Errorf("multipart upload of %q (%s) left behind", up.Key, up.UploadID)
	}
}

// TestPutCancelAbortsMultipart cancels a Put after its first part and
// checks that the multipart upload is aborted, not left to accrue charges.
func TestPutCancelAbortsMultipart(t *testing.T) {
	srv := s3test.Server(t)
	cfg := config(t, srv, srv.Endpoint, "")
	s := open(t, cfg)
	b := data(3*s3.MinPartSize, 1)
	ctx, cancel := context.WithCancel(t.Context())
	r := &cancelAfter{r: bytes.NewReader(b), n: s3.MinPartSize + 10, cancel: cancel}
	err := s.Put(ctx, "big", r, int64(len(b)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Put: %v; want context.Canceled", err)
	}
	if _, err := s.Stat(t.Context(), "big"); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Stat after a cancelled Put: %v; want ErrNotExist", err)
	}
	noUploads(t, srv, cfg.Bucket)
}

// cancelAfter calls cancel once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

// checkNewError checks that New fails within limit with a one-line error
// matching store.ErrPermanent and each of want, naming the bucket.
func checkNewError(t *testing.T, cfg s3.Config, limit time.Duration, words []string, want ...error) {
	t.Helper()
	start := time.Now()
	s, err := s3.New(t.Context(), cfg)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("New(%s) = %v, nil; want an error", cfg, s)
	}
	t.Logf("New(%s) after %v: %v", cfg, took.Round(time.Millisecond), err)
	if took > limit {
		t.Errorf("New took %v; want under %v", took, limit)
	}
	if !store.IsPermanent(err) {
		t.Errorf("error does not match store.ErrPermanent")
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Errorf("error does not match %v", w)
		}
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error message has several lines: %q", msg)
	}
	for _, w := range append(words, cfg.Bucket) {
		if !strings.Contains(msg, w) {
			t.Errorf("error message %q does not mention %q", msg, w)
		}
	}
}

func TestNewBadCredentials(t *testing.T) {
	srv := s3test.Server(t)
	cfg := config(t, srv, srv.Endpoint, "p")
	t.Run("secret", func(t *testing.T) {
		c := cfg
		c.SecretKey = "wrong" + c.SecretKey
		checkNewError(t, c, 2*time.Second, []string{"AWS_SECRET_ACCESS_KEY", srv.Endpoint}, s3.ErrAccessDenied)
	})
	t.Run("key", func(t *testing.T) {
		c := cfg
		c.AccessKey = "nosuchkey"
		checkNewError(t, c, 2*time.Second, []string{"AWS_ACCESS_KEY_ID"}, s3.ErrAccessDenied)
	})
	t.Run("anonymous", func(t *testing.T) {
		c := cfg
		c.AccessKey, c.SecretKey = "", ""
		c.CredentialsFile = filepath.Join(t.TempDir(), "none")
		checkNewError(t, c, 2*time.Second, []string{"AWS_ACCESS_KEY_ID"}, s3.ErrAccessDenied)
	})
}

func TestNewMissingBucket(t *testing.T) {
	srv := s3test.Server(t)
	cfg := config(t, srv, srv.Endpoint, "p")
	cfg.Bucket = "seedship-no-such-bucket"
	checkNewError(t, cfg, 2*time.Second, []string{"create the bucket"}, s3.ErrNoBucket)
}

func TestNewUnreachable(t *testing.T) {
	// A port that was free a moment ago and is closed now.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := s3.Config{Bucket: "seedship-test", Endpoint: "http://" + addr, Region: "us-east-1", AccessKey: "k", SecretKey: "s"}
	checkNewError(t, cfg, 2*time.Second, []string{addr, "unreachable"}, s3.ErrUnreachable)

	t.Run("no answer", func(t *testing.T) {
		srv := s3test.Server(t)
		p := s3test.NewProxy(t, srv.Endpoint)
		p.Inject(s3test.Fault{Kind: s3test.Stall, Delay: time.Minute, Times: 100})
		cfg := config(t, srv, p.URL, "")
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, err := s3.New(ctx, cfg)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("New against a stalled endpoint with a 300ms ctx: %v; want DeadlineExceeded", err)
		}
	})
}
