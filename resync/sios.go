package resync

import (
	"bytes"
	"context"
	"fmt"
	"path"
	"regexp"
	"time"
)

// siosConfig is the "sios" section of the configuration; the procedures
// it drives are described at [siosAdapter].
type siosConfig struct {
	// LKRoot is $LKROOT (the vendor's default is /opt/LifeKeeper).
	LKRoot string `json:"lkroot"`
	// BitmapFile is the mirror's bitmap file on the source, as given when
	// the resource was created (new-target procedure).
	BitmapFile string `json:"bitmap_file"`
	// DefaultsFile is the LifeKeeper defaults file on every host
	// (default /etc/default/LifeKeeper).
	DefaultsFile string `json:"defaults_file"`
	// Source is the host (of hosts) that is the mirror's source; default
	// the first host. bitmap and mirror_action run there.
	Source string `json:"source"`
	// Tag is the DataKeeper resource's LifeKeeper tag: required for the
	// third node (mirror_action), recorded in the token when given.
	Tag string `json:"tag"`
	// OutOfService and InService take the mirror (and what depends on
	// it) out of service and back, e.g. $LKROOT/bin/perform_action -t TAG
	// -a remove / -a restore. Never guessed.
	OutOfService Command `json:"out_of_service"`
	InService    Command `json:"in_service"`
	// Extend extends the mirror to the new target. Never guessed.
	Extend Command `json:"extend"`
	// ThirdNode selects a third-node procedure.
	ThirdNode *siosThirdNode `json:"third_node"`
}

// siosThirdNode is the "third_node" object of the sios section.
type siosThirdNode struct {
	// Target is the new target's host name; FirstTarget the target the
	// mirror already has (required with copy_from "first_target").
	Target      string `json:"target"`
	FirstTarget string `json:"first_target"`
	// CopyFrom is "source" (the mirror goes out of service for the
	// capture) or "first_target" (no downtime; no redundancy while the
	// first target is paused).
	CopyFrom string `json:"copy_from"`
	// StopTarget and StopFirstTarget run after the pause of that target:
	// unmount its file system and stop its md device, as the vendor says
	// (e.g. {"host": "nodec", "argv": ["umount", "/data"]}).
	StopTarget      []Command `json:"stop_target"`
	StopFirstTarget []Command `json:"stop_first_target"`
	// CheckPaused, if set, exits 0 only while the mirror to the new
	// target is paused; it runs before the extend-side resume.
	CheckPaused Command `json:"check_paused"`
}

// Token field names of the sios adapter.
const (
	siosProcedure     = "procedure"
	siosBitmapFile    = "bitmap_file"
	siosBitmapCleared = "bitmap_cleared"
	siosTag           = "tag"
	siosSource        = "source"
	siosTarget        = "target"
	siosFirstTarget   = "first_target"
	siosPaused        = "paused"

	procNewTarget      = "new_target"
	procThirdFromSrc   = "third_node_from_source"
	procThirdFromFirst = "third_node_from_first_target"

	defaultLifeKeeperDefaults = "/etc/default/LifeKeeper"
	noFullSync                = "LKDR_NO_FULL_SYNC"
)

// siosAdapter drives SIOS DataKeeper for Linux (LifeKeeper) through
// the vendor's procedures for avoiding a full resync ("Avoiding Full
// Resynchronizations"; shared/reference/datakeeper-avoid-full-resync.txt).
//
// New target (the mirror exists but is not extended yet), capture side,
// on the source:
//
//	out_of_service → (capture) → $LKROOT/bin/bitmap -c BITMAP_FILE → in_service
//
// Where the mark is: the bitmap is cleared after the capture, as the
// vendor orders it, but while the mirror is still out of service. No
// write reaches the device between out_of_service and in_service, so the
// device the seed copies and the device whose bitmap is cleared are the
// same bytes, and every write after in_service lands in the cleared
// bitmap. The clear must therefore happen no later than in_service (the
// first write the seed does not hold) and not while the mirror is in
// service (the driver owns the bitmap then). The token's mark point is
// the moment out_of_service returned: every write after it is either
// impossible (out of service) or tracked (after the clear), and it is not
// after the capture started, which is what the checks before extend ask.
// If the clear fails no token is made (the capture fails) and Cleanup
// still brings the mirror back in service. The clear is only for a mirror
// not extended yet, as the vendor's procedure says: on a mirror with
// targets it would drop what they are missing (use the third-node
// procedure there); nothing seedship can read tells the two apart, so
// the operator's configuration decides.
//
// Extend side: LKDR_NO_FULL_SYNC=1 in the LifeKeeper defaults file on
// every system of the mirror (all configured hosts), each edit atomic and
// backed up; the configured extend command; then every file restored, by
// Cleanup, also after a failed step or an interrupt. A setting left
// behind would make every later new target skip its full resync, so a
// file that already sets it is refused in Preflight.
//
// Third node ("third_node" section, the mirror already extended to a
// first target): the vendor's two procedures, copying from the source or
// from a paused first target. Capture side: LKDR_NO_FULL_SYNC=1 on every
// system → extend to the new target → restore the files → mirror_action
// TAG pause SOURCE TARGET (the mark point: from here the source's bitmap
// tracks what the new target misses) → stop commands on the new target
// (umount, mdadm --stop, as configured) → from the source:
// out_of_service, (capture), in_service; from the first target:
// mirror_action TAG pause SOURCE FIRST, its stop commands, (capture),
// mirror_action TAG resume SOURCE FIRST. The capture runs on the system
// that holds the disk copied (the source, or the first target: list it
// first in hosts there); mirror_action always runs on the source.
// Extend side: check that the mirror to the new target is still paused
// (check_paused), set LKDR_NO_FULL_SYNC=1 on every system, mirror_action
// TAG resume SOURCE TARGET, restore the files. Deviation from the vendor's text, which
// removes the setting only at the very end: the parameter "suppresses a
// force full resync of newly added targets" (DataKeeper parameters
// list), so it is needed while a target is being added (the extend, and
// the resume that completes it), not while the seed is in transit for
// days, when any other new target would silently skip its full resync.
//
// Its state records what Cleanup must put back.
type siosAdapter struct {
	cfg   siosConfig
	hosts []string // every system of the mirror

	mark         time.Time
	outOfService bool // out_of_service ran, in_service not yet
	firstPaused  bool // the first target was paused for the copy, not yet resumed
}

func init() { Register("sios", newSiosAdapter) }

func newSiosAdapter(cfg *Config) (Adapter, error) {
	var c siosConfig
	if err := cfg.Section("sios", &c); err != nil {
		return nil, err
	}
	if len(cfg.Hosts) < 2 {
		return nil, cfg.FieldError("hosts", "DataKeeper needs %s set on every system of the mirror: list them all (at least the source and the target)", noFullSync)
	}
	for i, h := range cfg.Hosts[1:] {
		if len(h.SSH) == 0 {
			// Another name for this system: the real host would keep its
			// defaults file unedited.
			return nil, cfg.FieldError(fmt.Sprintf("hosts[%d].ssh", i+1), "missing: only the first host is this system; give the ssh argv that reaches %s", h.Name)
		}
	}
	if c.DefaultsFile == "" {
		c.DefaultsFile = defaultLifeKeeperDefaults
	}
	if c.Source == "" {
		c.Source = cfg.Hosts[0].Name
	}
	checks := []struct {
		field, value, why string
	}{
		{"sios.lkroot", c.LKRoot, "give $LKROOT, e.g. /opt/LifeKeeper"},
		{"sios.defaults_file", c.DefaultsFile, ""},
	}
	if c.ThirdNode == nil {
		checks = append(checks, struct{ field, value, why string }{"sios.bitmap_file", c.BitmapFile, "give the bitmap file named when the mirror was created, e.g. /opt/LifeKeeper/bitmap__dr"})
	}
	for _, ch := range checks {
		if ch.value == "" {
			return nil, cfg.FieldError(ch.field, "missing: %s", ch.why)
		}
		if !path.IsAbs(ch.value) {
			return nil, cfg.FieldError(ch.field, "%q is not an absolute path", ch.value)
		}
	}
	if _, err := cfg.Host(c.Source); err != nil {
		return nil, cfg.FieldError("sios.source", "no host named %q: add it to hosts", c.Source)
	}
	if err := c.Extend.Require(cfg, "sios.extend"); err != nil {
		return nil, err
	}
	needService := true
	if tn := c.ThirdNode; tn != nil {
		if c.Tag == "" {
			return nil, cfg.FieldError("sios.tag", "missing: the third-node procedure pauses and resumes the mirror with mirror_action TAG")
		}
		if tn.Target == "" {
			return nil, cfg.FieldError("sios.third_node.target", "missing: name the new target's host")
		}
		if _, err := cfg.Host(tn.Target); err != nil {
			return nil, cfg.FieldError("sios.third_node.target", "no host named %q: add it to hosts", tn.Target)
		}
		if tn.Target == c.Source {
			return nil, cfg.FieldError("sios.third_node.target", "%q is the source", tn.Target)
		}
		switch tn.CopyFrom {
		case "source":
		case "first_target":
			needService = false
			if tn.FirstTarget == "" {
				return nil, cfg.FieldError("sios.third_node.first_target", "missing: copy_from first_target needs the first target's host")
			}
			if _, err := cfg.Host(tn.FirstTarget); err != nil {
				return nil, cfg.FieldError("sios.third_node.first_target", "no host named %q: add it to hosts", tn.FirstTarget)
			}
			if tn.FirstTarget == tn.Target || tn.FirstTarget == c.Source {
				return nil, cfg.FieldError("sios.third_node.first_target", "%q must be neither the source nor the new target", tn.FirstTarget)
			}
		default:
			return nil, cfg.FieldError("sios.third_node.copy_from", "%q: use \"source\" or \"first_target\"", tn.CopyFrom)
		}
		for i, sc := range tn.StopTarget {
			if err := sc.Check(cfg, fmt.Sprintf("sios.third_node.stop_target[%d]", i)); err != nil {
				return nil, err
			}
		}
		for i, sc := range tn.StopFirstTarget {
			if err := sc.Check(cfg, fmt.Sprintf("sios.third_node.stop_first_target[%d]", i)); err != nil {
				return nil, err
			}
		}
		if !tn.CheckPaused.IsZero() {
			if err := tn.CheckPaused.Check(cfg, "sios.third_node.check_paused"); err != nil {
				return nil, err
			}
		}
	}
	if needService {
		if err := c.OutOfService.Require(cfg, "sios.out_of_service"); err != nil {
			return nil, err
		}
		if err := c.InService.Require(cfg, "sios.in_service"); err != nil {
			return nil, err
		}
	} else {
		for _, f := range []struct {
			field string
			cmd   Command
		}{{"sios.out_of_service", c.OutOfService}, {"sios.in_service", c.InService}} {
			if !f.cmd.IsZero() {
				if err := f.cmd.Check(cfg, f.field); err != nil {
					return nil, err
				}
			}
		}
	}
	a := &siosAdapter{cfg: c}
	for _, h := range cfg.Hosts {
		a.hosts = append(a.hosts, h.Name)
	}
	return a, nil
}

// Name is "sios".
func (a *siosAdapter) Name() string { return "sios" }

func (a *siosAdapter) procedure() string {
	switch {
	case a.cfg.ThirdNode == nil:
		return procNewTarget
	case a.cfg.ThirdNode.CopyFrom == "first_target":
		return procThirdFromFirst
	}
	return procThirdFromSrc
}

func (a *siosAdapter) bin(name string) string { return path.Join(a.cfg.LKRoot, "bin", name) }

// mirrorAction is $LKROOT/bin/mirror_action TAG ACTION SOURCE TARGET, run
// on the source.
func (a *siosAdapter) mirrorAction(ctx context.Context, s *Session, action, target string) error {
	_, err := s.Do(ctx, a.cfg.Source, a.bin("mirror_action"), a.cfg.Tag, action, a.cfg.Source, target)
	return err
}

// Preflight checks, read-only: on the capture side of the new-target
// procedure that the bitmap file exists on the source; wherever the
// LifeKeeper defaults file will be edited, that it is on every host and
// does not already set LKDR_NO_FULL_SYNC=1.
func (a *siosAdapter) Preflight(ctx context.Context, s *Session) error {
	if s.Side() == SideCapture && a.procedure() == procNewTarget {
		if _, err := s.Query(ctx, a.cfg.Source, "test", "-f", a.cfg.BitmapFile); err != nil {
			return fmt.Errorf("%w: bitmap file %s not found on the source (%s): check sios.bitmap_file: %w", ErrCheck, a.cfg.BitmapFile, a.cfg.Source, err)
		}
		return nil // the new-target capture edits no file
	}
	for _, h := range a.hosts {
		data, err := s.ReadFile(ctx, h, a.cfg.DefaultsFile)
		if err != nil {
			return fmt.Errorf("%w: read %s: %w", ErrCheck, where(h, a.cfg.DefaultsFile), err)
		}
		if noFullSyncSet(data) {
			return fmt.Errorf("%w: %s already sets %s=1 (left by an earlier extend?): every new target would skip its full resync: remove the line, then run again", ErrCheck, where(h, a.cfg.DefaultsFile), noFullSync)
		}
	}
	return nil
}

// Mark takes the mirror out of service (new target), or runs the
// third-node steps up to the copy; see the type's doc.
func (a *siosAdapter) Mark(ctx context.Context, s *Session) error {
	if a.procedure() == procNewTarget {
		// Set before the command: if it fails half-way, Cleanup's
		// in_service is harmless, a mirror left out of service is not.
		a.outOfService = true
		if _, err := a.cfg.OutOfService.Run(ctx, s); err != nil {
			return err
		}
		a.mark = s.Time()
		return nil
	}
	tn := a.cfg.ThirdNode
	if err := a.setNoFullSyncEverywhere(ctx, s); err != nil {
		return err
	}
	if _, err := a.cfg.Extend.Run(ctx, s); err != nil {
		return err
	}
	// The setting's job (a newly added target without a forced full
	// resync) is done: take it away before the days in transit.
	if err := s.RestoreAll(ctx); err != nil {
		return err
	}
	if err := a.mirrorAction(ctx, s, "pause", tn.Target); err != nil {
		return err
	}
	a.mark = s.Time()
	if err := runAll(ctx, s, tn.StopTarget); err != nil {
		return err
	}
	if tn.CopyFrom == "first_target" {
		// Set before the command: if it fails half-way, Cleanup's resume
		// is harmless, a first target left paused is not.
		a.firstPaused = true
		if err := a.mirrorAction(ctx, s, "pause", tn.FirstTarget); err != nil {
			return err
		}
		return runAll(ctx, s, tn.StopFirstTarget)
	}
	a.outOfService = true
	_, err := a.cfg.OutOfService.Run(ctx, s)
	return err
}

// PostCapture clears the bitmap and brings the mirror back in service
// (new target), or brings the copied system back (third node), and makes
// the token.
func (a *siosAdapter) PostCapture(ctx context.Context, s *Session) (*Token, error) {
	t := &Token{Adapter: "sios", Mark: a.mark, Fields: map[string]string{siosProcedure: a.procedure(), siosSource: a.cfg.Source}}
	switch a.procedure() {
	case procNewTarget:
		if _, err := s.Do(ctx, a.cfg.Source, a.bin("bitmap"), "-c", a.cfg.BitmapFile); err != nil {
			return nil, err
		}
		t.Fields[siosBitmapFile] = a.cfg.BitmapFile
		t.Fields[siosBitmapCleared] = s.Time().Format(time.RFC3339Nano)
		if err := a.inService(ctx, s); err != nil {
			return nil, err
		}
	case procThirdFromSrc:
		if err := a.inService(ctx, s); err != nil {
			return nil, err
		}
	case procThirdFromFirst:
		if err := a.mirrorAction(ctx, s, "resume", a.cfg.ThirdNode.FirstTarget); err != nil {
			return nil, err
		}
		a.firstPaused = false
		t.Fields[siosFirstTarget] = a.cfg.ThirdNode.FirstTarget
	}
	if a.cfg.Tag != "" {
		t.Fields[siosTag] = a.cfg.Tag
	}
	if tn := a.cfg.ThirdNode; tn != nil {
		t.Fields[siosTarget] = tn.Target
		t.Fields[siosPaused] = a.mark.Format(time.RFC3339Nano)
	}
	return t, nil
}

func (a *siosAdapter) inService(ctx context.Context, s *Session) error {
	if _, err := a.cfg.InService.Run(ctx, s); err != nil {
		return err
	}
	a.outOfService = false
	return nil
}

// PreExtend checks the token against the configuration (same procedure,
// bitmap file, tag and hosts), for the third node that the mirror to the
// new target is still paused, then sets LKDR_NO_FULL_SYNC=1 on every
// system of the mirror.
func (a *siosAdapter) PreExtend(ctx context.Context, s *Session, t *Token, target string) error {
	want := map[string]string{siosProcedure: a.procedure(), siosSource: a.cfg.Source, siosTag: a.cfg.Tag}
	if a.procedure() == procNewTarget {
		want[siosBitmapFile] = a.cfg.BitmapFile
	} else {
		want[siosTarget] = a.cfg.ThirdNode.Target
	}
	for _, k := range sortedKeys(want) {
		if got := t.Fields[k]; got != want[k] {
			return fmt.Errorf("%w: the seed token's %s is %q, the configuration's %q: the image was not captured for this mirror and procedure", ErrCheck, k, got, want[k])
		}
	}
	if tn := a.cfg.ThirdNode; tn != nil {
		if tn.CheckPaused.IsZero() {
			s.Warnf("not checked that the mirror to %s is still paused (configure sios.third_node.check_paused): if it was resumed since the copy, the seed is stale", tn.Target)
		} else if _, err := s.Query(ctx, tn.CheckPaused.Host, tn.CheckPaused.Argv...); err != nil {
			return fmt.Errorf("%w: the mirror to %s is not paused (%w): its bitmap no longer covers the seed: start the third-node procedure again", ErrCheck, tn.Target, err)
		}
	}
	return a.setNoFullSyncEverywhere(ctx, s)
}

// Extend runs the configured extend command (new target) or resumes the
// paused mirror to the new target (third node). Cleanup restores the
// files.
func (a *siosAdapter) Extend(ctx context.Context, s *Session, t *Token, target string) error {
	if tn := a.cfg.ThirdNode; tn != nil {
		return a.mirrorAction(ctx, s, "resume", tn.Target)
	}
	_, err := a.cfg.Extend.Run(ctx, s)
	return err
}

// Cleanup brings back what a failed or interrupted capture left: the
// mirror in service, the first target resumed; and restores every
// LifeKeeper defaults file.
func (a *siosAdapter) Cleanup(ctx context.Context, s *Session) error {
	var errs []error
	if a.outOfService {
		if err := a.inService(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("bring the mirror back in service: %w", err))
		}
	}
	if a.firstPaused {
		if err := a.mirrorAction(ctx, s, "resume", a.cfg.ThirdNode.FirstTarget); err != nil {
			errs = append(errs, fmt.Errorf("resume the first target: %w", err))
		} else {
			a.firstPaused = false
		}
	}
	if err := s.RestoreAll(ctx); err != nil {
		errs = append(errs, err)
	}
	return joinErrs(errs)
}

// setNoFullSyncEverywhere sets LKDR_NO_FULL_SYNC=1 on every host, each
// edit registered for RestoreAll as soon as it is made.
func (a *siosAdapter) setNoFullSyncEverywhere(ctx context.Context, s *Session) error {
	for _, h := range a.hosts {
		var original []byte
		edit := func(old []byte) ([]byte, error) {
			original = bytes.Clone(old)
			return setNoFullSync(old), nil
		}
		revert := func(cur []byte) ([]byte, error) { return revertNoFullSync(cur, original), nil }
		if err := s.EditFileReversible(ctx, h, a.cfg.DefaultsFile, edit, revert); err != nil {
			return err
		}
	}
	return nil
}

// noFullSyncLine matches an assignment of LKDR_NO_FULL_SYNC in the
// defaults file (a shell fragment), capturing the value.
var noFullSyncLine = regexp.MustCompile(`^[ \t]*(?:export[ \t]+)?LKDR_NO_FULL_SYNC[ \t]*=[ \t]*["']?([^"'\s#]*)`)

// noFullSyncSet reports whether the file's last assignment sets it to 1
// (the shell keeps the last).
func noFullSyncSet(data []byte) bool {
	set := false
	for _, line := range bytes.Split(data, []byte("\n")) {
		if m := noFullSyncLine.FindSubmatch(line); m != nil {
			set = string(m[1]) == "1"
		}
	}
	return set
}

// setNoFullSync rewrites every assignment to LKDR_NO_FULL_SYNC=1, or
// appends one.
func setNoFullSync(data []byte) []byte {
	lines := bytes.SplitAfter(data, []byte("\n"))
	var out bytes.Buffer
	found := false
	for _, line := range lines {
		if noFullSyncLine.Match(line) {
			found = true
			out.WriteString(noFullSync + "=1")
			if bytes.HasSuffix(line, []byte("\n")) {
				out.WriteByte('\n')
			}
			continue
		}
		out.Write(line)
	}
	if !found {
		if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
			out.WriteByte('\n')
		}
		out.WriteString(noFullSync + "=1\n")
	}
	return out.Bytes()
}

// revertNoFullSync takes seedship's setting out of cur, a defaults file
// someone else changed since: every assignment becomes the original's
// first one again, or goes if the original had none.
func revertNoFullSync(cur, original []byte) []byte {
	var orig []byte
	for _, line := range bytes.SplitAfter(original, []byte("\n")) {
		if noFullSyncLine.Match(line) {
			orig = bytes.TrimSuffix(line, []byte("\n"))
			break
		}
	}
	var out bytes.Buffer
	for _, line := range bytes.SplitAfter(cur, []byte("\n")) {
		if noFullSyncLine.Match(line) {
			if orig != nil {
				out.Write(orig)
				if bytes.HasSuffix(line, []byte("\n")) {
					out.WriteByte('\n')
				}
			}
			continue
		}
		out.Write(line)
	}
	return out.Bytes()
}

// runAll runs commands in order, stopping at the first failure.
func runAll(ctx context.Context, s *Session, cmds []Command) error {
	for _, c := range cmds {
		if _, err := c.Run(ctx, s); err != nil {
			return err
		}
	}
	return nil
}
