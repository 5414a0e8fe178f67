package engine

import (
	"context"
	"fmt"

	"filippo.io/age"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/sign"
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
	// Trust, if set, refuses (exit 3) an image whose manifest is not
	// signed by one of its keys, before any chunk is read or repaired.
	Trust *sign.Trust
	// Identities, if given, open an encrypted image (spec §11): every
	// chunk is then decrypted and checked against its keyed chunk hash,
	// as for a plaintext image; they must open it (else ErrBadInput).
	// Without them an encrypted image is checked for transport
	// integrity only (every stored byte against its stored digest), and
	// repaired the same way: repair needs no key.
	Identities []age.Identity
	// Deep asks for every chunk to be opened and checked against its
	// chunk hash (what a check of a plaintext or unlocked image does):
	// an encrypted image without Identities is then refused (ErrBadInput)
	// instead of being checked for transport integrity only.
	Deep bool
	// Transport checks the stored bytes only, on any image (every frame
	// against its stored digest, every structure and parity row),
	// opening no chunk: what a check of an encrypted image without
	// Identities does without being asked. Not with Deep.
	Transport bool
}

// CheckResult is the outcome of [CheckImage].
type CheckResult struct {
	Manifest *format.Manifest
	// Before is the first check; After the check after a repair (nil
	// when nothing was repaired).
	Before, After *verify.Report
	Rewritten     []string
	// Signer is who signed the image, checked against CheckOptions.Trust
	// (nil without one).
	Signer *sign.Signatory
}

// Final returns the report that describes the image now.
func (r *CheckResult) Final() *verify.Report {
	if r.After != nil {
		return r.After
	}
	return r.Before
}

// CheckImage verifies the whole image in st and, with opts.Repair,
// repairs what parity, manifest copies and the fallback allow, holding
// the image's writer lock while it does. The error wraps ErrIntegrity
// when the image is (still) damaged.
func CheckImage(ctx context.Context, st store.Store, opts CheckOptions) (*CheckResult, error) {
	im, fb, err := openForCheck(ctx, st, opts)
	if err != nil {
		return nil, err
	}
	signer, err := checkSigned(ctx, im, opts.Trust)
	if err != nil {
		return nil, err
	}
	// The fallback shares im's manifest (openFallback), and so its key.
	if opts.Deep && opts.Transport {
		return nil, fmt.Errorf("%w: --deep opens every chunk and --transport none: give one of them", ErrBadInput)
	}
	use := keyIfGiven
	if opts.Deep {
		use = keyRequired
	}
	if err := unlock(im, opts.Identities, use); err != nil {
		return nil, err
	}
	m := im.Manifest()
	if opts.Repair {
		// Held from the first check on: what the repair rewrites is
		// what that check found, with no other writer in between.
		unlock, err := lockImage(ctx, st, "verify --repair")
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	res := &CheckResult{Manifest: m, Signer: signer}
	check := func() (*verify.Report, error) {
		meter := NewMeter(m.Header.Size, opts.Progress)
		return verify.CheckImage(ctx, im, verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: opts.Workers, OnProgress: meter.Add,
			Transport: opts.Transport, Deep: opts.Deep}})
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
	res.Rewritten, err = repairImage(ctx, im, fb, res.Before, check)
	if opts.OnRepaired != nil {
		opts.OnRepaired(res.Rewritten)
	}
	if err != nil {
		return res, err
	}
	if res.After, err = check(); err != nil {
		return res, err
	}
	if !res.After.OK() {
		return res, damagedErr(st, m, res.After)
	}
	return res, nil
}

// openForCheck opens the image in st and, for a repair, its fallback.
// When every manifest of st is damaged, a repair with a fallback takes
// the fallback's manifest (which the repair then writes back).
func openForCheck(ctx context.Context, st store.Store, opts CheckOptions) (im, fb *seed.Image, err error) {
	im, err = openImage(ctx, st)
	if err != nil && opts.Repair && opts.Fallback != nil && KindOf(err) == KindIntegrity {
		fim, ferr := openImage(ctx, opts.Fallback)
		if ferr != nil {
			return nil, nil, err
		}
		return seed.New(st, fim.Manifest(), fim.ManifestBytes()), fim, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if opts.Repair && opts.Fallback != nil {
		if fb, err = openFallback(ctx, opts.Fallback, im); err != nil {
			return nil, nil, err
		}
	}
	return im, fb, nil
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
