package main

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/store"
)

func init() { laterCommands = append(laterCommands, deltaCommand) }

func deltaCommand() *cli.Command {
	return newCommand(command{
		name:      "delta",
		usage:     "write a delta image: what changed in a frozen source since an image of it",
		operands:  []operand{imageOperand("IMAGE", "base image"), deviceOperand("SOURCE", "source"), imageOperand("DEST", "destination")},
		linuxOnly: true,
		help: `
Catch-up for when the replication product's change map cannot cover the time the seed spent in
transit. Reads SOURCE (a frozen snapshot of the device IMAGE was captured from) once, hashes
every 64 KiB block, compares it with IMAGE's block digests (reading only IMAGE's manifest and
segment indexes, never its data, so an IMAGE in S3 costs a few small requests), and writes into
DEST, which must be absent or empty, a delta image holding only the changed chunks: an ordinary
image (directory or s3://, --parity) bound to IMAGE by its manifest hash.

Apply it with 'seedship restore DELTA TARGET' onto the target restored from IMAGE: every range
the delta writes is checked first (it must hold IMAGE's bytes, or already the delta's), so a
target in another state is refused before anything is written, and applying twice is harmless.

The delta's chunk size is its own: by default 64KiB up to 16GiB sources, then the smallest power
of two that keeps the delta at most 262,144 chunks (1MiB for 256GiB, 4MiB for 1TiB); a changed
block costs its whole chunk. A source smaller than IMAGE is refused.

An encrypted IMAGE (capture --recipient) needs --identity FILE (an age-keygen identity file of one
of its recipients; repeatable) or --passphrase-file FILE: without one that opens it, delta stops
before DEST is created (exit 2). The delta is then encrypted under IMAGE's key, for the same
recipients and passphrase: whatever opens IMAGE opens the delta, and its restore needs it too.
A delta of an encrypted delta is not made: compute it against the full encrypted image.

A later catch-up is a delta of the delta: give the delta the target last received as IMAGE and
the images below it with --chain (nearest first, down to the full image); apply it onto the target
that received that delta.

Example:
   seedship delta s3://seeds/site-a/sdb1 /dev/vg0/sdb1-snap /mnt/courier/delta1`,
		flags: append([]cli.Flag{
			&cli.StringFlag{Name: "chunk-size", Usage: "the delta's chunk size, a power of two from 64KiB to 64MiB", DefaultText: "64KiB up to 16GiB sources, larger beyond"},
			&cli.IntFlag{Name: "level", Value: engine.DefaultDeltaLevel, Usage: "zstd level of the changed chunks, 1 fastest … 22 smallest; -1 stores them uncompressed"},
			&cli.StringFlag{Name: "segment-size", Value: "1GiB", Usage: "close a segment file after this many bytes, 64KiB to 16GiB"},
			&cli.StringFlag{Name: "parity", Usage: "Reed-Solomon parity K+M, e.g. 10+2 (segment size then defaults to 64MiB)"},
			&cli.BoolFlag{Name: "allow-in-use", Usage: "read a block device even though it is mounted or in use (the delta may then be inconsistent)"},
			&cli.StringSliceFlag{Name: "chain", Usage: "when IMAGE is itself a delta: the image it was computed against, and so on down to the full image, nearest first (repeat the flag); only their manifests and indexes are read"},
			workersFlag("hash/compress", ""),
			signKeyFlag(), signPassphraseFlag(),
		}, identityFlags()...),
		run: runDelta,
	})
}

// deltaJSON is delta's --json output.
type deltaJSON struct {
	Base           string `json:"base"`
	BaseManifest   string `json:"base_manifest_sha256"`
	Source         string `json:"source"`
	Dest           string `json:"dest"`
	Size           int64  `json:"size"`
	BaseSize       int64  `json:"base_size"`
	ChunkSize      int    `json:"chunk_size"`
	ChangedChunks  uint64 `json:"changed_chunks"`
	ChangedBlocks  int64  `json:"changed_blocks"`
	DigestsBytes   int64  `json:"base_digests_bytes"`
	ManifestSHA256 string `json:"manifest_sha256"`
	storedJSON
	SHA256         string  `json:"sha256"`
	Seconds        float64 `json:"seconds"`
	BytesPerSecond float64 `json:"bytes_per_second"`
}

func runDelta(c *cli.Context, args []string) error {
	var chunk, seg int64
	var err error
	if c.IsSet("chunk-size") {
		if chunk, err = parseSize(c.String("chunk-size")); err != nil {
			return err
		}
	}
	if c.IsSet("segment-size") || c.String("parity") == "" {
		if seg, err = parseSize(c.String("segment-size")); err != nil {
			return err
		}
	}
	geo, err := parseParity(c.String("parity"))
	if err != nil {
		return err
	}
	ids, err := identitiesOf(c)
	if err != nil {
		return err
	}
	chainLocs := c.StringSlice("chain")
	for _, loc := range chainLocs {
		if err := checkImageLocation("chain image", loc); err != nil {
			return err
		}
	}
	base, err := openStore(c, args[0])
	if err != nil {
		return err
	}
	var chain []store.Store
	for _, loc := range chainLocs {
		st, err := openStore(c, loc)
		if err != nil {
			return err
		}
		chain = append(chain, st)
	}
	src, err := engine.OpenSourceWith(args[1], c.Bool("allow-in-use"))
	if err != nil {
		return err
	}
	defer src.Close()
	signer, err := loadSigner(c)
	if err != nil {
		return err
	}
	dst, err := createStore(c, args[2])
	if err != nil {
		return err
	}
	p := newPrinter(c, "delta")
	res, err := engine.Delta(c.Context, base, src, dst, engine.DeltaOptions{
		ChunkSize: int(chunk), Level: c.Int("level"), SegmentSize: seg, Parity: geo,
		Workers: c.Int("workers"), Tool: "seedship " + version, Progress: p.progress, Chain: chain, SignManifest: signManifest(signer),
		Identities: ids,
	})
	p.endProgress()
	if err != nil {
		// A failed delta removes what it wrote: the same command starts
		// it again.
		return canContinue(err, false)
	}
	m, h := res.Manifest, res.Manifest.Header
	secs := max(res.Elapsed.Seconds(), 1e-9)
	if err := p.emitJSON(deltaJSON{Base: base.String(), BaseManifest: h.Base.ManifestSHA256, Source: args[1], Dest: dst.String(),
		Size: h.Size, BaseSize: res.Base.Header.Size, ChunkSize: h.ChunkSize, ChangedChunks: res.ChangedChunks, ChangedBlocks: res.ChangedBlocks,
		DigestsBytes: res.DigestsBytes, ManifestSHA256: hex.EncodeToString(m.Hash[:]), storedJSON: storedOf(m), SHA256: h.SHA256,
		Seconds: secs, BytesPerSecond: float64(h.Size) / secs}); err != nil {
		return err
	}
	grown := ""
	if h.Size > res.Base.Header.Size {
		grown = fmt.Sprintf(" (grown by %s)", human(h.Size-res.Base.Header.Size))
	}
	p.summary("delta of %s%s against base %s into %s: %d of %d chunks of %s changed (%d blocks of 64 KiB), stored %s in %d segment(s) + %s of base digests, %s at %s\nbase manifest sha256 %s\nsha256 %s",
		args[1], grown, base, dst, res.ChangedChunks, h.Chunks, human(int64(h.ChunkSize)), res.ChangedBlocks, human(h.StoredBytes), len(m.Segments),
		human(res.DigestsBytes), res.Elapsed.Round(time.Millisecond), rate(h.Size, res.Elapsed), h.Base.ManifestSHA256, h.SHA256)
	return nil
}
