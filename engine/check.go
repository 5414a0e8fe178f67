package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/verify"
)

// CheckOptions tunes [CheckImage].
type CheckOptions struct {
	// Repair rewrites damaged or missing segments and manifest copies
	// from parity and intact copies, atomically, then checks again.
	Repair bool
	// Fallback, if set, is a second copy of the same image; with Repair,
	// what parity cannot rebuild is fetched from it (damaged frames only
	// when the rest of a segment is sound).
	Fallback   store.Store
	Workers    int
	Progress   func(Progress)
	OnRepaired func(keys []string) // told which files were rewritten
}

// CheckResult is the outcome of [CheckImage].
type CheckResult struct {
	Manifest *format.Manifest
	// Before is the first check; After the check after a repair (nil
	// when nothing was repaired).
	Before, After *verify.Report
	Rewritten     []string
}

// Final returns the report that describes the image now.
func (r *CheckResult) Final() *verify.Report {
	if r.After != nil {
		return r.After
	}
	return r.Before
}

// CheckImage verifies the whole image in st and, with opts.Repair,
// repairs what parity and manifest copies allow. The error wraps
// ErrIntegrity when the image is (still) damaged.
func CheckImage(ctx context.Context, st store.Store, opts CheckOptions) (*CheckResult, error) {
	m, mb, err := loadImage(ctx, st)
	if err != nil && opts.Repair && opts.Fallback != nil && errors.Is(err, ErrIntegrity) {
		// Every manifest here is damaged: take the fallback's, which
		// the repair below writes back.
		var ferr error
		if m, mb, ferr = loadImage(ctx, opts.Fallback); ferr != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	res := &CheckResult{Manifest: m}
	check := func() (*verify.Report, error) {
		meter := NewMeter(m.Header.Size, opts.Progress)
		return verify.Check(ctx, st, m, verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: opts.Workers, OnProgress: meter.Add}})
	}
	if res.Before, err = check(); err != nil {
		return res, err
	}
	if res.Before.OK() {
		return res, nil
	}
	if !opts.Repair {
		return res, damagedErr(st, m, res.Before)
	}
	if opts.Fallback != nil {
		if err := openFallback(ctx, opts.Fallback, m); err != nil {
			return res, err
		}
	}
	statuses, err := verify.Repair(ctx, st, m, res.Before.Findings)
	if err != nil {
		return res, fmt.Errorf("repair %s: %w", st, err)
	}
	for _, s := range statuses {
		if s.Repairable {
			res.Rewritten = append(res.Rewritten, s.Damaged...)
		}
	}
	if opts.Fallback != nil {
		// What parity could not rebuild: check again, then take it
		// from the fallback.
		mid := res.Before
		if len(res.Rewritten) > 0 {
			if mid, err = check(); err != nil {
				return res, err
			}
		}
		keys, err := patchFromFallback(ctx, st, opts.Fallback, m, mid.Findings)
		res.Rewritten = append(res.Rewritten, keys...)
		if err != nil {
			return res, err
		}
	}
	bad, _ := verify.CheckManifestCopies(ctx, st, m, m.CopyKeys())
	if len(bad) > 0 {
		if err := verify.RepairManifests(ctx, st, mb, bad); err != nil {
			return res, err
		}
		res.Rewritten = append(res.Rewritten, bad...)
	}
	if opts.OnRepaired != nil {
		opts.OnRepaired(res.Rewritten)
	}
	if res.After, err = check(); err != nil {
		return res, err
	}
	if !res.After.OK() {
		return res, damagedErr(st, m, res.After)
	}
	return res, nil
}

func damagedErr(st store.Store, m *format.Manifest, rep *verify.Report) error {
	lost := rep.LostChunks(m)
	if rep.Repairable(m) {
		return fmt.Errorf("%w: %s: %d problem(s), all repairable from parity: run 'seedship verify --repair'", ErrIntegrity, st, len(rep.Findings))
	}
	if len(lost) > 0 {
		return fmt.Errorf("%w: %s: %d problem(s); %d chunk(s) beyond repair: %s", ErrIntegrity, st, len(rep.Findings), len(lost), describeChunks(m, lost))
	}
	return fmt.Errorf("%w: %s: %d problem(s), not repairable (no parity, or too much damage in a stripe)", ErrIntegrity, st, len(rep.Findings))
}

// loadImage is OpenImage that also returns the manifest bytes.
func loadImage(ctx context.Context, st store.Store) (*format.Manifest, []byte, error) {
	m, b, err := verify.LoadManifestBytes(ctx, st)
	if err != nil {
		_, err = mapManifestErr(nil, err)
		return nil, nil, err
	}
	return m, b, nil
}
