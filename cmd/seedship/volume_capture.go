package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/volume"
)

// minVolumeSize is the least --volume-size accepts.
const minVolumeSize = 1 << 20

// --volume-size is checked with the other numeric flags, before anything
// is opened.
func init() {
	numericFlags["volume-size"] = flagRule{"a size of at least 1MiB, e.g. 500GiB", sizeIn(minVolumeSize, 1<<62, false)}
}

// isVolumeDir reports whether the local directory loc holds a volume
// label (a single destination given to capture --resume is then a volume
// set of one, continued onto the drives given with it).
func isVolumeDir(loc string) bool {
	if isS3(loc) {
		return false
	}
	fi, err := os.Lstat(filepath.Join(loc, volume.LabelKey))
	return err == nil && fi.Mode().IsRegular()
}

// captureVolumes captures source into a volume set over dests: the
// volumes are created (or, with --resume, continued, new empty drives
// joining), the engine writes through the set, the labels get the
// image's facts, and every volume is read back from the drive.
func captureVolumes(c *cli.Context, p *printer, source string, dests []string, opts engine.CaptureOptions) error {
	orig := opts
	err := captureVolumesRun(c, p, source, dests, opts)
	in, ok := promptInput(p)
	if !ok {
		return err
	}
	return promptNextDrives(c, p, in, err, func(drive string) error {
		next := orig
		next.Resume = true
		return captureVolumesRun(c, p, source, []string{drive}, next)
	}, source)
}

func captureVolumesRun(c *cli.Context, p *printer, source string, dests []string, opts engine.CaptureOptions) error {
	var volSize int64
	if c.IsSet("volume-size") {
		v, err := parseSize(c.String("volume-size"))
		if err != nil || v < minVolumeSize {
			return usagef("capture: --volume-size %s: use a size of at least 1MiB, e.g. 500GiB", shellQuote(c.String("volume-size")))
		}
		volSize = v
	}
	if !opts.Resume {
		if !c.IsSet("segment-size") {
			opts.SegmentSize = volumeSegmentSize(dests, volSize, opts.Parity != nil)
		}
		// A segment holds whole chunks: on small volumes, smaller chunks
		// let the segments stay small enough to fill each volume.
		for !c.IsSet("chunk-size") && int64(opts.ChunkSize) > opts.SegmentSize && opts.ChunkSize > format.MinChunkSize {
			opts.ChunkSize /= 2
		}
		if opts.Parity == nil {
			// The segments of a group grow together, one per volume, so
			// the drives are written in parallel: as many as the
			// capture's memory bound lets stream at once.
			opts.Width = min(len(dests), format.MaxGroupWidth)
			for opts.Width > 1 {
				if o := opts; o.Validate() == nil {
					break
				}
				opts.Width /= 2
			}
		}
		if err := opts.Validate(); err != nil {
			return err
		}
	}
	src, err := engine.OpenSourceWith(source, c.Bool("allow-in-use"))
	if err != nil {
		return err
	}
	defer src.Close()
	members := make([]volume.Member, len(dests))
	for i, d := range dests {
		if members[i], err = openMember(c, d, true); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	srcDesc := volumeSourceOf(src, host)
	// One bay at the source: the full drives may have gone ahead, their
	// part of the capture recorded in a state file on this host.
	var cont *continuation
	if opts.Resume {
		if cont, err = findContinuation(c.Context, srcDesc, members); err != nil {
			return err
		}
	}
	var detached []volume.Label
	if cont != nil {
		detached = cont.labels()
	}
	layout := volume.RotateLayout(0, 0)
	if opts.Parity != nil {
		layout = volume.RotateLayout(opts.Parity.K, opts.Parity.M)
	}
	var reserve int64
	if !opts.Resume {
		reserve = manifestReserve(src.Info.Size, opts.ChunkSize, layout.Parity)
	}
	labelSource := srcDesc
	if opts.Encrypt != nil {
		// The labels are readable by whoever holds the drive: an
		// encrypted image's name only the size and kind of its source.
		labelSource = volume.Source{Kind: srcDesc.Kind, Size: srcDesc.Size}
	}
	set, err := volume.Create(c.Context, members, volume.CreateOptions{Layout: layout, Source: labelSource, Encrypted: opts.Encrypt != nil,
		VolumeSize: volSize, Reserve: reserve, Resume: opts.Resume, Detached: detached, Classify: classifyKey})
	if err != nil {
		return volumeError(c, err)
	}
	var res *engine.CaptureResult
	if cont != nil {
		res, err = engine.ContinueCapture(c.Context, src, set, opts, cont.engine)
	} else {
		res, err = engine.Capture(c.Context, src, set, opts)
	}
	p.endProgress()
	if err != nil {
		if errors.Is(err, store.ErrNoSpace) && engine.KindOf(err) == engine.KindResumable {
			return volumesFull(c, err, set, source, dests, srcDesc, cont)
		}
		return canContinue(err, opts.Resume || holdsCheckpoint(c, set))
	}
	m := res.Manifest
	h := m.Header
	facts := volume.Facts{ImageID: h.ImageID, Size: h.Size, SHA256: h.SHA256, CaptureStart: h.CaptureStart,
		CaptureEnd: h.CaptureEnd, ManifestSHA256: hex.EncodeToString(m.Hash[:])}
	if err := set.Finish(c.Context, facts); err != nil {
		return fmt.Errorf("the image is complete, but its volume labels could not be finished: %w", err)
	}
	// The image is complete: a continuation state of it has served.
	removeContinuations(h.ImageID)
	skip := c.Bool("no-readback")
	var checks []volume.Check
	if !skip {
		if checks, err = set.ReadBack(c.Context); err != nil {
			return fmt.Errorf("read-back of the volumes: %w", err)
		}
	}
	lose := set.MayLose()
	secs := max(res.Elapsed.Seconds(), 1e-9)
	if err := p.emitJSON(captureJSON{Source: source, Dest: set.String(), Size: h.Size, ChunkSize: h.ChunkSize,
		storedJSON: storedOf(m), SHA256: h.SHA256, ManifestSHA256: facts.ManifestSHA256, ResumedAt: res.ResumedAt,
		SourceRead: res.ReadBytes, Seconds: secs, BytesPerSecond: float64(h.Size) / secs,
		Volumes: volumesJSON(set, checks, skip), VolumesMayBeLost: &lose, Encrypted: encryptedOf(h.Encryption)}); err != nil {
		return err
	}
	if res.ResumedAt > 0 {
		p.summary("resumed at byte %d: read %s of the source this time", res.ResumedAt, human(res.ReadBytes))
	}
	par := ""
	if h.Parity != nil {
		par = fmt.Sprintf(" + %s parity %s in %d segment(s)", parityString(m), human(h.ParityBytes), len(m.Parity))
	}
	p.summary("captured %s (%d bytes) from %s onto %d volume(s): stored %s in %d segment(s)%s, %d of %d chunks zero, %s at %s\nsha256 %s",
		human(h.Size), h.Size, source, set.Count(), human(h.StoredBytes), len(m.Segments), par, h.ZeroChunks, h.Chunks,
		res.Elapsed.Round(time.Millisecond), rate(h.Size, res.Elapsed), h.SHA256)
	encryptionSummary(p, h)
	for i, v := range set.Volumes() {
		line := fmt.Sprintf("volume %d of %d (%s): %d file(s), %s", v.Volume, set.Count(), v.Loc, v.Files, human(v.Bytes))
		switch {
		case skip:
			line += "; read-back SKIPPED (--no-readback): the drive was not checked"
		case i < len(checks):
			line = checkLine(checks[i])
		}
		p.summary("%s", line)
	}
	if n := set.Detached(); n > 0 {
		p.summary("volumes 1 to %d: filled earlier and not attached; their labels say the count was not known then (this run's last volume holds the manifest)", n)
	}
	p.summary("%s; print each drive's label with: seedship label VOL", mayLoseText(lose, set.Count(), set.Layout()))
	return readBackError(checks)
}

// volumeSegmentSize is the default segment size of a volume set: the
// usual one, but at most 1/16 of the smallest volume (whole MiB, at least
// 1 MiB), so that a volume is filled to within a segment or so of its cap.
func volumeSegmentSize(dests []string, volSize int64, parity bool) int64 {
	seg := int64(format.DefaultSegmentSize)
	if parity {
		seg = format.DefaultParitySegmentSize
	}
	smallest := int64(0)
	for _, d := range dests {
		c := volSize
		if !isS3(d) {
			if capacity, ok, err := volume.Capacity(d, 0, volSize); err == nil && ok {
				c = capacity
			}
		}
		if c > 0 && (smallest == 0 || c < smallest) {
			smallest = c
		}
	}
	if smallest == 0 {
		return seg
	}
	return max(min(seg, (smallest/16)&^(1<<20-1)), 1<<20)
}

// manifestReserve is what every volume keeps free of segments for the
// files written to every volume at the end: the manifest and its m
// copies (each at most a 64 KiB header and 56 bytes per chunk and per
// segment; there are at most (1+m) segments per chunk), the checkpoint
// (at most 64 KiB), and 1 MiB of slack.
func manifestReserve(size int64, chunkSize, m int) int64 {
	chunks := (size + int64(chunkSize) - 1) / int64(max(chunkSize, 1))
	manifest := 64<<10 + 56*chunks*int64(2+m)
	return int64(1+m)*manifest + 64<<10 + 1<<20
}

// volumesFullError is a capture stopped because its volumes are full: it
// is resumable (exit 1) and says how much more is needed and the exact
// command that continues onto another drive.
type volumesFullError struct {
	err    error
	advice string
	// oneBay says the state to continue without the full drives was
	// kept: the next drive alone continues the capture.
	oneBay bool
}

func (e *volumesFullError) Error() string { return e.err.Error() + "; " + e.advice }
func (e *volumesFullError) Unwrap() error { return e.err }

// volumesFull ends a capture whose volumes are full: it keeps on this
// host what continuing needs without those drives (one bay at the
// source), marks their labels as written before the count was known, and
// says how much more is needed and the command that continues onto a new
// drive alone. If the state cannot be kept, the command continues with
// every drive attached, as before.
func volumesFull(c *cli.Context, err error, set *volume.Set, source string, dests []string, src volume.Source, prior *continuation) error {
	ctx := context.WithoutCancel(c.Context)
	var priorEngine *engine.Continuation
	if prior != nil {
		priorEngine = prior.engine
	}
	ct, serr := engine.SuspendCapture(ctx, set, priorEngine)
	var labels []volume.Label
	if serr == nil {
		labels, serr = set.Suspend(ctx, ct.ImageID())
	}
	var path string
	if serr == nil {
		path, serr = saveContinuation(ct, labels, src)
	}
	argv := append(append([]string{"seedship", "capture", "--resume"}, givenFlags(c, "resume", flagRecipient, flagRecipientsFile)...), source)
	if serr != nil {
		need := "more space is needed"
		if est, most, ok := remainingEstimate(c, set, src.Size); ok {
			need = fmt.Sprintf("about %s more is needed at the rate the source has been stored so far (up to %s if the rest does not compress)", human(est), human(most))
		}
		every := "attach another empty drive (or several) and run"
		if prior != nil {
			every = fmt.Sprintf("attach every drive of the capture (volumes 1 to %d) and another empty one, and run the same with all of them", set.Count())
		}
		return &volumesFullError{err: err, advice: fmt.Sprintf("the volumes are full and nothing is lost: %s; the state to continue without them could not be kept (%v); to continue, %s: %s NEW-DRIVE",
			need, serr, every, shellJoin(append(argv, dests...)))}
	}
	est, most := remainingFrom(ct, src.Size)
	gone := fmt.Sprintf("volumes 1 to %d", set.Count())
	if set.Count() == 1 {
		gone = "volume 1"
	}
	stuck := ""
	if prior != nil && ct.Stored() == prior.engine.Stored() {
		stuck = fmt.Sprintf(" (nothing more fitted on %s: give a larger drive)", strings.Join(dests, ", "))
	}
	return &volumesFullError{err: err, advice: fmt.Sprintf("the volumes are full and nothing is lost: about %s more is needed at the rate the source has been stored so far (up to %s if the rest does not compress)%s; "+
		"what continuing needs is kept in %s, so %s may be detached and shipped; to continue, attach another empty drive and run: %s NEW-DRIVE",
		human(est), human(most), stuck, path, gone, shellJoin(argv)), oneBay: true}
}

// remainingFrom estimates what the rest of a stopped capture needs from
// its continuation state, as remainingEstimate does from the drives.
func remainingFrom(ct *engine.Continuation, size int64) (est, most int64) {
	m, k := ct.ParityPerData()
	done := ct.Done()
	rest := size - done
	manifests := manifestReserve(size, ct.ChunkSize(), m)
	most = rest + rest*int64(m)/int64(k) + manifests
	if done <= 0 {
		return most, most
	}
	est = int64(float64(rest)*float64(ct.StoredBytes())/float64(done)) + manifests
	return min(est, most), most
}

// remainingEstimate estimates what the rest of a capture that stopped
// needs: the source past its checkpoint at the rate the part before it
// was stored (segments and parity per source byte), and at most, stored
// raw with parity; both with the manifest and its copies.
func remainingEstimate(c *cli.Context, set *volume.Set, size int64) (est, most int64, ok bool) {
	ctx, cancel := hintContext(c)
	defer cancel()
	rc, err := set.Get(ctx, format.CheckpointKey, 0, -1)
	if err != nil {
		return 0, 0, false
	}
	b, err := io.ReadAll(io.LimitReader(rc, format.MaxCheckpointSize+1))
	rc.Close()
	if err != nil {
		return 0, 0, false
	}
	ck, err := format.ParseCheckpoint(b)
	if err != nil || ck.Chunks == 0 {
		return 0, 0, false
	}
	done := min(int64(ck.Chunks)*int64(ck.ChunkSize), size)
	k, m := int64(1), int64(0)
	if ck.Parity != nil {
		k, m = int64(ck.Parity.K), int64(ck.Parity.M)
	}
	var stored int64
	err = set.List(ctx, "", func(i store.Info) error {
		id, ok := format.ParseKey(i.Key)
		switch {
		case !ok:
		case id.Kind == format.SegmentData && id.Number < ck.Segments:
			stored += i.Size
		case id.Kind == format.SegmentParity && int64(id.Number) < int64(ck.Segments)/k*m:
			stored += i.Size
		}
		return nil
	})
	if err != nil || done <= 0 {
		return 0, 0, false
	}
	rest := size - done
	manifests := manifestReserve(size, ck.ChunkSize, int(m))
	est = int64(float64(rest)*float64(stored)/float64(done)) + manifests
	most = rest + rest*m/k + manifests
	return min(est, most), most, true
}

// givenFlags is the flags given to the command c runs, as "--name value"
// words (booleans as "--name"), leaving out those named in skip.
func givenFlags(c *cli.Context, skip ...string) []string {
	var out []string
outer:
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		if !c.IsSet(name) {
			continue
		}
		for _, s := range skip {
			if s == name {
				continue outer
			}
		}
		switch v := c.Value(name).(type) {
		case bool:
			if v {
				out = append(out, "--"+name)
			}
		case []string: // a repeatable flag: once per value
			for _, s := range v {
				out = append(out, "--"+name, s)
			}
		default:
			out = append(out, "--"+name, fmt.Sprint(v))
		}
	}
	return out
}
