package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
)

func copyCommand() *cli.Command {
	src, dst := imageOperand("SRC", "source image"), imageOperand("DST", "destination")
	return variadicCommand(command{
		name:     "copy",
		usage:    "copy a seed image between places (directory, s3://), verifying as it copies",
		operands: []operand{src, dst},
		help: `
Copies the image at SRC to DST, for example a courier drive to a bucket ("capture to a local drive
now, upload later") or a bucket to a local disk. Every segment is verified while it streams
(chunk hashes, parity row CRCs), and the manifest is written last, so DST becomes a complete image
only when everything arrived intact. Run it again after an interruption: segments already at DST
are kept. A damaged source segment is not copied; the copy ends with exit 3 and no manifest at DST.

Courier volumes: give every volume of the image as SRC..., in any order, to gather them into one
directory or prefix (which 'verify --repair' can then repair from parity).

Examples:
   seedship copy /mnt/courier/seed s3://seeds/site-a/sdb1
   seedship copy s3://seeds/site-a/sdb1 /var/tmp/seed`,
		flags: []cli.Flag{trustFlag()},
		run:   runCopy,
	}, nil, src, []operand{dst})
}

// copyJSON is copy's --json output.
type copyJSON struct {
	Src            string   `json:"src"`
	Dst            string   `json:"dst"`
	Copied         []string `json:"copied"`
	Skipped        []string `json:"skipped"`
	Damaged        []string `json:"damaged,omitempty"`
	Bytes          int64    `json:"bytes"`
	Seconds        float64  `json:"seconds"`
	BytesPerSecond float64  `json:"bytes_per_second"`
}

func runCopy(c *cli.Context, args []string) error {
	trust, err := loadTrust(c)
	if err != nil {
		return err
	}
	src, _, err := openImageStore(c, args[:len(args)-1])
	if err != nil {
		return err
	}
	dst, err := createStore(c, args[len(args)-1])
	if err != nil {
		return err
	}
	p := newPrinter(c, "copy")
	start := time.Now()
	res, err := engine.Copy(c.Context, src, dst, engine.CopyOptions{Jobs: c.Int("jobs"), Progress: p.progress, Trust: trust})
	p.endProgress()
	// The same copy continues an interrupted one: segments already at DST
	// are checked and kept.
	err = canContinue(err, false)
	if res == nil {
		return err
	}
	el := time.Since(start)
	if jerr := p.emitJSON(copyJSON{Src: src.String(), Dst: dst.String(), Copied: res.Copied, Skipped: res.Skipped,
		Damaged: res.Damaged, Bytes: res.Bytes, Seconds: el.Seconds(), BytesPerSecond: float64(res.Bytes) / max(el.Seconds(), 1e-9)}); jerr != nil {
		return jerr
	}
	if err != nil {
		return err
	}
	p.summary("copied %s to %s: %d file(s), %s in %s (%s), %d already there and kept",
		src, dst, len(res.Copied), human(res.Bytes), el.Round(time.Millisecond), rate(res.Bytes, el), len(res.Skipped))
	if res.Signer != nil {
		p.summary("signed by %s; the signature was copied with the image", signerText(res.Signer, trust != nil))
	}
	return nil
}
