package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/s3"
	"github.com/seedship/seedship/store/s3/s3test"
)

// lockObject is the object name of the lock of cfg's image.
func lockObject(cfg s3.Config) string {
	if cfg.Prefix == "" {
		return store.LockKey
	}
	return cfg.Prefix + "/" + store.LockKey
}

// TestLockConditionalPut checks the writer lock against what the server
// really does with If-None-Match: * on PUT, found out here with a raw
// request. Either the server honours it and Lock keeps two writers apart,
// or it ignores it and Lock says so with ErrNoLock and leaves nothing.
func TestLockConditionalPut(t *testing.T) {
	srv := s3test.Server(t)
	cfg := config(t, srv, srv.Endpoint, "img")
	s := open(t, cfg)
	ctx := t.Context()

	// What the server does: a conditional PUT over an existing object.
	c := s.Client()
	probe := cfg.Prefix + "/probe"
	if _, err := c.PutObject(ctx, cfg.Bucket, probe, bytes.NewReader([]byte("a")), 1, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	var opts minio.PutObjectOptions
	opts.SetMatchETagExcept("*")
	_, err := c.PutObject(ctx, cfg.Bucket, probe, bytes.NewReader([]byte("b")), 1, opts)
	honours := err != nil
	t.Logf("server %s: conditional PUT (If-None-Match: *) over an existing object: %v (honoured: %v)", srv.Endpoint, err, honours)
	if err := c.RemoveObject(ctx, cfg.Bucket, probe, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	unlock, err := s.Lock(ctx, "seedship capture on host1 pid 42")
	if !honours {
		if !errors.Is(err, store.ErrNoLock) || !strings.Contains(err.Error(), "If-None-Match") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("Lock on a server that ignores If-None-Match = %v; want a one-line ErrNoLock that says so", err)
		}
		if _, serr := c.StatObject(ctx, cfg.Bucket, lockObject(cfg), minio.StatObjectOptions{}); serr == nil {
			t.Error("a refused Lock left its lock object behind")
		}
		return
	}
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	_, err = open(t, cfg).Lock(ctx, "seedship copy")
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "seedship capture on host1 pid 42") {
		t.Fatalf("second Lock = %v; want ErrLocked naming the holder", err)
	}
	// The lock is no key: not listed, not readable as one.
	if keys := listKeys(t, s, ""); len(keys) != 0 {
		t.Errorf("List of a locked empty image = %q", keys)
	}
	if _, err := s.Stat(ctx, store.LockKey); !errors.Is(err, s3.ErrInvalidKey) {
		t.Errorf("Stat(%q) = %v; want ErrInvalidKey", store.LockKey, err)
	}
	// An interrupted writer unlocks with a cancelled ctx; the lock must go
	// anyway, or a resumed run would wait out the lease.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := unlock(cancelled); err != nil {
		t.Fatalf("unlock with a cancelled ctx: %v", err)
	}
	if _, err := c.StatObject(ctx, cfg.Bucket, lockObject(cfg), minio.StatObjectOptions{}); err == nil {
		t.Error("unlock left the lock object")
	}
}

// shortLease opens cfg with a short lease.
func shortLease(t *testing.T, cfg s3.Config) *s3.Store {
	t.Helper()
	cfg.LockRefresh, cfg.LockStale = 300*time.Millisecond, 4*time.Second
	return open(t, cfg)
}

// lockingStore is shortLease, skipping when the server cannot hold a lock
// (TestLockConditionalPut reports that case).
func lockingStore(t *testing.T, cfg s3.Config) *s3.Store {
	t.Helper()
	s := shortLease(t, cfg)
	unlock, err := s.Lock(t.Context(), "probe")
	if errors.Is(err, store.ErrNoLock) {
		t.Skipf("the server cannot hold a lock: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := unlock(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLockStaleTakenOver: the lock of a writer that died is taken over
// once it is older than the lease, and not before; a live holder keeps its
// lock by refreshing it.
func TestLockStaleTakenOver(t *testing.T) {
	srv := s3test.Server(t)
	cfg := config(t, srv, srv.Endpoint, "img")
	s := lockingStore(t, cfg)
	ctx := t.Context()

	// A dead writer's lock: written once, never refreshed.
	dead := "seedship capture on deadhost pid 7 since 2026-01-01T00:00:00Z\n"
	if _, err := s.Client().PutObject(ctx, cfg.Bucket, lockObject(cfg), strings.NewReader(dead), int64(len(dead)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := s.Lock(ctx, "resumed capture")
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "deadhost pid 7") {
		t.Fatalf("Lock over a fresh foreign lock = %v; want ErrLocked naming it", err)
	}
	for {
		u, err := s.Lock(ctx, "resumed capture")
		if err == nil {
			if waited := time.Since(start); waited < 3*time.Second {
				t.Errorf("a lock was taken over after %v, before its lease of 4s ran out", waited)
			}
			// A live holder keeps the lock through many leases.
			time.Sleep(5 * time.Second)
			if _, err := open(t, cfg).Lock(ctx, "intruder"); !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "resumed capture") {
				t.Errorf("Lock while a live holder refreshes = %v; want ErrLocked", err)
			}
			if err := u(ctx); err != nil {
				t.Errorf("unlock: %v", err)
			}
			return
		}
		if !errors.Is(err, store.ErrLocked) {
			t.Fatalf("Lock: %v", err)
		}
		if time.Since(start) > 20*time.Second {
			t.Fatalf("the stale lock was not taken over after %v: %v", time.Since(start), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestLockLost: a holder whose refreshes fail for longer than the lease
// loses the lock to the next writer, and its unlock says so.
func TestLockLost(t *testing.T) {
	srv := s3test.Server(t)
	proxy := s3test.NewProxy(t, srv.Endpoint)
	cfg := config(t, srv, proxy.URL, "img")
	a := lockingStore(t, cfg)
	ctx := t.Context()
	unlockA, err := a.Lock(ctx, "writer A")
	if err != nil {
		t.Fatal(err)
	}
	proxy.Inject(s3test.Fault{Kind: s3test.Status, Code: 503, Method: "PUT", Path: store.LockKey, Times: 1000})
	cfgB := cfg
	cfgB.Endpoint = srv.Endpoint
	b := shortLease(t, cfgB)
	deadline := time.Now().Add(20 * time.Second)
	for {
		unlockB, err := b.Lock(ctx, "writer B")
		if err == nil {
			defer func() { _ = unlockB(ctx) }()
			break
		}
		if !errors.Is(err, store.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("Lock by B: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	proxy.Reset()
	time.Sleep(time.Second) // A's next refresh finds B's lock
	if err := unlockA(ctx); err == nil || !strings.Contains(err.Error(), "taken over") {
		t.Errorf("unlock of a lost lock = %v; want an error saying it was taken over", err)
	}
}

func listKeys(t *testing.T, s store.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := s.List(t.Context(), prefix, func(i store.Info) error { keys = append(keys, i.Key); return nil }); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

// TestLockDeadHolderOnThisHost: a lock left by a process of this host that
// no longer exists (a capture killed, then resumed at once) is taken over
// without waiting out the lease; one whose process is alive, or that was
// written on another host, is not.
func TestLockDeadHolderOnThisHost(t *testing.T) {
	srv := s3test.Server(t)
	cfg := config(t, srv, srv.Endpoint, "img")
	s := lockingStore(t, cfg)
	ctx := t.Context()
	c := s.Client()
	host, _ := os.Hostname()
	host = strings.Join(strings.Fields(host), "_")

	// A pid that is gone: a child that has exited and been reaped.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	for _, tc := range []struct {
		name     string
		body     string
		takeOver bool
	}{
		{"dead pid on this host", fmt.Sprintf("seedship capture since now [host %s pid %d]\n", host, dead), true},
		{"live pid on this host", fmt.Sprintf("seedship capture since now [host %s pid 1]\n", host), false},
		{"dead pid on another host", fmt.Sprintf("seedship capture since now [host not-%s pid %d]\n", host, dead), false},
		{"no holder tag", "seedship capture since now\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.PutObject(ctx, cfg.Bucket, lockObject(cfg), strings.NewReader(tc.body), int64(len(tc.body)), minio.PutObjectOptions{}); err != nil {
				t.Fatal(err)
			}
			unlock, err := s.Lock(ctx, "seedship capture --resume")
			if !tc.takeOver {
				if !errors.Is(err, store.ErrLocked) {
					t.Fatalf("Lock = %v; want ErrLocked", err)
				}
				if err := c.RemoveObject(ctx, cfg.Bucket, lockObject(cfg), minio.RemoveObjectOptions{}); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Lock over a dead holder's lock = %v; want it taken over at once", err)
			}
			if err := unlock(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}
