package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/seedship/seedship/engine"
)

// outputFlags are shared by every command that reports.
func outputFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object on stdout"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress and no summary; errors only"},
	}
}

// printer renders results and progress for one command run.
type printer struct {
	out, errw io.Writer
	json      bool
	quiet     bool
	tty       bool
	mu        sync.Mutex
	shown     bool
	verb      string
}

func newPrinter(c *cli.Context, verb string) *printer {
	p := &printer{out: c.App.Writer, errw: c.App.ErrWriter, json: c.Bool("json"), quiet: c.Bool("quiet"), verb: verb}
	if f, ok := p.errw.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

// progress draws a one-line bar with throughput and ETA on stderr when it
// is a terminal; otherwise it stays silent.
func (p *printer) progress(pr engine.Progress) {
	if !p.tty || p.quiet || p.json {
		return
	}
	el := time.Since(pr.Start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(pr.Done) / el
	}
	pct := 100.0
	if pr.Total > 0 {
		pct = 100 * float64(pr.Done) / float64(pr.Total)
	}
	eta := "--:--"
	if rate > 0 && pr.Total >= pr.Done {
		eta = fmtDuration(time.Duration(float64(pr.Total-pr.Done) / rate * float64(time.Second)))
	}
	const width = 30
	fill := int(pct / 100 * width)
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = '.'
		if i < fill {
			bar[i] = '#'
		}
	}
	p.mu.Lock()
	fmt.Fprintf(p.errw, "\r%s [%s] %5.1f%% %s/%s %s/s ETA %s ", p.verb, bar, pct, human(pr.Done), human(pr.Total), human(int64(rate)), eta)
	p.shown = true
	p.mu.Unlock()
}

// endProgress ends the progress line.
func (p *printer) endProgress() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.errw, "\r\033[K")
		p.shown = false
	}
}

// summary prints a human line unless quiet or JSON.
func (p *printer) summary(format string, args ...any) {
	if p.quiet || p.json {
		return
	}
	fmt.Fprintf(p.out, format+"\n", args...)
}

// emitJSON prints v as indented JSON when --json is set.
func (p *printer) emitJSON(v any) error {
	if !p.json {
		return nil
	}
	enc := json.NewEncoder(p.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// human formats a byte count with binary units.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func fmtDuration(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%d:%02d", m, s)
}

func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return human(int64(float64(n)/d.Seconds())) + "/s"
}
