package resync

import (
	"errors"
	"fmt"
	"time"

	"github.com/seedship/seedship/device"
	"github.com/seedship/seedship/verify"
)

// The checks before extend. A partial resync trusts that the target holds
// the seed, untouched, and that the product's change map covers every
// write since the seed: each check below proves one part of that from
// evidence, and refuses with a [*CheckError] naming the condition that
// does not hold. None of them writes anything.
//
// What can be proven about the time between the receipt and the extend:
// a block device's kernel counters of sectors written and discarded, in
// the same boot, and a regular file's mtime and ctime. A device's own
// times in /dev say nothing about writes, and across a restart the
// counters start again, so a receipt from another boot proves nothing
// about the time since: then only reading the target back again does
// (extend --reverify). Writes that bypass this kernel's block layer (the
// same LUN written from another host, a loop device's backing file written
// directly for a partition's counters) are not seen by the counters; a
// loop device's backing file is part of its identity, not of its writes.

// Conditions, as the checks name them.
const (
	CondToken     = "the image carries a seed token for this adapter"
	CondMark      = "the mark point is not after the capture start"
	CondReceipt   = "a receipt for this image that passed"
	CondIdentity  = "the target is the device the receipt names"
	CondUnwritten = "the target was not written since the read-back"
	CondNotInUse  = "the target is not mounted and has no holders"
	CondReadBack  = "the target reads back as the image"
	// With --trust: the image's manifest (which holds the seed token and
	// binds every chunk hash) and the receipt are signed by trusted keys.
	CondImageSigned   = "the image is signed by a trusted key"
	CondReceiptSigned = "the receipt is signed by a trusted key"
)

// CheckError is one failed check before extend. Its message is one line:
// "check failed: CONDITION: PROBLEM: FIX". errors.Is(err, ErrCheck) holds
// for every CheckError.
type CheckError struct {
	Condition string // the condition that does not hold (one of the Cond constants)
	Problem   string // what was found
	Fix       string // what the operator can do
	// Differs says the target is known to differ from the image (an
	// integrity finding), rather than not proven to hold it.
	Differs bool
	// Cause is the error the check found, when there is one to match
	// with errors.Is (a refused signature: sign.Refused); nil otherwise.
	Cause error
}

// Error returns "check failed: CONDITION: PROBLEM: FIX".
func (e *CheckError) Error() string {
	msg := "check failed: " + e.Condition + ": " + e.Problem
	if e.Fix != "" {
		msg += ": " + e.Fix
	}
	return msg
}

// Unwrap returns [ErrCheck] and the Cause, if any.
func (e *CheckError) Unwrap() []error {
	if e.Cause == nil {
		return []error{ErrCheck}
	}
	return []error{ErrCheck, e.Cause}
}

// CheckToken checks the seed token against the adapter that is to extend
// and the image's capture start: the token was made by adapter, and its
// mark point is not after captureStart. A mark after the capture start
// would leave the writes between the two in neither the seed nor the
// product's change map.
func CheckToken(t *Token, adapter string, captureStart time.Time) error {
	switch {
	case t == nil:
		return &CheckError{Condition: CondToken, Problem: "the image has no seed token",
			Fix: "capture again with --adapter " + adapter + " --config FILE"}
	case t.Adapter != adapter:
		return &CheckError{Condition: CondToken, Problem: fmt.Sprintf("the seed token was made by adapter %q, not %q", t.Adapter, adapter),
			Fix: "extend with --adapter " + t.Adapter + ", or capture again with --adapter " + adapter}
	case t.Mark.IsZero():
		return &CheckError{Condition: CondMark, Problem: "the seed token has no mark point",
			Fix: "capture again with --adapter " + adapter}
	case captureStart.IsZero():
		return &CheckError{Condition: CondMark, Problem: "the image records no capture start, so the mark point cannot be placed",
			Fix: "capture again with --adapter " + adapter}
	case t.Mark.After(captureStart):
		return &CheckError{Condition: CondMark,
			Problem: fmt.Sprintf("the mark point %s is %s after the capture start %s: writes in between are in neither the seed nor the change map",
				t.Mark.UTC().Format(time.RFC3339Nano), t.Mark.Sub(captureStart), captureStart.UTC().Format(time.RFC3339Nano)),
			Fix: "capture again with --adapter " + adapter + " (it sets the mark point before it reads the source)"}
	}
	return nil
}

// CheckNotInUse checks that target is not mounted, has no holders (md,
// device-mapper, LVM), is not swap and is not claimed exclusively: the
// checks of [device.CheckWritable]. It fails closed: a state it cannot read
// is a failed check too.
func CheckNotInUse(target string) error {
	err := device.CheckWritable(target)
	if err == nil {
		return nil
	}
	var iu *device.InUseError
	if errors.As(err, &iu) {
		return &CheckError{Condition: CondNotInUse, Problem: iu.Path + " " + iu.Reason, Fix: iu.Fix + " first, and do not mount it before the extend"}
	}
	return &CheckError{Condition: CondNotInUse, Problem: err.Error(), Fix: "name the restored target device"}
}

// CheckReceipt checks a receipt (named name, for messages) against the
// image and the target as it is now: the receipt is for this image (the
// manifest hash), it passed, it names this target (path, kind, size,
// device number, serial, WWN, by-id; or a file's inode), and the target
// was not written since (see [verify.Target.WrittenSince]). A nil now
// checks only the image and the result, for a caller that reads the
// target back again anyway (after a restart, device numbers and kernel
// names may change).
func CheckReceipt(name string, r *verify.Receipt, image verify.ReceiptImage, now *verify.Target) error {
	path := r.Target.Path
	if now != nil {
		path = now.Path
	}
	reverify := "read it back again (extend --reverify, or verify --device " + path + " --receipt " + name + " IMAGE)"
	switch {
	case r.Image.ManifestSHA256 != image.ManifestSHA256:
		what := "another image"
		if r.Image.ID == image.ID {
			what = "another version of this image (same id, another manifest)"
		}
		return &CheckError{Condition: CondReceipt,
			Problem: fmt.Sprintf("receipt %s is for %s (manifest sha256 %s, image %s), not for %s (manifest sha256 %s)",
				name, what, r.Image.ManifestSHA256, r.Image.Location, image.Location, image.ManifestSHA256),
			Fix: "give the receipt of this image's read-back, or " + reverify}
	case !r.Passed():
		return &CheckError{Condition: CondReceipt, Differs: r.Result.Differs,
			Problem: fmt.Sprintf("receipt %s records a failed read-back of %s: %s", name, r.Target.Path, r.Result.Reason),
			Fix:     "restore the image onto the target again, then verify --device --receipt"}
	}
	if now == nil {
		return nil
	}
	if why := r.Target.Differs(*now); why != "" {
		return &CheckError{Condition: CondIdentity, Problem: fmt.Sprintf("%s is not the target of receipt %s: %s", now.Path, name, why),
			Fix: "extend the target the receipt names, or " + reverify}
	}
	if why := r.Target.WrittenSince(*now); why != "" {
		return &CheckError{Condition: CondUnwritten, Problem: fmt.Sprintf("since receipt %s (finished %s): %s", name, r.Finished.Format(time.RFC3339), why),
			Fix: reverify}
	}
	return nil
}
