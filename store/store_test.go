package store

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestRangeLength(t *testing.T) {
	for _, tc := range []struct {
		name              string
		off, length, size int64
		want              int64
		wantEOF           bool
	}{
		{"explicit length", 10, 20, 100, 20, false},
		{"explicit length past the end stays", 90, 20, 100, 20, false},
		{"explicit length from past the end stays", 200, 5, 100, 5, false},
		{"to the end", 10, -1, 100, 90, false},
		{"to the end from the end", 100, -1, 100, 0, false},
		{"to the end of an empty object", 0, -1, 0, 0, false},
		{"to the end from past the end", 101, -1, 100, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RangeLength(tc.off, tc.length, tc.size)
			if tc.wantEOF {
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("RangeLength(%d, %d, %d) = %d, %v; want an error wrapping io.ErrUnexpectedEOF", tc.off, tc.length, tc.size, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("RangeLength(%d, %d, %d) = %d, %v; want %d", tc.off, tc.length, tc.size, got, err, tc.want)
			}
		})
	}
}

func TestSleep(t *testing.T) {
	start := time.Now()
	if err := Sleep(t.Context(), 20*time.Millisecond); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Errorf("Sleep(20ms) returned after %v", el)
	}

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(10*time.Millisecond, cancel)
	start = time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep cancelled = %v; want context.Canceled", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("cancelled Sleep returned after %v", el)
	}
}

func TestContextReader(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	r := ContextReader(ctx, strings.NewReader("abcdef"))
	b := make([]byte, 3)
	if n, err := r.Read(b); n != 3 || err != nil || string(b) != "abc" {
		t.Fatalf("Read = %d, %v (%q); want 3, nil (abc)", n, err, b[:n])
	}
	cancel()
	if n, err := r.Read(b); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %d, %v; want 0, context.Canceled", n, err)
	}
}
