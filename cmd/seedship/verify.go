package main

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/verify"
)

func verifyCommand() *cli.Command {
	return newCommand(command{
		name:     "verify",
		usage:    "check a seed image, or a device against it",
		operands: []operand{imageOperand("IMAGE", "image")},
		help: `
Without --device: reads every chunk of IMAGE in parallel, decompresses it and checks it against
its hash in the manifest, and checks each segment's index and footer. With --device DEV: checks
that DEV (a block device or file) matches the image block for block, using the manifest's hashes
only. Each bad chunk is listed with its index and source byte range.

For an image with parity (capture --parity), each damaged stripe is reported with whether it can be
rebuilt; --repair rewrites the damaged segments in place, atomically, and verifies the result.
Exit 0 when everything is (now) intact, 3 when anything is damaged or beyond repair.

Examples:
   seedship verify /mnt/courier/seed
   seedship verify --device /dev/sdc1 /mnt/courier/seed`,
		flags: []cli.Flag{
			&cli.StringFlag{Name: "device", Usage: "check this device or file against the image"},
			&cli.BoolFlag{Name: "repair", Usage: "rewrite damaged or missing segments and manifest copies from parity (atomically), then verify again"},
			&cli.StringFlag{Name: "fallback", Usage: "with --repair: a second copy of the same image (directory or s3://) to fetch what parity cannot rebuild from"},
			workersFlag("parallel", ""),
		},
		run: runVerify,
	})
}

// findingJSON is one finding in --json output.
type findingJSON struct {
	Chunk   *uint64 `json:"chunk,omitempty"`
	Offset  int64   `json:"offset,omitempty"`
	Length  int64   `json:"length,omitempty"`
	Segment uint32  `json:"segment"`
	Error   string  `json:"error"`
}

// stripeJSON is one damaged stripe in --json output.
type stripeJSON struct {
	Stripe     uint32   `json:"stripe"`
	Damaged    []string `json:"damaged"`
	Rows       int      `json:"rows"`
	LostRows   []int    `json:"lost_rows,omitempty"`
	Repairable bool     `json:"repairable"`
	LostChunks []uint64 `json:"lost_chunks,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// verifyJSON is verify's --json output.
type verifyJSON struct {
	Image        string        `json:"image"`
	Device       string        `json:"device,omitempty"`
	OK           bool          `json:"ok"`
	Repairable   bool          `json:"repairable"`
	Repaired     []string      `json:"repaired,omitempty"`
	Lost         []lostJSON    `json:"lost,omitempty"`
	Stripes      []stripeJSON  `json:"stripes,omitempty"`
	FoundBefore  int           `json:"found_before_repair,omitempty"`
	ChunksOK     uint64        `json:"chunks_ok"`
	ZeroChunks   uint64        `json:"zero_chunks"`
	BytesChecked int64         `json:"bytes_checked"`
	Checked      []string      `json:"checked"`                 // the checks that ran over everything they cover
	SourceSHA256 string        `json:"source_sha256,omitempty"` // recomputed from the device (verify --device)
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

func stripesJSON(rep *verify.Report) []stripeJSON {
	var out []stripeJSON
	for _, s := range rep.Stripes {
		j := stripeJSON{Stripe: s.Stripe, Damaged: s.Damaged, Rows: s.Rows, LostRows: s.LostRows, Repairable: s.Repairable, LostChunks: s.LostChunks}
		if s.Err != nil {
			j.Error = strings.ReplaceAll(s.Err.Error(), "\n", "; ")
		}
		out = append(out, j)
	}
	return out
}

func runVerify(c *cli.Context, args []string) error {
	dev := c.String("device")
	if dev != "" {
		if err := needsLinux(runtime.GOOS, "seedship verify --device"); err != nil {
			return err
		}
		if err := checkDeviceLocation("device", dev); err != nil {
			return err
		}
	}
	if err := checkFallback(c); err != nil {
		return err
	}
	st, err := openStore(c, args[0])
	if err != nil {
		return err
	}
	p := newPrinter(c, "verify")
	if dev != "" {
		if c.Bool("repair") {
			return usagef("verify: --repair repairs an image, not a device: drop --device, or restore again")
		}
		return verifyDevice(c, p, st, dev)
	}
	if c.String("fallback") != "" && !c.Bool("repair") {
		return usagef("verify: --fallback is for --repair: add --repair")
	}
	fb, err := openFallback(c)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := engine.CheckImage(c.Context, st, engine.CheckOptions{
		Fallback: fb,
		Repair:   c.Bool("repair"),
		Workers:  c.Int("workers"),
		Progress: p.progress,
		OnRepaired: func(keys []string) {
			p.endProgress()
			for _, k := range keys {
				p.summary("repaired %s", k)
			}
		},
	})
	p.endProgress()
	if c.Bool("repair") {
		// Each repaired file is replaced atomically: running the same
		// repair again continues an interrupted one.
		err = canContinue(err, false)
	}
	if res == nil {
		return err
	}
	rep := res.Final()
	m := res.Manifest
	el := time.Since(start)
	out := verifyJSON{Image: st.String(), OK: rep.OK(), Repairable: rep.Repairable(m), Repaired: res.Rewritten,
		Stripes: stripesJSON(rep), ChunksOK: rep.ChunksOK, ZeroChunks: rep.ZeroChunks, BytesChecked: rep.BytesChecked,
		Checked: checkedJSON(rep), Findings: findingsJSON(rep), Seconds: el.Seconds()}
	if res.After != nil {
		out.FoundBefore = len(res.Before.Findings)
	}
	if !rep.OK() {
		out.Lost = lostRanges(m, rep.LostChunks(m))
	}
	if jerr := p.emitJSON(out); jerr != nil {
		return jerr
	}
	if !p.json {
		for _, f := range rep.Findings {
			fmt.Fprintf(p.errw, "BAD %s\n", f)
		}
		for _, s := range rep.Stripes {
			state := "repairable from parity"
			if !s.Repairable {
				state = fmt.Sprintf("BEYOND REPAIR (%d row(s) lost; chunks %v)", len(s.LostRows), s.LostChunks)
				if s.Err != nil {
					state = fmt.Sprintf("BEYOND REPAIR: %s; chunks %v", strings.ReplaceAll(s.Err.Error(), "\n", "; "), s.LostChunks)
				}
			}
			fmt.Fprintf(p.errw, "STRIPE %d: %s damaged, %d row(s) to rebuild: %s\n", s.Stripe, strings.Join(s.Damaged, ", "), s.Rows, state)
		}
	}
	if err != nil {
		return err
	}
	repaired := ""
	if res.After != nil {
		repaired = fmt.Sprintf(" after repairing %d file(s) (%d problem(s) found)", len(res.Rewritten), len(res.Before.Findings))
	}
	p.summary("verified %s%s: %d stored chunks ok, %d zero chunks, %s checked in %s (%s)%s",
		st, repaired, rep.ChunksOK, rep.ZeroChunks, human(m.Header.Size), el.Round(time.Millisecond), rate(m.Header.Size, el), checkedLine(rep))
	return nil
}

// verifyDevice checks a device or file against the image's hashes.
func verifyDevice(c *cli.Context, p *printer, st store.Store, dev string) error {
	m, err := engine.OpenImage(c.Context, st)
	if err != nil {
		return err
	}
	meter := engine.NewMeter(m.Header.Size, p.progress)
	start := time.Now()
	rep, err := verify.Device(c.Context, m, dev, verify.DeviceOptions{Workers: c.Int("workers"), OnProgress: meter.Add})
	if errors.Is(err, verify.ErrDeviceTooSmall) {
		err = fmt.Errorf("%w: %w", engine.ErrIntegrity, err)
	}
	p.endProgress()
	if err != nil {
		return err
	}
	el := time.Since(start)
	if err := p.emitJSON(verifyJSON{Image: st.String(), Device: dev, OK: rep.OK(), ChunksOK: rep.ChunksOK,
		ZeroChunks: rep.ZeroChunks, BytesChecked: rep.BytesChecked, Checked: checkedJSON(rep), SourceSHA256: rep.SourceSHA256,
		Findings: findingsJSON(rep), Seconds: el.Seconds()}); err != nil {
		return err
	}
	what := dev + " against " + st.String()
	if !rep.OK() {
		if !p.json {
			for _, f := range rep.Findings {
				fmt.Fprintf(p.errw, "BAD %s\n", f)
			}
		}
		return fmt.Errorf("%w: %s: %d chunk(s) differ (%d chunks ok)", engine.ErrIntegrity, what, len(rep.Findings), rep.ChunksOK)
	}
	sum := ""
	if rep.SourceSHA256 != "" {
		sum = "\nsource sha256 " + rep.SourceSHA256 + ", recomputed from " + dev + ", matches the image's"
	}
	p.summary("verified %s: %d stored chunks ok, %d zero chunks, %s checked in %s (%s)%s%s",
		what, rep.ChunksOK, rep.ZeroChunks, human(m.Header.Size), el.Round(time.Millisecond), rate(m.Header.Size, el), checkedLine(rep), sum)
	return nil
}

// checkedJSON lists the checks a report says ran, for --json ([] when
// none is reported).
func checkedJSON(rep *verify.Report) []string {
	out := []string{}
	for _, k := range rep.Checked {
		out = append(out, string(k))
	}
	return out
}

// checkedLine is the human line naming the checks that ran, "" when the
// report names none.
func checkedLine(rep *verify.Report) string {
	if len(rep.Checked) == 0 {
		return ""
	}
	words := make([]string, len(rep.Checked))
	for i, k := range rep.Checked {
		words[i] = strings.ReplaceAll(string(k), "-", " ")
	}
	return "\nchecked: " + strings.Join(words, ", ")
}
