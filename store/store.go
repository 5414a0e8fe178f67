// Package store moves opaque image files (segments, manifests, labels) to and
// from a place: a local directory, an S3-compatible bucket, and later a set of
// courier volumes. It knows nothing of the container format (it must not
// import format): keys are slash-separated relative names such as
// "manifest.ssm" or "data/00000000.seg", identical in every implementation, so
// a directory copied out of a bucket with any S3 tool is a valid image.
//
// The interface is small and every call takes a context first (restic's
// backend, kopia's blob.Storage). Retry, rate limiting and fault injection are
// wrappers in their own packages, not flags inside implementations.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"
)

// ErrNotExist is returned (wrapped) when a key does not exist. It is the same
// value as fs.ErrNotExist so that errors from package os match it for free.
var ErrNotExist = fs.ErrNotExist

// ErrPermanent marks failures that retrying cannot fix: bad credentials, a
// missing bucket, access denied, a read-only file system. Callers test it
// with errors.Is; the CLI maps it to exit code 2 before reading any source
// data. A full destination is not one of them: see [ErrNoSpace].
var ErrPermanent = errors.New("store: permanent failure")

// ErrNoSpace is returned (wrapped, with the path or key) when the place is
// full: no space left on the device, a disk quota exceeded, an object
// store's storage full. Retrying at once cannot fix it, so store/retry does
// not retry it, but it is not bad input either: it does not match
// [ErrPermanent], because it usually strikes after objects were written,
// and the work so far can be resumed once space is freed (the engine
// classifies it as resumable partial work, exit code 1). Test it with
// errors.Is before ErrPermanent, or with [IsFinal] for "do not retry".
var ErrNoSpace = errors.New("store: no space left")

// ErrNotRegular is returned (wrapped, with the path or key) when an object of
// an image is not a regular file: a FIFO, a device, a symlink or a directory
// where a file should be. Stores refuse to open such things, so that a
// crafted image can neither hang a reader nor lead a writer outside it.
// Readers treat it as damage of that one object.
var ErrNotRegular = errors.New("store: not a regular file")

// ErrLocked is returned (wrapped, naming the holder) by [Lock] when another
// writer holds the image's lock.
var ErrLocked = errors.New("store: locked by another writer")

// ErrNoLock is returned (wrapped) by [Lock] when the store cannot hold a
// writer lock (an object store without conditional writes).
var ErrNoLock = errors.New("store: cannot hold a writer lock here")

// LockKey is the reserved key at the root of an image under which a store
// that keeps its writer lock as a file or an object (store/dir, store/s3)
// keeps it. It is not part of the image: List never reports it, and Put,
// Get, Stat and Delete refuse it, so the lock never makes a destination
// look non-empty and is never copied or verified as an image file.
const LockKey = ".seedship.lock"

// Info describes one stored object.
type Info struct {
	Key     string    // slash-separated key relative to the store root
	Size    int64     // size in bytes
	ModTime time.Time // last modification time, if the store knows it
}

// Store is the minimal set of operations seedship needs from a place that
// holds an image. Implementations must be safe for concurrent use.
type Store interface {
	// Put stores the bytes read from r under key. size is the exact length,
	// or -1 when unknown. The object becomes visible under key only once it
	// is complete and durable: a reader never observes a partial object.
	// Cancelling ctx aborts the write and leaves no object under key.
	Put(ctx context.Context, key string, r io.Reader, size int64) error

	// Get returns a reader for length bytes of key starting at off; a
	// negative length means to the end. Reading fewer bytes than asked for
	// (a short object) yields io.ErrUnexpectedEOF, never a silent short
	// read. The caller closes the reader. A missing key wraps ErrNotExist.
	Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error)

	// Stat returns the Info of key, or an error wrapping ErrNotExist.
	Stat(ctx context.Context, key string) (Info, error)

	// List calls fn for every key that begins with prefix, in lexical
	// order, in the caller's goroutine. An error from fn stops the listing
	// and is returned. Temporary objects of unfinished Puts are not listed.
	List(ctx context.Context, prefix string, fn func(Info) error) error

	// Delete removes key. Deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error

	// String names the location for messages, e.g. "dir:/mnt/seed" or
	// "s3://bucket/prefix".
	String() string
}

// Connections is an optional ability: a store that reports how many
// requests it serves well in parallel, used to size worker pools.
type Connections interface {
	Connections() int
}

// ConnectionsOf returns s's preferred parallelism, or def when s does not say.
func ConnectionsOf(s Store, def int) int {
	if c, ok := s.(Connections); ok && c.Connections() > 0 {
		return c.Connections()
	}
	return def
}

// IsPermanent reports whether err is a failure that retrying cannot fix
// and that calls for a change of input (credentials, bucket, path). It is
// false for [ErrNoSpace]; see [IsFinal].
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// IsFinal reports whether retrying the failed call at once is pointless:
// err matches [ErrPermanent] or [ErrNoSpace].
func IsFinal(err error) bool { return errors.Is(err, ErrPermanent) || errors.Is(err, ErrNoSpace) }

// RangeLength resolves the length of a Get's range over an object of size
// bytes: length itself, or, when length is negative ("to the end"), the
// rest of the object from off, failing with an error wrapping
// io.ErrUnexpectedEOF when off is past its end.
func RangeLength(off, length, size int64) (int64, error) {
	if length >= 0 {
		return length, nil
	}
	if off > size {
		return 0, fmt.Errorf("offset %d is past the end of the %d-byte object: %w", off, size, io.ErrUnexpectedEOF)
	}
	return size - off, nil
}

// ContextReader returns r failing every Read once ctx is done, so that a
// Put copying from r stops within one Read of a cancellation.
func ContextReader(ctx context.Context, r io.Reader) io.Reader {
	return contextReader{ctx, r}
}

type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Sleep waits d, or until ctx is done and then returns ctx's error: the
// pause between retries, or of an injected delay, that a cancellation
// ends at once.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ReaderAt adapts key in s to io.ReaderAt with one ranged Get per call. A
// read past the end of the object returns io.ErrUnexpectedEOF.
func ReaderAt(ctx context.Context, s Store, key string) io.ReaderAt {
	return readerAt{ctx, s, key}
}

type readerAt struct {
	ctx context.Context
	s   Store
	key string
}

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	rc, err := r.s.Get(r.ctx, r.key, off, int64(len(p)))
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	n, err := io.ReadFull(rc, p)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Cleaner is an optional ability: removing what the unfinished writes of
// a process that died left behind (temporary files of a directory store,
// incomplete multipart uploads of an object store). Such leftovers are
// never visible as objects; cleaning only frees their space. Call it only
// while nothing else writes to the store.
type Cleaner interface {
	RemoveIncomplete(ctx context.Context) error
}

// Unwrapper is implemented by wrappers (retry, rate limit) to reach the
// store they wrap.
type Unwrapper interface {
	Unwrap() Store
}

// Locker is an optional ability: an exclusive writer lock on the image a
// store holds, so that two captures, copies or repairs never write one image
// at once. A lock whose holder died is released (a directory's flock) or
// expires (an object store's lease) by itself.
type Locker interface {
	// Lock takes the lock for owner, a one-line description of the writer
	// (command, host, pid) that a refused writer's error names. It fails
	// with an error wrapping ErrLocked while another writer holds it. The
	// returned unlock releases it; call it once.
	Lock(ctx context.Context, owner string) (unlock func(context.Context) error, err error)
}

// Lock takes the writer lock of s, finding a [Locker] in s or the stores
// it wraps. Without one it returns an error wrapping ErrNoLock.
func Lock(ctx context.Context, s Store, owner string) (func(context.Context) error, error) {
	for x := s; x != nil; {
		if l, ok := x.(Locker); ok {
			return l.Lock(ctx, owner)
		}
		u, ok := x.(Unwrapper)
		if !ok {
			break
		}
		x = u.Unwrap()
	}
	return nil, fmt.Errorf("%w: %s", ErrNoLock, s)
}

// AsCleaner finds a Cleaner in s or the stores it wraps.
func AsCleaner(s Store) (Cleaner, bool) {
	for s != nil {
		if c, ok := s.(Cleaner); ok {
			return c, true
		}
		u, ok := s.(Unwrapper)
		if !ok {
			return nil, false
		}
		s = u.Unwrap()
	}
	return nil, false
}

// PipeWriter streams bytes into a Put running in its own goroutine, for
// writers (segment encoders, verifying copies) that produce an object
// front to back. The object appears only if Close succeeds.
type PipeWriter struct {
	pw   *io.PipeWriter
	done chan error
}

// PutPipe starts s.Put(ctx, key, …, size) fed by the returned writer.
func PutPipe(ctx context.Context, s Store, key string, size int64) *PipeWriter {
	pr, pw := io.Pipe()
	w := &PipeWriter{pw: pw, done: make(chan error, 1)}
	go func() {
		err := s.Put(ctx, key, pr, size)
		pr.CloseWithError(err) // unblocks the writer if Put failed early
		w.done <- err
	}()
	return w
}

// Write passes b to the Put; it fails once the Put has failed.
func (w *PipeWriter) Write(b []byte) (int, error) { return w.pw.Write(b) }

// Close ends the object and waits for the Put's result.
func (w *PipeWriter) Close() error {
	w.End()
	return w.Wait()
}

// End ends the object without waiting for the Put; Wait collects its
// result. It lets a writer go on with the next object while this one's
// last bytes are still being sent.
func (w *PipeWriter) End() { w.pw.Close() }

// Wait waits for the Put's result; call it once, after End.
func (w *PipeWriter) Wait() error { return <-w.done }

// CloseWithError abandons the object: the Put fails with err and stores
// nothing. It waits for the Put to end and returns nil.
func (w *PipeWriter) CloseWithError(err error) error {
	w.pw.CloseWithError(err)
	_ = w.Wait() // the Put's error is err, or its own failure before it
	return nil
}
