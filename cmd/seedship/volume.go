package main

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/store/volume"
)

// classifyKey tells a volume set what a key is: package format is the one
// parser of segment keys; everything else (manifest, copies, checkpoint)
// goes to every volume.
func classifyKey(key string) volume.Role {
	id, ok := format.ParseKey(key)
	switch {
	case !ok:
		return volume.Role{Kind: volume.Everywhere}
	case id.Kind == format.SegmentParity:
		return volume.Role{Kind: volume.Parity, Number: id.Number}
	}
	return volume.Role{Kind: volume.Data, Number: id.Number}
}

// volumeSourceOf is the labels' record of the capture source.
func volumeSourceOf(src *engine.Source, host string) volume.Source {
	kind := "file"
	if src.Info.IsBlock {
		kind = "block"
	}
	return volume.Source{Host: host, Path: src.Path, Kind: kind, Size: src.Info.Size,
		Serial: src.Info.Serial, WWN: src.Info.WWN, Model: src.Info.Model}
}

// openMember opens one volume location: a directory (created when
// create is set, so a capture can fill a fresh mount point's subdirectory)
// or s3://bucket/prefix.
func openMember(c *cli.Context, loc string, create bool) (volume.Member, error) {
	if isS3(loc) {
		st, err := openS3(c, loc)
		return volume.Member{Loc: loc, Store: st}, err
	}
	var st *dir.Store
	var err error
	if create {
		st, err = dir.New(loc)
	} else {
		st, err = dir.Open(loc)
	}
	switch {
	case errors.Is(err, store.ErrNotExist):
		return volume.Member{}, fmt.Errorf("%w: volume %s does not exist: check the path (is the drive mounted?)", engine.ErrBadInput, loc)
	case err != nil:
		return volume.Member{}, openError("volume "+loc, err)
	}
	return volume.Member{Loc: loc, Store: st, Dir: st.Root()}, nil
}

// volumeError makes a refusal of the volumes given bad input (exit 2:
// nothing was written), naming the command.
func volumeError(c *cli.Context, err error) error {
	if errors.Is(err, volume.ErrRefused) {
		return fmt.Errorf("%w: %s: %w", engine.ErrBadInput, c.Command.Name, err)
	}
	return err
}

// isVolume reports whether the directory or prefix at loc holds a volume
// label, so that one volume given alone is read as a volume of its set
// (the others missing) rather than as a whole image.
func isVolume(c *cli.Context, st store.Store) bool {
	_, err := st.Stat(c.Context, volume.LabelKey)
	return err == nil
}

// openImageStore opens the image at locs for reading: one location is a
// directory or s3:// image as always, unless it is a courier volume;
// several (or one volume) are the volumes of one image, in any order,
// opened as a volume set whose missing volumes parity may cover. The
// returned set is nil for a plain image.
func openImageStore(c *cli.Context, locs []string) (store.Store, *volume.Set, error) {
	if len(locs) == 1 {
		st, err := openStore(c, locs[0])
		if err != nil || !isVolume(c, st) {
			return st, nil, err
		}
	}
	members := make([]volume.Member, len(locs))
	for i, loc := range locs {
		m, err := openMember(c, loc, false)
		if err != nil {
			return nil, nil, err
		}
		members[i] = m
	}
	set, err := volume.OpenMembers(c.Context, members)
	if err != nil {
		return nil, nil, volumeError(c, err)
	}
	// One bay at the source: the last drive holds the manifest the
	// earlier ones lack; it is kept on this host for them.
	_ = keepManifests(c.Context, set) // best effort: without it, the earlier drives are read with the last one
	if err := needsLastDrive(c, set); err != nil {
		return nil, nil, err
	}
	return set, set, nil
}

// needsLastDrive refuses (bad input) volumes that are all drives filled
// before a capture went on to later ones (one bay at the source) when no
// manifest is among them: it is on the last drive, which must be given.
func needsLastDrive(c *cli.Context, set *volume.Set) error {
	if set.CountKnown() {
		return nil
	}
	if _, err := set.Stat(c.Context, format.ManifestKey); err == nil {
		return nil
	}
	vs := set.Volumes()
	if len(vs) == 0 || !vs[0].Label.CountUnknown {
		return nil // an unfinished capture: the reader says so
	}
	if adoptKept(set) {
		return nil
	}
	return fmt.Errorf("%w: %s: %s is volume %d of image %s, filled before the capture went on to later drives (the count was not known when it was labelled): the manifest is on the last drive of the capture; give it too, or give it first on its own (restore --partial keeps its manifest on this host for the others)",
		engine.ErrBadInput, c.Command.Name, vs[0].Loc, vs[0].Volume, vs[0].Label.ImageID)
}

// volumesLine says which volumes of a set are present and what may be
// lost, for the summaries of info, verify and restore.
func volumesLine(set *volume.Set) string {
	vs := set.Volumes()
	line := fmt.Sprintf("%d of %d volume(s) present", len(vs), set.Count())
	if miss := set.Missing(); len(miss) > 0 {
		line += fmt.Sprintf(", missing %s", joinInts(miss))
	}
	// The labels of drives detached before the capture ended (one bay
	// at the source) do not know what may be lost; the last one's does.
	at := slices.IndexFunc(vs, func(v volume.VolumeInfo) bool { return v.Label.MayLose != nil })
	if len(vs) > 0 && vs[0].Label.CountUnknown && !set.CountKnown() {
		line = fmt.Sprintf("%d of at least %d volume(s) present (drives filled before the capture went on to later ones; the last drive holds the manifest)", len(vs), set.Count())
	}
	if at >= 0 {
		lose := *vs[at].Label.MayLose
		line += "; " + mayLoseText(lose, set.Count(), set.Layout())
		if miss := len(set.Missing()); miss > lose {
			line += fmt.Sprintf("; %d missing is more than may be lost: bring the missing volumes (parity still rebuilds what it can)", miss)
		}
	}
	return line
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

// mayLoseText says, truthfully, how many whole volumes may be lost.
func mayLoseText(n, count int, l volume.Layout) string {
	switch {
	case l.Parity == 0 && count > 1:
		return "no parity: every volume is needed"
	case n == 0 && count > 1:
		return fmt.Sprintf("parity %d+%d repairs damage, but a whole lost volume is not covered (the placement put more than %d shard(s) of a stripe on one volume)", l.Data, l.Parity, l.Parity)
	case n == 0:
		return fmt.Sprintf("parity %d+%d repairs damage within the volume", l.Data, l.Parity)
	}
	return fmt.Sprintf("any %d of the %d volumes may be lost (parity %d+%d)", n, count, l.Data, l.Parity)
}

// volumeJSON is one volume in the --json output of capture, info and
// label.
type volumeJSON struct {
	Volume   int    `json:"volume"`
	Volumes  int    `json:"volumes"`
	Location string `json:"location"`
	Files    int    `json:"files"`
	Bytes    int64  `json:"bytes"`
	Cap      int64  `json:"cap,omitempty"`
	// ReadBack is "ok", "failed" or "skipped" (capture --no-readback), or
	// absent where none was asked for.
	ReadBack        string   `json:"readback,omitempty"`
	ReadBackBytes   int64    `json:"readback_bytes,omitempty"`
	ReadBackSeconds float64  `json:"readback_seconds,omitempty"`
	CacheDropped    bool     `json:"readback_from_drive,omitempty"` // the page cache was dropped first
	Failures        []string `json:"readback_failures,omitempty"`
}

// volumesJSON lists the present volumes of set, with their read-back
// checks (nil: none ran; skipped: --no-readback).
func volumesJSON(set *volume.Set, checks []volume.Check, skipped bool) []volumeJSON {
	var out []volumeJSON
	for i, v := range set.Volumes() {
		j := volumeJSON{Volume: v.Volume, Volumes: set.Count(), Location: v.Loc, Files: v.Files, Bytes: v.Bytes, Cap: v.Cap}
		switch {
		case skipped:
			j.ReadBack = "skipped"
		case i < len(checks):
			ch := checks[i]
			j.ReadBack, j.ReadBackBytes, j.ReadBackSeconds, j.CacheDropped, j.Failures = "ok", ch.Bytes, ch.Elapsed.Seconds(), ch.CacheDropped, ch.Failures
			if !ch.OK() {
				j.ReadBack = "failed"
			}
		}
		out = append(out, j)
	}
	return out
}

// checkLine is a volume's read-back result in one line.
func checkLine(ch volume.Check) string {
	if !ch.OK() {
		return fmt.Sprintf("volume %d of %d (%s): READ-BACK FAILED: %s", ch.Volume, ch.Volumes, ch.Loc, strings.Join(ch.Failures, "; "))
	}
	from := "from the drive (page cache dropped first)"
	if !ch.CacheDropped {
		from = "(the page cache could not be dropped here: the bytes may have come from memory)"
	}
	return fmt.Sprintf("volume %d of %d (%s): read back %d file(s), %s %s in %s at %s: OK",
		ch.Volume, ch.Volumes, ch.Loc, ch.Files, human(ch.Bytes), from, ch.Elapsed.Round(time.Millisecond), rate(ch.Bytes, ch.Elapsed))
}

// readBackError is the exit-3 error of volumes that failed their
// read-back: they must not be shipped.
func readBackError(checks []volume.Check) error {
	var bad []string
	for _, ch := range checks {
		if !ch.OK() {
			bad = append(bad, fmt.Sprintf("volume %d (%s): %s", ch.Volume, ch.Loc, ch.Failures[0]))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%w: read-back failed, so do not ship these drives: %s; replace each one and capture again (seedship label --check VOL rechecks a volume)",
		engine.ErrIntegrity, strings.Join(bad, "; "))
}

// labelText is what an operator tapes to a drive.
func labelText(l *volume.Label) string {
	var b strings.Builder
	row := func(k, f string, a ...any) { fmt.Fprintf(&b, "%-14s %s\n", k+":", fmt.Sprintf(f, a...)) }
	switch {
	case l.CountUnknown:
		// One bay at the source: written before the later drives existed.
		fmt.Fprintf(&b, "SEEDSHIP COURIER VOLUME %d OF AT LEAST %d (COUNT NOT KNOWN WHEN LABELLED)\n", l.Volume, l.Volumes)
	default:
		fmt.Fprintf(&b, "SEEDSHIP COURIER VOLUME %d OF %d\n", l.Volume, l.Volumes)
	}
	switch {
	case l.Complete:
		row("image", "%s", l.ImageID)
	case l.CountUnknown && l.ImageID != "":
		row("image", "%s", l.ImageID)
		row("shipment", "this drive filled up and the capture went on to later drives: ship it with them; the last one holds the manifest and the count")
	default:
		row("image", "UNFINISHED capture %s: not ready to ship; continue it with seedship capture --resume", l.SetID)
	}
	src := l.Source.String()
	var ids []string
	for _, kv := range [][2]string{{"serial", l.Source.Serial}, {"wwn", l.Source.WWN}, {"model", l.Source.Model}} {
		if kv[1] != "" {
			ids = append(ids, kv[0]+" "+kv[1])
		}
	}
	if len(ids) > 0 {
		src += " (" + strings.Join(ids, ", ") + ")"
	}
	row("source", "%s", src)
	size := l.Size
	if !l.Complete {
		size = l.Source.Size
	}
	row("size", "%s (%d bytes)", human(size), size)
	if l.Complete {
		row("sha256", "%s", l.SHA256)
		if l.CaptureStart != nil && l.CaptureEnd != nil {
			row("captured", "%s to %s", l.CaptureStart.UTC().Format("2006-01-02 15:04:05 UTC"), l.CaptureEnd.UTC().Format("2006-01-02 15:04:05 UTC"))
		}
		row("manifest", "sha256 %s", l.ManifestSHA256)
	} else {
		row("begun", "%s", l.Created.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	files, bytes := l.Holds()
	row("this volume", "%d file(s), %s", files, human(bytes))
	if len(l.Set) > 0 {
		var parts []string
		for _, s := range l.Set {
			parts = append(parts, fmt.Sprintf("volume %d: %d file(s), %s", s.Volume, s.Files, human(s.Bytes)))
		}
		row("the set", "%s", strings.Join(parts, "; "))
	}
	if l.MayLose != nil {
		row("may be lost", "%s", mayLoseText(*l.MayLose, l.Volumes, l.Layout))
	}
	row("restore", "seedship restore VOL... TARGET with the volumes in any order; seedship label --check VOL rereads this one")
	return b.String()
}

// variadicCommand is newCommand for a command whose operands are: the
// fixed ones before (lead), one or more of many, and the fixed ones after
// (tail); each checked like newCommand's.
func variadicCommand(cmd command, lead []operand, many operand, tail []operand) *cli.Command {
	cc := newCommand(cmd)
	var names []string
	for _, o := range lead {
		names = append(names, o.name)
	}
	names = append(names, many.name+"...")
	for _, o := range tail {
		names = append(names, o.name)
	}
	cc.ArgsUsage = strings.Join(names, " ")
	cc.Action = func(c *cli.Context) error {
		args := c.Args().Slice()
		for _, a := range args {
			if strings.HasPrefix(a, "-") && len(a) > 1 {
				return usagef("%s: flag %q after the arguments: put flags before %s", cmd.name, a, cc.ArgsUsage)
			}
		}
		if len(args) < len(lead)+1+len(tail) {
			return usagef("%s: want %s, got %d argument(s) (see 'seedship %s --help')", cmd.name, cc.ArgsUsage, len(args), cmd.name)
		}
		if cmd.linuxOnly {
			if err := needsLinux(runtime.GOOS, "seedship "+cmd.name); err != nil {
				return err
			}
		}
		for i, a := range args {
			o := many
			switch {
			case i < len(lead):
				o = lead[i]
			case i >= len(args)-len(tail):
				o = tail[i-(len(args)-len(tail))]
			}
			if err := o.check(o.what, a); err != nil {
				return err
			}
		}
		return cmd.run(c, args)
	}
	return cc
}
