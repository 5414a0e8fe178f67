package resync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// recordingAdapter records the steps it is asked to run and fails the
// one named in failAt.
type recordingAdapter struct {
	steps  []string
	failAt string
	token  *Token
}

func (r *recordingAdapter) step(ctx context.Context, name string) error {
	r.steps = append(r.steps, name)
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.failAt == name {
		return errors.New(name + " failed")
	}
	return nil
}

func (r *recordingAdapter) Name() string { return "recording" }
func (r *recordingAdapter) Preflight(ctx context.Context, s *Session) error {
	return r.step(ctx, "preflight:"+string(s.Side()))
}
func (r *recordingAdapter) Mark(ctx context.Context, _ *Session) error { return r.step(ctx, "mark") }
func (r *recordingAdapter) PostCapture(ctx context.Context, _ *Session) (*Token, error) {
	return r.token, r.step(ctx, "post_capture")
}
func (r *recordingAdapter) PreExtend(ctx context.Context, _ *Session, _ *Token, target string) error {
	return r.step(ctx, "pre_extend:"+target)
}
func (r *recordingAdapter) Extend(ctx context.Context, _ *Session, _ *Token, target string) error {
	return r.step(ctx, "extend:"+target)
}
func (r *recordingAdapter) Cleanup(ctx context.Context, _ *Session) error {
	return r.step(ctx, "cleanup")
}

func TestRunCaptureSequence(t *testing.T) {
	mark := time.Date(2026, 12, 3, 11, 0, 0, 0, time.FixedZone("CET", 3600))
	good := &Token{Adapter: "recording", Mark: mark, Fields: map[string]string{"k": "v"}}
	callPost := func(times int) func(context.Context, func(context.Context) (json.RawMessage, error)) error {
		return func(ctx context.Context, post func(context.Context) (json.RawMessage, error)) error {
			for range times {
				if _, err := post(ctx); err != nil {
					return err
				}
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name    string
		failAt  string
		token   *Token
		capture func(context.Context, func(context.Context) (json.RawMessage, error)) error
		steps   string
		wantErr string
	}{
		{name: "ok", token: good, capture: callPost(1), steps: "preflight:capture mark post_capture cleanup"},
		{name: "preflight fails", failAt: "preflight:capture", token: good, capture: callPost(1), steps: "preflight:capture cleanup", wantErr: "preflight:capture failed"},
		{name: "mark fails: no capture", failAt: "mark", token: good, capture: func(context.Context, func(context.Context) (json.RawMessage, error)) error {
			t.Fatal("capture ran after a failed mark")
			return nil
		}, steps: "preflight:capture mark cleanup", wantErr: "mark failed"},
		{name: "capture never calls post-capture", token: good, capture: callPost(0), steps: "preflight:capture mark cleanup", wantErr: "without the post-capture step"},
		{name: "post-capture called twice", token: good, capture: callPost(2), steps: "preflight:capture mark post_capture cleanup", wantErr: "called twice"},
		{name: "token of another adapter", token: &Token{Adapter: "other", Mark: mark}, capture: callPost(1), steps: "preflight:capture mark post_capture cleanup", wantErr: `token names adapter "other"`},
		{name: "token without a mark", token: &Token{Adapter: "recording"}, capture: callPost(1), steps: "preflight:capture mark post_capture cleanup", wantErr: "without a mark point"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &recordingAdapter{failAt: tc.failAt, token: tc.token}
			err := RunCapture(context.Background(), a, NewSession(nil, nil, false), tc.capture)
			if got := strings.Join(a.steps, " "); got != tc.steps {
				t.Fatalf("steps %q, want %q", got, tc.steps)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("RunCapture: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestRunCaptureTokenJSON(t *testing.T) {
	a := &recordingAdapter{token: &Token{Adapter: "recording", Mark: time.Date(2026, 12, 3, 12, 0, 0, 0, time.FixedZone("CET", 3600)), Fields: map[string]string{"k": "v"}}}
	var raw json.RawMessage
	err := RunCapture(context.Background(), a, NewSession(nil, nil, false), func(ctx context.Context, post func(context.Context) (json.RawMessage, error)) error {
		var err error
		raw, err = post(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"adapter":"recording","mark":"2026-12-03T11:00:00Z","fields":{"k":"v"}}`; string(raw) != want {
		t.Fatalf("token JSON %s, want %s (mark in UTC)", raw, want)
	}
	tok, err := ParseToken(raw)
	if err != nil || tok.Fields["k"] != "v" {
		t.Fatalf("ParseToken: %+v %v", tok, err)
	}
}

func TestRunExtendSequence(t *testing.T) {
	tok := &Token{Adapter: "recording", Mark: time.Now()}
	for _, tc := range []struct {
		name, failAt string
		token        *Token
		cancelled    bool
		steps        string
		wantIs       error
	}{
		{name: "ok", token: tok, steps: "preflight:extend pre_extend:/dev/sdb extend:/dev/sdb cleanup"},
		{name: "pre-extend fails: no extend", failAt: "pre_extend:/dev/sdb", token: tok, steps: "preflight:extend pre_extend:/dev/sdb cleanup"},
		{name: "no token: nothing runs but cleanup", token: nil, steps: "cleanup", wantIs: ErrCheck},
		{name: "token of another adapter", token: &Token{Adapter: "sios", Mark: time.Now()}, steps: "cleanup", wantIs: ErrCheck},
		{name: "interrupted: cleanup on a live context", token: tok, cancelled: true, steps: "preflight:extend cleanup", wantIs: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &recordingAdapter{failAt: tc.failAt}
			ctx, cancel := context.WithCancel(context.Background())
			if tc.cancelled {
				cancel()
			}
			defer cancel()
			err := RunExtend(ctx, a, NewSession(nil, nil, false), tc.token, "/dev/sdb")
			if got := strings.Join(a.steps, " "); got != tc.steps {
				t.Fatalf("steps %q, want %q", got, tc.steps)
			}
			if (tc.failAt != "" || tc.wantIs != nil) != (err != nil) || tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("RunExtend: %v, want %v", err, tc.wantIs)
			}
		})
	}
}

func TestParseTokenRefuses(t *testing.T) {
	for _, raw := range []string{``, `{}`, `{"adapter":"sios"}`, `{"adapter":"sios","mark":"2026-12-03T11:00:00Z","extra":1}`, `[1]`} {
		if _, err := ParseToken(json.RawMessage(raw)); !errors.Is(err, ErrCheck) {
			t.Errorf("ParseToken(%s): %v, want ErrCheck", raw, err)
		}
	}
}

func TestRunDryRunSkipsTheCapture(t *testing.T) {
	a := &recordingAdapter{token: &Token{Adapter: "recording", Mark: time.Now()}}
	var out bytes.Buffer
	err := RunCapture(context.Background(), a, NewSession(nil, &out, true), func(context.Context, func(context.Context) (json.RawMessage, error)) error {
		t.Fatal("dry run called the capture")
		return nil
	})
	if err != nil || strings.Join(a.steps, " ") != "preflight:capture mark post_capture cleanup" || !strings.Contains(out.String(), "would capture") {
		t.Fatalf("dry run: %v, steps %q, output %q", err, a.steps, out.String())
	}
}
