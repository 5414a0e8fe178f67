package main

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
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

An encrypted image is copied without a key: every frame is checked against the digest of its
stored bytes, and parity rows against theirs. With --identity (or --passphrase-file), which must
then open it, every chunk is also decrypted and checked against its keyed hash.

Courier volumes: give every volume of the image as SRC..., in any order, to gather them into one
directory or prefix (which 'verify --repair' can then repair from parity).

Examples:
   seedship copy /mnt/courier/seed s3://seeds/site-a/sdb1
   seedship copy s3://seeds/site-a/sdb1 /var/tmp/seed`,
		flags: append([]cli.Flag{trustFlag()}, identityFlags()...),
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
	// Encrypted says for whom an encrypted image is; TransportOnly that
	// it was copied without a key, its frames checked against their
	// stored digests but not decrypted.
	Encrypted     *encryptedJSON `json:"encrypted,omitempty"`
	TransportOnly bool           `json:"transport_only,omitempty"`
}

func runCopy(c *cli.Context, args []string) error {
	trust, err := loadTrust(c)
	if err != nil {
		return err
	}
	ids, err := identitiesOf(c)
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
	res, err := engine.Copy(c.Context, src, dst, engine.CopyOptions{Jobs: c.Int("jobs"), Progress: p.progress, Trust: trust, Identities: ids})
	p.endProgress()
	// The same copy continues an interrupted one: segments already at DST
	// are checked and kept.
	err = canContinue(err, false)
	if res == nil {
		return err
	}
	el := time.Since(start)
	var enc *format.Encryption
	if res.Manifest != nil {
		enc = res.Manifest.Header.Encryption
	}
	keyless := enc != nil && len(ids) == 0
	if jerr := p.emitJSON(copyJSON{Src: src.String(), Dst: dst.String(), Copied: res.Copied, Skipped: res.Skipped,
		Damaged: res.Damaged, Bytes: res.Bytes, Seconds: el.Seconds(), BytesPerSecond: float64(res.Bytes) / max(el.Seconds(), 1e-9),
		Encrypted: encryptedOf(enc), TransportOnly: keyless}); jerr != nil {
		return jerr
	}
	if err != nil {
		return err
	}
	p.summary("copied %s to %s: %d file(s), %s in %s (%s), %d already there and kept",
		src, dst, len(res.Copied), human(res.Bytes), el.Round(time.Millisecond), rate(res.Bytes, el), len(res.Skipped))
	switch {
	case keyless:
		p.summary("encrypted for %s, copied without a key: transport integrity only: every frame was checked against the digest of its stored bytes, but the chunks were not decrypted and checked against their source digests",
			encryptedFor(enc))
	case enc != nil:
		p.summary("encrypted for %s: every chunk was decrypted and checked against its keyed hash as it was copied", encryptedFor(enc))
	}
	if res.Signer != nil {
		p.summary("signed by %s; the signature was copied with the image", signerText(res.Signer, trust != nil))
	}
	return nil
}
