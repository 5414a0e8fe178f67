package main

import (
	"context"
	"errors"
	"filippo.io/age"
	"fmt"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/resync"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/sign"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/verify"
)

func init() { laterCommands = append(laterCommands, extendCommand) }

func extendCommand() *cli.Command {
	return newCommand(command{
		name:      "extend",
		usage:     "add a restored target to the mirror with a partial resync, after checking it",
		operands:  []operand{imageOperand("IMAGE", "image"), deviceOperand("TARGET", "target")},
		linuxOnly: true,
		help: `
Runs the replication product's target-side steps (--adapter, configured by --config) that add
TARGET, restored from IMAGE, to the mirror with a partial resync, once the checks below hold.
Each failed check is one line naming its condition; then nothing is run.

  - the image carries a seed token (capture --adapter) made by this adapter, and its mark point
    is not after the capture start (writes in between would be in neither the seed nor the
    product's change map);
  - TARGET is not mounted, has no holders (md, device-mapper, LVM), is not swap and is not held
    open exclusively;
  - evidence that TARGET holds the image: with --receipt FILE, a passing receipt of
    'seedship verify --device TARGET --receipt FILE IMAGE' for this image (its manifest hash)
    and this target (path, size, device number, serial, WWN, /dev/disk/by-id, or a file's
    inode), and TARGET not written since (the kernel's write counters, in the same boot; a
    file's mtime and ctime). Without --receipt, or with --reverify, extend reads TARGET back
    itself (every chunk and the whole-source SHA-256) before the steps.

With --trust FILE (a public key file or an OpenSSH allowed_signers file), two more checks come
first: the image's manifest, which holds the seed token and binds every chunk hash, is signed by
a key FILE lists (capture --sign-key), and the receipt is signed by a key FILE lists for the
namespace seedship-receipt (verify --receipt FILE --sign-key KEY writes FILE.sig). An unsigned
image or receipt, one signed by another key, or one altered after signing is refused with exit 3.
Without --trust a signature beside the receipt is not checked, and counts for nothing: only
--trust makes it evidence.

A receipt from before a restart cannot show that nothing was written since: use --reverify.
A failed check exits 2 (3 when the target differs from the image, or --trust refuses a
signature) and runs nothing; a product command that fails exits 1 after the cleanup step has run
(and restored every file a step edited).
--dry-run runs the checks (but not the read-back), then prints every command and file edit the
steps would make, and changes nothing.

Examples:
   seedship extend --adapter drbd --config /etc/seedship/r0.json --receipt /root/sdc1.receipt /mnt/courier/seed /dev/sdc1
   seedship extend --adapter drbd --config /etc/seedship/r0.json --trust /etc/seedship/allowed_signers \
       --receipt /root/sdc1.receipt /mnt/courier/seed /dev/sdc1
   seedship extend --adapter sios --config /etc/seedship/sios.json --dry-run /mnt/courier/seed /dev/sdc1`,
		flags: append(append(adapterFlags("extend"),
			&cli.StringFlag{Name: "receipt", Usage: "the restore receipt of verify --device TARGET --receipt FILE IMAGE: the evidence that TARGET holds the image"},
			&cli.BoolFlag{Name: "reverify", Usage: "read TARGET back against the image before extending, even with a receipt (after a restart, or when in doubt)"},
			&cli.StringFlag{Name: "trust", Usage: "refuse (exit 3) unless the image's manifest and the --receipt are signed by keys in this file (a public key file or an OpenSSH allowed_signers file); without it a receipt's signature is not checked"},
			workersFlag("parallel read-back", ""),
		), identityFlags()...),
		run: runExtend,
	})
}

// extendJSON is extend's --json output.
type extendJSON struct {
	Image    string `json:"image"`
	Target   string `json:"target"`
	Adapter  string `json:"adapter"`
	DryRun   bool   `json:"dry_run"`
	Evidence string `json:"evidence"` // "receipt", "read-back" or "none (dry run)"
	Receipt  string `json:"receipt,omitempty"`
	// Signer and ReceiptSigner are who signed the image and the receipt,
	// checked against --trust (empty without it).
	Signer        string   `json:"signer,omitempty"`
	ReceiptSigner string   `json:"receipt_signer,omitempty"`
	Checks        []string `json:"checks"` // the conditions that held
	Seconds       float64  `json:"seconds"`
}

func runExtend(c *cli.Context, args []string) error {
	image, target := args[0], args[1]
	if c.String("adapter") == "" {
		return usagef("extend: --adapter NAME is required (the replication product's steps: see 'seedship extend --help')")
	}
	trust, err := loadTrust(c)
	if err != nil {
		return err
	}
	run, err := openAdapter(c, "extend", stepLog(c))
	if err != nil {
		return err
	}
	st, err := openStore(c, image)
	if err != nil {
		return err
	}
	ids, err := identitiesOf(c)
	if err != nil {
		return err
	}
	m, who, err := openExtendImage(c.Context, st, trust, ids)
	if err != nil {
		return err
	}
	x := &extension{c: c, p: newPrinter(c, "extend"), run: run, m: m, img: verify.ImageOf(m, st.String()), target: target, trust: trust,
		res: extendJSON{Image: st.String(), Target: target, Adapter: run.adapter.Name(), DryRun: run.session.DryRun, Checks: []string{}}}
	start := time.Now()
	if x.run.session.DryRun {
		x.run.session.Logf("dry run: extend of %s from %s with adapter %s (%s): checks run, nothing is changed", target, st, run.adapter.Name(), run.config)
	}
	if who != nil {
		x.held(resync.CondImageSigned, signerText(who, true))
		x.res.Signer = signerText(who, true)
	}
	token, err := x.checkToken()
	if err != nil {
		return err
	}
	if err := x.checkNotInUse(); err != nil {
		return err
	}
	if err := x.checkEvidence(); err != nil {
		return err
	}
	if err := resync.RunExtend(c.Context, run.adapter, run.session, token, target); err != nil {
		return resyncError(err)
	}
	x.res.Seconds = time.Since(start).Seconds()
	if err := x.p.emitJSON(x.res); err != nil {
		return err
	}
	if run.session.DryRun {
		x.p.summary("dry run of extend %s with adapter %s: %d check(s) held; nothing was changed", target, run.adapter.Name(), len(x.res.Checks))
		return nil
	}
	x.p.summary("extended %s with adapter %s on the evidence of %s: %d check(s) held", target, run.adapter.Name(), x.res.Evidence, len(x.res.Checks))
	return nil
}

// extension is one run of extend: what it checks against, and what it
// reports.
type extension struct {
	c      *cli.Context
	p      *printer
	run    *adapterRun
	m      *format.Manifest
	img    verify.ReceiptImage
	target string
	trust  *sign.Trust // --trust; nil without it
	res    extendJSON
}

// held records a check that held and logs it.
func (x *extension) held(cond, detail string) {
	x.res.Checks = append(x.res.Checks, cond)
	x.run.session.Logf("check ok: %s (%s)", cond, detail)
}

// checkToken decodes the image's seed token and checks it against the
// adapter and the capture start.
func (x *extension) checkToken() (*resync.Token, error) {
	token, err := resync.ParseToken(x.m.Header.Resync)
	if err != nil {
		return nil, resyncError(err)
	}
	if err := resync.CheckToken(token, x.run.adapter.Name(), x.m.Header.CaptureStart); err != nil {
		return nil, resyncError(err)
	}
	x.held(resync.CondToken, "adapter "+token.Adapter)
	x.held(resync.CondMark, fmt.Sprintf("mark %s, capture start %s", token.Mark.Format(time.RFC3339Nano), x.m.Header.CaptureStart.Format(time.RFC3339Nano)))
	return token, nil
}

// checkNotInUse checks that the target is not mounted and has no holders.
func (x *extension) checkNotInUse() error {
	if err := resync.CheckNotInUse(x.target); err != nil {
		return resyncError(err)
	}
	x.held(resync.CondNotInUse, x.target)
	return nil
}

// checkEvidence checks the evidence that the target holds the image: the
// receipt (--receipt), or a read-back of the target (without a receipt,
// or with --reverify), which a dry run only announces.
func (x *extension) checkEvidence() error {
	s := x.run.session
	reverify := x.c.Bool("reverify")
	if path := x.c.String("receipt"); path != "" {
		if err := x.checkReceipt(path, !reverify); err != nil {
			return err
		}
		if !reverify {
			return nil
		}
	}
	if s.DryRun {
		s.Logf("would read %s back against %s (%s) before the extend", x.target, x.img.Location, human(x.m.Header.Size))
		x.res.Evidence = "none (dry run)"
		return nil
	}
	meter := engine.NewMeter(x.m.Header.Size, x.p.progress)
	r, err := extendReadBack(x.c.Context, x.m, x.img.Location, x.target, verify.DeviceOptions{Workers: x.c.Int("workers"), OnProgress: meter.Add})
	x.p.endProgress()
	if err != nil {
		return err
	}
	x.held(resync.CondReadBack, fmt.Sprintf("%d chunks and the whole-source SHA-256 %s", r.Image.Chunks, r.Result.SourceSHA256))
	x.res.Evidence = "read-back"
	// The read-back took a while: the target must still be free, and
	// unwritten since the read-back ended.
	if err := resync.CheckNotInUse(x.target); err != nil {
		return resyncError(err)
	}
	now, err := verify.DescribeTarget(x.target)
	if err != nil {
		return targetError(x.target, err)
	}
	return resyncError(resync.CheckReceipt("of this read-back", r, x.img, &now))
}

// checkReceipt loads the receipt at path and checks it for the image and
// its result and, when identity is set, for the target as it is now
// (the device the receipt names, not written since).
func (x *extension) checkReceipt(path string, identity bool) error {
	receipt, who, err := resync.LoadSignedReceipt(path, x.trust)
	if err != nil {
		return signedCheckError(err)
	}
	if who != nil {
		x.held(resync.CondReceiptSigned, signerText(who, true))
		x.res.ReceiptSigner = signerText(who, true)
	} else if _, err := os.Lstat(verify.ReceiptSignatureFile(path)); err == nil {
		x.run.session.Logf("note: the signature %s of receipt %s is not checked: give --trust to require it", verify.ReceiptSignatureFile(path), path)
	}
	var now *verify.Target
	if identity {
		t, err := verify.DescribeTarget(x.target)
		if err != nil {
			return targetError(x.target, err)
		}
		now = &t
	}
	if err := resync.CheckReceipt(path, receipt, x.img, now); err != nil {
		return resyncError(err)
	}
	x.held(resync.CondReceipt, path)
	x.res.Evidence, x.res.Receipt = "receipt", path
	if now != nil {
		x.held(resync.CondIdentity, now.Resolved)
		x.held(resync.CondUnwritten, "since "+receipt.Finished.Format(time.RFC3339))
	}
	return nil
}

// extendReadBack reads target back against m, describing it before and
// after, and returns the receipt of that read-back (not written to any
// file) when it passed. A target that differs is an integrity failure; a
// read-back that did not finish keeps its own error (an interrupt stays
// an interrupt).
func extendReadBack(ctx context.Context, m *format.Manifest, location, target string, opts verify.DeviceOptions) (*verify.Receipt, error) {
	_, r, err := receiptReadBack(ctx, m, location, target, opts)
	switch {
	case r == nil:
		return nil, err
	case r.Passed():
		return r, nil
	case err != nil && !r.Result.Differs:
		return nil, fmt.Errorf("reading %s back before the extend: %w", target, err)
	}
	return nil, resyncError(&resync.CheckError{Condition: resync.CondReadBack, Differs: r.Result.Differs,
		Problem: fmt.Sprintf("%s against %s: %s", target, location, r.Result.Reason),
		Fix:     "restore the image onto the target again (seedship restore), then extend"})
}

// openExtendImage opens the image in st and, with a trust set, checks
// that a key in it signed the manifest, refusing the image otherwise
// (a [*resync.CheckError] for [resync.CondImageSigned], exit 3) before the
// seed token or any chunk is read. The signature is checked over the very
// bytes the returned manifest was decoded from (one read of the
// manifest): a store that serves a signed manifest to a first read and
// another to a second gains nothing.
//
// An encrypted image seals its seed token and whole-source SHA-256 (spec
// §11.5): extend needs its key for both, and opens it with ids after the
// signature is checked (no key that opens it: exit 2; a MAC that fails:
// exit 3).
func openExtendImage(ctx context.Context, st store.Store, trust *sign.Trust, ids []age.Identity) (*format.Manifest, *sign.Signatory, error) {
	im, err := seed.Open(ctx, st)
	if err != nil {
		// engine.OpenImage classifies the failure (not an image, another
		// version, damage) as every command does.
		if _, cerr := engine.OpenImage(ctx, st); cerr != nil {
			return nil, nil, cerr
		}
		return nil, nil, fmt.Errorf("open %s: %w", st, err)
	}
	var who *sign.Signatory
	if trust != nil {
		keys := []string{im.ManifestKey()}
		for _, k := range append([]string{format.ManifestKey}, im.Manifest().CopyKeys()...) {
			if k != im.ManifestKey() {
				keys = append(keys, k)
			}
		}
		who, err = sign.VerifyStored(ctx, st, keys, im.ManifestBytes(), trust)
		if sign.Refused(err) {
			return nil, nil, signedCheckError(&resync.CheckError{Condition: resync.CondImageSigned, Problem: err.Error(),
				Fix: "extend only an image signed by a key the trust file lists (capture --sign-key)", Cause: err})
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if err := im.Unlock(ids); err != nil {
		return nil, nil, err
	}
	return im.Manifest(), who, nil
}

// signedCheckError is resyncError, except that a check refused because
// of a signature (unsigned, untrusted, or not matching what it signs) is
// an integrity failure (exit 3), as --trust is everywhere else.
func signedCheckError(err error) error {
	var ce *resync.CheckError
	if errors.As(err, &ce) && sign.Refused(err) {
		return &classified{kind: engine.ErrIntegrity, err: err}
	}
	return resyncError(err)
}
