package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/dir"
)

// partialFlags are restore's flags for one bay at the target.
func partialFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "partial", Usage: "one bay at the target: write what the volume(s) given hold, record progress in a state file, say what is still missing; the run that completes the target verifies it whole"},
		&cli.StringFlag{Name: "stage", Usage: "with --partial, for an image with parity: a local directory where each run keeps copies of the shards of stripes the target does not hold whole yet, so that a lost volume is rebuilt from parity one bay at a time (needs up to the image's stored size; emptied as stripes complete)"},
		&cli.StringFlag{Name: "state", Usage: "the state file of restore --partial (default: TARGET.seedship-partial beside a file; " + engine.PartialStateDir + "/<disk id>.json for a block device)"},
	}
}

// partialJSON is restore --partial's --json output.
type partialJSON struct {
	Image           string     `json:"image"`
	Target          string     `json:"target"`
	State           string     `json:"state"`
	Volumes         []int      `json:"volumes_given"`
	Seen            []int      `json:"volumes_seen"`
	Unseen          []int      `json:"volumes_not_seen"`
	Count           int        `json:"volumes"`
	ChunksWritten   int        `json:"chunks_written"`
	BytesWritten    int64      `json:"bytes_written"`
	Rebuilt         []uint64   `json:"rebuilt_from_parity,omitempty"`
	Damaged         []lostJSON `json:"damaged_on_these_volumes,omitempty"`
	MissingChunks   int        `json:"missing_chunks"`
	MissingBytes    int64      `json:"missing_bytes"`
	MissingSegments []string   `json:"missing_segments,omitempty"`
	Complete        bool       `json:"complete"`
	Checked         []string   `json:"checked,omitempty"` // the whole-image verification, once complete
	SHA256          string     `json:"sha256,omitempty"`
	Seconds         float64    `json:"seconds"`
}

// runPartialRestore is restore --partial VOL... TARGET.
func runPartialRestore(c *cli.Context, args []string) error {
	for _, f := range []string{"resume", "fallback", "allow-damaged"} {
		if c.IsSet(f) {
			return usagef("restore: --%s does not go with --partial (a partial restore resumes by itself and keeps what it cannot write missing)", f)
		}
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
	opts := engine.PartialOptions{Name: strings.Join(imageLocs, " "), State: c.String("state"), Trust: trust, Identities: ids, TargetZeroed: c.Bool("target-zeroed"), Workers: c.Int("workers")}
	if c.IsSet("stage") {
		stage, err := dir.New(c.String("stage"))
		if err != nil {
			return openError("stage "+c.String("stage"), err)
		}
		opts.Stage = stage
	}
	mayLose := 0
	if set != nil {
		opts.Count = set.Count()
		for _, v := range set.Volumes() {
			opts.Volumes = append(opts.Volumes, v.Volume)
			if v.Label.MayLose != nil {
				mayLose = *v.Label.MayLose
			}
		}
	}
	p := newPrinter(c, "restore --partial")
	opts.Progress = p.progress
	res, err := engine.RestorePartial(c.Context, st, target, opts)
	p.endProgress()
	err = canContinue(err, false)
	if res == nil {
		return err
	}
	given := opts.Volumes
	if set == nil {
		given = []int{1}
	}
	out := partialJSON{Image: st.String(), Target: target, State: res.State, Volumes: given, Seen: res.Seen, Unseen: res.Unseen, Count: res.Count,
		ChunksWritten: res.Written, BytesWritten: res.WrittenBytes, Rebuilt: res.Rebuilt, Damaged: lostRanges(res.Manifest, res.Damaged),
		MissingChunks: res.MissingChunks, MissingBytes: res.MissingBytes, Complete: res.Complete, Seconds: res.Elapsed.Seconds()}
	for _, s := range res.MissingSegments {
		out.MissingSegments = append(out.MissingSegments, format.DataID(s).Key())
	}
	if res.Complete {
		out.Checked = checkedJSON(res.Report)
		out.SHA256 = res.Report.SourceSHA256
	}
	if jerr := p.emitJSON(out); jerr != nil {
		return jerr
	}
	if !p.json {
		for _, l := range out.Damaged {
			fmt.Fprintf(p.errw, "DAMAGED chunk %d (bytes %d-%d) on %s: not written, still missing\n", l.Chunk, l.Offset, l.Offset+l.Length-1, st)
		}
	}
	if err != nil && (engine.KindOf(err) != engine.KindIntegrity || res.Complete) {
		return err
	}
	// Damage on the volume, or a target that did not verify at the end,
	// is exit 3, after saying what was written and what is missing.
	what := fmt.Sprintf("volume %s of %d", joinInts(given), res.Count)
	if set == nil {
		what = "the image"
	}
	rebuilt := ""
	if len(res.Rebuilt) > 0 {
		rebuilt = fmt.Sprintf(" (%d rebuilt from parity)", len(res.Rebuilt))
	}
	p.summary("wrote %s (%s) onto %s: %d chunk(s), %s, verified and written%s, fsynced, in %s",
		what, opts.Name, target, res.Written, human(res.WrittenBytes), rebuilt, res.Elapsed.Round(time.Millisecond))
	if res.Complete {
		h := res.Manifest.Header
		if opts.Stage != nil {
			p.summary("%s holds no shards now: remove it when you like", c.String("stage"))
		}
		p.summary("restore complete: %s onto %s, read back whole against every chunk hash and the whole-source SHA-256; %s removed%s\nsource sha256 %s (compare: sha256sum %s)",
			human(h.Size), target, res.State, checkedLine(res.Report), h.SHA256, target)
		return err
	}
	if opts.Stage != nil {
		p.summary("staged %d shard file(s), %s, in %s; it holds %d file(s) of stripes not yet whole on %s",
			res.StagedFiles, human(res.StagedBytes), c.String("stage"), res.StageLeft, target)
	}
	p.summary("progress recorded in %s", res.State)
	p.summary("%s", partialMissing(c, res, target, mayLose))
	return err
}

// partialMissing says what the target still lacks, which volumes to bring
// next, and, when only volumes parity could stand in for are left, what a
// lost one needs.
func partialMissing(c *cli.Context, res *engine.PartialResult, target string, mayLose int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "still missing: %d chunk(s), %s", res.MissingChunks, human(res.MissingBytes))
	if len(res.MissingSegments) > 0 {
		fmt.Fprintf(&b, " in %d data segment(s): %s", len(res.MissingSegments), segmentList(res.MissingSegments))
	}
	state := ""
	if c.IsSet("state") {
		state = " --state " + shellJoin([]string{res.State})
	}
	if c.IsSet("stage") {
		state += " --stage " + shellJoin([]string{c.String("stage")})
	}
	switch {
	case len(res.Unseen) == 0:
		fmt.Fprintf(&b, "\nevery volume has been given, but the chunks above could not be read from them (damaged beyond what parity on one volume repairs): "+
			"attach the volumes together and run seedship restore --resume VOL... %s (parity across the volumes, or --fallback with another copy, rebuilds them), then seedship verify --device %s VOL...", target, target)
	default:
		fmt.Fprintf(&b, "\nvolume(s) not seen yet: %s of %d; continue with: seedship restore --partial%s NEXT-VOLUME %s", joinInts(res.Unseen), res.Count, state, target)
		if len(res.Unseen) <= mayLose && c.IsSet("stage") {
			fmt.Fprintf(&b, "\nif volume(s) %s are lost: the stage does not hold enough shards yet to rebuild their segments from parity: give the volumes seen before --stage was used again, with --stage",
				joinInts(res.Unseen))
		} else if len(res.Unseen) <= mayLose {
			fmt.Fprintf(&b, "\nif volume(s) %s are lost: parity can rebuild their segments, but only from the other shards of each stripe at once, which one bay cannot give "+
				"without --stage (given from the first volume on, it keeps the shards that need it): attach the volumes you have together (a USB dock) and run seedship restore --resume VOL... %s; it writes only what is missing",
				joinInts(res.Unseen), target)
		}
	}
	return b.String()
}

// segmentList names segments briefly.
func segmentList(segs []uint32) string {
	var parts []string
	for n, s := range segs {
		if n == 8 {
			parts = append(parts, fmt.Sprintf("and %d more", len(segs)-n))
			break
		}
		parts = append(parts, format.DataID(s).Key())
	}
	return strings.Join(parts, ", ")
}
