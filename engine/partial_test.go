package engine_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/dir"
)

// TestRestorePartialInterrupted interrupts a partial restore after its
// first chunk: the state then records some chunks but not all, each one
// it records is on the target as the source has it (it never
// overestimates), and the same run again continues and completes, with
// the whole-image verification, and removes the state.
func TestRestorePartialInterrupted(t *testing.T) {
	const chunk = 64 * kib
	data := append(randBytes(7, 40*chunk), make([]byte, 8*chunk)...)
	data = append(data, textBytes(16*chunk+123)...)
	_, st, _ := capture(t, writeSource(t, data), engine.CaptureOptions{ChunkSize: chunk, SegmentSize: 256 * kib})
	target := filepath.Join(t.TempDir(), "target.img")
	state := target + ".seedship-partial"

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The interruption lands once the first chunk is on the target and
	// before the third segment is read: some chunks written, not all.
	st2 := &interruptingStore{Store: st, cancel: cancel, target: target, first: data[:chunk]}
	res, err := engine.RestorePartial(ctx, st2, target, engine.PartialOptions{Workers: 1})
	if !errors.Is(err, context.Canceled) || engine.KindOf(err) != engine.KindInterrupted {
		t.Fatalf("a cancelled partial restore: want an interruption, got %v", err)
	}
	if res == nil || res.Complete {
		t.Fatalf("a cancelled partial restore reports %+v", res)
	}
	raw, err := os.ReadFile(state)
	if err != nil {
		t.Fatalf("the interrupted run left no state: %v", err)
	}
	var s struct {
		Done string `json:"done"`
		Seen []int  `json:"seen"`
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	done, err := base64.StdEncoding.DecodeString(s.Done)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Seen) != 0 {
		t.Errorf("an interrupted run records its volume as seen: %v", s.Seen)
	}
	onTarget, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	chunks := (len(data) + chunk - 1) / chunk
	recorded := 0
	for i := range chunks {
		if done[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		recorded++
		lo, hi := i*chunk, min((i+1)*chunk, len(data))
		if !bytes.Equal(onTarget[lo:hi], data[lo:hi]) {
			t.Errorf("the state records chunk %d, which the target does not hold", i)
		}
	}
	if recorded == 0 || recorded == chunks {
		t.Fatalf("the interrupted run recorded %d of %d chunks: want some, not all (did the interruption land?)", recorded, chunks)
	}

	res, err = engine.RestorePartial(context.Background(), st, target, engine.PartialOptions{})
	if err != nil || !res.Complete || res.MissingChunks != 0 {
		t.Fatalf("the continued run: %+v, %v", res, err)
	}
	if res.Written != chunks-recorded {
		t.Errorf("the continued run wrote %d chunk(s); want the %d the first did not record", res.Written, chunks-recorded)
	}
	if got, want := sha256.Sum256(mustRead(t, target)), sha256.Sum256(data); got != want {
		t.Fatal("the target differs from the source")
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state outlives the completed restore: %v", err)
	}
}

// interruptingStore cancels a run when asked for the third data segment,
// once the first chunk has reached the target.
type interruptingStore struct {
	*dir.Store
	cancel func()
	target string
	first  []byte
}

func (s *interruptingStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	if id, ok := format.ParseKey(key); ok && id.Kind == format.SegmentData && id.Number >= 2 {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if b, err := os.ReadFile(s.target); err == nil && len(b) >= len(s.first) && bytes.Equal(b[:len(s.first)], s.first) {
				break
			}
		}
		s.cancel()
		return nil, context.Canceled
	}
	return s.Store.Get(ctx, key, off, length)
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
