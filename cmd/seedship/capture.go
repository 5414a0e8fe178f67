package main

import (
	"encoding/hex"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
)

func captureCommand() *cli.Command {
	return &cli.Command{
		Name:      "capture",
		Usage:     "capture a block device or image file into a seed image",
		ArgsUsage: "SOURCE DEST",
		Description: commandHelp(`
Reads SOURCE (a block device such as /dev/sdb1, or a regular file) once, front to back, and
writes a seed image into DEST, a directory that must be absent or empty. Every 64 KiB block is
hashed, all-zero chunks are recorded but not stored, and the rest is zstd-compressed. The
manifest is written last: an interrupted capture never looks like a complete image.

Take the source out of service (or snapshot it) first, so it does not change while it is read.

Example:
   seedship capture /dev/sdb1 /mnt/courier/seed`),
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "chunk-size", Value: "4MiB", Usage: "chunk size, a power of two from 64KiB to 64MiB"},
			&cli.IntFlag{Name: "level", Value: engine.DefaultLevel, Usage: "zstd level, 1 fastest … 22 smallest, mapped onto klauspost/compress's four strategies (1-2 fastest, 3-5 default, 6-9 better, 10+ best); -1 stores chunks uncompressed"},
			&cli.StringFlag{Name: "segment-size", Value: "1GiB", Usage: "close a segment file after this many bytes"},
			&cli.IntFlag{Name: "workers", Usage: "hash/compress workers (default: number of CPUs)"},
		}, outputFlags()...),
		Action: runCapture,
	}
}

// captureJSON is capture's --json output.
type captureJSON struct {
	Source         string  `json:"source"`
	Dest           string  `json:"dest"`
	Size           int64   `json:"size"`
	ChunkSize      int     `json:"chunk_size"`
	Chunks         uint64  `json:"chunks"`
	ZeroChunks     uint64  `json:"zero_chunks"`
	StoredBytes    int64   `json:"stored_bytes"`
	Segments       int     `json:"segments"`
	SHA256         string  `json:"sha256"`
	ManifestSHA256 string  `json:"manifest_sha256"`
	Seconds        float64 `json:"seconds"`
	BytesPerSecond float64 `json:"bytes_per_second"`
}

func runCapture(c *cli.Context) error {
	args, err := positional(c, "SOURCE", "DEST")
	if err != nil {
		return err
	}
	chunk, err := parseSize(c.String("chunk-size"))
	if err != nil {
		return err
	}
	seg, err := parseSize(c.String("segment-size"))
	if err != nil {
		return err
	}
	level := c.Int("level")
	if level == 0 {
		return usagef("capture: --level 0 is not a level: use 1-22, or -1 for no compression")
	}
	p := newPrinter(c, "capture")
	opts := engine.CaptureOptions{
		ChunkSize:   int(min(chunk, 1<<40)),
		Level:       level,
		SegmentSize: seg,
		Workers:     c.Int("workers"),
		Tool:        "seedship " + version,
		Progress:    p.progress,
	}
	// Everything is checked before DEST is created.
	if err := opts.Validate(); err != nil {
		return err
	}
	src, err := engine.OpenSource(args[0])
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := createStore(c.Context, args[1])
	if err != nil {
		return err
	}
	res, err := engine.Capture(c.Context, src, dst, opts)
	p.endProgress()
	if err != nil {
		return err
	}
	h := res.Manifest.Header
	secs := max(res.Elapsed.Seconds(), 1e-9)
	if err := p.emitJSON(captureJSON{Source: args[0], Dest: dst.String(), Size: h.Size, ChunkSize: h.ChunkSize,
		Chunks: h.Chunks, ZeroChunks: h.ZeroChunks, StoredBytes: h.StoredBytes, Segments: len(res.Manifest.Segments),
		SHA256: h.SHA256, ManifestSHA256: hex.EncodeToString(res.Manifest.Hash[:]),
		Seconds: secs, BytesPerSecond: float64(h.Size) / secs}); err != nil {
		return err
	}
	p.summary("captured %s (%d bytes) from %s into %s: stored %s in %d segment(s), %d of %d chunks zero, %s at %s\nsha256 %s",
		human(h.Size), h.Size, args[0], dst, human(h.StoredBytes), len(res.Manifest.Segments), h.ZeroChunks, h.Chunks,
		res.Elapsed.Round(time.Millisecond), rate(h.Size, res.Elapsed), h.SHA256)
	return nil
}
