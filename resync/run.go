package resync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// cleanupTimeout bounds Cleanup after an interrupt: it runs on a context
// that is not cancelled, but a host that does not answer must not hold
// the operator forever.
const cleanupTimeout = 10 * time.Minute

// RunCapture runs the capture-side steps around a capture: Preflight,
// Mark, then capture(ctx, postCapture), where the capture calls
// postCapture once the source has been read and stored, just before the
// manifest is written (engine.CaptureOptions.BeforeManifest); postCapture
// runs the adapter's PostCapture and returns the token as JSON for the
// manifest's "resync" field. Cleanup (and [Session.RestoreAll]) always
// runs last, also after an error or an interrupt, with a context that is
// not cancelled. A capture that returns nil without having called
// postCapture is an error: the mark point would not be recorded.
//
// In dry run capture is not called: Preflight, Mark, PostCapture and
// Cleanup print what they would do.
//
// The CLI's use, with the engine's hook:
//
//	cfg, err := resync.LoadConfig(path) // ErrConfig: exit 2, nothing run
//	a, err := resync.New(cfg)
//	s := resync.NewSession(cfg, stderr, dryRun)
//	err = resync.RunCapture(ctx, a, s, func(ctx context.Context, post func(context.Context) (json.RawMessage, error)) error {
//		opts.BeforeManifest = post // the token lands in the manifest's "resync" field
//		_, err := engine.Capture(ctx, src, dst, opts)
//		return err
//	})
//
// Errors: [ErrConfig], [ErrCheck], [ErrStep] (a [CommandError]), the
// capture's own, and context.Canceled when interrupted; cleanup failures
// are joined to them (errors.Join), so errors.Is sees every one.
func RunCapture(ctx context.Context, a Adapter, s *Session, capture func(ctx context.Context, postCapture func(context.Context) (json.RawMessage, error)) error) (err error) {
	s.setSide(SideCapture)
	defer func() { err = errors.Join(err, cleanup(ctx, a, s)) }()
	if err := a.Preflight(ctx, s); err != nil {
		return fmt.Errorf("%s preflight: %w", a.Name(), err)
	}
	if err := a.Mark(ctx, s); err != nil {
		return fmt.Errorf("%s mark: %w", a.Name(), err)
	}
	var token json.RawMessage
	called := false
	postCapture := func(ctx context.Context) (json.RawMessage, error) {
		if called {
			return nil, fmt.Errorf("%s post-capture: called twice", a.Name())
		}
		called = true
		t, err := a.PostCapture(ctx, s)
		if err != nil {
			return nil, fmt.Errorf("%s post-capture: %w", a.Name(), err)
		}
		token, err = MarshalToken(t, a.Name())
		return token, err
	}
	if s.DryRun {
		s.Logf("would capture the source here")
		_, err := postCapture(ctx)
		return err
	}
	if capture == nil {
		return fmt.Errorf("%s: no capture to run the steps around", a.Name())
	}
	if err := capture(ctx, postCapture); err != nil {
		return err
	}
	if token == nil {
		return fmt.Errorf("%s: the capture finished without the post-capture step: no seed token was recorded", a.Name())
	}
	return nil
}

// RunExtend runs the target-side steps: it checks that the token was
// made by this adapter, then runs Preflight, PreExtend and Extend, and
// always Cleanup (and [Session.RestoreAll]) last, also after an error or
// an interrupt, with a context that is not cancelled. Extend never runs
// after a failed step. t comes from [ParseToken] of the image's
// manifest (format.Header.Resync); target is the restored device.
func RunExtend(ctx context.Context, a Adapter, s *Session, t *Token, target string) (err error) {
	s.setSide(SideExtend)
	defer func() { err = errors.Join(err, cleanup(ctx, a, s)) }()
	if t == nil {
		return fmt.Errorf("%w: the image has no seed token (it was captured without --adapter)", ErrCheck)
	}
	if t.Adapter != a.Name() {
		return fmt.Errorf("%w: the image's seed token was made by adapter %q, not %q", ErrCheck, t.Adapter, a.Name())
	}
	if err := a.Preflight(ctx, s); err != nil {
		return fmt.Errorf("%s preflight: %w", a.Name(), err)
	}
	if err := a.PreExtend(ctx, s, t, target); err != nil {
		return fmt.Errorf("%s pre-extend: %w", a.Name(), err)
	}
	if err := a.Extend(ctx, s, t, target); err != nil {
		return fmt.Errorf("%s extend: %w", a.Name(), err)
	}
	return nil
}

// cleanup runs the adapter's Cleanup and then the session's restores
// (whatever the adapter left), on a context that survives ctx's
// cancellation but not a host that never answers.
func cleanup(ctx context.Context, a Adapter, s *Session) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var errs []error
	if err := a.Cleanup(cctx, s); err != nil {
		errs = append(errs, fmt.Errorf("%s cleanup: %w", a.Name(), err))
	}
	if err := s.RestoreAll(cctx); err != nil {
		errs = append(errs, fmt.Errorf("%s cleanup: %w", a.Name(), err))
	}
	return errors.Join(errs...)
}

// MarshalToken checks t (made by adapter, with a mark point) and encodes
// it for the manifest; the mark point is stored in UTC.
func MarshalToken(t *Token, adapter string) (json.RawMessage, error) {
	if t == nil {
		return nil, fmt.Errorf("%s post-capture: no seed token", adapter)
	}
	if t.Adapter != adapter {
		return nil, fmt.Errorf("%s post-capture: token names adapter %q", adapter, t.Adapter)
	}
	if t.Mark.IsZero() {
		return nil, fmt.Errorf("%s post-capture: token without a mark point", adapter)
	}
	c := *t
	c.Mark = c.Mark.UTC()
	return json.Marshal(&c)
}

// ParseToken decodes the manifest's "resync" field. Errors wrap
// [ErrCheck]: a token that does not decode cannot vouch for a partial
// resync.
func ParseToken(raw json.RawMessage) (*Token, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: the image has no seed token (it was captured without --adapter)", ErrCheck)
	}
	var t Token
	if err := strictDecode(raw, &t); err != nil {
		return nil, fmt.Errorf("%w: the image's seed token does not decode: %v", ErrCheck, err)
	}
	if t.Adapter == "" || t.Mark.IsZero() {
		return nil, fmt.Errorf("%w: the image's seed token has no adapter or no mark point", ErrCheck)
	}
	return &t, nil
}
