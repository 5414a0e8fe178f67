package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/verify"
)

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check a seed image, or a device against it",
		ArgsUsage: "IMAGE",
		Description: commandHelp(`
Without --device: reads every chunk of IMAGE in parallel, decompresses it and checks it against
its hash in the manifest, and checks each segment's index and footer. With --device DEV: checks
that DEV (a block device or file) matches the image block for block, using the manifest's hashes
only. Each bad chunk is listed with its index and source byte range.

Examples:
   seedship verify /mnt/courier/seed
   seedship verify --device /dev/sdc1 /mnt/courier/seed`),
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "device", Usage: "check this device or file against the image"},
			&cli.IntFlag{Name: "workers", Usage: "parallel workers (default: number of CPUs)"},
		}, outputFlags()...),
		Action: runVerify,
	}
}

// findingJSON is one finding in --json output.
type findingJSON struct {
	Chunk   *uint64 `json:"chunk,omitempty"`
	Offset  int64   `json:"offset,omitempty"`
	Length  int64   `json:"length,omitempty"`
	Segment uint32  `json:"segment"`
	Error   string  `json:"error"`
}

// verifyJSON is verify's --json output.
type verifyJSON struct {
	Image        string        `json:"image"`
	Device       string        `json:"device,omitempty"`
	OK           bool          `json:"ok"`
	ChunksOK     uint64        `json:"chunks_ok"`
	ZeroChunks   uint64        `json:"zero_chunks"`
	BytesChecked int64         `json:"bytes_checked"`
	Findings     []findingJSON `json:"findings"`
	Seconds      float64       `json:"seconds"`
}

func findingsJSON(rep *verify.Report) []findingJSON {
	out := []findingJSON{}
	for _, f := range rep.Findings {
		j := findingJSON{Segment: f.Segment, Error: f.String()}
		if f.IsChunk {
			idx := f.Chunk
			j.Chunk, j.Offset, j.Length = &idx, f.Offset, f.Length
		}
		out = append(out, j)
	}
	return out
}

func runVerify(c *cli.Context) error {
	args, err := positional(c, "IMAGE")
	if err != nil {
		return err
	}
	st, err := openStore(c.Context, args[0])
	if err != nil {
		return err
	}
	m, err := engine.OpenImage(c.Context, st)
	if err != nil {
		return err
	}
	p := newPrinter(c, "verify")
	meter := engine.NewMeter(m.Header.Size, p.progress)
	start := time.Now()
	var rep *verify.Report
	dev := c.String("device")
	if dev != "" {
		rep, err = verify.Device(c.Context, m, dev, verify.DeviceOptions{Workers: c.Int("workers"), OnProgress: meter.Add})
		if errors.Is(err, verify.ErrDeviceTooSmall) {
			err = fmt.Errorf("%w: %w", engine.ErrIntegrity, err)
		}
	} else {
		rep, err = verify.Scan(c.Context, st, m, verify.ScanOptions{Workers: c.Int("workers"), OnProgress: meter.Add})
	}
	p.endProgress()
	if err != nil {
		return err
	}
	el := time.Since(start)
	if err := p.emitJSON(verifyJSON{Image: st.String(), Device: dev, OK: rep.OK(), ChunksOK: rep.ChunksOK,
		ZeroChunks: rep.ZeroChunks, BytesChecked: rep.BytesChecked, Findings: findingsJSON(rep), Seconds: el.Seconds()}); err != nil {
		return err
	}
	what := st.String()
	if dev != "" {
		what = dev + " against " + st.String()
	}
	if !rep.OK() {
		if !p.json {
			for _, f := range rep.Findings {
				fmt.Fprintf(p.errw, "BAD %s\n", f)
			}
		}
		return fmt.Errorf("%w: %s: %d problem(s) found (%d chunks ok)", engine.ErrIntegrity, what, len(rep.Findings), rep.ChunksOK)
	}
	p.summary("verified %s: %d stored chunks ok, %d zero chunks, %s checked in %s (%s)",
		what, rep.ChunksOK, rep.ZeroChunks, human(m.Header.Size), el.Round(time.Millisecond), rate(m.Header.Size, el))
	return nil
}
