package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/store/volume"
)

func init() { laterCommands = append(laterCommands, labelCommand) }

func labelCommand() *cli.Command {
	vol := imageOperand("VOL", "volume")
	return variadicCommand(command{
		name:     "label",
		usage:    "print the label to tape to a courier drive; --check reads the drive back",
		operands: []operand{vol},
		help: `
Prints, for each courier volume VOL (a destination of 'seedship capture SOURCE DEST1 DEST2 ...'),
the text an operator tapes to the drive: image id, volume n of N, source host and device, size,
SHA-256 of the whole source, capture date, and how many volumes may be lost. It reads only the
volume's label (volume.json). Several volumes given together are also checked to belong to one
image (exit 2 naming a volume of another image, a duplicate or a stale volume).

With --check, each volume is also read back: synced, dropped from the page cache, and every file
read from the drive and compared with the SHA-256 recorded when it was written (exit 3 naming
the file if one differs), as capture does before it reports success.

Example:
   seedship label /mnt/courier/seed
   seedship label --check /mnt/courier/seed`,
		flags: []cli.Flag{
			&cli.BoolFlag{Name: "check", Usage: "read every file of the volume back from the drive against the SHA-256 recorded when it was written"},
		},
		run: runLabel,
	}, nil, vol, nil)
}

// labelJSON is one volume in label's --json output.
type labelJSON struct {
	Location string       `json:"location"`
	Label    volume.Label `json:"label"`
	Check    *volumeJSON  `json:"check,omitempty"`
}

func runLabel(c *cli.Context, args []string) error {
	members := make([]volume.Member, len(args))
	for i, loc := range args {
		m, err := openMember(c, loc, false)
		if err != nil {
			return err
		}
		members[i] = m
	}
	// Several volumes must be of one image; a single one must be a volume.
	if _, err := volume.OpenMembers(c.Context, members); err != nil {
		return volumeError(c, err)
	}
	p := newPrinter(c, "label")
	var checks []volume.Check
	if c.Bool("check") {
		var err error
		if checks, _, err = volume.CheckVolumes(c.Context, members); err != nil {
			return volumeError(c, err)
		}
	}
	var out []labelJSON
	var text strings.Builder
	for i, m := range members {
		l, _, err := volume.ReadLabel(c.Context, m.Store)
		if err != nil {
			return volumeError(c, fmt.Errorf("%s: %w", m.Loc, err))
		}
		j := labelJSON{Location: m.Loc, Label: *l}
		text.WriteString(labelText(l))
		if c.Bool("check") {
			ch := checks[i]
			files, bytes := l.Holds()
			vj := volumeJSON{Volume: l.Volume, Volumes: l.Volumes, Location: m.Loc, Files: files, Bytes: bytes, Cap: l.Cap,
				ReadBack: "ok", ReadBackBytes: ch.Bytes, ReadBackSeconds: ch.Elapsed.Seconds(), CacheDropped: ch.CacheDropped, Failures: ch.Failures}
			if !ch.OK() {
				vj.ReadBack = "failed"
			}
			j.Check = &vj
			text.WriteString(checkLine(ch) + "\n")
		}
		text.WriteString("\n")
		out = append(out, j)
	}
	if err := p.emitJSON(out); err != nil {
		return err
	}
	if !p.quiet && !p.json {
		fmt.Fprint(p.out, strings.TrimSuffix(text.String(), "\n"))
	}
	if err := readBackError(checks); err != nil {
		return err
	}
	return nil
}
