package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/seedship/seedship/store"
)

// Store is a [store.Store] that keeps every object in memory. It is safe
// for concurrent use. The zero value is not usable; call [New].
type Store struct {
	name string

	mu   sync.RWMutex
	objs map[string]object
	lock *lockHolder // nil when nobody holds the writer lock
}

// object is one stored version; its bytes are never changed after Put.
type object struct {
	data []byte
	mod  time.Time
}

type lockHolder struct{ owner string }

var (
	_ store.Store       = (*Store)(nil)
	_ store.Connections = (*Store)(nil)
	_ store.Locker      = (*Store)(nil)
)

var storeCount atomic.Int64

// New returns a new, empty Store whose String is "mem:N", N unique within
// the process.
func New() *Store {
	return &Store{name: fmt.Sprintf("mem:%d", storeCount.Add(1)), objs: map[string]object{}}
}

// String returns "mem:N".
func (s *Store) String() string { return s.name }

// Connections returns 4, so pools sized from it run some work in parallel.
func (s *Store) Connections() int { return 4 }

// ErrInvalidKey is wrapped by the error for a key that no store accepts:
// empty, absolute, with an empty, "." or ".." element, or a backslash or NUL
// byte. It also matches [store.ErrPermanent].
var ErrInvalidKey = errors.New("memstore: invalid key")

// keyError matches both ErrInvalidKey and store.ErrPermanent.
type keyError struct{ key, reason string }

func (e *keyError) Error() string {
	return fmt.Sprintf("memstore: invalid key %q: %s", e.key, e.reason)
}
func (e *keyError) Is(target error) bool {
	return target == ErrInvalidKey || target == store.ErrPermanent
}

func checkKey(key string) error {
	switch {
	case key == "":
		return &keyError{key, "empty"}
	case strings.HasPrefix(key, "/"):
		return &keyError{key, "absolute"}
	case strings.ContainsAny(key, "\\\x00"):
		return &keyError{key, "contains a backslash or NUL byte"}
	}
	for elem := range strings.SplitSeq(key, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return &keyError{key, fmt.Sprintf("has an element %q", elem)}
		}
	}
	return nil
}

// Put reads all of r (checking ctx before every Read) and stores it under
// key once complete. A reader error, a length other than a non-negative
// size, or a cancelled ctx stores nothing and keeps any old object.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if size < -1 {
		return fmt.Errorf("memstore: put %s: invalid size %d", key, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: put %s: %w", key, err)
	}
	src := store.ContextReader(ctx, r)
	if size >= 0 {
		src = io.LimitReader(src, size+1) // one byte more tells a long reader
	}
	var buf bytes.Buffer
	if size > 0 {
		buf.Grow(int(min(size, 64<<20)))
	}
	n, err := buf.ReadFrom(src)
	switch {
	case err != nil:
		return fmt.Errorf("memstore: put %s: reading data: %w", key, err)
	case size >= 0 && n > size:
		return fmt.Errorf("memstore: put %s: reader has more than the declared %d bytes", key, size)
	case size >= 0 && n < size:
		return fmt.Errorf("memstore: put %s: reader has %d bytes, declared %d: %w", key, n, size, io.ErrUnexpectedEOF)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: put %s: %w", key, err)
	}
	s.mu.Lock()
	s.objs[key] = object{data: bytes.Clone(buf.Bytes()), mod: time.Now()}
	s.mu.Unlock()
	return nil
}

// Get returns a reader for length bytes of key from off (to the end when
// length is negative). A range past the end of the object yields its bytes
// and then io.ErrUnexpectedEOF. Every Read checks ctx.
func (s *Store) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if off < 0 {
		return nil, fmt.Errorf("memstore: get %s: negative offset %d", key, off)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: get %s: %w", key, err)
	}
	s.mu.RLock()
	o, ok := s.objs[key]
	s.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("memstore: get %s: %w", key, store.ErrNotExist)
	}
	size := int64(len(o.data))
	length, err := store.RangeLength(off, length, size)
	if err != nil {
		return nil, fmt.Errorf("memstore: get %s: %w", key, err)
	}
	end := min(off+length, size)
	body := o.data[min(off, size):max(end, min(off, size))]
	return &objectReader{ctx: ctx, key: key, r: bytes.NewReader(body), short: off + length - max(end, off)}, nil
}

// objectReader serves a Get: the bytes available, then io.ErrUnexpectedEOF
// if short bytes of the range were beyond the object's end.
type objectReader struct {
	ctx   context.Context
	key   string
	r     *bytes.Reader
	short int64
}

func (r *objectReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, fmt.Errorf("memstore: get %s: %w", r.key, err)
	}
	n, err := r.r.Read(p)
	if err == io.EOF && r.short > 0 {
		return n, fmt.Errorf("memstore: get %s: object ends %d bytes short of the range: %w", r.key, r.short, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (r *objectReader) Close() error { return nil }

// Stat returns the size and time of key, or an error wrapping
// [store.ErrNotExist].
func (s *Store) Stat(ctx context.Context, key string) (store.Info, error) {
	if err := checkKey(key); err != nil {
		return store.Info{}, err
	}
	if err := ctx.Err(); err != nil {
		return store.Info{}, fmt.Errorf("memstore: stat %s: %w", key, err)
	}
	s.mu.RLock()
	o, ok := s.objs[key]
	s.mu.RUnlock()
	if !ok {
		return store.Info{}, fmt.Errorf("memstore: stat %s: %w", key, store.ErrNotExist)
	}
	return store.Info{Key: key, Size: int64(len(o.data)), ModTime: o.mod}, nil
}

// List calls fn for the keys that begin with prefix, in lexical order, as
// they were when List began. It checks ctx before each call of fn.
func (s *Store) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	var infos []store.Info
	s.mu.RLock()
	for k, o := range s.objs {
		if strings.HasPrefix(k, prefix) {
			infos = append(infos, store.Info{Key: k, Size: int64(len(o.data)), ModTime: o.mod})
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(infos, func(a, b store.Info) int { return strings.Compare(a.Key, b.Key) })
	for _, info := range infos {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memstore: list %q: %w", prefix, err)
		}
		if err := fn(info); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: delete %s: %w", key, err)
	}
	s.mu.Lock()
	delete(s.objs, key)
	s.mu.Unlock()
	return nil
}

// Lock takes the store's writer lock for owner. While it is held, another
// Lock fails with an error wrapping [store.ErrLocked] that names the
// holder. The lock is not an object: List, Stat and Get do not see it.
func (s *Store) Lock(ctx context.Context, owner string) (func(context.Context) error, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: lock %s: %w", s.name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lock != nil {
		return nil, fmt.Errorf("memstore: %s is being written by %s: %w", s.name, s.lock.owner, store.ErrLocked)
	}
	h := &lockHolder{owner: owner}
	s.lock = h
	return func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.lock != h {
			return fmt.Errorf("memstore: unlock %s: the lock of %s is no longer held", s.name, owner)
		}
		s.lock = nil
		return nil
	}, nil
}

// Object returns a copy of the bytes stored under key, bypassing faults
// and contexts, for tests to inspect what was written.
func (s *Store) Object(key string) ([]byte, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, ok := s.objs[key]
	return bytes.Clone(o.data), ok
}

// SetObject stores a copy of b under key at once, bypassing Put, for tests
// to plant or damage objects. It does not check key, so a test can plant
// one that Put would refuse.
func (s *Store) SetObject(key string, b []byte) {
	s.mu.Lock()
	s.objs[key] = object{data: bytes.Clone(b), mod: time.Now()}
	s.mu.Unlock()
}

// Keys returns every stored key in lexical order.
func (s *Store) Keys() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return slices.Sorted(maps.Keys(s.objs))
}
