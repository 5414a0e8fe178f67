package engine

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validPartialState is a state file the parser accepts: 11 chunks, two of
// three volumes seen.
const validPartialState = `{
  "format": "seedship-partial-restore",
  "version": 1,
  "image_id": "0123456789abcdef0123456789abcdef",
  "manifest_sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
  "chunks": 11,
  "volumes": 3,
  "seen": [1, 3],
  "target": {"path": "/tmp/t.img", "kind": "file", "dev": 1, "ino": 2},
  "done": "/wc=",
  "updated": "2026-12-03T12:00:00Z"
}`

func TestParsePartialState(t *testing.T) {
	s, done, err := parsePartialState([]byte(validPartialState))
	if err != nil {
		t.Fatalf("valid state refused: %v", err)
	}
	if s.Chunks != 11 || len(done) != 2 || done[0] != 0xff || done[1] != 0x07 || len(s.Seen) != 2 {
		t.Fatalf("parsed %+v done %x", s, done)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown field", `"volumes": 3,`, `"volumes": 3, "extra": 1,`, "unknown field"},
		{"other format", `seedship-partial-restore`, `seedship-volume`, "format"},
		{"other version", `"version": 1`, `"version": 2`, "version 2"},
		{"short image id", `"image_id": "0123456789abcdef0123456789abcdef"`, `"image_id": "0123"`, "image_id"},
		{"upper-case hash", `"manifest_sha256": "0123456789abcdef`, `"manifest_sha256": "0123456789ABCDEF`, "manifest_sha256"},
		{"too many chunks", `"chunks": 11`, `"chunks": 999999999999`, "chunks"},
		{"no volumes", `"volumes": 3`, `"volumes": 0`, "volumes 0"},
		{"seen out of range", `"seen": [1, 3]`, `"seen": [1, 4]`, "seen volumes"},
		{"seen twice", `"seen": [1, 3]`, `"seen": [3, 3]`, "seen volumes"},
		{"seen unsorted", `"seen": [1, 3]`, `"seen": [3, 1]`, "seen volumes"},
		{"bitmap too short", `"done": "/wc="`, `"done": "/w=="`, "done holds 1 bytes"},
		{"bitmap past the end", `"done": "/wc="`, `"done": "/w8="`, "past the last"},
		{"bitmap not base64", `"done": "/wc="`, `"done": "!!"`, "done"},
		{"target kind", `"kind": "file"`, `"kind": "pipe"`, "target"},
		{"no target path", `"path": "/tmp/t.img"`, `"path": ""`, "target"},
		{"trailing data", `"updated": "2026-12-03T12:00:00Z"
}`, `"updated": "2026-12-03T12:00:00Z"
} {}`, "after the JSON"},
		{"not JSON", validPartialState, "garbage", "not a state file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := strings.Replace(validPartialState, tc.old, tc.new, 1)
			if b == validPartialState {
				t.Fatalf("the edit %q did not apply", tc.old)
			}
			_, _, err := parsePartialState([]byte(b))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error about %q, got %v", tc.want, err)
			}
		})
	}
	if _, _, err := parsePartialState(bytes.Repeat([]byte{' '}, maxPartialState+1)); err == nil {
		t.Fatal("a state file over the size bound was accepted")
	}
}

// TestPartialStateRoundTrip writes a state atomically and reads it back;
// the directory holds no temporary file afterwards.
func TestPartialStateRoundTrip(t *testing.T) {
	d := t.TempDir()
	path := filepath.Join(d, "t.img.seedship-partial")
	s, done, err := parsePartialState([]byte(validPartialState))
	if err != nil {
		t.Fatal(err)
	}
	done[1] = 0x05
	if err := writePartialState(path, s, done); err != nil {
		t.Fatal(err)
	}
	got, gotDone, err := readPartialState(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotDone, done) || got.ManifestSHA256 != s.ManifestSHA256 || got.Target.Ino != 2 {
		t.Fatalf("read back %+v %x, wrote %+v %x", got, gotDone, s, done)
	}
	ents, _ := os.ReadDir(d)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want the state alone", len(ents))
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readPartialState(path); err == nil || !strings.Contains(err.Error(), "damaged") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("a damaged state file: want a one-line error saying so, got %v", err)
	}
	if s, _, err := readPartialState(filepath.Join(d, "absent")); s != nil || err != nil {
		t.Fatalf("an absent state file: want none and no error, got %v %v", s, err)
	}
}

// FuzzParsePartialState: the parser never panics, and whatever it accepts
// it writes back to bytes it accepts again, with the same content.
func FuzzParsePartialState(f *testing.F) {
	f.Add([]byte(validPartialState))
	f.Add([]byte(`{"format":"seedship-partial-restore","version":1,"chunks":0,"done":""}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, done, err := parsePartialState(b)
		if err != nil {
			return
		}
		if uint64(len(done)) != (s.Chunks+7)/8 {
			t.Fatalf("accepted a bitmap of %d bytes for %d chunks", len(done), s.Chunks)
		}
		s.Done = ""
		out, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var again partialState
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "state")
		if err := writePartialState(path, s, done); err != nil {
			t.Fatal(err)
		}
		s2, done2, err := readPartialState(path)
		if err != nil {
			t.Fatalf("accepted state does not read back: %v", err)
		}
		if !bytes.Equal(done, done2) || s2.ManifestSHA256 != s.ManifestSHA256 || s2.Chunks != s.Chunks {
			t.Fatal("state changed on a round trip")
		}
	})
}
