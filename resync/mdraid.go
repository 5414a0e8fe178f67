package resync

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// The mdraid adapter: Linux md RAID1 with a write-intent bitmap, seeded
// from one of its own members.
//
// What the operator does before the capture, on the system with the
// array: give the array a write-intent bitmap with a fine chunk (mdadm
// --grow ARRAY --bitmap=internal --bitmap-chunk=4M; see the coarse-bitmap
// warning), add the seed disk as an extra active member (mdadm ARRAY --add
// DEV, then mdadm --grow ARRAY --raid-devices=N+1) and let the local
// recovery finish (mdadm --wait ARRAY). Then `seedship capture --adapter
// mdraid` with the seed disk as the source.
//
// What the adapter does and checks. Preflight, on both sides: the array
// runs, is RAID1 and has a write-intent bitmap; it warns when the bitmap
// is so coarse that scattered writes resend most of the device. Mark
// checks that the seed member is an active, in-sync member, that no
// resync or recovery runs, and that another in-sync member stays; then it
// fails and removes the member in one mdadm call: the mark point. From
// then on md writes nothing to the member, and the array, degraded, keeps
// every write since in its bitmap (md clears bitmap bits only when every
// slot is in sync). The capture reads the removed member. PostCapture
// reads its superblock (mdadm --examine): the token holds the array UUID,
// the member's device UUID, its slot (role) and its event count, and the
// array's event count after the removal.
//
// Target side. The restored disk must never be assembled (an assembly
// writes its superblock, and a running array holds it). The mdadm steps
// run on the system with the array (mdraid.host, "" = the one extend runs
// on), where the target is visible as an iSCSI or NBD device or as the
// disk itself (mdraid.target names it there when extend runs elsewhere). PreExtend checks the target is in no array
// (/proc/mdstat); its superblock is the seed's (array UUID, device UUID,
// role and events equal the token's), not ahead of the array's events; the
// array is the token's, its slot still free; and the bitmap still covers
// the seed: its "events cleared" is not after the seed's events, which is
// the kernel's own condition for a bitmap-based re-add (super_1_validate).
// Extend runs `mdadm ARRAY --re-add TARGET` (never --add: that would be a
// full recovery) and checks the target is back in its slot.

const (
	mdraidDefaultMdstat = "/proc/mdstat"
	// mdraidDefaultCoarseChunk is the chunk size from which the bitmap is
	// called coarse: mdadm's default for internal bitmaps (64 MiB), where
	// one scattered 4 KiB write resends 64 MiB, 16384 times its size.
	mdraidDefaultCoarseChunk = 64 << 20
	// mdraidDefaultMinChunks: with fewer chunks than this, a few hundred
	// scattered writes (about 0.7 per chunk) already dirty half of them:
	// 1 - e^-0.7 ~ 50%.
	mdraidDefaultMinChunks = 1024
)

// mdraidConfig is the "mdraid" section of the configuration file.
type mdraidConfig struct {
	// Array is the md device (required): /dev/md0 or /dev/md/NAME.
	Array string `json:"array"`
	// Member is the seed member the capture reads (required on the
	// capture side), as the system names it.
	Member string `json:"member,omitempty"`
	// Host runs the mdadm commands ("" = this system; else a name from
	// hosts): the system with the array.
	Host string `json:"host,omitempty"`
	// Target is the restored disk as the array's system names it (an
	// iSCSI or NBD device), when extend runs on another system than the
	// array's (Host) and there sees it under another path; default: the
	// extend's TARGET.
	Target string `json:"target,omitempty"`
	// ProcMdstat is /proc/mdstat.
	ProcMdstat string `json:"proc_mdstat,omitempty"`
	// CoarseChunkBytes and MinBitmapChunks set the coarse-bitmap warning:
	// a chunk of at least CoarseChunkBytes (default 64 MiB) or fewer than
	// MinBitmapChunks chunks for the device (default 1024).
	CoarseChunkBytes int64 `json:"coarse_chunk_bytes,omitempty"`
	MinBitmapChunks  int64 `json:"min_bitmap_chunks,omitempty"`
}

// mdraidAdapter implements [Adapter] for md RAID1.
type mdraidAdapter struct {
	cfg *Config
	c   mdraidConfig

	removed  bool // Mark removed the member
	markTime time.Time
}

func init() { Register("mdraid", newMDRaidAdapter) }

func newMDRaidAdapter(cfg *Config) (Adapter, error) {
	a := &mdraidAdapter{cfg: cfg}
	if err := cfg.Section("mdraid", &a.c); err != nil {
		return nil, err
	}
	c := &a.c
	if !path.IsAbs(c.Array) {
		return nil, cfg.FieldError("mdraid.array", "missing or not an absolute path: give the md device, e.g. /dev/md0")
	}
	if c.Member != "" && !path.IsAbs(c.Member) {
		return nil, cfg.FieldError("mdraid.member", "%q is not an absolute path", c.Member)
	}
	if c.Target != "" && !path.IsAbs(c.Target) {
		return nil, cfg.FieldError("mdraid.target", "%q is not an absolute path", c.Target)
	}
	if c.Host != "" {
		if _, err := cfg.Host(c.Host); err != nil {
			return nil, cfg.FieldError("mdraid.host", "no host named %q: add it to hosts", c.Host)
		}
	}
	if c.ProcMdstat == "" {
		c.ProcMdstat = mdraidDefaultMdstat
	} else if !path.IsAbs(c.ProcMdstat) {
		return nil, cfg.FieldError("mdraid.proc_mdstat", "%q is not an absolute path", c.ProcMdstat)
	}
	if c.CoarseChunkBytes < 0 || c.MinBitmapChunks < 0 {
		return nil, cfg.FieldError("mdraid", "coarse_chunk_bytes and min_bitmap_chunks must not be negative")
	}
	if c.CoarseChunkBytes == 0 {
		c.CoarseChunkBytes = mdraidDefaultCoarseChunk
	}
	if c.MinBitmapChunks == 0 {
		c.MinBitmapChunks = mdraidDefaultMinChunks
	}
	return a, nil
}

// Name is "mdraid".
func (a *mdraidAdapter) Name() string { return "mdraid" }

func (a *mdraidAdapter) mdadm(args ...string) []string {
	return append([]string{a.cfg.Exe("mdadm")}, args...)
}

// resolve is the canonical path of dev on the configured host (readlink
// -f), the form mdadm's device table and /proc/mdstat use.
func (a *mdraidAdapter) resolve(ctx context.Context, s *Session, dev string) (string, error) {
	out, err := s.Query(ctx, a.c.Host, a.cfg.Exe("readlink"), "-f", "--", dev)
	if err != nil {
		return "", err
	}
	p := strings.TrimSpace(string(out))
	if !path.IsAbs(p) || strings.ContainsAny(p, "\n") {
		return "", fmt.Errorf("readlink -f %s printed %.60q, not a path", dev, p)
	}
	return p, nil
}

func (a *mdraidAdapter) detail(ctx context.Context, s *Session) (*mdDetail, error) {
	out, err := s.Query(ctx, a.c.Host, a.mdadm("--detail", a.c.Array)...)
	if err != nil {
		return nil, err
	}
	d, err := parseMDDetail(out)
	if err != nil {
		return nil, fmt.Errorf("mdadm --detail %s: %w", a.c.Array, err)
	}
	return d, nil
}

func (a *mdraidAdapter) examine(ctx context.Context, s *Session, dev string) (mdExamine, error) {
	out, err := s.Query(ctx, a.c.Host, a.mdadm("--examine", dev)...)
	if err != nil {
		return mdExamine{}, err
	}
	e, err := parseMDExamine(out)
	if err != nil {
		return mdExamine{}, fmt.Errorf("mdadm --examine %s: %w", dev, err)
	}
	return e, nil
}

// mdstat reads /proc/mdstat and finds the array (by its kernel name).
func (a *mdraidAdapter) mdstat(ctx context.Context, s *Session) (arrays []mdstatArray, arr mdstatArray, err error) {
	data, err := s.ReadFile(ctx, a.c.Host, a.c.ProcMdstat)
	if err != nil {
		return nil, arr, err
	}
	if arrays, err = parseMDStat(data); err != nil {
		return nil, arr, fmt.Errorf("%s: %w", a.c.ProcMdstat, err)
	}
	dev, err := a.resolve(ctx, s, a.c.Array)
	if err != nil {
		return nil, arr, err
	}
	name := path.Base(dev)
	for _, x := range arrays {
		if x.Name == name {
			return arrays, x, nil
		}
	}
	return nil, arr, &CheckError{Condition: "the array runs", Problem: fmt.Sprintf("%s (%s) is not in %s", a.c.Array, name, a.c.ProcMdstat), Fix: "assemble the array on this system, or correct mdraid.array"}
}

// Preflight checks, on both sides, that the array runs, is RAID1 and has
// a write-intent bitmap, and warns when the bitmap is coarse.
func (a *mdraidAdapter) Preflight(ctx context.Context, s *Session) error {
	if s.Side() == SideCapture && a.c.Member == "" {
		return a.cfg.FieldError("mdraid.member", "missing: the capture side needs the seed member to remove and capture")
	}
	d, err := a.detail(ctx, s)
	if err != nil {
		return err
	}
	_, arr, err := a.mdstat(ctx, s)
	if err != nil {
		return err
	}
	cond := "the array is RAID1 with a write-intent bitmap"
	switch {
	case d.Level != "raid1":
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s is %s", a.c.Array, d.Level), Fix: "the mdraid adapter seeds RAID1 arrays only"}
	case d.Bitmap == "" || arr.BitmapChunkBytes == 0:
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s has no write-intent bitmap: a removed member could only come back with a full recovery", a.c.Array), Fix: fmt.Sprintf("add one before the mark: mdadm --grow %s --bitmap=internal --bitmap-chunk=4M", a.c.Array)}
	case strings.Contains(d.Bitmap, "Clustered"):
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s has a clustered bitmap", a.c.Array), Fix: "clustered md is not supported"}
	}
	a.warnCoarse(s, arr)
	return nil
}

// warnCoarse warns when the bitmap's chunk is so coarse that scattered
// writes resend most of the device: a chunk of at least CoarseChunkBytes,
// or fewer than MinBitmapChunks chunks.
func (a *mdraidAdapter) warnCoarse(s *Session, arr mdstatArray) {
	chunk := arr.BitmapChunkBytes
	var chunks int64 = -1
	if arr.BlocksKiB > 0 {
		chunks = (arr.BlocksKiB<<10 + chunk - 1) / chunk
	}
	if chunk < a.c.CoarseChunkBytes && (chunks < 0 || chunks >= a.c.MinBitmapChunks) {
		return
	}
	count := "chunks"
	if chunks >= 0 {
		count = strconv.FormatInt(chunks, 10) + " chunks"
	}
	s.Warnf("%s's write-intent bitmap is coarse: %s of %s; every scattered write resends its whole chunk, so a few thousand scattered writes resend most of the device", a.c.Array, count, humanBytes(chunk))
	s.Warnf("before the mark, make it finer: mdadm --grow %s --bitmap=none && mdadm --grow %s --bitmap=internal --bitmap-chunk=4M; or bring the target up to date with seedship delta before the extend", a.c.Array, a.c.Array)
}

// humanBytes prints a power-of-two size.
func humanBytes(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + " " + u.name
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// Mark checks the seed member and the array, then fails and removes the
// member: the mark point.
func (a *mdraidAdapter) Mark(ctx context.Context, s *Session) error {
	member, err := a.resolve(ctx, s, a.c.Member)
	if err != nil {
		return err
	}
	d, err := a.detail(ctx, s)
	if err != nil {
		return err
	}
	_, arr, err := a.mdstat(ctx, s)
	if err != nil {
		return err
	}
	cond := "the seed member is in sync and the array keeps another in-sync member"
	m, ok := d.member(member)
	switch {
	case !ok:
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s (%s) is not a member of %s", a.c.Member, member, a.c.Array), Fix: fmt.Sprintf("add it (mdadm %s --add %s; mdadm --grow %s --raid-devices=N+1), wait for the recovery (mdadm --wait %s), capture again", a.c.Array, a.c.Member, a.c.Array, a.c.Array)}
	case !m.inSync() || m.RaidDevice < 0:
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s is %s in %s, not an active in-sync member", member, strings.Join(m.State, " "), a.c.Array), Fix: fmt.Sprintf("wait for the local recovery to finish (mdadm --wait %s)", a.c.Array)}
	case arr.Sync != "":
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s is running a %s", a.c.Array, arr.Sync), Fix: fmt.Sprintf("wait for it to finish (mdadm --wait %s)", a.c.Array)}
	case d.inSyncCount() < 2:
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s is %s's only in-sync member", member, a.c.Array), Fix: "add the seed disk as an extra member; never remove the last in-sync copy"}
	}
	if _, err := s.Do(ctx, a.c.Host, a.mdadm(a.c.Array, "--fail", a.c.Member, "--remove", a.c.Member)...); err != nil {
		return err
	}
	a.removed = true
	a.markTime = s.Time()
	if s.DryRun {
		return nil
	}
	after, err := a.detail(ctx, s)
	if err != nil {
		return err
	}
	if _, still := after.member(member); still {
		return fmt.Errorf("%w: %s is still listed in %s after --fail --remove", ErrStep, member, a.c.Array)
	}
	s.Logf("mdraid: mark point %s: %s removed from %s (slot %d); the bitmap records every write from now on", a.markTime.Format(time.RFC3339), a.c.Member, a.c.Array, m.RaidDevice)
	return nil
}

// PostCapture reads the removed member's superblock and returns the
// token.
func (a *mdraidAdapter) PostCapture(ctx context.Context, s *Session) (*Token, error) {
	if !a.removed {
		return nil, fmt.Errorf("post-capture without the mark: %s was not removed from %s", a.c.Member, a.c.Array)
	}
	e, err := a.examine(ctx, s, a.c.Member)
	if err != nil {
		return nil, err
	}
	d, err := a.detail(ctx, s)
	if err != nil {
		return nil, err
	}
	switch {
	case e.ArrayUUID != d.UUID:
		return nil, fmt.Errorf("%s's superblock names array %s, but %s is %s", a.c.Member, e.ArrayUUID, a.c.Array, d.UUID)
	case e.Events > d.Events:
		return nil, fmt.Errorf("%s's events (%d) are ahead of %s's (%d): it was written after the removal", a.c.Member, e.Events, a.c.Array, d.Events)
	}
	mark := a.markTime
	if mark.IsZero() { // dry run: nothing was removed
		mark = s.Time()
	}
	return &Token{Adapter: "mdraid", Mark: mark, Fields: map[string]string{
		"array":        a.c.Array,
		"array_uuid":   e.ArrayUUID,
		"device_uuid":  e.DeviceUUID,
		"role":         strconv.Itoa(e.Role),
		"events":       strconv.FormatUint(e.Events, 10),
		"array_events": strconv.FormatUint(d.Events, 10),
		"metadata":     e.Version,
		"member":       a.c.Member,
	}}, nil
}

// mdToken is a token's fields, checked.
type mdToken struct {
	arrayUUID, deviceUUID string
	role                  int
	events                uint64
}

func parseMDToken(t *Token) (mdToken, error) {
	bad := func(field string) error {
		return &CheckError{Condition: CondToken, Problem: fmt.Sprintf("the token's %s is %q", field, t.Fields[field]), Fix: "extend with the image captured with --adapter mdraid"}
	}
	var mt mdToken
	var err error
	if mt.arrayUUID, err = mdUUID("array_uuid", t.Fields["array_uuid"]); err != nil {
		return mt, bad("array_uuid")
	}
	if mt.deviceUUID, err = mdUUID("device_uuid", t.Fields["device_uuid"]); err != nil {
		return mt, bad("device_uuid")
	}
	if mt.role, err = strconv.Atoi(t.Fields["role"]); err != nil || mt.role < 0 {
		return mt, bad("role")
	}
	if mt.events, err = strconv.ParseUint(t.Fields["events"], 10, 64); err != nil {
		return mt, bad("events")
	}
	return mt, nil
}

// onHost is the target as the array's system names it.
func (a *mdraidAdapter) onHost(target string) string {
	if a.c.Target != "" {
		return a.c.Target
	}
	return target
}

// PreExtend checks the target and the array against the token (see the
// adapter's description); it changes nothing.
func (a *mdraidAdapter) PreExtend(ctx context.Context, s *Session, t *Token, target string) error {
	mt, err := parseMDToken(t)
	if err != nil {
		return err
	}
	if target = a.onHost(target); target == "" {
		return fmt.Errorf("%w: no target device", ErrConfig)
	}
	dev, err := a.resolve(ctx, s, target)
	if err != nil {
		return err
	}
	arrays, _, err := a.mdstat(ctx, s)
	if err != nil {
		return err
	}
	for _, x := range arrays {
		for _, m := range x.Members {
			if m == path.Base(dev) {
				return &CheckError{Condition: "the target was never assembled", Problem: fmt.Sprintf("%s is a member of %s", target, x.Name), Fix: fmt.Sprintf("stop %s (mdadm --stop /dev/%s), check the target against the image again (its superblock may have changed), then extend; keep the seed from being assembled (AUTO -all in mdadm.conf)", x.Name, x.Name)}
			}
		}
	}
	e, err := a.examine(ctx, s, target)
	if err != nil {
		return err
	}
	d, err := a.detail(ctx, s)
	if err != nil {
		return err
	}
	notSeed := func(problem string) error {
		return &CheckError{Condition: "the target holds the seed's superblock", Problem: problem, Fix: "restore the image onto the target and keep it from being assembled until the extend", Differs: true}
	}
	switch {
	case e.ArrayUUID != mt.arrayUUID:
		return notSeed(fmt.Sprintf("%s belongs to array %s, the seed to %s", target, e.ArrayUUID, mt.arrayUUID))
	case e.DeviceUUID != mt.deviceUUID:
		return notSeed(fmt.Sprintf("%s is device %s, the seed was %s", target, e.DeviceUUID, mt.deviceUUID))
	case e.Role != mt.role:
		return notSeed(fmt.Sprintf("%s is slot %d, the seed was slot %d", target, e.Role, mt.role))
	case e.Events > d.Events:
		return notSeed(fmt.Sprintf("%s's events (%d) are ahead of %s's (%d): it was assembled and written elsewhere", target, e.Events, a.c.Array, d.Events))
	case e.Events != mt.events:
		return notSeed(fmt.Sprintf("%s's events are %d, the seed's %d: its superblock changed since the capture", target, e.Events, mt.events))
	}
	cond := "the array takes the seed back into its slot"
	if d.UUID != mt.arrayUUID {
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s is array %s, the seed's is %s", a.c.Array, d.UUID, mt.arrayUUID), Fix: "set mdraid.array to the array the seed was captured from"}
	}
	if mt.role >= d.RaidDevices {
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s has %d slots, the seed was slot %d", a.c.Array, d.RaidDevices, mt.role), Fix: fmt.Sprintf("grow it back: mdadm --grow %s --raid-devices=%d", a.c.Array, mt.role+1)}
	}
	if m, taken := d.slotTaken(mt.role); taken {
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("slot %d of %s is held by %s", mt.role, a.c.Array, m.Path), Fix: "the seed's slot must be free; a re-add into another slot is a full recovery"}
	}
	var source string
	for _, m := range d.Members {
		if m.inSync() && m.Path != "" {
			source = m.Path
			break
		}
	}
	if source == "" {
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s has no in-sync member", a.c.Array), Fix: "repair the array first"}
	}
	out, err := s.Query(ctx, a.c.Host, a.mdadm("--examine-bitmap", source)...)
	if err != nil {
		return err
	}
	bm, err := parseMDBitmap(out)
	if err != nil {
		return fmt.Errorf("mdadm --examine-bitmap %s: %w", source, err)
	}
	if bm.EventsCleared > mt.events {
		return &CheckError{Condition: "the array's bitmap covers every write since the seed", Problem: fmt.Sprintf("the bitmap was cleared at event %d, after the seed's %d: md would recover the whole device", bm.EventsCleared, mt.events), Fix: "bring the target up to date with seedship delta, or take a new seed"}
	}
	s.Logf("mdraid: %s holds the seed of slot %d (events %d); %s's bitmap covers it (cleared at %d, %d bits of %s)", target, mt.role, mt.events, a.c.Array, bm.EventsCleared, bm.Bits, humanBytes(bm.ChunkBytes))
	return nil
}

// Extend re-adds the target and checks it is back in its slot.
func (a *mdraidAdapter) Extend(ctx context.Context, s *Session, t *Token, target string) error {
	mt, err := parseMDToken(t)
	if err != nil {
		return err
	}
	target = a.onHost(target)
	if _, err := s.Do(ctx, a.c.Host, a.mdadm(a.c.Array, "--re-add", target)...); err != nil {
		return fmt.Errorf("%w: never --add it instead (that is a full recovery)", err)
	}
	if s.DryRun {
		return nil
	}
	dev, err := a.resolve(ctx, s, target)
	if err != nil {
		return err
	}
	d, err := a.detail(ctx, s)
	if err != nil {
		return err
	}
	m, ok := d.member(dev)
	switch {
	case !ok:
		return fmt.Errorf("%w: %s is not in %s after --re-add", ErrStep, target, a.c.Array)
	case m.RaidDevice != mt.role:
		return fmt.Errorf("%w: %s came back as %s, not into slot %d: md is recovering it in full", ErrStep, target, strings.Join(m.State, " "), mt.role)
	}
	s.Logf("mdraid: %s is back in slot %d of %s (%s); md resyncs the chunks the bitmap marks", target, mt.role, a.c.Array, strings.Join(m.State, " "))
	return nil
}

// Cleanup changes nothing: a removed seed member stays removed (putting it
// back would resync it and spoil the seed). It says so when Mark removed
// one.
func (a *mdraidAdapter) Cleanup(ctx context.Context, s *Session) error {
	if a.removed && !s.DryRun {
		s.Logf("mdraid: %s stays removed from %s (degraded until the seed is re-added at the target, or a disk is added)", a.c.Member, a.c.Array)
	}
	return nil
}
