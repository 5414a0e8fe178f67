package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/minio/minio-go/v7"

	"github.com/seedship/seedship/store"
)

// The lease of the writer lock, the defaults of Config.LockRefresh and
// Config.LockStale. The holder rewrites the lock object every 20 s; a lock
// whose object is older than 2 minutes (by the server's clock) belongs to a
// writer that died or lost its link, and the next Lock takes it over, so a
// killed capture can be resumed two minutes later.
const (
	DefaultLockRefresh = 20 * time.Second
	DefaultLockStale   = 2 * time.Minute
)

// lockHolderMax bounds what is read of a lock object, which anyone with
// write access to the bucket may have written.
const lockHolderMax = 512

var _ store.Locker = (*Store)(nil)

// Lock takes the writer lock of the image: the object [store.LockKey]
// under the prefix, created with a conditional PUT (If-None-Match: *) so
// that of two writers exactly one succeeds, and holding owner and the
// time. A goroutine rewrites it every Config.LockRefresh (If-Match its own
// ETag) until unlock, which deletes it.
//
// While another writer's lock is fresh, Lock fails with an error wrapping
// [store.ErrLocked] that names the holder and the lock's age. A lock older
// than Config.LockStale is taken over with a PUT conditional on its ETag. A
// server that ignores If-None-Match (checked for real, by a second
// conditional PUT that must fail) cannot hold a lock: Lock then removes its
// object and fails with an error wrapping [store.ErrNoLock]. A server that
// honours If-None-Match but not If-Match still locks, but a stale lock is
// then not taken over by itself: the error says to delete it.
//
// If the lease is lost (another writer took it over while this one could
// not refresh it for LockStale), unlock returns an error saying so. unlock
// releases the lock even when its ctx is already cancelled (it then gives
// itself 30 s), so an interrupted writer does not leave a lock behind.
func (s *Store) Lock(ctx context.Context, owner string) (func(context.Context) error, error) {
	obj := s.prefix + store.LockKey
	loc := s.loc(store.LockKey)
	body := []byte(lockLine(owner, lockHolderMax-100) + " since " + time.Now().UTC().Format(time.RFC3339) + " " + holderTag() + "\n")

	etag, err := s.putLock(ctx, obj, body, "*", "")
	switch {
	case err == nil:
		// Prove that the server honours the condition: the same PUT
		// again must be refused.
		_, perr := s.putLock(ctx, obj, body, "*", "")
		if perr == nil {
			_ = s.core.RemoveObject(context.WithoutCancel(ctx), s.bucket, obj, minio.RemoveObjectOptions{})
			return nil, fmt.Errorf("s3: cannot lock %s: the server %s ignores conditional writes (If-None-Match), so two writers cannot be kept apart: %w",
				s, s.cfg.endpointURL(), store.ErrNoLock)
		}
		if !preconditionFailed(perr) {
			_ = s.core.RemoveObject(context.WithoutCancel(ctx), s.bucket, obj, minio.RemoveObjectOptions{})
			return nil, translateError("lock", loc, perr)
		}
	case preconditionFailed(err):
		etag, err = s.takeStale(ctx, obj, loc, body)
		if err != nil {
			return nil, err
		}
	case notImplemented(err):
		return nil, fmt.Errorf("s3: cannot lock %s: the server %s does not support conditional writes (If-None-Match): %w",
			s, s.cfg.endpointURL(), store.ErrNoLock)
	default:
		return nil, translateError("lock", loc, err)
	}
	return s.holdLock(obj, loc, body, etag), nil
}

// takeStale reads the lock that another writer holds and takes it over if
// it is stale; otherwise it returns the ErrLocked error naming the holder.
func (s *Store) takeStale(ctx context.Context, obj, loc string, body []byte) (string, error) {
	holder, info, err := s.readLock(ctx, obj)
	if errors.Is(err, store.ErrNotExist) {
		// Released in between: try once more from the start.
		etag, err := s.putLock(ctx, obj, body, "*", "")
		if err == nil {
			return etag, nil
		}
		if !preconditionFailed(err) {
			return "", translateError("lock", loc, err)
		}
		if holder, info, err = s.readLock(ctx, obj); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	age := s.clock.now().Sub(info.LastModified).Truncate(time.Second)
	if age < s.lockStale && !holderGone(holder) {
		return "", fmt.Errorf("s3: %s is being written by %s (its lock %s was refreshed %v ago; a lock not refreshed for %v is stale and is taken over): %w",
			s, holder, loc, max(age, 0), s.lockStale, store.ErrLocked)
	}
	ok, err := s.honoursIfMatch(ctx)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("s3: %s holds the stale lock of %s (not refreshed for %v), and the server %s cannot replace it safely (it ignores If-Match); if that writer is gone, delete %s and try again: %w",
			s, holder, age, s.cfg.endpointURL(), loc, store.ErrLocked)
	}
	etag, err := s.putLock(ctx, obj, body, "", info.ETag)
	if preconditionFailed(err) {
		return "", fmt.Errorf("s3: %s was taken over by another writer while this one was taking over the stale lock of %s: %w", s, holder, store.ErrLocked)
	}
	if err != nil {
		return "", translateError("lock", loc, err)
	}
	return etag, nil
}

// holdLock starts the refresher and returns the unlock function.
func (s *Store) holdLock(obj, loc string, body []byte, etag string) func(context.Context) error {
	ctx, stop := context.WithCancel(context.Background())
	var (
		mu   sync.Mutex
		lost error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		t := time.NewTicker(s.lockRefresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(ctx, s.lockRefresh)
			newTag, err := s.putLock(rctx, obj, body, "", etag)
			cancel()
			switch {
			case err == nil:
				mu.Lock()
				etag = newTag
				mu.Unlock()
			case preconditionFailed(err):
				mu.Lock()
				lost = fmt.Errorf("s3: the writer lock %s was taken over by another writer (it was not refreshed for %v): this image may hold that writer's objects too", loc, s.lockStale)
				mu.Unlock()
				return
			}
			// Other failures: try again at the next tick; the lease
			// lasts several of them.
		}
	}()
	var once sync.Once
	var uerr error
	return func(uctx context.Context) error {
		once.Do(func() {
			// Release even when the caller's ctx was cancelled (an
			// interrupted command), or the next writer waits a lease.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(uctx), 30*time.Second)
			defer cancel()
			stop()
			<-done
			mu.Lock()
			defer mu.Unlock()
			if lost != nil {
				uerr = lost
				return
			}
			// Delete only our own lock (not a successor's).
			oi, err := s.core.StatObject(uctx, s.bucket, obj, minio.StatObjectOptions{})
			if err != nil {
				if err = translateError("unlock", loc, err); !errors.Is(err, store.ErrNotExist) {
					uerr = err
				}
				return
			}
			if oi.ETag != etag {
				uerr = fmt.Errorf("s3: the writer lock %s was taken over by another writer: this image may hold that writer's objects too", loc)
				return
			}
			if err := s.core.RemoveObject(uctx, s.bucket, obj, minio.RemoveObjectOptions{}); err != nil {
				uerr = translateError("unlock", loc, err)
			}
		})
		return uerr
	}
}

// putLock writes the lock object with the condition If-None-Match: noneMatch
// (when not "") or If-Match: match (when not ""), and returns its ETag.
func (s *Store) putLock(ctx context.Context, obj string, body []byte, noneMatch, match string) (string, error) {
	// Like every PUT of this store, the lock carries its CRC-32C, which
	// the server checks (the payload itself is unsigned).
	opts := minio.PutObjectOptions{ContentType: "text/plain; charset=utf-8", DisableContentSha256: true,
		UserMetadata: map[string]string{checksumHeader: crc32cBase64(body)}}
	if noneMatch != "" {
		opts.SetMatchETagExcept(noneMatch)
	}
	if match != "" {
		opts.SetMatchETag(match)
	}
	info, err := s.core.PutObject(ctx, s.bucket, obj, bytes.NewReader(body), int64(len(body)), "", "", opts)
	if err != nil {
		return "", err
	}
	return info.ETag, nil
}

// readLock returns the holder named by the lock object and its info.
func (s *Store) readLock(ctx context.Context, obj string) (string, minio.ObjectInfo, error) {
	loc := s.loc(store.LockKey)
	var opts minio.GetObjectOptions
	_ = opts.SetRange(0, lockHolderMax-1)
	rc, info, _, err := s.core.GetObject(ctx, s.bucket, obj, opts)
	if err != nil {
		return "", info, translateError("lock", loc, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, lockHolderMax))
	if err != nil {
		return "", info, translateError("lock", loc, err)
	}
	holder := lockLine(string(b), lockHolderMax)
	if holder == "" {
		holder = "another writer (its lock names no holder)"
	}
	return holder, info, nil
}

// honoursIfMatch checks whether the server refuses a PUT
// whose If-Match does not match: on a probe key that does not exist, which
// such a PUT must not create.
func (s *Store) honoursIfMatch(ctx context.Context) (bool, error) {
	probe := s.prefix + store.LockKey + ".probe"
	_, err := s.putLock(ctx, probe, []byte("probe\n"), "", "00000000000000000000000000000000")
	switch {
	case err == nil:
		_ = s.core.RemoveObject(context.WithoutCancel(ctx), s.bucket, probe, minio.RemoveObjectOptions{})
		return false, nil
	case preconditionFailed(err), errors.Is(translateError("lock", "", err), store.ErrNotExist):
		return true, nil
	case notImplemented(err):
		return false, nil
	}
	return false, translateError("lock", s.loc(store.LockKey), err)
}

// preconditionFailed reports whether err is the answer to a conditional
// request whose condition did not hold (HTTP 412; some servers answer a
// concurrent conditional write with 409).
func preconditionFailed(err error) bool {
	var er minio.ErrorResponse
	if !errors.As(err, &er) {
		return false
	}
	return er.StatusCode == http.StatusPreconditionFailed || er.Code == "PreconditionFailed" ||
		er.StatusCode == http.StatusConflict && er.Code == "ConditionalRequestConflict"
}

// notImplemented reports whether the server refused a header it does not
// support.
func notImplemented(err error) bool {
	var er minio.ErrorResponse
	return errors.As(err, &er) && (er.StatusCode == http.StatusNotImplemented || er.Code == "NotImplemented")
}

// holderTag names this process in the lock object, so that a writer on
// the same host can tell that the holder died (a capture killed and
// resumed at once) without waiting out the lease.
func holderTag() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("[host %s pid %d]", strings.Join(strings.Fields(host), "_"), os.Getpid())
}

var holderTagRE = regexp.MustCompile(`\[host (\S+) pid (\d+)\]$`)

// holderGone reports whether the lock's holder is a process of this host
// that no longer exists. A holder on another host, or one whose process
// may be alive (a reused pid included), is never taken for gone: only the
// lease expiring frees its lock.
func holderGone(holder string) bool {
	m := holderTagRE.FindStringSubmatch(holder)
	if m == nil {
		return false
	}
	host, _ := os.Hostname()
	pid, err := strconv.Atoi(m[2])
	if err != nil || m[1] != strings.Join(strings.Fields(host), "_") || pid == os.Getpid() {
		return false
	}
	return processGone(pid)
}

// lockLine makes s one printable line of at most max bytes (the owner is
// cut shorter than the lock object's limit, leaving room for the time and
// holderTag).
func lockLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max]
	}
	return s
}
