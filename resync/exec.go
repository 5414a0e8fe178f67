package resync

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// execConfig is the "exec" section: the operator's own command for each
// step, as argv (see [Command]). mark and extend are required; the others
// are optional. preflight must only read: like every read-only query it
// runs in dry run too; the others are only printed there.
//
// Placeholders in argv words are replaced before a command runs:
//   - every step: {side} ("capture" or "extend");
//   - pre_extend and extend: {target} (the restored target device),
//     {mark} (the token's mark point, RFC 3339) and {token.KEY} (a field
//     of the token; one the token lacks fails the step before it runs).
//
// post_capture's stdout is the token: KEY=VALUE lines, "mark=TIME"
// optional (see [ParseTokenLines]); without a mark line the mark point is
// the moment the mark command finished.
type execConfig struct {
	Preflight   Command `json:"preflight"`
	Mark        Command `json:"mark"`
	PostCapture Command `json:"post_capture"`
	PreExtend   Command `json:"pre_extend"`
	Extend      Command `json:"extend"`
	Cleanup     Command `json:"cleanup"`
}

// execAdapter runs the operator's commands as the steps.
type execAdapter struct {
	cfg  execConfig
	mark time.Time // when the mark command finished
}

func init() { Register("exec", newExecAdapter) }

func newExecAdapter(cfg *Config) (Adapter, error) {
	var c execConfig
	if err := cfg.Section("exec", &c); err != nil {
		return nil, err
	}
	steps := []struct {
		field    string
		cmd      Command
		required bool
		vars     []string
	}{
		{"preflight", c.Preflight, false, []string{"side"}},
		{"mark", c.Mark, true, []string{"side"}},
		{"post_capture", c.PostCapture, false, []string{"side"}},
		{"pre_extend", c.PreExtend, false, []string{"side", "target", "mark", "token.*"}},
		{"extend", c.Extend, true, []string{"side", "target", "mark", "token.*"}},
		{"cleanup", c.Cleanup, false, []string{"side"}},
	}
	for _, st := range steps {
		field := "exec." + st.field
		if st.cmd.IsZero() {
			if st.required {
				return nil, cfg.FieldError(field, "missing: the exec adapter needs the %s command (argv array)", st.field)
			}
			continue
		}
		if err := st.cmd.Check(cfg, field); err != nil {
			return nil, err
		}
		for _, name := range placeholderNames(st.cmd.Argv) {
			if !placeholderAllowed(name, st.vars) {
				return nil, cfg.FieldError(field, "placeholder {%s} is not known in %s: use %s", name, st.field, strings.Join(braced(st.vars), ", "))
			}
		}
	}
	return &execAdapter{cfg: c}, nil
}

func placeholderAllowed(name string, vars []string) bool {
	if slices.Contains(vars, name) {
		return true
	}
	return strings.HasPrefix(name, "token.") && len(name) > len("token.") && slices.Contains(vars, "token.*")
}

func braced(vars []string) []string {
	out := make([]string, len(vars))
	for i, v := range vars {
		out[i] = "{" + strings.Replace(v, "*", "KEY", 1) + "}"
	}
	return out
}

// Name is "exec".
func (a *execAdapter) Name() string { return "exec" }

// Preflight runs the preflight command, if configured.
func (a *execAdapter) Preflight(ctx context.Context, s *Session) error {
	if a.cfg.Preflight.IsZero() {
		return nil
	}
	// Read-only by the operator's word: it runs in dry run too, like a
	// Session.Query.
	argv, err := expand(a.cfg.Preflight.Argv, a.vars(s, nil, ""))
	if err != nil {
		return fmt.Errorf("%w: exec.preflight: %w", ErrConfig, err)
	}
	if _, err := s.Query(ctx, a.cfg.Preflight.Host, argv...); err != nil {
		return fmt.Errorf("%w: %w", ErrCheck, err)
	}
	return nil
}

// Mark runs the mark command and notes when it finished.
func (a *execAdapter) Mark(ctx context.Context, s *Session) error {
	if err := a.run(ctx, s, "mark", a.cfg.Mark, nil, ""); err != nil {
		return err
	}
	a.mark = s.Time()
	return nil
}

// PostCapture runs post_capture and makes the token of its output.
func (a *execAdapter) PostCapture(ctx context.Context, s *Session) (*Token, error) {
	t := &Token{Adapter: "exec", Mark: a.mark}
	if a.cfg.PostCapture.IsZero() {
		return t, nil
	}
	argv, err := expand(a.cfg.PostCapture.Argv, a.vars(s, nil, ""))
	if err != nil {
		return nil, fmt.Errorf("%w: exec.post_capture: %w", ErrConfig, err)
	}
	out, err := s.Do(ctx, a.cfg.PostCapture.Host, argv...)
	if err != nil {
		return nil, err
	}
	fields, mark, err := ParseTokenLines(out)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrStep, a.cfg.PostCapture, err)
	}
	if len(fields) > 0 {
		t.Fields = fields
	}
	if !mark.IsZero() {
		t.Mark = mark
	}
	return t, nil
}

// PreExtend runs pre_extend, if configured.
func (a *execAdapter) PreExtend(ctx context.Context, s *Session, t *Token, target string) error {
	if a.cfg.PreExtend.IsZero() {
		return nil
	}
	return a.run(ctx, s, "pre_extend", a.cfg.PreExtend, t, target)
}

// Extend runs the extend command.
func (a *execAdapter) Extend(ctx context.Context, s *Session, t *Token, target string) error {
	return a.run(ctx, s, "extend", a.cfg.Extend, t, target)
}

// Cleanup runs the cleanup command, if configured (always, as the last
// step of either side).
func (a *execAdapter) Cleanup(ctx context.Context, s *Session) error {
	if a.cfg.Cleanup.IsZero() {
		return nil
	}
	return a.run(ctx, s, "cleanup", a.cfg.Cleanup, nil, "")
}

func (a *execAdapter) run(ctx context.Context, s *Session, step string, c Command, t *Token, target string) error {
	argv, err := expand(c.Argv, a.vars(s, t, target))
	if err != nil {
		// A {token.KEY} the token lacks: the image's token does not fit
		// this configuration.
		return fmt.Errorf("%w: exec.%s: %w", ErrCheck, step, err)
	}
	_, err = s.Do(ctx, c.Host, argv...)
	return err
}

// vars are the placeholder values for a step.
func (a *execAdapter) vars(s *Session, t *Token, target string) map[string]string {
	v := map[string]string{"side": string(s.Side())}
	if t != nil {
		v["target"] = target
		v["mark"] = t.Mark.UTC().Format(time.RFC3339Nano)
		for k, val := range t.Fields {
			v["token."+k] = val
		}
	}
	return v
}
