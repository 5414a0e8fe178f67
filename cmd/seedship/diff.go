package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
)

func init() { laterCommands = append(laterCommands, diffCommand) }

func diffCommand() *cli.Command {
	return newCommand(command{
		name:     "diff",
		usage:    "list the ranges of a device that differ from a seed image",
		operands: []operand{imageOperand("IMAGE", "image"), deviceOperand("DEVICE", "device")},
		help: `
Reads DEVICE (a block device or an image file) once, front to back, hashing it in parallel, and
lists the byte ranges whose 64 KiB blocks differ from what IMAGE records, adjacent blocks
coalesced into one range, with the total of changed bytes. Of IMAGE it reads only the manifest
and the segment indexes of the chunks that differ, never chunk data: an image in object storage
costs a few small requests, and a digest-only image (capture --digest-only) works like a full
one. A delta image is refused: its unchanged chunks carry no block digests of their own.

A DEVICE of another size is compared over the part both cover, and the bytes missing from it or
extra on it are reported as such; it differs from the image. A chunk is identical when its chunk
hash (SHA-256 tree) matches; only a chunk that differs is located to its 64 KiB blocks, by their
8-byte digests; the block a shorter DEVICE's end cuts is reported as changed (its digest covers
bytes DEVICE lacks). DEVICE is only read, and may be in use (the result then describes the moment
each block was read).

An encrypted image's digests are keyed: give --identity FILE (or --passphrase-file) of one of its
recipients; without one that opens it, diff stops with exit 2.

Output: one line per changed range ("changed bytes FIRST-LAST (SIZE)"), then a summary. --quiet
prints no ranges and no summary, only the one line on stderr that says it differs: the exit
status says identical (0) or different (3), like cmp -s. --json
prints one object, its ranges streamed as they are found: "identical", "ranges" (offset,
length, located), "changed_bytes", "compared_bytes", "missing" and "extra" (when the sizes
differ); when the comparison stops early, "error" says why and the exit status is not 0 or 3
(or 3 with "error" for a damaged image).

Exit status 3 when DEVICE differs from IMAGE is the normal result of a comparison, not a failure:
it is distinct from 1 (DEVICE or IMAGE could not be read) and 2 (bad input), so a script can
branch on it:
   seedship diff -q IMAGE DEV; case $? in 0) echo same;; 3) echo differs;; *) echo error;; esac

Examples:
   seedship diff /mnt/courier/seed /dev/sdb1
   seedship diff --json s3://seeds/site-a/sdb1 /dev/sdb1 > changes.json`,
		flags: append([]cli.Flag{workersFlag("hashing", "")}, identityFlags()...),
		run:   runDiff,
	})
}

// diffRangeJSON is one changed range in diff's --json output.
type diffRangeJSON struct {
	Offset  int64 `json:"offset"`
	Length  int64 `json:"length"`
	Located bool  `json:"located"` // false: located only to its chunk (the block digests could not tell)
}

// diffTotalsJSON is what follows the ranges in diff's --json output.
type diffTotalsJSON struct {
	Identical     *bool             `json:"identical,omitempty"` // absent when the comparison did not finish
	DigestOnly    bool              `json:"digest_only"`         // the image holds digests only (capture --digest-only)
	ImageSize     int64             `json:"image_size"`
	DeviceSize    int64             `json:"device_size"`
	RangeCount    int64             `json:"range_count"`
	ChangedBytes  int64             `json:"changed_bytes"`
	ChangedChunks uint64            `json:"changed_chunks"`
	Unlocated     uint64            `json:"unlocated_chunks"`
	Compared      int64             `json:"compared_bytes"`
	Missing       *engine.ByteRange `json:"missing,omitempty"` // the image's bytes past the device's end
	Extra         *engine.ByteRange `json:"extra,omitempty"`   // the device's bytes past the image's end
	Checked       []string          `json:"checked"`
	Seconds       float64           `json:"seconds"`
	Error         string            `json:"error,omitempty"`
}

// diffChecked is what diff compares, for --json and the human output.
var diffChecked = []string{"chunk-hashes", "block-digests"}

func runDiff(c *cli.Context, args []string) error {
	ids, err := identitiesOf(c)
	if err != nil {
		return err
	}
	st, err := openStore(c, args[0])
	if err != nil {
		return err
	}
	dev := args[1]
	p := newPrinter(c, "diff")
	jw := &diffJSONWriter{p: p}
	start := time.Now()
	res, err := engine.Diff(c.Context, st, dev, engine.DiffOptions{
		Workers:    c.Int("workers"),
		Identities: ids,
		Progress:   p.progress,
		OnRange: func(r engine.DiffRange) error {
			if p.json {
				return jw.rangeOut(st.String(), dev, r)
			}
			if !p.quiet {
				p.endProgress()
				fmt.Fprintf(p.out, "changed bytes %d-%d (%s)%s\n", r.Offset, r.End()-1, human(r.Length), unlocatedNote(r))
			}
			return nil
		},
	})
	p.endProgress()
	el := time.Since(start)
	if p.json && (res != nil || jw.started) {
		if jerr := jw.finish(st.String(), dev, res, err, el); jerr != nil {
			return jerr
		}
	}
	if err != nil {
		return err
	}
	what := fmt.Sprintf("%s against %s%s", dev, st, digestOnlyNote(res.Manifest))
	if !p.json {
		if m := res.Missing(); m.Length > 0 {
			p.summary("missing bytes %d-%d (%s): %s is smaller than the image", m.Offset, m.End()-1, human(m.Length), dev)
		}
		if x := res.Extra(); x.Length > 0 {
			p.summary("extra bytes %d-%d (%s): %s is larger than the image", x.Offset, x.End()-1, human(x.Length), dev)
		}
	}
	if res.Identical() {
		p.summary("identical: %s, %s compared in %s (%s)\nchecked: chunk hashes, and block digests where a chunk differs",
			what, human(res.Compared), el.Round(time.Millisecond), rate(res.Compared, el))
		return nil
	}
	return fmt.Errorf("%w: %s differs: %s", engine.ErrIntegrity, what, diffSummary(res))
}

// diffSummary says how a device differs, in one line.
func diffSummary(res *engine.DiffResult) string {
	var parts []string
	if res.Ranges > 0 {
		pct := 100 * float64(res.ChangedBytes) / float64(max(res.Compared, 1))
		parts = append(parts, fmt.Sprintf("%d range(s), %s of %s compared changed (%.3g%%) in %d chunk(s)",
			res.Ranges, human(res.ChangedBytes), human(res.Compared), pct, res.ChangedChunks))
	}
	if m := res.Missing(); m.Length > 0 {
		parts = append(parts, fmt.Sprintf("%s shorter than the image (bytes %d-%d missing)", human(m.Length), m.Offset, m.End()-1))
	}
	if x := res.Extra(); x.Length > 0 {
		parts = append(parts, fmt.Sprintf("%s longer than the image (bytes %d-%d extra)", human(x.Length), x.Offset, x.End()-1))
	}
	return strings.Join(parts, "; ")
}

// unlocatedNote explains a range located only to its chunk.
func unlocatedNote(r engine.DiffRange) string {
	if r.Located {
		return ""
	}
	return ": a whole chunk, whose hash differs while its block digests match"
}

// digestOnlyNote marks a digest-only image in messages.
func digestOnlyNote(m *format.Manifest) string {
	if m != nil && m.Header.RequiresFeature(format.FeatureDigestOnly) {
		return " (a digest-only image)"
	}
	return ""
}

// diffJSONWriter streams diff's --json object: the fixed fields and the
// ranges as they are found, then the totals, so the list never has to be
// held; the object is completed (with "error") also when the comparison
// stops early, so the output is always one valid JSON object.
type diffJSONWriter struct {
	p       *printer
	started bool
	n       int64
}

// begin writes the object's opening and the start of the ranges.
func (w *diffJSONWriter) begin(image, dev string) error {
	if w.started {
		return nil
	}
	w.started = true
	im, _ := json.Marshal(image)
	dv, _ := json.Marshal(dev)
	_, err := fmt.Fprintf(w.p.out, "{\n  \"image\": %s,\n  \"device\": %s,\n  \"ranges\": [", im, dv)
	return err
}

func (w *diffJSONWriter) rangeOut(image, dev string, r engine.DiffRange) error {
	if err := w.begin(image, dev); err != nil {
		return err
	}
	b, _ := json.Marshal(diffRangeJSON{Offset: r.Offset, Length: r.Length, Located: r.Located})
	sep := ","
	if w.n == 0 {
		sep = ""
	}
	w.n++
	_, err := fmt.Fprintf(w.p.out, "%s\n    %s", sep, b)
	return err
}

// finish writes the totals (from res, when the comparison got that far)
// and closes the object.
func (w *diffJSONWriter) finish(image, dev string, res *engine.DiffResult, cerr error, el time.Duration) error {
	if err := w.begin(image, dev); err != nil {
		return err
	}
	t := diffTotalsJSON{Checked: diffChecked, Seconds: el.Seconds()}
	if res != nil {
		t.DigestOnly = res.Manifest.Header.RequiresFeature(format.FeatureDigestOnly)
		t.ImageSize, t.DeviceSize = res.Manifest.Header.Size, res.DeviceSize
		t.RangeCount, t.ChangedBytes, t.ChangedChunks, t.Unlocated, t.Compared = res.Ranges, res.ChangedBytes, res.ChangedChunks, res.Unlocated, res.Compared
		if m := res.Missing(); m.Length > 0 {
			t.Missing = &m
		}
		if x := res.Extra(); x.Length > 0 {
			t.Extra = &x
		}
	}
	if cerr != nil {
		t.Error = strings.ReplaceAll(cerr.Error(), "\n", "; ")
		t.Checked = []string{}
	} else {
		same := res.Identical()
		t.Identical = &same
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return err
	}
	closing := "\n  ],\n  "
	if w.n == 0 {
		closing = "],\n  "
	}
	// The totals object's own braces are dropped: its fields continue
	// the streamed object.
	body := strings.TrimSuffix(strings.TrimPrefix(string(b), "{\n  "), "\n}")
	_, err = fmt.Fprintf(w.p.out, "%s%s\n}\n", closing, body)
	return err
}
