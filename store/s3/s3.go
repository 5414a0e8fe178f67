package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/seedship/seedship/store"
)

// checkTimeout bounds the requests [New] makes to check the bucket, so that an
// endpoint that accepts connections but never answers fails quickly too.
const checkTimeout = 15 * time.Second

// Store is a [store.Store] over one bucket and prefix. It is safe for
// concurrent use.
type Store struct {
	core     *minio.Core
	cfg      Config
	bucket   string
	prefix   string // "" or "some/prefix/", ending in a slash
	partSize int64
	conns    int
	bufs     sync.Pool     // *[]byte of partSize
	slots    chan struct{} // part uploads in flight, store-wide
	clock    *serverClock

	lockRefresh, lockStale time.Duration
}

var _ store.Store = (*Store)(nil)
var _ store.Connections = (*Store)(nil)

// New returns a Store for cfg after checking, within a few seconds, that the
// endpoint answers, the credentials are accepted and the bucket exists (a
// one-key listing under the prefix; at most 15 s when the endpoint accepts
// connections but does not answer). Its errors are
// one line naming the bucket and endpoint and saying what to fix; each one
// that retrying cannot fix matches [store.ErrPermanent], and more precisely
// [ErrUnreachable], [ErrNoBucket] or [ErrAccessDenied].
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, &opError{op: "open", loc: cfg.String(), kind: store.ErrPermanent, err: errors.New("no bucket name")}
	}
	if err := checkBucketName(cfg.Bucket); err != nil {
		return nil, &opError{op: "open", loc: cfg.String(), kind: store.ErrPermanent, err: err}
	}
	prefix, err := cleanPrefix(cfg.Prefix)
	if err != nil {
		return nil, &opError{op: "open", loc: cfg.String(), kind: store.ErrPermanent, err: err}
	}
	cfg.Prefix = prefix
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize || cfg.PartSize > MaxPartSize {
		return nil, &opError{op: "open", loc: cfg.String(), kind: store.ErrPermanent,
			err: fmt.Errorf("part size %d is outside [%d, %d]", cfg.PartSize, MinPartSize, MaxPartSize)}
	}
	if cfg.Connections <= 0 {
		cfg.Connections = DefaultConnections
	}
	clock := &serverClock{}
	client, err := newClient(cfg, clock)
	if err != nil {
		return nil, &opError{op: "open", loc: cfg.String(), kind: store.ErrPermanent, err: err}
	}
	if cfg.LockRefresh <= 0 {
		cfg.LockRefresh = DefaultLockRefresh
	}
	if cfg.LockStale <= 0 {
		cfg.LockStale = DefaultLockStale
	}
	if cfg.LockStale < 2*cfg.LockRefresh {
		return nil, &opError{op: "open", loc: cfg.String(), kind: store.ErrPermanent,
			err: fmt.Errorf("lock lease %v is shorter than two refreshes (%v each)", cfg.LockStale, cfg.LockRefresh)}
	}
	s := &Store{
		clock:       clock,
		lockRefresh: cfg.LockRefresh,
		lockStale:   cfg.LockStale,
		core:        &minio.Core{Client: client},
		cfg:         cfg,
		bucket:      cfg.Bucket,
		partSize:    cfg.PartSize,
		conns:       cfg.Connections,
		slots:       make(chan struct{}, cfg.Connections),
	}
	if prefix != "" {
		s.prefix = prefix + "/"
	}
	s.bufs.New = func() any { b := make([]byte, s.partSize); return &b }
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// newClient builds the minio-go client: our transport (short dial timeout,
// AWS_CA_BUNDLE, stall timeout, noting the server's clock in clock), the
// credential chain, and no internal retries.
func newClient(cfg Config, clock *serverClock) (*minio.Client, error) {
	host, secure, err := cfg.endpoint()
	if err != nil {
		return nil, err
	}
	tr, err := newTransport(cfg, secure)
	if err != nil {
		return nil, err
	}
	lookup := minio.BucketLookupAuto
	switch cfg.PathStyle {
	case PathStyleOn:
		lookup = minio.BucketLookupPath
	case PathStyleOff:
		lookup = minio.BucketLookupDNS
	}
	stall := cfg.StallTimeout
	if stall == 0 {
		stall = DefaultStallTimeout
	}
	return minio.New(host, &minio.Options{
		Creds:        newCredentials(cfg),
		Secure:       secure,
		Transport:    &stallTransport{base: tr, timeout: stall, clock: clock},
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   1, // retrying is store/retry's job
	})
}

func newCredentials(cfg Config) *credentials.Credentials {
	if cfg.AccessKey != "" {
		return credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken)
	}
	providers := []credentials.Provider{
		&credentials.FileAWSCredentials{Filename: cfg.CredentialsFile, Profile: cfg.Profile},
	}
	if cfg.UseIAM {
		providers = append(providers, &credentials.IAM{})
	}
	return credentials.NewChainCredentials(providers)
}

func newTransport(cfg Config, secure bool) (*http.Transport, error) {
	dial := cfg.DialTimeout
	if dial <= 0 {
		dial = DefaultDialTimeout
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   max(16, 2*cfg.Connections),
		ResponseHeaderTimeout: time.Minute,
		IdleConnTimeout:       time.Minute,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: 10 * time.Second,
		// Ranged reads of objects stored with Content-Encoding: gzip must
		// not be decoded on the way.
		DisableCompression: true,
	}
	if secure {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CABundle != "" {
			pem, err := os.ReadFile(cfg.CABundle)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				// Absent: ignored, as documented on Config.CABundle.
			case err != nil:
				return nil, fmt.Errorf("reading CA bundle: %w", err)
			default:
				pool, err := x509.SystemCertPool()
				if err != nil {
					pool = x509.NewCertPool()
				}
				if !pool.AppendCertsFromPEM(pem) {
					return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", cfg.CABundle)
				}
				tr.TLSClientConfig.RootCAs = pool
			}
		}
	}
	return tr, nil
}

// check proves the endpoint, the credentials and the bucket with a one-key
// listing under the prefix. A listing, unlike HEAD bucket (minio-go's
// BucketExists), gets an XML error body that names NoSuchBucket,
// InvalidAccessKeyId or SignatureDoesNotMatch precisely; versitygw answers
// HEAD with an unknown access key with a bare 404, which would read as a
// missing bucket.
func (s *Store) check(ctx context.Context) error {
	// Transient answers (5xx, a reset) are tried again a few times;
	// permanent ones (credentials, no bucket) and an unreachable
	// endpoint end the check at once.
	return s.withRetries(ctx, func() error { return s.checkOnce(ctx) })
}

func (s *Store) checkOnce(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	where := fmt.Sprintf("%s (endpoint %s)", s.cfg.String(), s.cfg.endpointURL())
	fail := func(err error) error {
		if ctx.Err() != nil {
			return &opError{op: "open", loc: where, err: err}
		}
		if isUnreachable(err) {
			return &opError{op: "open", loc: where, kind: ErrUnreachable, err: fmt.Errorf("endpoint unreachable: %w", err),
				hint: "check the endpoint URL (AWS_ENDPOINT_URL) and the network"}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return &opError{op: "open", loc: where, kind: ErrUnreachable,
				err:  fmt.Errorf("endpoint unreachable: no answer within %v", checkTimeout),
				hint: "check the endpoint URL (AWS_ENDPOINT_URL) and the network"}
		}
		return translateError("open", where, err)
	}
	lctx, lcancel := context.WithCancel(cctx)
	ch := s.core.Client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, MaxKeys: 1, Recursive: true})
	defer func() {
		lcancel()
		for range ch {
		}
	}()
	if obj, ok := <-ch; ok && obj.Err != nil {
		return fail(obj.Err)
	}
	return nil
}

// String returns "s3://bucket/prefix".
func (s *Store) String() string { return s.cfg.String() }

// Connections returns Config.Connections (default 4).
func (s *Store) Connections() int { return s.conns }

// Client returns the underlying minio-go client, for tools and tests that
// need an operation the Store does not offer.
func (s *Store) Client() *minio.Client { return s.core.Client }

// object returns the object name of key, or an error wrapping ErrInvalidKey.
func (s *Store) object(key string) (string, error) {
	if reason := checkKey(key); reason != "" {
		return "", &opError{op: "key", loc: s.String(), kind: ErrInvalidKey, err: fmt.Errorf("invalid key %q: %s", key, reason)}
	}
	return s.prefix + key, nil
}

// loc names key in messages.
func (s *Store) loc(key string) string { return s.String() + "/" + key }

// checkKey returns why key is not a clean relative slash-separated name, or
// is the lock's reserved [store.LockKey], or "". The rules are store/dir's,
// so every key works in both; List skips the keys it refuses.
func checkKey(key string) string {
	switch {
	case key == "":
		return "empty"
	case strings.HasPrefix(key, "/"):
		return "absolute"
	case strings.ContainsAny(key, "\\\x00"):
		return "contains a backslash or NUL byte"
	}
	for e := range strings.SplitSeq(key, "/") {
		switch e {
		case "":
			return "has an empty element"
		case ".", "..":
			return fmt.Sprintf("has a %q element", e)
		}
	}
	if key == store.LockKey {
		return "is the reserved name of the writer lock"
	}
	return ""
}

// Stat returns the size and modification time of key.
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	obj, err := s.object(key)
	if err != nil {
		return store.Info{}, err
	}
	oi, err := s.core.StatObject(ctx, s.bucket, obj, minio.StatObjectOptions{})
	if err != nil {
		return store.Info{}, translateError("stat", s.loc(key), err)
	}
	return store.Info{Key: key, Size: oi.Size, ModTime: oi.LastModified}, nil
}

// Get returns length bytes of key from off (to the end when length < 0) as
// one ranged GET. A range that runs past the end of the object yields an
// error wrapping io.ErrUnexpectedEOF and store.ErrPermanent: from Get when
// it starts past the end, else from Read after the object's last byte. A
// body cut short in transit yields a transient io.ErrUnexpectedEOF, which
// store/retry resumes. Cancelling ctx fails the next Read.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	obj, err := s.object(key)
	if err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, &opError{op: "get", loc: s.loc(key), kind: store.ErrPermanent, err: fmt.Errorf("negative offset %d", off)}
	}
	if err := ctx.Err(); err != nil {
		return nil, translateError("get", s.loc(key), err)
	}
	if length == 0 {
		info, err := s.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, s.short(key, off, length, info.Size)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		err = opts.SetRange(off, off+length-1)
	case off > 0:
		err = opts.SetRange(off, 0)
	}
	if err != nil {
		return nil, &opError{op: "get", loc: s.loc(key), kind: store.ErrPermanent, err: err}
	}
	body, oi, hdr, err := s.core.GetObject(ctx, s.bucket, obj, opts)
	if err != nil {
		var er minio.ErrorResponse
		if errors.As(err, &er) && (er.StatusCode == http.StatusRequestedRangeNotSatisfiable || er.Code == "InvalidRange") {
			return s.getPastEnd(ctx, key, off, length)
		}
		return nil, translateError("get", s.loc(key), err)
	}
	if (off > 0 || length > 0) && hdr.Get("Content-Range") == "" && oi.Size != length {
		body.Close()
		return nil, &opError{op: "get", loc: s.loc(key), kind: store.ErrPermanent,
			err: fmt.Errorf("the server ignored the Range header (%d bytes from %d)", length, off)}
	}
	want := oi.Size
	if length > 0 {
		if oi.Size > length {
			body.Close()
			return nil, &opError{op: "get", loc: s.loc(key), err: fmt.Errorf("asked for %d bytes, the reply has %d", length, oi.Size)}
		}
		want = length
	}
	return &objectReader{ctx: ctx, body: body, have: oi.Size, want: want, s: s, key: key, off: off}, nil
}

// getPastEnd answers a Get whose range starts at or past the end of key.
func (s *Store) getPastEnd(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, err
	}
	if length < 0 && off == info.Size {
		return io.NopCloser(strings.NewReader("")), nil
	}
	return nil, s.short(key, off, length, info.Size)
}

// short is the permanent error for a range that runs past the object's end.
func (s *Store) short(key string, off, length, size int64) error {
	what := "to the end"
	if length >= 0 {
		what = fmt.Sprintf("%d bytes", length)
	}
	return &opError{op: "get", loc: s.loc(key), kind: store.ErrPermanent,
		err: fmt.Errorf("%w: asked for %s from offset %d of a %d-byte object", io.ErrUnexpectedEOF, what, off, size)}
}

// objectReader checks that a GET body delivers the bytes it promised.
type objectReader struct {
	ctx  context.Context
	body io.ReadCloser
	have int64 // bytes the reply holds
	want int64 // bytes the caller asked for (>= have when the object is short)
	read int64
	s    *Store
	key  string
	off  int64
	err  error // sticky
}

func (r *objectReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		// Bytes already buffered would otherwise still flow.
		r.err = translateError("get", r.s.loc(r.key), fmt.Errorf("after %d of %d bytes: %w", r.read, r.want, err))
		return 0, r.err
	}
	n, err := r.body.Read(p)
	r.read += int64(n)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF) && r.read >= r.want:
		r.err = io.EOF
	case errors.Is(err, io.EOF) && r.read == r.have:
		// The reply was complete but the object is shorter than asked.
		r.err = r.s.short(r.key, r.off, r.want, r.off+r.have)
	case r.ctx.Err() != nil:
		r.err = translateError("get", r.s.loc(r.key), fmt.Errorf("after %d of %d bytes: %w", r.read, r.want, r.ctx.Err()))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		r.err = translateError("get", r.s.loc(r.key), fmt.Errorf("body ended after %d of %d bytes: %w", r.read, r.have, io.ErrUnexpectedEOF))
	default:
		r.err = translateError("get", r.s.loc(r.key), fmt.Errorf("after %d of %d bytes: %w", r.read, r.have, err))
	}
	return n, r.err
}

func (r *objectReader) Close() error { return r.body.Close() }

// List calls fn for every key under prefix in lexical order. minio-go's
// listing goroutine is cancelled and drained before List returns.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	if err := ctx.Err(); err != nil {
		return translateError("list", s.loc(prefix), err)
	}
	if !validPrefix(prefix) {
		return nil // no valid key begins with it
	}
	lctx, cancel := context.WithCancel(ctx)
	ch := s.core.Client.ListObjects(lctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true})
	defer func() {
		cancel()
		for range ch {
		}
	}()
	for obj := range ch {
		if obj.Err != nil {
			return translateError("list", s.loc(prefix), obj.Err)
		}
		key, ok := strings.CutPrefix(obj.Key, s.prefix)
		if !ok || checkKey(key) != "" {
			continue // a directory marker ("x/") or a name no key can have
		}
		if err := ctx.Err(); err != nil {
			return translateError("list", s.loc(prefix), err)
		}
		if err := fn(store.Info{Key: key, Size: obj.Size, ModTime: obj.LastModified}); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return translateError("list", s.loc(prefix), err)
	}
	return nil
}

// validPrefix reports whether some valid key can begin with prefix: every
// element but the last must be a valid element.
func validPrefix(prefix string) bool {
	if prefix == "" {
		return true
	}
	if strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "\\\x00") {
		return false
	}
	elems := strings.Split(prefix, "/")
	for _, e := range elems[:len(elems)-1] {
		if e == "" || e == "." || e == ".." {
			return false
		}
	}
	return true
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	err = s.core.RemoveObject(ctx, s.bucket, obj, minio.RemoveObjectOptions{})
	if err = translateError("delete", s.loc(key), err); errors.Is(err, store.ErrNotExist) {
		return nil
	}
	return err
}

// RemoveIncomplete implements store.Cleaner: it aborts the incomplete
// multipart uploads under the store's prefix, which a killed process
// leaves behind (invisible, but billed until aborted).
func (s *Store) RemoveIncomplete(ctx context.Context) error {
	var errs []error
	for u := range s.core.Client.ListIncompleteUploads(ctx, s.bucket, s.prefix, true) {
		if u.Err != nil {
			return translateError("list uploads", s.cfg.String(), u.Err)
		}
		if err := s.core.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID); err != nil {
			errs = append(errs, translateError("abort upload", s.loc(strings.TrimPrefix(u.Key, s.prefix)), err))
		}
	}
	return errors.Join(errs...)
}
