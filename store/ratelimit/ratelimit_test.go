package ratelimit_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/store/ratelimit"
	"github.com/seedship/seedship/store/storetest"
)

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"50MiB/s", 50 << 20},
		{"50miB/s", 50 << 20},
		{"50M", 50 << 20},
		{"50m/s", 50 << 20},
		{"50MB/s", 50_000_000},
		{"1.5GiB/s", 3 << 29},
		{"1.5GB", 1_500_000_000},
		{"800k", 800 << 10},
		{"800KiB/s", 800 << 10},
		{"800kB/s", 800_000},
		{"2T", 2 << 40},
		{"1000", 1000},
		{"1000B/s", 1000},
		{"1000/s", 1000},
		{" 10 MiB/s ", 10 << 20},
		{"0", 0},
		{"0MiB/s", 0},
		{"", 0},
		{"off", 0},
	} {
		got, err := ratelimit.ParseRate(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"fast", "-5M", "5 M B", "5Mbit/s", "5Mb", "5mb/s", "50mib/s", "5kb", "MiB", "1e3", "5XB", "1.2.3M", "0.1", "99999999999T", "5/h"} {
		if got, err := ratelimit.ParseRate(in); err == nil || !errors.Is(err, ratelimit.ErrInvalidRate) {
			t.Errorf("ParseRate(%q) = %d, %v; want an ErrInvalidRate", in, got, err)
		}
	}
}

// TestLimiterRate reads through one shared limiter from several goroutines
// and checks the total time against the rate.
func TestLimiterRate(t *testing.T) {
	const rate = 4 << 20 // 4 MiB/s, with a burst of 409.6 KiB
	l := ratelimit.NewLimiter(rate)
	if l.Rate() != rate {
		t.Fatalf("Rate() = %d", l.Rate())
	}
	const total = 2 << 20 // 2 MiB in all: about 0.4 s after the burst
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			r := l.Reader(t.Context(), bytes.NewReader(make([]byte, total/4)))
			if n, err := io.Copy(io.Discard, r); err != nil || n != total/4 {
				t.Errorf("Copy = %d, %v", n, err)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	burst := float64(rate) / 10
	want := time.Duration((float64(total) - burst) / rate * float64(time.Second))
	t.Logf("%d bytes at %d B/s took %v (expected about %v)", total, rate, took, want)
	if took < want*8/10 || took > want+5*time.Second {
		t.Errorf("took %v; want about %v", took, want)
	}
}

func TestLimiterCancel(t *testing.T) {
	l := ratelimit.NewLimiter(1 << 10) // 1 KiB/s
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := l.Reader(ctx, bytes.NewReader(make([]byte, 1<<20)))
	_, err := io.Copy(io.Discard, r)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Copy with a deadline: %v; want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancelled wait took %v", took)
	}
}

func TestNilLimiter(t *testing.T) {
	var l *ratelimit.Limiter
	if ratelimit.NewLimiter(0) != nil || l.Rate() != 0 {
		t.Error("NewLimiter(0) is not the nil no-limit Limiter")
	}
	r := bytes.NewReader(nil)
	if l.Reader(t.Context(), r) != io.Reader(r) {
		t.Error("a nil Limiter wraps its reader")
	}
	if err := l.WaitN(t.Context(), 1<<30); err != nil {
		t.Error(err)
	}
}

func TestReaderKeepsSeek(t *testing.T) {
	l := ratelimit.NewLimiter(1 << 30)
	r := l.Reader(t.Context(), bytes.NewReader([]byte("abcdef")))
	s, ok := r.(io.ReadSeeker)
	if !ok {
		t.Fatal("the limited reader of a ReadSeeker is not a ReadSeeker")
	}
	b := make([]byte, 3)
	if _, err := io.ReadFull(s, b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Seek(1, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, b); err != nil {
		t.Fatal(err)
	}
	if string(b) != "bcd" {
		t.Errorf("read %q after Seek", b)
	}
	if _, ok := l.Reader(t.Context(), struct{ io.Reader }{r}).(io.Seeker); ok {
		t.Error("a plain reader became a Seeker")
	}
}

func newDir(t *testing.T) store.Store {
	s, err := dir.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		l := ratelimit.NewLimiter(1 << 30)
		return ratelimit.New(newDir(t), l, l)
	})
}

// TestStoreLimits checks that Put and Get bodies are paced.
func TestStoreLimits(t *testing.T) {
	const rate = 2 << 20
	s := ratelimit.New(newDir(t), ratelimit.NewLimiter(rate), ratelimit.NewLimiter(rate))
	b := make([]byte, 1<<20)
	start := time.Now()
	if err := s.Put(t.Context(), "k", bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	put := time.Since(start)
	start = time.Now()
	rc, err := s.Get(t.Context(), "k", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	get := time.Since(start)
	if err != nil || n != int64(len(b)) {
		t.Fatalf("Get: %d, %v", n, err)
	}
	min := 350 * time.Millisecond // (1 MiB - 204.8 KiB burst) / 2 MiB/s = 0.4 s
	if put < min || get < min {
		t.Errorf("Put took %v, Get %v; want each at least %v", put, get, min)
	}
	if store.ConnectionsOf(s, 99) != store.ConnectionsOf(s.Unwrap(), 99) || s.String() != s.Unwrap().String() {
		t.Error("Connections or String does not pass through")
	}
}
