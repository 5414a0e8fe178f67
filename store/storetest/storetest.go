package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/seedship/seedship/store"
)

// Run runs the conformance suite against the stores newStore returns, one
// subtest per contract. newStore is called once per subtest and must return
// a new, empty store; it should register any cleanup with t.Cleanup and call
// t.Skip if the backing service is unavailable.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"PutGet", testPutGet},
		{"Stat", testStat},
		{"GetRange", testGetRange},
		{"GetShort", testGetShort},
		{"GetNegativeOffset", testGetNegativeOffset},
		{"GetCancel", testGetCancel},
		{"Missing", testMissing},
		{"DirectoryIsNotAKey", testDirectoryIsNotAKey},
		{"PutWrongSize", testPutWrongSize},
		{"PutReaderError", testPutReaderError},
		{"PutCancelled", testPutCancelled},
		{"PutCancelledMidway", testPutCancelledMidway},
		{"Overwrite", testOverwrite},
		{"FailedOverwriteKeepsOld", testFailedOverwriteKeepsOld},
		{"InvisibleUntilComplete", testInvisibleUntilComplete},
		{"OverwriteIsAtomic", testOverwriteIsAtomic},
		{"ListOrder", testListOrder},
		{"ListPrefix", testListPrefix},
		{"ListEmpty", testListEmpty},
		{"ListStop", testListStop},
		{"ListCancel", testListCancel},
		{"Delete", testDelete},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ConcurrentPutsSameKey", testConcurrentPutsSameKey},
		{"Connections", testConnections},
		{"Lock", testLock},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if s == nil {
				t.Fatal("newStore returned nil")
			}
			tc.fn(t, s)
		})
	}
}

// errBoom is the error of the failing readers below.
var errBoom = errors.New("storetest: injected reader failure")

// data returns n pseudo-random bytes, the same for the same seed.
func data(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// onlyReader hides every method but Read (WriterTo, Seeker, Len), so an
// implementation cannot depend on them.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func put(t *testing.T, s store.Store, key string, b []byte) {
	t.Helper()
	if err := s.Put(t.Context(), key, onlyReader{bytes.NewReader(b)}, int64(len(b))); err != nil {
		t.Fatalf("Put(%q, %d bytes): %v", key, len(b), err)
	}
}

// get reads length bytes of key at off, folding an error from Get and one
// from reading into a single error, as a caller sees them.
func get(ctx context.Context, s store.Store, key string, off, length int64) ([]byte, error) {
	rc, err := s.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing the reader: %w", cerr)
	}
	return b, err
}

func mustGet(t *testing.T, s store.Store, key string, want []byte) {
	t.Helper()
	b, err := get(t.Context(), s, key, 0, -1)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("Get(%q) = %d bytes, want %d bytes (%s)", key, len(b), len(want), firstDiff(b, want))
	}
}

func firstDiff(a, b []byte) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at byte %d", i)
		}
	}
	return "one is a prefix of the other"
}

// mustNotExist checks that key is absent from Stat, Get and List (other
// keys may have it as a prefix).
func mustNotExist(t *testing.T, s store.Store, key string) {
	t.Helper()
	ctx := t.Context()
	if info, err := s.Stat(ctx, key); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("Stat(%q) = %+v, %v; want an error wrapping ErrNotExist", key, info, err)
	}
	if _, err := get(ctx, s, key, 0, -1); !errors.Is(err, store.ErrNotExist) {
		t.Errorf("Get(%q) error = %v; want an error wrapping ErrNotExist", key, err)
	}
	if keys := listKeys(t, s, key); slices.Contains(keys, key) {
		t.Errorf("List(%q) = %q; want no %q", key, keys, key)
	}
}

// wantKeys fails t unless a listing of s reports exactly want, in order;
// when says at what point, for the message.
func wantKeys(t *testing.T, s store.Store, when string, want ...string) {
	t.Helper()
	if got := listKeys(t, s, ""); !slices.Equal(got, want) {
		t.Errorf("List %s = %q, want %q", when, got, want)
	}
}

func listKeys(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	keys := []string{}
	err := s.List(t.Context(), prefix, func(info store.Info) error {
		keys = append(keys, info.Key)
		return nil
	})
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

func testPutGet(t *testing.T, s store.Store) {
	for i, n := range []int{0, 1, 1<<20 + 3} {
		b := data(n, uint64(i))
		t.Run(fmt.Sprintf("size=%d", n), func(t *testing.T) {
			key := fmt.Sprintf("known/%d", n)
			put(t, s, key, b)
			mustGet(t, s, key, b)
		})
		t.Run(fmt.Sprintf("size=%d/unknown", n), func(t *testing.T) {
			key := fmt.Sprintf("unknown/%d", n)
			r := iotest.HalfReader(bytes.NewReader(b))
			if err := s.Put(t.Context(), key, r, -1); err != nil {
				t.Fatalf("Put(%q, size -1): %v", key, err)
			}
			mustGet(t, s, key, b)
			info, err := s.Stat(t.Context(), key)
			if err != nil || info.Size != int64(n) {
				t.Fatalf("Stat(%q) = %+v, %v; want size %d", key, info, err, n)
			}
		})
	}
}

func testStat(t *testing.T, s store.Store) {
	for _, key := range []string{"manifest.ssm", "data/00000001.seg", "a/b/c/d/e"} {
		b := data(len(key)*100, 7)
		put(t, s, key, b)
		info, err := s.Stat(t.Context(), key)
		if err != nil {
			t.Fatalf("Stat(%q): %v", key, err)
		}
		if info.Key != key || info.Size != int64(len(b)) {
			t.Errorf("Stat(%q) = %+v; want Key %q, Size %d", key, info, key, len(b))
		}
	}
}

func testGetRange(t *testing.T, s store.Store) {
	const size = 100_000
	b := data(size, 1)
	put(t, s, "obj", b)
	for _, tc := range []struct{ off, length int64 }{
		{0, -1},
		{0, size},
		{100, 200},
		{100, -1},
		{size - 1, 1},
		{size - 1, -1},
		{100, 0},
		{0, 0},
		{size, 0},
		{size, -1},
	} {
		got, err := get(t.Context(), s, "obj", tc.off, tc.length)
		end := int64(size)
		if tc.length >= 0 {
			end = tc.off + tc.length
		}
		if err != nil {
			t.Errorf("Get(off %d, length %d): %v", tc.off, tc.length, err)
			continue
		}
		if want := b[tc.off:end]; !bytes.Equal(got, want) {
			t.Errorf("Get(off %d, length %d) = %d bytes, want %d (%s)", tc.off, tc.length, len(got), len(want), firstDiff(got, want))
		}
	}
}

func testGetShort(t *testing.T, s store.Store) {
	const size = 10_000
	b := data(size, 2)
	put(t, s, "obj", b)
	for _, tc := range []struct{ off, length int64 }{
		{size - 10, 20},
		{0, size + 1},
		{size, 1},
		{size + 5, 10},
		{size + 5, -1}, // "to the end" from past the end
	} {
		got, err := get(t.Context(), s, "obj", tc.off, tc.length)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Get(off %d, length %d) = %d bytes, %v; want an error wrapping io.ErrUnexpectedEOF",
				tc.off, tc.length, len(got), err)
			continue
		}
		// Bytes delivered before the error must be the object's.
		if avail := b[min(tc.off, size):]; len(got) > len(avail) || !bytes.Equal(got, avail[:len(got)]) {
			t.Errorf("Get(off %d, length %d) delivered %d bytes that are not the object's", tc.off, tc.length, len(got))
		}
	}
	// io.ReadFull is how the engine reads a frame; it must not hide the error.
	rc, err := s.Get(t.Context(), "obj", size-10, 20)
	if err == nil {
		_, err = io.ReadFull(rc, make([]byte, 20))
		rc.Close()
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadFull of a short range: %v; want io.ErrUnexpectedEOF", err)
	}
}

func testGetNegativeOffset(t *testing.T, s store.Store) {
	put(t, s, "obj", data(100, 3))
	if b, err := get(t.Context(), s, "obj", -1, 10); err == nil {
		t.Errorf("Get(off -1) = %d bytes, nil error; want an error", len(b))
	}
}

func testGetCancel(t *testing.T, s store.Store) {
	b := data(4<<20, 4)
	put(t, s, "big", b)

	ctx, cancel := context.WithCancel(t.Context())
	rc, err := s.Get(ctx, "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 64<<10)); err != nil {
		t.Fatalf("first read: %v", err)
	}
	cancel()
	n, err := io.Copy(io.Discard, rc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("reading after cancel: %d bytes, %v; want an error wrapping context.Canceled", n, err)
	}

	// A ctx that is already done fails in Get or on the first Read.
	if _, err := get(ctx, s, "big", 0, -1); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled ctx: %v; want an error wrapping context.Canceled", err)
	}
}

func testMissing(t *testing.T, s store.Store) {
	put(t, s, "data/00000000.seg", []byte("x"))
	for _, key := range []string{"missing", "missing/nested/key", "data/00000001.seg", "data/00000000.seg/x"} {
		mustNotExist(t, s, key)
		if _, err := get(t.Context(), s, key, 10, 5); !errors.Is(err, store.ErrNotExist) {
			t.Errorf("ranged Get(%q): %v; want an error wrapping ErrNotExist", key, err)
		}
	}
}

func testDirectoryIsNotAKey(t *testing.T, s store.Store) {
	put(t, s, "data/sub/00000000.seg", []byte("seg"))
	for _, key := range []string{"data", "data/sub"} {
		mustNotExist(t, s, key)
		if err := s.Delete(t.Context(), key); err != nil {
			t.Errorf("Delete(%q): %v", key, err)
		}
	}
	mustGet(t, s, "data/sub/00000000.seg", []byte("seg"))
	wantKeys(t, s, "after Delete of directories", "data/sub/00000000.seg")
}

func testPutWrongSize(t *testing.T, s store.Store) {
	for _, tc := range []struct {
		n    int
		size int64
	}{{9, 10}, {11, 10}, {1, 0}, {0, 1}, {1<<20 + 3, 1 << 20}} {
		key := fmt.Sprintf("obj-%d-%d", tc.n, tc.size)
		err := s.Put(t.Context(), key, onlyReader{bytes.NewReader(data(tc.n, 5))}, tc.size)
		if err == nil {
			t.Errorf("Put of %d bytes declared as %d: no error", tc.n, tc.size)
		}
		mustNotExist(t, s, key)
	}
	wantKeys(t, s, "after failed Puts")
}

// failingReader returns n bytes of zeros, then errBoom.
type failingReader struct{ n int }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errBoom
	}
	p = p[:min(len(p), r.n)]
	clear(p)
	r.n -= len(p)
	return len(p), nil
}

func testPutReaderError(t *testing.T, s store.Store) {
	for _, size := range []int64{1 << 20, -1} {
		key := fmt.Sprintf("obj%d", size)
		err := s.Put(t.Context(), key, &failingReader{n: 300 << 10}, size)
		if err == nil {
			t.Errorf("Put(size %d) with a failing reader: no error", size)
		} else if !errors.Is(err, errBoom) {
			t.Logf("Put(size %d) error does not wrap the reader's error: %v", size, err)
		}
		mustNotExist(t, s, key)
	}
}

func testPutCancelled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Put(ctx, "obj", onlyReader{bytes.NewReader([]byte("data"))}, 4)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled ctx: %v; want an error wrapping context.Canceled", err)
	}
	mustNotExist(t, s, "obj")
}

// cancelReader reads from r and calls cancel once after bytes have been read.
type cancelReader struct {
	r      io.Reader
	after  int
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.after -= n; c.after <= 0 {
		c.cancel()
	}
	return n, err
}

func testPutCancelledMidway(t *testing.T, s store.Store) {
	b := data(4<<20, 6)
	for _, size := range []int64{int64(len(b)), -1} {
		key := fmt.Sprintf("obj%d", size)
		ctx, cancel := context.WithCancel(t.Context())
		r := &cancelReader{r: bytes.NewReader(b), after: 256 << 10, cancel: cancel}
		err := s.Put(ctx, key, r, size)
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Put(size %d) cancelled midway: %v; want an error wrapping context.Canceled", size, err)
		}
		mustNotExist(t, s, key)
	}
}

func testOverwrite(t *testing.T, s store.Store) {
	a, b := data(5000, 7), data(300, 8)
	put(t, s, "obj", a)
	put(t, s, "obj", b)
	mustGet(t, s, "obj", b)
	if info, err := s.Stat(t.Context(), "obj"); err != nil || info.Size != int64(len(b)) {
		t.Errorf("Stat after overwrite = %+v, %v; want size %d", info, err, len(b))
	}
	wantKeys(t, s, "after overwrite", "obj")
}

func testFailedOverwriteKeepsOld(t *testing.T, s store.Store) {
	old := data(5000, 9)
	put(t, s, "obj", old)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for name, fail := range map[string]func() error{
		"short": func() error {
			return s.Put(t.Context(), "obj", onlyReader{bytes.NewReader(data(10, 1))}, 11)
		},
		"reader error": func() error {
			return s.Put(t.Context(), "obj", &failingReader{n: 1000}, -1)
		},
		"cancelled": func() error {
			r := &cancelReader{r: bytes.NewReader(data(2<<20, 1)), after: 1, cancel: cancel}
			return s.Put(ctx, "obj", r, 2<<20)
		},
	} {
		if err := fail(); err == nil {
			t.Errorf("%s: failing overwrite returned nil", name)
		}
		mustGet(t, s, "obj", old)
	}
	wantKeys(t, s, "after failed overwrites", "obj")
}

// testInvisibleUntilComplete holds a Put halfway through its reader and
// checks that neither a new key nor the new version of an old key shows.
func testInvisibleUntilComplete(t *testing.T, s store.Store) {
	old := data(1000, 10)
	put(t, s, "old", old)
	for _, key := range []string{"new", "old", "nested/new"} {
		b := data(512<<10, 11)
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := s.Put(t.Context(), key, pr, int64(len(b)))
			// Unblock the writes below if Put gave up early.
			pr.CloseWithError(fmt.Errorf("storetest: Put returned %v", err))
			done <- err
		}()
		if _, err := pw.Write(b[:len(b)/2]); err != nil {
			t.Fatalf("feeding Put(%q): %v", key, err)
		}
		// Put has consumed half of the object.
		if key == "old" {
			mustGet(t, s, key, old)
			if info, err := s.Stat(t.Context(), key); err != nil || info.Size != int64(len(old)) {
				t.Errorf("Stat(%q) during overwrite = %+v, %v; want the old size %d", key, info, err, len(old))
			}
		} else {
			mustNotExist(t, s, key)
		}
		if keys := listKeys(t, s, ""); key != "old" && slices.Contains(keys, key) {
			t.Errorf("List during Put(%q) = %q", key, keys)
		}
		if _, err := pw.Write(b[len(b)/2:]); err != nil {
			t.Fatalf("feeding Put(%q): %v", key, err)
		}
		pw.Close()
		if err := <-done; err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
		mustGet(t, s, key, b)
	}
}

func testOverwriteIsAtomic(t *testing.T, s store.Store) {
	versions := [][]byte{data(256<<10, 12), data(300<<10+1, 13)}
	put(t, s, "obj", versions[0])
	stop := make(chan struct{})
	var reads atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				b, err := get(t.Context(), s, "obj", 0, -1)
				reads.Add(1)
				if err != nil {
					t.Errorf("Get during overwrites: %v", err)
					return
				}
				if !bytes.Equal(b, versions[0]) && !bytes.Equal(b, versions[1]) {
					t.Errorf("Get during overwrites returned %d bytes that are neither version", len(b))
					return
				}
			}
		})
	}
	// Overwrite at least 20 times, and until the readers have read a few
	// times: on a fast store they may start only after 20 Puts.
	for i := 0; i < 20 || (reads.Load() < 10 && i < 100_000); i++ {
		put(t, s, "obj", versions[(i+1)%2])
	}
	put(t, s, "obj", versions[0])
	close(stop)
	wg.Wait()
	mustGet(t, s, "obj", versions[0])
}

// listKeysOrder holds keys whose byte order differs from a per-directory
// walk: '-' < '.' < '/' < '0'. No key is a directory of another, so a file
// system can hold them all.
var listKeysOrder = []string{
	"a-b", "a.b", "a/b", "a0", "b",
	"data.txt", "data/00000000.seg", "data/00000001.seg", "data/00000010.seg",
	"data/sub/deep/x", "manifest.ssm", "z/\u00e4",
}

func putListKeys(t *testing.T, s store.Store) map[string]int64 {
	sizes := map[string]int64{}
	perm := rand.New(rand.NewPCG(1, 2)).Perm(len(listKeysOrder))
	for _, i := range perm {
		key := listKeysOrder[i]
		put(t, s, key, data(i*37, uint64(i)))
		sizes[key] = int64(i * 37)
	}
	return sizes
}

func testListOrder(t *testing.T, s store.Store) {
	sizes := putListKeys(t, s)
	var got []string
	err := s.List(t.Context(), "", func(info store.Info) error {
		got = append(got, info.Key)
		if info.Size != sizes[info.Key] {
			t.Errorf("List: %q has size %d, want %d", info.Key, info.Size, sizes[info.Key])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(listKeysOrder))
	if !slices.Equal(got, want) {
		t.Errorf("List order:\n got %q\nwant %q", got, want)
	}
}

func testListPrefix(t *testing.T, s store.Store) {
	putListKeys(t, s)
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"data/", []string{"data/00000000.seg", "data/00000001.seg", "data/00000010.seg", "data/sub/deep/x"}},
		{"data", []string{"data.txt", "data/00000000.seg", "data/00000001.seg", "data/00000010.seg", "data/sub/deep/x"}},
		{"data/0000000", []string{"data/00000000.seg", "data/00000001.seg"}},
		{"data/00000001.seg", []string{"data/00000001.seg"}},
		{"data/sub", []string{"data/sub/deep/x"}},
		{"data/sub/deep/", []string{"data/sub/deep/x"}},
		{"a", []string{"a-b", "a.b", "a/b", "a0"}},
		{"a/", []string{"a/b"}},
		{"z/", []string{"z/\u00e4"}},
		{"manifest.ssm", []string{"manifest.ssm"}},
		{"manifest.ssmx", []string{}},
		{"nope", []string{}},
		{"nope/deeper/", []string{}},
		{"data/00000001.seg/", []string{}},
		{"data//", []string{}},
		{"../", []string{}},
	} {
		if got := listKeys(t, s, tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

func testListEmpty(t *testing.T, s store.Store) {
	wantKeys(t, s, "of a new store")
}

func testListStop(t *testing.T, s store.Store) {
	putListKeys(t, s)
	errStop := errors.New("storetest: stop")
	calls := 0
	err := s.List(t.Context(), "", func(store.Info) error {
		if calls++; calls == 2 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Errorf("List returned %v; want fn's error", err)
	}
	if calls != 2 {
		t.Errorf("fn called %d times after returning an error on call 2", calls)
	}
}

func testListCancel(t *testing.T, s store.Store) {
	putListKeys(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	err := s.List(ctx, "", func(store.Info) error {
		calls++
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("List cancelled by fn returned %v; want an error wrapping context.Canceled", err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times; want no call after ctx is done", calls)
	}
	calls = 0
	err = s.List(ctx, "", func(store.Info) error { calls++; return nil })
	if !errors.Is(err, context.Canceled) || calls != 0 {
		t.Errorf("List with a cancelled ctx: %d calls, %v; want none and context.Canceled", calls, err)
	}
}

func testDelete(t *testing.T, s store.Store) {
	put(t, s, "d/x", []byte("x"))
	put(t, s, "d/y", []byte("y"))
	put(t, s, "top", []byte("t"))
	for _, key := range []string{"d/x", "top"} {
		if err := s.Delete(t.Context(), key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
		mustNotExist(t, s, key)
		if err := s.Delete(t.Context(), key); err != nil {
			t.Errorf("Delete(%q) again: %v", key, err)
		}
	}
	for _, key := range []string{"never", "never/there/at/all", "d/y/below-a-file"} {
		if err := s.Delete(t.Context(), key); err != nil {
			t.Errorf("Delete of missing %q: %v", key, err)
		}
	}
	mustGet(t, s, "d/y", []byte("y"))
	wantKeys(t, s, "after Delete", "d/y")
}

func testConcurrentPuts(t *testing.T, s store.Store) {
	const n = 16
	key := func(i int) string {
		if i%2 == 0 {
			return fmt.Sprintf("data/%08d.seg", i) // all in one new directory
		}
		return fmt.Sprintf("nest/%d/deep/%08d.seg", i%3, i) // sharing new parents
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			b := data(64<<10+i, uint64(i))
			if err := s.Put(t.Context(), key(i), onlyReader{bytes.NewReader(b)}, int64(len(b))); err != nil {
				t.Errorf("Put(%q): %v", key(i), err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	want := []string{}
	for i := range n {
		mustGet(t, s, key(i), data(64<<10+i, uint64(i)))
		want = append(want, key(i))
	}
	slices.Sort(want)
	wantKeys(t, s, "after concurrent Puts", want...)
}

func testConcurrentPutsSameKey(t *testing.T, s store.Store) {
	const n = 8
	versions := make([][]byte, n)
	for i := range versions {
		versions[i] = data(100<<10+i*1000, uint64(i))
	}
	var wg sync.WaitGroup
	for _, b := range versions {
		wg.Go(func() {
			if err := s.Put(t.Context(), "same/key", onlyReader{bytes.NewReader(b)}, int64(len(b))); err != nil {
				t.Errorf("Put: %v", err)
			}
		})
	}
	wg.Wait()
	got, err := get(t.Context(), s, "same/key", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, got) }) {
		t.Errorf("after concurrent Puts the object (%d bytes) is none of the versions", len(got))
	}
	wantKeys(t, s, "after concurrent Puts", "same/key")
}

func testConnections(t *testing.T, s store.Store) {
	if s.String() == "" {
		t.Error("String() is empty")
	}
	c, ok := s.(store.Connections)
	if !ok {
		t.Skip("store does not implement store.Connections")
	}
	if n := c.Connections(); n <= 0 {
		t.Errorf("Connections() = %d, want > 0", n)
	}
}

// testLock checks the writer lock of stores that have one ([store.Lock]
// finds it through wrappers): a second writer is refused with ErrLocked
// naming the holder, the lock is no object, and unlock frees it.
func testLock(t *testing.T, s store.Store) {
	ctx := t.Context()
	const holder = "storetest capture on host1 pid 42"
	unlock, err := store.Lock(ctx, s, holder)
	if errors.Is(err, store.ErrNoLock) {
		t.Skipf("no writer lock: %v", err)
	}
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if _, err := store.Lock(ctx, s, "storetest copy"); !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), holder) {
		_ = unlock(ctx)
		t.Fatalf("second Lock = %v; want an error wrapping ErrLocked that names %q", err, holder)
	}
	// The lock is not part of the image: a locked new image is empty.
	wantKeys(t, s, "of a locked empty store")
	put(t, s, "data/00000000.seg", []byte("x"))
	wantKeys(t, s, "of a locked store", "data/00000000.seg")
	if err := unlock(ctx); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	unlock, err = store.Lock(ctx, s, "storetest copy")
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	if err := unlock(ctx); err != nil {
		t.Errorf("unlock: %v", err)
	}
	wantKeys(t, s, "after unlock", "data/00000000.seg")
}
