package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
)

func restoreCommand() *cli.Command {
	image, target := imageOperand("IMAGE", "image"), deviceOperand("TARGET", "target")
	return variadicCommand(command{
		name:      "restore",
		usage:     "write a seed image onto the target device",
		operands:  []operand{image, target},
		linuxOnly: true,
		help: `
Writes IMAGE block for block onto TARGET, a block device (at least the source's size) or a regular
file (created, or resized to the source's size). Before anything is written the manifest is
checked, every segment must be present, and TARGET must not be mounted, held by md/dm, used as
swap, or be the device the image was captured from. Every chunk is verified against its hash
before it is written; TARGET is fsynced before success is reported.

An encrypted image (capture --recipient) needs --identity FILE (an age-keygen identity file of
one of its recipients; repeatable) or --passphrase-file FILE: without one that opens it, restore
stops before TARGET is created or changed (exit 2). Every chunk is then authenticated (its place
in the image included) before it is decompressed, and checked against its keyed hash.

Damaged chunks are rebuilt on the fly from parity (the image is not modified). A chunk beyond repair
stops the restore before its range is written; with --allow-damaged everything else is written, the
damaged ranges are left untouched and listed, and the exit status is 3, so the replication product's
resync can fix just those ranges.

Zero chunks are written as zeros (BLKZEROOUT on devices, hole punching on files) unless
--target-zeroed says the target already reads as zeros; a file restore creates is known zero.

A delta image ('seedship delta') is applied onto TARGET, which must hold the delta's base image:
before anything is written, every range the delta writes is read on TARGET and must hold the base's
bytes or already the delta's (otherwise nothing is written, exit 2); then the changed chunks are
written, read back and checked. Applying a delta again, or after an interruption, writes only what
is missing. A digest-only image holds no data and is refused.

Courier volumes: give every volume at hand, in any order, before TARGET. A volume of another image,
the same volume twice, or a stale volume of an earlier capture is refused before anything is
written; a missing volume is rebuilt from parity when the image's placement allows it.

One bay at the target: --partial writes what the volume given holds, records progress in a state
file (--state; default TARGET.seedship-partial, or /var/lib/seedship/partial/<disk>.json for a
device), and says which volumes and segments are still missing; the run that completes the target
verifies it whole. --stage DIR keeps shards so that parity can rebuild a lost volume one bay at a
time.

Examples:
   seedship restore /mnt/courier/seed /dev/sdc1
   seedship restore --partial /mnt/bay/seed /dev/sdc1
   seedship restore /mnt/d3/seed /mnt/d1/seed /mnt/d2/seed /dev/sdc1`,
		flags: append(append(partialFlags(), identityFlags()...),
			&cli.BoolFlag{Name: "target-zeroed", Usage: "the target already reads as zeros: skip zero chunks"},
			&cli.BoolFlag{Name: "resume", Usage: "continue an interrupted restore: compare TARGET with the image first and fetch only the segments that differ"},
			&cli.StringFlag{Name: "fallback", Usage: "a second copy of the same image (directory or s3://): chunks damaged here that parity cannot rebuild are fetched from it, and nothing else"},
			&cli.BoolFlag{Name: "allow-damaged", Usage: "if chunks are beyond repair, write everything else, leave their ranges untouched, list them and exit 3"},
			trustFlag(),
			workersFlag("decode/verify", ""),
		),
		run: runRestore,
	}, nil, image, []operand{target})
}

// restoreJSON is restore's --json output.
type restoreJSON struct {
	Image          string          `json:"image"`
	Target         string          `json:"target"`
	Size           int64           `json:"size"`
	ChunksWritten  uint64          `json:"chunks_written"`
	ZeroChunks     uint64          `json:"zero_chunks"`
	ZeroedBytes    int64           `json:"zeroed_bytes"`
	Rebuilt        []uint64        `json:"rebuilt_from_parity,omitempty"`
	Fetched        []uint64        `json:"fetched_from_fallback,omitempty"`
	Lost           []lostJSON      `json:"lost,omitempty"`
	SkippedZeros   bool            `json:"skipped_zeros"`
	Checked        []string        `json:"checked"`         // the checks that ran over every chunk written
	Delta          *deltaApplyJSON `json:"delta,omitempty"` // what applying a delta image checked and did
	SHA256         string          `json:"sha256"`
	Seconds        float64         `json:"seconds"`
	BytesPerSecond float64         `json:"bytes_per_second"`
}

// lostJSON is one chunk restore could not write, or verify found beyond
// repair.
type lostJSON struct {
	Chunk  uint64 `json:"chunk"`
	Offset int64  `json:"offset"`
	Length int64  `json:"length"`
}

// lostRanges lists chunks of m with the byte ranges of the source they
// hold, for --json; nil when chunks is empty.
func lostRanges(m *format.Manifest, chunks []uint64) []lostJSON {
	var out []lostJSON
	for _, i := range chunks {
		off, length := m.ChunkRange(i)
		out = append(out, lostJSON{Chunk: i, Offset: off, Length: length})
	}
	return out
}

func runRestore(c *cli.Context, args []string) error {
	if c.Bool("partial") || c.IsSet("state") {
		return runPartialRestore(c, args) // one bay at the target: partial.go
	}
	if err := checkFallback(c); err != nil {
		return err
	}
	imageLocs, target := args[:len(args)-1], args[len(args)-1]
	trust, err := loadTrust(c)
	if err != nil {
		return err
	}
	ids, err := identitiesOf(c)
	if err != nil {
		return err
	}
	st, set, err := openImageStore(c, imageLocs)
	if err != nil {
		return err
	}
	fb, err := openFallback(c)
	if err != nil {
		return err
	}
	p := newPrinter(c, "restore")
	if set != nil && !p.json {
		p.summary("reading %s: %s", st, volumesLine(set))
	}
	res, err := engine.Restore(c.Context, st, target, engine.RestoreOptions{
		Fallback:     fb,
		Resume:       c.Bool("resume"),
		TargetZeroed: c.Bool("target-zeroed"),
		AllowDamaged: c.Bool("allow-damaged"),
		Trust:        trust,
		Identities:   ids,
		Workers:      c.Int("workers"),
		Progress:     p.progress,
	})
	p.endProgress()
	// restore --resume continues any restore: it compares the target
	// with the image and writes what differs (all of it, for a target
	// that does not exist yet).
	err = canContinue(err, true)
	if res == nil || res.Report == nil {
		return err
	}
	h := res.Manifest.Header
	secs := max(res.Elapsed.Seconds(), 1e-9)
	out := restoreJSON{Image: st.String(), Target: target, Size: h.Size, ChunksWritten: res.Report.ChunksOK + uint64(len(res.Rebuilt)+len(res.Fetched)),
		ZeroChunks: res.Report.ZeroChunks, ZeroedBytes: res.ZeroedBytes, SkippedZeros: res.SkippedZeros, SHA256: h.SHA256,
		Rebuilt: res.Rebuilt, Fetched: res.Fetched, Checked: checkedJSON(res.Report), Seconds: secs, BytesPerSecond: float64(h.Size) / secs}
	out.Lost = lostRanges(res.Manifest, res.Lost)
	if d := res.Delta; d != nil {
		out.Delta = &deltaApplyJSON{BaseManifestSHA256: d.BaseManifestSHA256, Checked: d.Checked, AlreadyApplied: d.AlreadyApplied,
			Written: d.Written, VerifiedBytes: d.VerifiedBytes}
	}
	if jerr := p.emitJSON(out); jerr != nil {
		return jerr
	}
	if !p.json {
		rebuilt := map[uint64]bool{}
		for _, i := range append(res.Rebuilt, res.Fetched...) {
			rebuilt[i] = true
		}
		for _, f := range res.Report.Findings {
			if !f.IsChunk || !rebuilt[f.Chunk] {
				fmt.Fprintf(p.errw, "DAMAGED %s\n", f)
			}
		}
		if len(res.Rebuilt) > 0 {
			fmt.Fprintf(p.errw, "rebuilt %d chunk(s) from parity: %v\n", len(res.Rebuilt), res.Rebuilt)
		}
		if len(res.Fetched) > 0 {
			fmt.Fprintf(p.errw, "fetched %d chunk(s) from the fallback: %v\n", len(res.Fetched), res.Fetched)
		}
		for _, l := range out.Lost {
			fmt.Fprintf(p.errw, "LOST chunk %d: bytes %d-%d left untouched\n", l.Chunk, l.Offset, l.Offset+l.Length-1)
		}
	}
	if err != nil {
		return err
	}
	if d := res.Delta; d != nil {
		p.summary("applied delta %s onto %s: %d of its %d chunks checked on the target first (base manifest sha256 %s), %d already applied, %d written, read back and verified (%s), fsynced, %s\nsource sha256 %s (compare: sha256sum %s)",
			st, target, d.Checked, h.Chunks, d.BaseManifestSHA256, d.AlreadyApplied, d.Written, human(d.VerifiedBytes),
			res.Elapsed.Round(time.Millisecond), h.SHA256, target)
		return nil
	}
	if res.Signer != nil {
		p.summary("signed by %s", signerText(res.Signer, true))
	}
	if h.Encryption != nil {
		p.summary("encrypted for %s: every chunk was authenticated (its image and place included) and decrypted before it was written", encryptedFor(h.Encryption))
	}
	if res.Skipped > 0 {
		p.summary("resumed: %d of %d segment(s) were already on %s and were not fetched again", res.Skipped, len(res.Manifest.Segments), target)
	}
	mended := ""
	if len(res.Rebuilt) > 0 || len(res.Fetched) > 0 {
		mended = fmt.Sprintf(" (%d rebuilt from parity, %d fetched from the fallback)", len(res.Rebuilt), len(res.Fetched))
	}
	p.summary("restored %s onto %s: %d chunks written and verified%s, %d zero chunks %s, fsynced, %s at %s%s\nsource sha256 %s (compare: sha256sum %s)",
		human(h.Size), target, out.ChunksWritten, mended, res.Report.ZeroChunks, map[bool]string{true: "skipped", false: "zeroed"}[res.SkippedZeros],
		res.Elapsed.Round(time.Millisecond), rate(h.Size, res.Elapsed), checkedLine(res.Report), h.SHA256, target)
	return nil
}

// deltaApplyJSON is what applying a delta image checked and did.
type deltaApplyJSON struct {
	BaseManifestSHA256 string `json:"base_manifest_sha256"`
	Checked            int    `json:"chunks_checked"`
	AlreadyApplied     int    `json:"chunks_already_applied"`
	Written            int    `json:"chunks_written"`
	VerifiedBytes      int64  `json:"bytes_read_back"`
}
