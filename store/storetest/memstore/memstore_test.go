package memstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/retry"
	"github.com/seedship/seedship/store/storetest"
	"github.com/seedship/seedship/store/storetest/memstore"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memstore.New() })
}

// A Faulty without rules must be a transparent store.
func TestConformanceFaultyWithoutRules(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memstore.NewFaulty(memstore.New()) })
}

// A Faulty whose rules only slow calls down and split reads must still be a
// correct store: the faults that keep the contract keep it.
func TestConformanceFaultyLegalFaults(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		f := memstore.NewFaulty(memstore.New())
		f.Add(memstore.Rule{Op: memstore.OpGet, Kind: memstore.SmallReads, At: 7})
		f.Add(memstore.Rule{Op: memstore.OpPut, Kind: memstore.SmallReads, At: 1000})
		f.Add(memstore.Rule{Op: memstore.OpAny, Delay: time.Microsecond})
		return f
	})
}

func TestInvalidKeys(t *testing.T) {
	s := memstore.New()
	for _, key := range []string{"", "/abs", "a//b", "a/./b", "../x", "a/..", "a\\b", "a\x00b", "x/"} {
		err := s.Put(t.Context(), key, strings.NewReader("x"), 1)
		if !errors.Is(err, memstore.ErrInvalidKey) || !errors.Is(err, store.ErrPermanent) {
			t.Errorf("Put(%q) = %v; want ErrInvalidKey and ErrPermanent", key, err)
		}
	}
	if keys := s.Keys(); len(keys) != 0 {
		t.Errorf("Keys = %q", keys)
	}
}

func TestObjectHooks(t *testing.T) {
	s := memstore.New()
	s.SetObject("data/1", []byte("abc"))
	b, ok := s.Object("data/1")
	if !ok || string(b) != "abc" {
		t.Fatalf("Object = %q, %v", b, ok)
	}
	b[0] = 'X' // a copy: the store must not change
	if got := get(t, s, "data/1", 0, -1); string(got) != "abc" {
		t.Errorf("Get after changing Object's copy = %q", got)
	}
	if _, ok := s.Object("nope"); ok {
		t.Error("Object of a missing key reported ok")
	}
	if keys := s.Keys(); !slices.Equal(keys, []string{"data/1"}) {
		t.Errorf("Keys = %q", keys)
	}
}

func TestLock(t *testing.T) {
	s := memstore.New()
	ctx := t.Context()
	unlock, err := store.Lock(ctx, s, "capture on host1 pid 7")
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.Lock(ctx, memstore.NewFaulty(s), "copy")
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "capture on host1 pid 7") {
		t.Fatalf("second Lock = %v; want ErrLocked naming the holder", err)
	}
	if err := unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := unlock(ctx); err == nil {
		t.Error("second unlock: no error")
	}
	unlock, err = store.Lock(ctx, s, "copy")
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	_ = unlock(ctx)
	if keys := s.Keys(); len(keys) != 0 {
		t.Errorf("the lock shows as objects %q", keys)
	}
}

func get(t *testing.T, s store.Store, key string, off, length int64) []byte {
	t.Helper()
	b, err := read(t.Context(), s, key, off, length)
	if err != nil {
		t.Fatalf("Get(%q, %d, %d): %v", key, off, length, err)
	}
	return b
}

func read(ctx context.Context, s store.Store, key string, off, length int64) ([]byte, error) {
	rc, err := s.Get(ctx, key, off, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestFaults(t *testing.T) {
	errMine := errors.New("mine")
	obj := seq(1000)
	flipped := func(at ...int) []byte {
		b := seq(1000)
		for _, i := range at {
			b[i] ^= 0xff
		}
		return b
	}
	type call struct {
		off, length int64
		want        []byte // nil: expect an error
		errIs       error
	}
	for _, tc := range []struct {
		name  string
		rules []memstore.Rule
		calls []call // successive Gets of "data/seg"
	}{
		{"fail every get", []memstore.Rule{{Op: memstore.OpGet, Kind: memstore.Fail}},
			[]call{{0, -1, nil, memstore.ErrInjected}, {0, -1, nil, memstore.ErrInjected}}},
		{"fail the second get only", []memstore.Rule{{Op: memstore.OpGet, Skip: 1, Times: 1, Kind: memstore.Fail, Err: errMine}},
			[]call{{0, -1, obj, nil}, {0, -1, nil, errMine}, {0, -1, obj, nil}}},
		{"key prefix that does not match", []memstore.Rule{{Op: memstore.OpGet, Key: "manifest", Kind: memstore.Fail}},
			[]call{{0, -1, obj, nil}}},
		{"any op on a matching key", []memstore.Rule{{Key: "data/", Kind: memstore.Fail}},
			[]call{{0, -1, nil, memstore.ErrInjected}}},
		{"cut after 100 bytes", []memstore.Rule{{Op: memstore.OpGet, Kind: memstore.Cut, At: 100}},
			[]call{{0, -1, nil, memstore.ErrInjected}, {800, -1, nil, memstore.ErrInjected}, {900, -1, obj[900:], nil}}},
		{"cut beyond the range", []memstore.Rule{{Op: memstore.OpGet, Kind: memstore.Cut, At: 100}},
			[]call{{0, 100, obj[:100], nil}}},
		{"truncate", []memstore.Rule{{Op: memstore.OpGet, Kind: memstore.Truncate, At: 10, Times: 1}},
			[]call{{5, 50, nil, io.ErrUnexpectedEOF}, {5, 50, obj[5:55], nil}}},
		{"corrupt one byte", []memstore.Rule{{Op: memstore.OpGet, Kind: memstore.Corrupt, At: 500}},
			[]call{{0, -1, flipped(500), nil}, {499, 2, []byte{obj[499], obj[500] ^ 0xff}, nil}, {501, -1, obj[501:], nil}}},
		{"corrupt two bytes with small reads", []memstore.Rule{
			{Op: memstore.OpGet, Kind: memstore.Corrupt, At: 3},
			{Op: memstore.OpGet, Kind: memstore.Corrupt, At: 998},
			{Op: memstore.OpGet, Kind: memstore.SmallReads, At: 1},
		}, []call{{0, -1, flipped(3, 998), nil}}},
		{"delay", []memstore.Rule{{Op: memstore.OpGet, Delay: 30 * time.Millisecond}},
			[]call{{0, 10, obj[:10], nil}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memstore.New()
			mem.SetObject("data/seg", obj)
			f := memstore.NewFaulty(mem)
			var faults []*memstore.Fault
			for _, r := range tc.rules {
				faults = append(faults, f.Add(r))
			}
			start := time.Now()
			for i, c := range tc.calls {
				got, err := read(t.Context(), f, "data/seg", c.off, c.length)
				switch {
				case c.want == nil && (err == nil || !errors.Is(err, c.errIs)):
					t.Errorf("call %d: Get(%d, %d) = %d bytes, %v; want an error wrapping %v", i, c.off, c.length, len(got), err, c.errIs)
				case c.want != nil && err != nil:
					t.Errorf("call %d: Get(%d, %d): %v", i, c.off, c.length, err)
				case c.want != nil && !bytes.Equal(got, c.want):
					t.Errorf("call %d: Get(%d, %d) returned bytes that differ from the expected ones", i, c.off, c.length)
				}
			}
			for i, ft := range faults {
				if ft.Hits() == 0 && tc.name != "key prefix that does not match" {
					t.Errorf("rule %d never acted", i)
				}
			}
			if f.Calls(memstore.OpGet) != len(tc.calls) {
				t.Errorf("Calls(OpGet) = %d, want %d", f.Calls(memstore.OpGet), len(tc.calls))
			}
			if tc.name == "delay" && time.Since(start) < 30*time.Millisecond {
				t.Errorf("delayed Get took %v", time.Since(start))
			}
			if b, _ := mem.Object("data/seg"); !bytes.Equal(b, obj) {
				t.Error("a Get fault changed the stored object")
			}
		})
	}
}

// Stall blocks a body until ctx is done or the reader is closed, and the
// resulting error says so.
func TestStall(t *testing.T) {
	mem := memstore.New()
	mem.SetObject("k", seq(1000))
	f := memstore.NewFaulty(mem)
	f.Add(memstore.Rule{Op: memstore.OpGet, Kind: memstore.Stall, At: 10})

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	got, err := read(ctx, f, "k", 0, -1)
	if len(got) != 10 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stalled Get = %d bytes, %v; want 10 bytes and DeadlineExceeded", len(got), err)
	}

	rc, err := f.Get(t.Context(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(rc); done <- err }()
	time.Sleep(20 * time.Millisecond)
	rc.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("read of a stalled body closed under it: no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a stalled Read")
	}

	f.Reset()
	f.Add(memstore.Rule{Op: memstore.OpStat, Kind: memstore.Stall})
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.Stat(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stalled Stat: %v", err)
	}
}

func TestPutFaults(t *testing.T) {
	obj := seq(1000)
	for _, tc := range []struct {
		name   string
		rule   memstore.Rule
		size   int64
		stored []byte // nil: the Put must fail and store nothing
	}{
		{"fail", memstore.Rule{Op: memstore.OpPut, Kind: memstore.Fail}, 1000, nil},
		{"cut", memstore.Rule{Op: memstore.OpPut, Kind: memstore.Cut, At: 300}, 1000, nil},
		{"truncate with a size", memstore.Rule{Op: memstore.OpPut, Kind: memstore.Truncate, At: 300}, 1000, nil},
		{"truncate without a size", memstore.Rule{Op: memstore.OpPut, Kind: memstore.Truncate, At: 300}, -1, obj[:300]},
		{"corrupt", memstore.Rule{Op: memstore.OpPut, Kind: memstore.Corrupt, At: 999}, 1000,
			append(slices.Clone(obj[:999]), obj[999]^0xff)},
		{"small reads", memstore.Rule{Op: memstore.OpPut, Kind: memstore.SmallReads, At: 3}, 1000, obj},
		{"other key", memstore.Rule{Op: memstore.OpPut, Key: "manifest", Kind: memstore.Fail}, 1000, obj},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memstore.New()
			f := memstore.NewFaulty(mem)
			f.Add(tc.rule)
			err := f.Put(t.Context(), "data/seg", bytes.NewReader(obj), tc.size)
			got, ok := mem.Object("data/seg")
			switch {
			case tc.stored == nil && (err == nil || ok):
				t.Errorf("Put = %v, stored %v; want an error and nothing stored", err, ok)
			case tc.stored != nil && (err != nil || !bytes.Equal(got, tc.stored)):
				t.Errorf("Put = %v; stored %d bytes, want %d", err, len(got), len(tc.stored))
			}
		})
	}

	// A Put stalled mid-stream returns when ctx is done and stores nothing.
	mem := memstore.New()
	f := memstore.NewFaulty(mem)
	f.Add(memstore.Rule{Op: memstore.OpPut, Kind: memstore.Stall, At: 10})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := f.Put(ctx, "k", bytes.NewReader(obj), 1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stalled Put: %v", err)
	}
	if _, ok := mem.Object("k"); ok {
		t.Error("stalled Put stored an object")
	}
}

func TestListFaults(t *testing.T) {
	mem := memstore.New()
	for _, k := range []string{"a", "b", "c", "d"} {
		mem.SetObject(k, []byte(k))
	}
	list := func(s store.Store) ([]string, error) {
		var keys []string
		err := s.List(t.Context(), "", func(i store.Info) error { keys = append(keys, i.Key); return nil })
		return keys, err
	}
	f := memstore.NewFaulty(mem)
	ft := f.Add(memstore.Rule{Op: memstore.OpList, Kind: memstore.Cut, At: 2, Times: 1})
	if keys, err := list(f); !errors.Is(err, memstore.ErrInjected) || !slices.Equal(keys, []string{"a", "b"}) {
		t.Errorf("cut List = %q, %v", keys, err)
	}
	if keys, err := list(f); err != nil || len(keys) != 4 || ft.Hits() != 1 {
		t.Errorf("List after a one-time cut = %q, %v (hits %d)", keys, err, ft.Hits())
	}
	ft.Remove()
	f.Add(memstore.Rule{Op: memstore.OpList, Kind: memstore.Truncate, At: 3})
	if keys, err := list(f); err != nil || !slices.Equal(keys, []string{"a", "b", "c"}) {
		t.Errorf("truncated List = %q, %v", keys, err)
	}
}

// The faults are what package retry is tested against: a cut body is
// resumed from where it broke, a Get that keeps failing gives up.
func TestWithRetry(t *testing.T) {
	obj := seq(100_000)
	mem := memstore.New()
	mem.SetObject("seg", obj)
	f := memstore.NewFaulty(mem)
	cut := f.Add(memstore.Rule{Op: memstore.OpGet, Kind: memstore.Cut, At: 30_000, Times: 2})
	r := retry.New(f, retry.Options{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if got := get(t, r, "seg", 0, -1); !bytes.Equal(got, obj) {
		t.Error("retried Get returned wrong bytes")
	}
	if cut.Hits() != 2 || f.Calls(memstore.OpGet) != 3 {
		t.Errorf("cut acted %d times over %d Gets; want 2 over 3", cut.Hits(), f.Calls(memstore.OpGet))
	}
	f.Add(memstore.Rule{Op: memstore.OpGet, Kind: memstore.Fail})
	if _, err := read(t.Context(), r, "seg", 0, -1); !errors.Is(err, memstore.ErrInjected) {
		t.Errorf("Get that always fails: %v", err)
	}
}

func TestAddPanicsOnNonsense(t *testing.T) {
	for _, r := range []memstore.Rule{
		{Op: memstore.OpStat, Kind: memstore.Corrupt},
		{Op: memstore.OpAny, Kind: memstore.Cut},
		{Op: memstore.OpList, Kind: memstore.SmallReads},
		{Op: memstore.OpGet, Kind: memstore.Cut, At: -1},
		{Op: memstore.OpGet, Kind: memstore.Kind(99)},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(%+v) did not panic", r)
				}
			}()
			memstore.NewFaulty(memstore.New()).Add(r)
		}()
	}
}
