package s3

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/store"
)

// Buffered requests (a part, a whole small object, the bucket check) are
// tried this often, with exponential backoff and jitter as in store/retry,
// before the whole Put fails: uploads that come through a pipe (capture,
// copy) cannot be retried by store/retry, so this is their only retry.
const (
	partAttempts   = 6
	partBackoff    = 250 * time.Millisecond
	partMaxBackoff = 10 * time.Second
	abortTimeout   = 30 * time.Second
	maxParts       = 10000 // S3's limit on the parts of one upload
)

// Put stores the bytes of r under key. Objects up to Config.PartSize go in a
// single PUT; larger ones (or ones of unknown size that turn out larger) in a
// multipart upload of PartSize parts, which becomes visible only when
// complete. Every request carries the CRC-32C of its body in the S3 checksum
// header, which the server verifies.
//
// Put reads r one part at a time into a pooled buffer, so it holds PartSize
// bytes of memory while it runs. It checks that r yields exactly size bytes
// (when size >= 0) before anything becomes visible; a mismatch is an error
// matching store.ErrPermanent. A failed part is retried up to 3 times from
// its buffer, since the parts already sent would otherwise be wasted; any
// other failure, including cancelling ctx, aborts the multipart upload (with
// a fresh 30 s context) and returns the error. Retrying a whole Put is
// store/retry's job.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return translateError("put", s.loc(key), err)
	}
	if size > maxParts*s.partSize {
		return &opError{op: "put", loc: s.loc(key), kind: store.ErrPermanent,
			err: fmt.Errorf("%d bytes is more than %d parts of %d bytes; raise the part size", size, maxParts, s.partSize)}
	}
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	src := &partReader{r: r, size: size}

	n, last, err := src.next(buf)
	if err != nil {
		return s.putError(key, err)
	}
	if last {
		// The whole object is in buf: a transient failure is tried
		// again from it, whatever kind of reader r was.
		opts := s.putOptions()
		opts.UserMetadata = map[string]string{checksumHeader: crc32cBase64(buf[:n])} // x-amz-* is sent as is
		opts.DisableContentSha256 = true
		return s.withRetries(ctx, func() error {
			_, err := s.core.PutObject(ctx, s.bucket, obj, bytes.NewReader(buf[:n]), int64(n), "", "", opts)
			return translateError("put", s.loc(key), err)
		})
	}
	return s.putMultipart(ctx, key, obj, src, buf, n)
}

func (s *Store) putOptions() minio.PutObjectOptions {
	return minio.PutObjectOptions{ContentType: "application/octet-stream"}
}

// putMultipart uploads the part already in buf[:n] and the rest of src.
// Parts upload concurrently: reading part N+1 from src overlaps the upload
// of part N, so a pipeline writing into Put is not held up by each round
// trip. A store-wide semaphore of Connections upload slots bounds the
// parts in flight, and so the memory: at most Connections part buffers
// beyond each Put's own.
func (s *Store) putMultipart(ctx context.Context, key, obj string, src *partReader, buf []byte, n int) (err error) {
	var uploadID string
	err = s.withRetries(ctx, func() error {
		var err error
		uploadID, err = s.core.NewMultipartUpload(ctx, s.bucket, obj, s.putOptions())
		return translateError("put", s.loc(key), err)
	})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
			defer cancel()
			_ = s.core.AbortMultipartUpload(actx, s.bucket, obj, uploadID)
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	var mu sync.Mutex
	var parts []minio.CompletePart
	upload := func(num int, b []byte, release func()) {
		g.Go(func() error {
			defer release()
			part, err := s.putPart(gctx, key, obj, uploadID, num, b)
			if err != nil {
				return err
			}
			mu.Lock()
			parts = append(parts, minio.CompletePart{PartNumber: num, ETag: part.ETag})
			mu.Unlock()
			return nil
		})
	}
	acquire := func() error {
		select {
		case s.slots <- struct{}{}:
			return nil
		case <-gctx.Done():
			return gctx.Err()
		}
	}
	readErr := func() error {
		// The first part uses the caller's buffer; the caller keeps it
		// until Put returns, which is after g.Wait.
		if err := acquire(); err != nil {
			return err
		}
		upload(1, buf[:n], func() { <-s.slots })
		for partNum := 2; !src.eof; partNum++ {
			if partNum > maxParts {
				return &opError{op: "put", loc: s.loc(key), kind: store.ErrPermanent,
					err: fmt.Errorf("object larger than %d parts of %d bytes; raise the part size", maxParts, s.partSize)}
			}
			if err := acquire(); err != nil {
				return err
			}
			bp := s.bufs.Get().(*[]byte)
			k, last, err := src.next(*bp)
			if err != nil || (last && k == 0) {
				s.bufs.Put(bp)
				<-s.slots
				if err != nil {
					return s.putError(key, err)
				}
				break
			}
			upload(partNum, (*bp)[:k], func() { s.bufs.Put(bp); <-s.slots })
		}
		return nil
	}()
	if err := g.Wait(); err != nil {
		return err
	}
	if readErr != nil {
		return readErr
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].PartNumber < parts[j].PartNumber })
	return s.withRetries(ctx, func() error {
		_, err := s.core.CompleteMultipartUpload(ctx, s.bucket, obj, uploadID, parts, s.putOptions())
		return translateError("put", s.loc(key), err)
	})
}

// withRetries runs op up to partAttempts times while it fails transiently.
func (s *Store) withRetries(ctx context.Context, op func() error) error {
	wait := partBackoff
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || attempt >= partAttempts || ctx.Err() != nil || store.IsFinal(err) {
			if err != nil && attempt > 1 {
				err = fmt.Errorf("%w (after %d attempts)", err, attempt)
			}
			return err
		}
		if err := sleepJitter(ctx, wait); err != nil {
			return translateError("put", "", err)
		}
		wait = min(wait*2, partMaxBackoff)
	}
}

// sleepJitter waits a random time in [d/2, d], so that parallel uploads
// retrying together spread out, or until ctx is done.
func sleepJitter(ctx context.Context, d time.Duration) error {
	return store.Sleep(ctx, d/2+rand.N(d/2+1))
}

// putPart uploads one part, retrying transient failures from the buffer.
func (s *Store) putPart(ctx context.Context, key, obj, uploadID string, num int, b []byte) (minio.ObjectPart, error) {
	opts := minio.PutObjectPartOptions{
		CustomHeader:         http.Header{checksumHeader: []string{crc32cBase64(b)}},
		DisableContentSha256: true,
	}
	var part minio.ObjectPart
	err := s.withRetries(ctx, func() error {
		var err error
		part, err = s.core.PutObjectPart(ctx, s.bucket, obj, uploadID, num, bytes.NewReader(b), int64(len(b)), opts)
		if err != nil {
			return translateError("put", s.loc(key), fmt.Errorf("part %d: %w", num, err))
		}
		return nil
	})
	return part, err
}

// putError wraps an error of the source reader. A size mismatch is
// permanent; the reader's own errors pass through unclassified (they stay
// recognisable with errors.Is).
func (s *Store) putError(key string, err error) error {
	e := &opError{op: "put", loc: s.loc(key), err: err}
	if errors.Is(err, errSizeMismatch) {
		e.kind = store.ErrPermanent
	}
	return e
}

// Every request body carries its CRC-32C in the S3 checksum header, which
// the server checks before it stores anything: the integrity check of each
// part is the store's, not only ours. CRC-32C rather than Content-MD5
// because it runs in hardware: MD5 cost 10% of a capture's CPU, and with
// the checksum in place the payload need not be signed as well
// (DisableContentSha256 saves another SHA-256 pass over plain HTTP; over
// TLS minio-go never signs the payload).
const checksumHeader = "X-Amz-Checksum-Crc32c"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func crc32cBase64(b []byte) string {
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], crc32.Checksum(b, castagnoli))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// errSizeMismatch is wrapped when the reader of a Put yields more or fewer
// bytes than the size given.
var errSizeMismatch = errors.New("reader size differs from the size given")

// partReader cuts a Put's reader into parts and checks its length. It reads
// one byte ahead so that it knows whether a full part is the last one.
type partReader struct {
	r       io.Reader
	size    int64 // declared size, or -1
	total   int64 // bytes handed out so far
	peek    byte
	hasPeek bool
	eof     bool // r is exhausted and the last part has been handed out
}

// next fills buf with the next part and reports whether it is the last one.
// With a declared size it fails with errSizeMismatch when r runs short or
// has bytes left over.
func (p *partReader) next(buf []byte) (n int, last bool, err error) {
	if p.eof {
		return 0, true, nil
	}
	if p.size >= 0 {
		if rest := p.size - p.total; rest < int64(len(buf)) {
			buf = buf[:rest]
		}
	}
	if p.hasPeek && len(buf) > 0 {
		buf[0] = p.peek
		p.hasPeek = false
		n = 1
	}
	m, err := io.ReadFull(p.r, buf[n:])
	n += m
	p.total += int64(n)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		p.eof = true
	case err != nil:
		return n, false, fmt.Errorf("reading: %w", err)
	default:
		// buf is full: is there more?
		var b [1]byte
		for {
			k, err := p.r.Read(b[:])
			if k > 0 {
				p.peek, p.hasPeek = b[0], true
				break
			}
			if err == io.EOF {
				p.eof = true
				break
			}
			if err != nil {
				return n, false, fmt.Errorf("reading: %w", err)
			}
		}
	}
	if p.size >= 0 {
		switch {
		case p.eof && p.total < p.size:
			return n, false, fmt.Errorf("%w: got %d bytes, want %d", errSizeMismatch, p.total, p.size)
		case !p.eof && p.total >= p.size:
			return n, false, fmt.Errorf("%w: more than %d bytes", errSizeMismatch, p.size)
		}
	}
	return n, p.eof, nil
}
