package resync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// execWorld is the exec adapter with one fake per step, labelled with the
// step's name.
type execWorld struct {
	*fakeWorld
	configFile string
}

func newExecWorld(t *testing.T, steps map[string][]string) *execWorld {
	w := &execWorld{fakeWorld: newFakeWorld(t)}
	section := make(map[string]any)
	for step, args := range steps {
		tool := w.tool(w.path("bin/"+step), step)
		section[step] = append([]string{tool}, args...)
	}
	data, err := json.Marshal(map[string]any{"adapter": "exec", "exec": section})
	if err != nil {
		t.Fatal(err)
	}
	w.configFile = filepath.Join(w.dir, "resync.json")
	w.write(w.configFile, string(data), 0o644)
	return w
}

func (w *execWorld) session(out *bytes.Buffer, dry bool) (Adapter, *Session) {
	w.t.Helper()
	cfg, err := LoadConfig(w.configFile)
	if err != nil {
		w.t.Fatal(err)
	}
	a, err := New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	s := NewSession(cfg, out, dry)
	s.Now = tickingClock()
	return a, s
}

// allExecSteps configures every step, with placeholders.
var allExecSteps = map[string][]string{
	"preflight":    {"{side}"},
	"mark":         {"--side", "{side}"},
	"post_capture": {"--vol", "data"},
	"pre_extend":   {"{target}", "{mark}", "uuid={token.uuid}"},
	"extend":       {"--to", "{target}"},
	"cleanup":      {"{side}"},
}

func TestExecCapture(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stdout   string
		wantMark time.Time
		fields   map[string]string
	}{
		{name: "mark from the output", stdout: "# from the product\nmark=2026-12-03T10:59:00.5+01:00\nuuid=ABC-123\r\nnote=a b=c\n",
			wantMark: time.Date(2026, 12, 3, 9, 59, 0, 500_000_000, time.UTC), fields: map[string]string{"uuid": "ABC-123", "note": "a b=c"}},
		{name: "mark when the mark command finished", stdout: "uuid=X\n",
			wantMark: time.Date(2026, 12, 3, 11, 0, 1, 0, time.UTC), fields: map[string]string{"uuid": "X"}},
		{name: "no output", stdout: "", wantMark: time.Date(2026, 12, 3, 11, 0, 1, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newExecWorld(t, allExecSteps)
			w.set("post_capture", "stdout", tc.stdout)
			a, s := w.session(&bytes.Buffer{}, false)
			var raw json.RawMessage
			if err := RunCapture(context.Background(), a, s, w.capture(&raw, nil)); err != nil {
				t.Fatal(err)
			}
			equalLines(t, "commands", w.calls(), []string{
				tabs("preflight", "capture"),
				tabs("mark", "--side", "capture"),
				"CAPTURE",
				tabs("post_capture", "--vol", "data"),
				tabs("cleanup", "capture"),
			})
			tok, err := ParseToken(raw)
			if err != nil {
				t.Fatal(err)
			}
			if !tok.Mark.Equal(tc.wantMark) || tok.Adapter != "exec" || fmt.Sprint(tok.Fields) != fmt.Sprint(tc.fields) {
				t.Fatalf("token %+v, want mark %v fields %v", tok, tc.wantMark, tc.fields)
			}
		})
	}
}

func TestExecCaptureBadTokenOutput(t *testing.T) {
	w := newExecWorld(t, allExecSteps)
	w.set("post_capture", "stdout", "Clearing bitmap... done\n")
	a, s := w.session(&bytes.Buffer{}, false)
	var raw json.RawMessage
	err := RunCapture(context.Background(), a, s, w.capture(&raw, nil))
	if !errors.Is(err, ErrStep) || !strings.Contains(err.Error(), "line 1: not KEY=VALUE") {
		t.Fatalf("RunCapture: %v", err)
	}
	if raw != nil {
		t.Fatal("a token was made of bad output")
	}
	if calls := w.calls(); calls[len(calls)-1] != tabs("cleanup", "capture") {
		t.Fatalf("cleanup did not run last: %q", calls)
	}
}

func TestExecExtend(t *testing.T) {
	tok := &Token{Adapter: "exec", Mark: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), Fields: map[string]string{"uuid": "ABC"}}
	pre := tabs("pre_extend", "/dev/sdb", "2026-12-03T10:00:00Z", "uuid=ABC")
	for _, tc := range []struct {
		name   string
		setup  func(w *execWorld, tok *Token)
		cancel string // fake to interrupt
		wantIs error
		want   []string
	}{
		{name: "all steps", want: []string{tabs("preflight", "extend"), pre, tabs("extend", "--to", "/dev/sdb"), tabs("cleanup", "extend")}},
		{name: "pre_extend fails: no extend", setup: func(w *execWorld, _ *Token) { w.set("pre_extend", "exit", "2") }, wantIs: ErrStep,
			want: []string{tabs("preflight", "extend"), pre, tabs("cleanup", "extend")}},
		{name: "preflight fails: nothing runs", setup: func(w *execWorld, _ *Token) { w.set("preflight", "exit", "1") }, wantIs: ErrCheck,
			want: []string{tabs("preflight", "extend"), tabs("cleanup", "extend")}},
		{name: "token lacks a field: no extend", setup: func(_ *execWorld, tok *Token) { tok.Fields = nil }, wantIs: ErrCheck,
			want: []string{tabs("preflight", "extend"), tabs("cleanup", "extend")}},
		{name: "interrupted extend: cleanup still runs", setup: func(w *execWorld, _ *Token) { w.set("extend", "block", "") }, cancel: "extend", wantIs: context.Canceled,
			want: []string{tabs("preflight", "extend"), pre, tabs("extend", "--to", "/dev/sdb"), tabs("cleanup", "extend")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newExecWorld(t, allExecSteps)
			tok := &Token{Adapter: tok.Adapter, Mark: tok.Mark, Fields: map[string]string{"uuid": "ABC"}}
			if tc.setup != nil {
				tc.setup(w, tok)
			}
			a, s := w.session(&bytes.Buffer{}, false)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel != "" {
				go func() { w.waitRunning(tc.cancel); cancel() }()
			}
			err := RunExtend(ctx, a, s, tok, "/dev/sdb")
			if tc.wantIs == nil && err != nil || tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("RunExtend: %v, want %v", err, tc.wantIs)
			}
			equalLines(t, "commands", w.calls(), tc.want)
		})
	}
}

func TestExecDryRun(t *testing.T) {
	w := newExecWorld(t, allExecSteps)
	before := w.snapshot()
	var out bytes.Buffer
	a, s := w.session(&out, true)
	if err := RunCapture(context.Background(), a, s, nil); err != nil {
		t.Fatal(err)
	}
	tok := &Token{Adapter: "exec", Mark: time.Now(), Fields: map[string]string{"uuid": "ABC"}}
	a, s = w.session(&out, true)
	if err := RunExtend(context.Background(), a, s, tok, "/dev/sdb"); err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, before, w.snapshot())
	// Only the read-only preflight ran.
	equalLines(t, "commands", w.calls(), []string{tabs("preflight", "capture"), tabs("preflight", "extend")})
	for _, want := range []string{"would run " + w.path("bin/mark") + " --side capture", "would run " + w.path("bin/extend") + " --to /dev/sdb", "would run " + w.path("bin/cleanup") + " extend"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseTokenLines(t *testing.T) {
	for _, tc := range []struct {
		in      string
		fields  map[string]string
		mark    string
		wantErr string
	}{
		{in: "", fields: map[string]string{}},
		{in: "\n\n# c\n  \na=1", fields: map[string]string{"a": "1"}},
		{in: "a=\nb==x\n", fields: map[string]string{"a": "", "b": "=x"}},
		{in: "mark=2026-12-03T11:00:00Z\n", fields: map[string]string{}, mark: "2026-12-03T11:00:00Z"},
		{in: "a=1\na=2\n", wantErr: "line 2: a given twice"},
		{in: "mark=2026-12-03T11:00:00Z\nmark=2026-12-03T11:00:00Z\n", wantErr: "line 2: mark given twice"},
		{in: "mark=yesterday\n", wantErr: "line 1: mark \"yesterday\": use RFC 3339"},
		{in: "adapter=drbd\n", wantErr: "reserved"},
		{in: "a b=1\n", wantErr: "line 1: key \"a b\""},
		{in: " a=1\n", wantErr: "line 1: key"},
		{in: "=1\n", wantErr: "line 1: key \"\""},
		{in: "ok=1\nhello\n", wantErr: "line 2: not KEY=VALUE"},
		{in: "a=\x00\n", wantErr: "control character"},
		{in: "a=\xff\n", wantErr: "not UTF-8"},
		{in: "a=" + strings.Repeat("x", 4097), wantErr: "longer than 4096"},
		{in: strings.Repeat("x", 70000), wantErr: "at most 65536"},
	} {
		fields, mark, err := ParseTokenLines([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseTokenLines(%.40q): %v, want error with %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTokenLines(%.40q): %v", tc.in, err)
			continue
		}
		gotMark := ""
		if !mark.IsZero() {
			gotMark = mark.Format(time.RFC3339)
		}
		if fmt.Sprint(fields) != fmt.Sprint(tc.fields) || gotMark != tc.mark {
			t.Errorf("ParseTokenLines(%.40q) = %v %q, want %v %q", tc.in, fields, gotMark, tc.fields, tc.mark)
		}
	}
}

// FuzzParseTokenLines: whatever a post_capture command prints, parsing
// never panics, and what parses formats back to the same token.
func FuzzParseTokenLines(f *testing.F) {
	for _, seed := range []string{"", "a=1\n", "mark=2026-12-03T11:00:00Z\nuuid=X\r\n", "# c\n\nk.e-y_1=v a l=ue\n", "a=1\na=2", "x", "mark=2026-12-03T11:00:00.123456789+02:00"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		fields, mark, err := ParseTokenLines(in)
		if err != nil {
			return
		}
		again, mark2, err := ParseTokenLines(FormatTokenLines(fields, mark))
		if err != nil {
			t.Fatalf("formatted token does not parse: %v", err)
		}
		if fmt.Sprint(again) != fmt.Sprint(fields) || !mark2.Equal(mark) {
			t.Fatalf("round trip: %v %v -> %v %v", fields, mark, again, mark2)
		}
	})
}

func TestExpandPlaceholders(t *testing.T) {
	vars := map[string]string{"side": "extend", "target": "/dev/sdb", "token.vol-id": "v 1"}
	for _, tc := range []struct {
		in      []string
		want    []string
		wantErr string
	}{
		{in: []string{"x", "--to={target}", "{side}{side}"}, want: []string{"x", "--to=/dev/sdb", "extendextend"}},
		{in: []string{"{token.vol-id}"}, want: []string{"v 1"}},
		{in: []string{"awk", "{print $1}", "${HOME}", "{}", "{", "}{target"}, want: []string{"awk", "{print $1}", "${HOME}", "{}", "{", "}{target"}},
		{in: []string{"{mark}"}, wantErr: "{mark} has no value here"},
		{in: []string{"{token.missing}"}, wantErr: "{token.missing} has no value here"},
	} {
		got, err := expand(tc.in, vars)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("expand(%q): %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
