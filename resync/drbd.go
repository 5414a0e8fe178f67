package resync

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"time"
)

// The drbd adapter: DRBD 8.4 and 9 truck-based replication, as the DRBD
// user's guides describe it ("Using truck-based replication"):
//
// Capture side, on the Primary whose resource is disconnected from every
// peer (Mark checks both before it changes anything):
//
//	drbdadm new-current-uuid --clear-bitmap RES/VOL   (Mark: the mark point)
//	the configured snapshot command                    (Mark, if configured)
//	capture of the lower device with its internal metadata (from the snapshot)
//	drbdadm new-current-uuid RES/VOL                   (PostCapture)
//	the configured snapshot removal                    (Cleanup)
//
// The first call starts a new data generation ("UUID_2") with an empty
// change map; the seed's metadata carries UUID_2 as its current UUID. The
// second call moves UUID_2 into the peer slots' bitmap UUID, so that a
// node which comes up with UUID_2 is resynced from the bitmap: only what
// changed since the mark. Without the second call both sides would carry
// the same current UUID and DRBD would resync nothing at all, a silently
// inconsistent mirror: PostCapture runs it and fails if it fails, and
// Cleanup runs it whenever Mark ran and PostCapture did not. The token
// records UUID_2 (mark_uuid), the UUIDs after the second call, the
// resource, volume, version and the source's node-id.
//
// Target side, with the restored seed under a resource that is down:
// PreExtend reads the seed's metadata (dump-md) and checks that its
// current UUID is the token's mark UUID (the seed was captured between the
// two calls), and, when source_host is configured, that the source's
// bitmap UUID for this peer is still the mark UUID (its change map was not
// reset). Extend, for DRBD 9, moves the metadata's node-id from the
// source's to this node's exactly as the DRBD 9 guide does (apply-al,
// dump-md, the guide's sed, drbdmeta verify-dump and restore-md), or with
// "metadata": "create-md" uses drbd-utils' newer way (create-md
// --initial-current-uuid=UUID_2); then `drbdadm up RES`, and it watches
// the status until the resync is known to be partial (or there is none),
// warning loudly and failing with [ErrFullResync] if a full one starts.
//
// One seed is one volume. `drbdadm up` brings every volume of the
// resource up, so the extend supports single-volume resources: with
// several volumes, each would need its seed's metadata fixed before the
// one `up`, which this adapter does not do.
//
// Which side a step runs is [Session.Side]: Preflight's checks common to
// both (version, internal metadata) run on both, the capture side's
// (Primary, disconnected) at the start of Mark, the target's in PreExtend.

// ErrFullResync marks an extend after which DRBD started a full resync:
// the seed saved nothing. The extend's error wraps it and [ErrStep].
var ErrFullResync = errors.New("resync: a full resync started")

const (
	drbdDefaultProc         = "/proc/drbd"
	drbdDefaultSysBlock     = "/sys/block"
	drbdDefaultWorkDir      = "/var/tmp"
	drbdDefaultWatchTimeout = 2 * time.Minute
	drbdDefaultPoll         = 2 * time.Second
	// drbdDefaultFullPercent: a resync of at least this share of the
	// device counts as full. A partial resync that covers 99% of the
	// device saved nothing either.
	drbdDefaultFullPercent = 99.0
	// drbdDumpHead is how much of a metadata dump is read back to check
	// its header (the node-id and peer slots are in the first few KiB; the
	// bitmap after them can be large).
	drbdDumpHead = 64 << 10
)

// drbdConfig is the "drbd" section of the configuration file.
type drbdConfig struct {
	// Resource is the DRBD resource (required).
	Resource string `json:"resource"`
	// Volume is the volume number (default 0).
	Volume *int `json:"volume,omitempty"`
	// Version is "8.4" or "9"; empty reads it from ProcDRBD.
	Version string `json:"version,omitempty"`
	// Peer is the other node of the seed, by its name in drbd.conf: on the
	// source the new node (its bitmap slot is recorded), on the new node
	// the source (its peer device is watched). DRBD 9 only; optional.
	Peer string `json:"peer,omitempty"`
	// NodeID is this node's node-id in drbd.conf, which the target side of
	// DRBD 9 writes into the seed's metadata. Optional: PreExtend reads it
	// from drbd.conf (drbdadm -d up) and refuses a node_id that differs.
	NodeID *int `json:"node_id,omitempty"`
	// Host runs the DRBD commands ("" = this system; else a name from
	// hosts).
	Host string `json:"host,omitempty"`
	// SourceHost, on the target side, is the source's host (a name from
	// hosts): PreExtend checks there that its change map for this node
	// still starts at the mark.
	SourceHost string `json:"source_host,omitempty"`
	// ConfigFile is drbd.conf, passed to every drbdadm as -c FILE (empty:
	// drbdadm's default).
	ConfigFile string `json:"config_file,omitempty"`
	// ProcDRBD is /proc/drbd; SysBlock is /sys/block (DRBD 8.4 reads a
	// device's size there).
	ProcDRBD string `json:"proc_drbd,omitempty"`
	SysBlock string `json:"sys_block,omitempty"`
	// WorkDir holds the metadata dumps of the node-id fix (default
	// /var/tmp); they are removed afterwards.
	WorkDir string `json:"work_dir,omitempty"`
	// Metadata is how DRBD 9's target gets its metadata: "restore-md"
	// (default: the user's guide's node-id fix of the seed's own metadata)
	// or "create-md" (fresh metadata with the mark UUID as current, which
	// needs drbd-utils with create-md --initial-current-uuid).
	Metadata string `json:"metadata,omitempty"`
	// WatchTimeout bounds the watch of the status after `drbdadm up`
	// (default 2m); PollInterval is its period (default 2s). Go durations.
	WatchTimeout string `json:"watch_timeout,omitempty"`
	PollInterval string `json:"poll_interval,omitempty"`
	// FullResyncPercent: a resync of at least this share of the device is
	// reported as full (default 99).
	FullResyncPercent float64 `json:"full_resync_percent,omitempty"`
	// Snapshot is the command that makes the frozen copy of the lower
	// device the capture reads (e.g. ["lvcreate", "-s", "-n", "r0-seed",
	// "-L", "20G", "vg0/r0"]). Mark runs it right after the mark: a copy
	// made before the mark would not match the change map. SnapshotRemove
	// removes it; Cleanup runs it whenever Snapshot ran.
	Snapshot       Command `json:"snapshot,omitzero"`
	SnapshotRemove Command `json:"snapshot_remove,omitzero"`
}

// drbdAdapter implements [Adapter] for DRBD.
type drbdAdapter struct {
	cfg      *Config
	c        drbdConfig
	volume   int
	watch    time.Duration
	poll     time.Duration
	fullPct  float64
	resVol   string // "RES/VOL"
	sleep    func(context.Context, time.Duration) error
	detected string // the version family in use, once known

	// capture side
	markAttempted bool   // the first new-current-uuid ran (or was tried)
	secondDone    bool   // the second new-current-uuid succeeded
	markUUID      uint64 // UUID_2
	markTime      time.Time
	sourceNodeID  int
	snapshotTaken bool // the snapshot command ran: Cleanup removes it

	// target side
	targetNodeID int      // this node's node-id (DRBD 9), from drbd.conf
	workFiles    []string // dump files to remove
}

func init() { Register("drbd", newDRBDAdapter) }

func newDRBDAdapter(cfg *Config) (Adapter, error) {
	a := &drbdAdapter{cfg: cfg, sleep: sleepCtx, sourceNodeID: -1}
	if err := cfg.Section("drbd", &a.c); err != nil {
		return nil, err
	}
	c := &a.c
	if c.Resource == "" || strings.ContainsAny(c.Resource, "/: \t\n") {
		return nil, cfg.FieldError("drbd.resource", "missing or not a resource name: give the DRBD resource as in drbd.conf")
	}
	if c.Volume != nil {
		if *c.Volume < 0 {
			return nil, cfg.FieldError("drbd.volume", "negative: give the volume number (0 for a single-volume resource)")
		}
		a.volume = *c.Volume
	}
	a.resVol = c.Resource + "/" + strconv.Itoa(a.volume)
	switch c.Version {
	case "", "8.4", "9":
	default:
		return nil, cfg.FieldError("drbd.version", "%q: use \"8.4\", \"9\" or leave it out to read it from %s", c.Version, drbdDefaultProc)
	}
	if strings.ContainsAny(c.Peer, "/: \t\n") {
		return nil, cfg.FieldError("drbd.peer", "%q is not a node name", c.Peer)
	}
	if c.NodeID != nil && (*c.NodeID < 0 || *c.NodeID >= drbdMaxPeerSlots) {
		return nil, cfg.FieldError("drbd.node_id", "%d: DRBD node-ids are 0 to %d", *c.NodeID, drbdMaxPeerSlots-1)
	}
	for field, h := range map[string]string{"drbd.host": c.Host, "drbd.source_host": c.SourceHost} {
		if h == "" {
			continue
		}
		if _, err := cfg.Host(h); err != nil {
			return nil, cfg.FieldError(field, "no host named %q: add it to hosts", h)
		}
	}
	for field, p := range map[string]*string{"drbd.proc_drbd": &c.ProcDRBD, "drbd.sys_block": &c.SysBlock, "drbd.work_dir": &c.WorkDir} {
		if *p != "" && !path.IsAbs(*p) {
			return nil, cfg.FieldError(field, "%q is not an absolute path", *p)
		}
	}
	for field, cmd := range map[string]Command{"drbd.snapshot": c.Snapshot, "drbd.snapshot_remove": c.SnapshotRemove} {
		if !cmd.IsZero() {
			if err := cmd.Check(cfg, field); err != nil {
				return nil, err
			}
		}
	}
	if c.Snapshot.IsZero() != c.SnapshotRemove.IsZero() {
		return nil, cfg.FieldError("drbd.snapshot_remove", "give both snapshot and snapshot_remove, or neither: a snapshot left behind fills up and fails")
	}
	if c.ConfigFile != "" && !path.IsAbs(c.ConfigFile) {
		return nil, cfg.FieldError("drbd.config_file", "%q is not an absolute path", c.ConfigFile)
	}
	if c.ProcDRBD == "" {
		c.ProcDRBD = drbdDefaultProc
	}
	if c.SysBlock == "" {
		c.SysBlock = drbdDefaultSysBlock
	}
	if c.WorkDir == "" {
		c.WorkDir = drbdDefaultWorkDir
	}
	switch c.Metadata {
	case "":
		c.Metadata = "restore-md"
	case "restore-md", "create-md":
	default:
		return nil, cfg.FieldError("drbd.metadata", "%q: use \"restore-md\" (the user's guide's node-id fix) or \"create-md\"", c.Metadata)
	}
	var err error
	if a.watch, err = durationField(cfg, "drbd.watch_timeout", c.WatchTimeout, drbdDefaultWatchTimeout); err != nil {
		return nil, err
	}
	if a.poll, err = durationField(cfg, "drbd.poll_interval", c.PollInterval, drbdDefaultPoll); err != nil {
		return nil, err
	}
	a.fullPct = c.FullResyncPercent
	if a.fullPct == 0 {
		a.fullPct = drbdDefaultFullPercent
	}
	if a.fullPct < 1 || a.fullPct > 100 {
		return nil, cfg.FieldError("drbd.full_resync_percent", "%v: give a percentage from 1 to 100", c.FullResyncPercent)
	}
	return a, nil
}

// durationField parses an optional positive Go duration.
func durationField(cfg *Config, field, v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, cfg.FieldError(field, "%q is not a positive duration (e.g. \"90s\", \"5m\")", v)
	}
	return d, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Name is "drbd".
func (a *drbdAdapter) Name() string { return "drbd" }

// drbdadm is the argv of drbdadm with the configured drbd.conf.
func (a *drbdAdapter) drbdadm(args ...string) []string {
	argv := []string{a.cfg.Exe("drbdadm")}
	if a.c.ConfigFile != "" {
		argv = append(argv, "-c", a.c.ConfigFile)
	}
	return append(argv, args...)
}

// query runs a read-only DRBD command on the configured host and returns
// its output trimmed.
func (a *drbdAdapter) query(ctx context.Context, s *Session, argv ...string) (string, error) {
	out, err := s.Query(ctx, a.c.Host, argv...)
	return strings.TrimSpace(string(out)), err
}

// version is the DRBD family in use: configured, or read from /proc/drbd.
func (a *drbdAdapter) version(ctx context.Context, s *Session) (string, error) {
	if a.detected != "" {
		return a.detected, nil
	}
	if a.c.Version != "" {
		a.detected = a.c.Version
		return a.detected, nil
	}
	proc, err := s.ReadFile(ctx, a.c.Host, a.c.ProcDRBD)
	if err != nil {
		return "", fmt.Errorf("read the DRBD version: %w: load the module (modprobe drbd) or set drbd.version", err)
	}
	family, full, err := drbdVersion(proc)
	if err != nil {
		return "", fmt.Errorf("%s: %w", a.c.ProcDRBD, err)
	}
	s.Logf("drbd: DRBD %s (%s)", full, a.c.ProcDRBD)
	a.detected = family
	return family, nil
}

// Preflight checks what both sides need: the version is 8.4 or 9, the
// resource and volume are configured in drbd.conf, and the metadata is
// internal (the seed must carry it: with external metadata a copy of the
// lower device does not).
func (a *drbdAdapter) Preflight(ctx context.Context, s *Session) error {
	if _, err := a.version(ctx, s); err != nil {
		return err
	}
	idx, err := a.query(ctx, s, a.drbdadm("sh-md-idx", a.resVol)...)
	if err != nil {
		return fmt.Errorf("%s is not configured here: %w", a.resVol, err)
	}
	if idx != "internal" {
		return &CheckError{
			Condition: "the DRBD metadata is internal",
			Problem:   fmt.Sprintf("%s has meta-disk index %q: a copy of the lower device does not carry its metadata", a.resVol, idx),
			Fix:       "truck-based replication needs the metadata shipped with the data: use meta-disk internal",
		}
	}
	if s.Side() == SideCapture {
		ll, err := a.query(ctx, s, a.drbdadm("sh-ll-dev", a.resVol)...)
		if err != nil {
			return err
		}
		s.Logf("drbd: capture %s (or a snapshot of it) whole: its last part holds the internal metadata the target needs", ll)
	}
	return nil
}

// getGI reads the generation identifiers of the volume (of the peer slot
// of peer, for DRBD 9) on host.
func (a *drbdAdapter) getGI(ctx context.Context, s *Session, host, version, peer string) (drbdGI, error) {
	target := a.resVol
	if version == "9" && peer != "" {
		target = a.c.Resource + ":" + peer + "/" + strconv.Itoa(a.volume)
	}
	out, err := s.Query(ctx, host, a.drbdadm("get-gi", target)...)
	if err != nil {
		return drbdGI{}, err
	}
	gi, err := parseDRBDGetGI(out)
	if err != nil {
		return drbdGI{}, fmt.Errorf("drbdadm get-gi %s: %w", target, err)
	}
	return gi, nil
}

// minor is the volume's device minor (drbdadm sh-minor).
func (a *drbdAdapter) minor(ctx context.Context, s *Session) (int, error) {
	out, err := a.query(ctx, s, a.drbdadm("sh-minor", a.resVol)...)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(out)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("drbdadm sh-minor %s printed %.40q, not a minor number", a.resVol, out)
	}
	return n, nil
}

// status9 reads the DRBD 9 status of the resource.
func (a *drbdAdapter) status9(ctx context.Context, s *Session) (*drbd9Status, error) {
	out, err := s.Query(ctx, a.c.Host, a.cfg.Exe("drbdsetup"), "status", a.c.Resource, "--verbose", "--statistics")
	if err != nil {
		return nil, err
	}
	st, err := parseDRBD9Status(out)
	if err != nil {
		return nil, fmt.Errorf("drbdsetup status %s: %w", a.c.Resource, err)
	}
	if st.Name != a.c.Resource {
		return nil, fmt.Errorf("drbdsetup status %s: %w: it printed resource %q", a.c.Resource, errDRBDFormat, st.Name)
	}
	return st, nil
}

// proc84 reads the volume's entry in DRBD 8.4's /proc/drbd.
func (a *drbdAdapter) proc84(ctx context.Context, s *Session, minor int) (drbd84Minor, bool, error) {
	proc, err := s.ReadFile(ctx, a.c.Host, a.c.ProcDRBD)
	if err != nil {
		return drbd84Minor{}, false, err
	}
	m, ok, err := parseDRBD84Proc(proc, minor)
	if err != nil {
		return drbd84Minor{}, false, fmt.Errorf("%s: %w", a.c.ProcDRBD, err)
	}
	return m, ok, nil
}

// checkSourceState checks the capture side's preconditions of the
// truck-based procedure: the resource is Primary, its disk UpToDate, and
// it is connected to no peer (new-current-uuid --clear-bitmap works on
// disconnected devices only, and a connected peer would be told the
// cleared map).
func (a *drbdAdapter) checkSourceState(ctx context.Context, s *Session, version string) error {
	fix := fmt.Sprintf("run the capture on the Primary, with the resource disconnected (drbdadm disconnect %s)", a.c.Resource)
	cond := "the source is the Primary, UpToDate and disconnected"
	if version == "8.4" {
		minor, err := a.minor(ctx, s)
		if err != nil {
			return err
		}
		m, ok, err := a.proc84(ctx, s, minor)
		if err != nil {
			return err
		}
		switch {
		case !ok:
			return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s (minor %d) is not up", a.resVol, minor), Fix: fix}
		case m.Role != "Primary":
			return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s is %s", a.resVol, m.Role), Fix: fix}
		case m.Disk != "UpToDate":
			return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s's disk is %s", a.resVol, m.Disk), Fix: fix}
		case m.Connection != "StandAlone":
			// DRBD 8.4 refuses new-current-uuid unless StandAlone
			// (ERR_CONNECTED), WFConnection included.
			return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s's connection is %s, not StandAlone", a.resVol, m.Connection), Fix: fix}
		}
		return nil
	}
	st, err := a.status9(ctx, s)
	if err != nil {
		return err
	}
	a.sourceNodeID = st.NodeID
	dev, ok := st.device(a.volume)
	switch {
	case st.Role != "Primary":
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s is %s", a.c.Resource, st.Role), Fix: fix}
	case !ok:
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s has no volume %d", a.c.Resource, a.volume), Fix: "set drbd.volume to one of the resource's volumes"}
	case dev.Disk != "UpToDate":
		return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s's disk is %s", a.resVol, dev.Disk), Fix: fix}
	case st.NodeID < 0:
		return fmt.Errorf("drbdsetup status %s: %w: no node-id", a.c.Resource, errDRBDFormat)
	}
	if a.c.Peer == "" && len(st.Conns) != 1 {
		// get-gi reads one peer slot: with several peers, which one is
		// the new node's must be said.
		return &CheckError{Condition: "the new node is configured", Problem: fmt.Sprintf("%s has %d connections and drbd.peer is not set", a.c.Resource, len(st.Conns)), Fix: "set drbd.peer to the new node's name in drbd.conf"}
	}
	peerKnown := a.c.Peer == ""
	for _, c := range st.Conns {
		if c.connected() {
			return &CheckError{Condition: cond, Problem: fmt.Sprintf("%s is connected to %s", a.c.Resource, c.Name), Fix: fix}
		}
		if c.Name == a.c.Peer {
			peerKnown = true
		}
	}
	if !peerKnown {
		return &CheckError{Condition: "the new node is configured", Problem: fmt.Sprintf("%s has no connection to %s", a.c.Resource, a.c.Peer), Fix: "add the new node to drbd.conf (drbdadm adjust) or correct drbd.peer"}
	}
	return nil
}

// Mark checks the source's state and runs `drbdadm new-current-uuid
// --clear-bitmap RES/VOL`, then reads the new current UUID (the mark
// UUID, which the seed's metadata carries).
func (a *drbdAdapter) Mark(ctx context.Context, s *Session) error {
	version, err := a.version(ctx, s)
	if err != nil {
		return err
	}
	if err := a.checkSourceState(ctx, s, version); err != nil {
		return err
	}
	a.markAttempted = true
	if _, err := s.Do(ctx, a.c.Host, a.drbdadm("new-current-uuid", "--clear-bitmap", a.resVol)...); err != nil {
		return err
	}
	a.markTime = s.Time()
	gi, err := a.getGI(ctx, s, a.c.Host, version, a.c.Peer)
	if err != nil {
		return err
	}
	a.markUUID = gi.Current
	if s.DryRun {
		s.Logf("drbd: (dry run) the mark UUID is the new current UUID that command makes; now %s", formatDRBDUUID(gi.Current))
	} else {
		s.Logf("drbd: mark point %s: data generation %s, change map cleared", a.markTime.Format(time.RFC3339), formatDRBDUUID(gi.Current))
	}
	if a.c.Snapshot.IsZero() {
		s.Logf("drbd: no drbd.snapshot configured: the capture source must be a frozen copy of the lower device made after this mark, with its metadata")
		return nil
	}
	if _, err := a.c.Snapshot.Run(ctx, s); err != nil {
		return fmt.Errorf("the snapshot for the capture: %w", err)
	}
	a.snapshotTaken = true
	return nil
}

// secondUUID runs the second new-current-uuid, which turns the mark UUID
// into the peers' bitmap UUID.
func (a *drbdAdapter) secondUUID(ctx context.Context, s *Session) error {
	if _, err := s.Do(ctx, a.c.Host, a.drbdadm("new-current-uuid", a.resVol)...); err != nil {
		return fmt.Errorf("%w: the seed is not usable until it succeeds: run it by hand", err)
	}
	a.secondDone = true
	return nil
}

// PostCapture runs `drbdadm new-current-uuid RES/VOL` (without
// --clear-bitmap), checks that the mark UUID became the bitmap UUID, and
// returns the token.
func (a *drbdAdapter) PostCapture(ctx context.Context, s *Session) (*Token, error) {
	version, err := a.version(ctx, s)
	if err != nil {
		return nil, err
	}
	if !a.markAttempted {
		return nil, errors.New("post-capture without the mark: new-current-uuid --clear-bitmap did not run")
	}
	if err := a.secondUUID(ctx, s); err != nil {
		return nil, err
	}
	gi, err := a.getGI(ctx, s, a.c.Host, version, a.c.Peer)
	if err != nil {
		return nil, err
	}
	if !s.DryRun && !sameDRBDUUID(gi.Bitmap, a.markUUID) {
		return nil, fmt.Errorf("after new-current-uuid the bitmap UUID of %s is %s, not the mark UUID %s: DRBD would not resync the seed from the change map", a.resVol, formatDRBDUUID(gi.Bitmap), formatDRBDUUID(a.markUUID))
	}
	fields := map[string]string{
		"version":      version,
		"resource":     a.c.Resource,
		"volume":       strconv.Itoa(a.volume),
		"mark_uuid":    formatDRBDUUID(a.markUUID),
		"current_uuid": formatDRBDUUID(gi.Current),
		"bitmap_uuid":  formatDRBDUUID(gi.Bitmap),
	}
	if a.sourceNodeID >= 0 {
		fields["node_id"] = strconv.Itoa(a.sourceNodeID)
	}
	if a.c.Peer != "" {
		fields["peer"] = a.c.Peer
	}
	mark := a.markTime
	if mark.IsZero() { // dry run: the command did not run
		mark = s.Time()
	}
	return &Token{Adapter: "drbd", Mark: mark, Fields: fields}, nil
}

// drbdToken is a token's fields, checked.
type drbdToken struct {
	version  string
	volume   int
	markUUID uint64
	nodeID   int // -1 if not recorded (DRBD 8.4)
	peer     string
}

func (a *drbdAdapter) parseToken(t *Token) (drbdToken, error) {
	bad := func(problem string) error {
		return &CheckError{Condition: CondToken, Problem: problem, Fix: "extend with the image captured from this resource with --adapter drbd"}
	}
	f := t.Fields
	var dt drbdToken
	dt.version = f["version"]
	if dt.version != "8.4" && dt.version != "9" {
		return dt, bad(fmt.Sprintf("the token's DRBD version is %q", f["version"]))
	}
	if f["resource"] != a.c.Resource {
		return dt, bad(fmt.Sprintf("the token is for resource %q, not %q", f["resource"], a.c.Resource))
	}
	vol, err := strconv.Atoi(f["volume"])
	if err != nil || vol != a.volume {
		return dt, bad(fmt.Sprintf("the token is for volume %q, not %d", f["volume"], a.volume))
	}
	dt.volume = vol
	if dt.markUUID, err = parseDRBDUUID(f["mark_uuid"]); err != nil {
		return dt, bad(fmt.Sprintf("the token's mark UUID %q: %v", f["mark_uuid"], err))
	}
	dt.nodeID = -1
	if v, ok := f["node_id"]; ok {
		if dt.nodeID, err = strconv.Atoi(v); err != nil || dt.nodeID < 0 || dt.nodeID >= drbdMaxPeerSlots {
			return dt, bad(fmt.Sprintf("the token's node-id %q", v))
		}
	}
	if dt.version == "9" && dt.nodeID < 0 {
		return dt, bad("the DRBD 9 token has no node-id")
	}
	dt.peer = f["peer"]
	return dt, nil
}

// dumpMD reads the header of the volume's on-disk metadata (dump-md works
// on a detached volume; --force dumps metadata whose activity log was not
// applied, as a snapshot of a live Primary's is).
func (a *drbdAdapter) dumpMD(ctx context.Context, s *Session) (*drbdMetaDump, error) {
	out, err := s.Query(ctx, a.c.Host, a.drbdadm("--", "--force", "dump-md", a.resVol)...)
	if err != nil {
		return nil, err
	}
	md, err := parseDRBDMetaDump(out)
	if err != nil {
		return nil, fmt.Errorf("drbdadm dump-md %s: %w", a.resVol, err)
	}
	return md, nil
}

// resourceUp reports whether the resource is configured in the kernel on
// the configured host.
func (a *drbdAdapter) resourceUp(ctx context.Context, s *Session, version string) (bool, error) {
	if version == "8.4" {
		minor, err := a.minor(ctx, s)
		if err != nil {
			return false, err
		}
		_, ok, err := a.proc84(ctx, s, minor)
		return ok, err
	}
	_, err := s.Query(ctx, a.c.Host, a.cfg.Exe("drbdsetup"), "status", a.c.Resource)
	var cmdErr *CommandError
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &cmdErr) && errors.As(err, &exitErr) && exitErr.ExitCode() == 10 &&
		strings.Contains(cmdErr.Stderr, "No such resource"):
		return false, nil // drbdsetup's answer for a resource that is down
	}
	return false, err
}

// PreExtend checks, before anything changes: the token is for this
// resource and volume; the resource is down here (the seed must not have
// been attached since the restore); the restored metadata is the seed's
// (its format is the token's version, its current UUID the mark UUID,
// for DRBD 9 its node-id the source's); for DRBD 9, this node's node-id
// from drbd.conf (and drbd.node_id, if set, agrees); and, with
// source_host, the source's bitmap UUID for this node is still the mark
// UUID.
func (a *drbdAdapter) PreExtend(ctx context.Context, s *Session, t *Token, target string) error {
	dt, err := a.parseToken(t)
	if err != nil {
		return err
	}
	version, err := a.version(ctx, s)
	if err != nil {
		return err
	}
	if version != dt.version {
		return &CheckError{Condition: "the target runs the DRBD version of the seed", Problem: fmt.Sprintf("the seed is from DRBD %s, this node runs %s", dt.version, version), Fix: "extend on a node with the source's DRBD major version"}
	}
	up, err := a.resourceUp(ctx, s, version)
	if err != nil {
		return err
	}
	if up {
		return &CheckError{Condition: "the resource is down on the target", Problem: fmt.Sprintf("%s is up on this node: the restored seed may have been attached and changed", a.c.Resource), Fix: fmt.Sprintf("bring it down (drbdadm down %s), check the target against the image again, then extend", a.c.Resource)}
	}
	ll, err := a.query(ctx, s, a.drbdadm("sh-ll-dev", a.resVol)...)
	if err != nil {
		return err
	}
	if target != "" && ll != target && !a.sameDevice(ctx, s, ll, target) {
		return &CheckError{Condition: "the target is the resource's lower device", Problem: fmt.Sprintf("%s's lower device is %s, not the target %s", a.resVol, ll, target), Fix: "restore the seed onto the lower device drbd.conf names, or correct the configuration"}
	}
	md, err := a.dumpMD(ctx, s)
	if err != nil {
		// Internal metadata sits at the end of the lower device: a target
		// larger than the source hides it.
		return fmt.Errorf("read the seed's DRBD metadata: %w (the target must be exactly the size of the source's lower device, so that the seed's metadata ends where the device does)", err)
	}
	wantFormat := map[string]string{"8.4": "v08", "9": "v09"}[version]
	notSeed := func(problem string) error {
		return &CheckError{Condition: "the target holds the seed's DRBD metadata", Problem: problem, Fix: "restore the image (with the lower device's end: the metadata) onto the target, untouched, then extend", Differs: true}
	}
	switch {
	case md.Format != wantFormat:
		return notSeed(fmt.Sprintf("the metadata is %s, not %s", md.Format, wantFormat))
	case !sameDRBDUUID(md.Current, dt.markUUID):
		return notSeed(fmt.Sprintf("its current UUID is %s, not the mark UUID %s", formatDRBDUUID(md.Current), formatDRBDUUID(dt.markUUID)))
	case version == "9" && md.NodeID != dt.nodeID:
		return notSeed(fmt.Sprintf("its node-id is %d, not the source's %d", md.NodeID, dt.nodeID))
	}
	if version == "9" && a.c.Metadata == "restore-md" {
		out, err := s.Query(ctx, a.c.Host, a.drbdadm("-d", "up", a.c.Resource)...)
		if err != nil {
			return fmt.Errorf("read this node's node-id from drbd.conf: %w", err)
		}
		var peers map[int]string
		if a.targetNodeID, peers, err = parseDRBDUpDryRun(out, a.c.Resource); err != nil {
			return err
		}
		if a.c.NodeID != nil && *a.c.NodeID != a.targetNodeID {
			return a.cfg.FieldError("drbd.node_id", "%d, but drbd.conf gives this node node-id %d: correct one of them", *a.c.NodeID, a.targetNodeID)
		}
		// The node-id fix moves the source's peer slot: the source must be
		// one of this node's peers, under the node-id it had.
		if _, ok := peers[dt.nodeID]; !ok {
			return &CheckError{Condition: "drbd.conf here knows the source", Problem: fmt.Sprintf("the seed comes from node-id %d, which this node's drbd.conf does not list as a peer of %s", dt.nodeID, a.c.Resource), Fix: "use the same drbd.conf on both nodes (drbdadm adjust on the source after adding this node)"}
		}
	}
	if a.c.SourceHost != "" {
		gi, err := a.getGI(ctx, s, a.c.SourceHost, version, dt.peer)
		if err != nil {
			return fmt.Errorf("read the source's change map on %s: %w", a.c.SourceHost, err)
		}
		if !sameDRBDUUID(gi.Bitmap, dt.markUUID) {
			return &CheckError{Condition: "the source's change map covers every write since the mark", Problem: fmt.Sprintf("the source's bitmap UUID is %s, not the mark UUID %s: its change map was reset or replaced", formatDRBDUUID(gi.Bitmap), formatDRBDUUID(dt.markUUID)), Fix: "take a new seed, or bring the target up to date with seedship delta first"}
		}
		s.Logf("drbd: the source's change map on %s still starts at the mark (%s)", a.c.SourceHost, formatDRBDUUID(dt.markUUID))
	}
	s.Logf("drbd: the target holds the seed's metadata (generation %s)", formatDRBDUUID(md.Current))
	return nil
}

// sameDevice reports whether two paths name the same device on the
// configured host (symlinks resolved: /dev/vg0/r0 and /dev/mapper/vg0-r0).
func (a *drbdAdapter) sameDevice(ctx context.Context, s *Session, p, q string) bool {
	var resolved [2]string
	for i, x := range []string{p, q} {
		out, err := s.Query(ctx, a.c.Host, a.cfg.Exe("readlink"), "-f", "--", x)
		if err != nil {
			return false
		}
		resolved[i] = strings.TrimSpace(string(out))
	}
	return resolved[0] != "" && resolved[0] == resolved[1]
}

// Extend prepares the metadata (DRBD 9), brings the resource up and
// watches the resync it starts.
func (a *drbdAdapter) Extend(ctx context.Context, s *Session, t *Token, target string) error {
	dt, err := a.parseToken(t)
	if err != nil {
		return err
	}
	if dt.version == "9" {
		if a.c.Metadata == "create-md" {
			arg := "--initial-current-uuid=" + formatDRBDUUID(dt.markUUID)
			if _, err := s.Do(ctx, a.c.Host, a.drbdadm("create-md", "--force", arg, a.resVol)...); err != nil {
				return err
			}
		} else if err := a.fixNodeID(ctx, s, dt); err != nil {
			return err
		}
	}
	if _, err := s.Do(ctx, a.c.Host, a.drbdadm("up", a.c.Resource)...); err != nil {
		return err
	}
	if s.DryRun {
		s.Logf("would watch %s for up to %s: a partial resync (or none) passes, a full one fails", a.c.Resource, a.watch)
		return nil
	}
	return a.watchResync(ctx, s, dt.version)
}

// fixNodeID moves the restored metadata's node-id from the source's to
// this node's, as the DRBD 9 user's guide does it: apply the activity log,
// dump the metadata to a file, edit it with the guide's sed (node-id, and
// the two nodes' peer slots exchanged), check the edit, let drbdmeta
// verify the file, restore it.
func (a *drbdAdapter) fixNodeID(ctx context.Context, s *Session, dt drbdToken) error {
	from, to := dt.nodeID, a.targetNodeID
	if from == to {
		s.Logf("drbd: the seed's node-id is already %d", to)
		return nil
	}
	minor, err := a.query(ctx, s, a.drbdadm("sh-minor", a.resVol)...)
	if err != nil {
		return err
	}
	mdDev, err := a.query(ctx, s, a.drbdadm("sh-md-dev", a.resVol)...)
	if err != nil {
		return err
	}
	mdIdx, err := a.query(ctx, s, a.drbdadm("sh-md-idx", a.resVol)...)
	if err != nil {
		return err
	}
	if _, err := s.Do(ctx, a.c.Host, a.drbdadm("apply-al", a.resVol)...); err != nil {
		return err
	}
	base := path.Join(a.c.WorkDir, fmt.Sprintf("seedship-drbd-%s-%d", a.c.Resource, a.volume))
	orig, edited := base+".md-orig", base+".md"
	a.workFiles = append(a.workFiles, orig, edited)
	// drbdadm prints the dump; the shell only redirects it into the file
	// (the script is fixed, the words are its arguments).
	dump := append([]string{"sh", "-c", `umask 077 && exec "$@" > "$0"`, orig}, a.drbdadm("--", "--force", "dump-md", a.resVol)...)
	if _, err := s.Do(ctx, a.c.Host, dump...); err != nil {
		return err
	}
	if _, err := s.Do(ctx, a.c.Host, a.cfg.Exe("cp"), "--", orig, edited); err != nil {
		return err
	}
	sed := append(append([]string{a.cfg.Exe("sed"), "-i"}, drbdNodeIDSedArgs(from, to)...), "--", edited)
	if _, err := s.Do(ctx, a.c.Host, sed...); err != nil {
		return err
	}
	meta := func(args ...string) []string {
		return append([]string{a.cfg.Exe("drbdmeta"), "--force", minor, "v09", mdDev, mdIdx}, args...)
	}
	if s.DryRun {
		s.Logf("would check %s: node-id %d -> %d, peer slots %d and %d exchanged, nothing else changed", edited, from, to, from, to)
		s.Logf("would run %s", describe(a.c.Host, meta("verify-dump", edited)))
	} else {
		if err := a.checkEdit(ctx, s, orig, edited, from, to); err != nil {
			return err
		}
		if _, err := s.Query(ctx, a.c.Host, meta("verify-dump", edited)...); err != nil {
			return fmt.Errorf("drbdmeta refuses the edited dump %s: %w", edited, err)
		}
	}
	if _, err := s.Do(ctx, a.c.Host, meta("restore-md", edited)...); err != nil {
		// The metadata may be half written: keep both dumps for the
		// operator (restore-md of the original puts the seed's back).
		a.workFiles = nil
		return fmt.Errorf("%w: the seed's original metadata dump is kept in %s (and the edited one in %s)", err, orig, edited)
	}
	if !s.DryRun {
		s.Logf("drbd: metadata node-id %d -> %d", from, to)
	}
	return a.removeWorkFiles(ctx, s)
}

// checkEdit reads the heads of both dumps back and checks that the edit
// is exactly the node-id move.
func (a *drbdAdapter) checkEdit(ctx context.Context, s *Session, orig, edited string, from, to int) error {
	head := func(p string) (*drbdMetaDump, error) {
		out, err := s.Query(ctx, a.c.Host, a.cfg.Exe("head"), "-c", strconv.Itoa(drbdDumpHead), "--", p)
		if err != nil {
			return nil, err
		}
		md, err := parseDRBDMetaDump(out)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return md, nil
	}
	o, err := head(orig)
	if err != nil {
		return err
	}
	e, err := head(edited)
	if err != nil {
		return err
	}
	if err := checkDRBDNodeIDFix(o, e, from, to); err != nil {
		return fmt.Errorf("%w: the node-id edit of %s went wrong: %v; nothing was restored", ErrStep, edited, err)
	}
	return nil
}

func (a *drbdAdapter) removeWorkFiles(ctx context.Context, s *Session) error {
	if len(a.workFiles) == 0 {
		return nil
	}
	argv := append([]string{a.cfg.Exe("rm"), "-f", "--"}, a.workFiles...)
	if _, err := s.Do(ctx, a.c.Host, argv...); err != nil {
		return err
	}
	a.workFiles = nil
	return nil
}

// resyncReading is one look at the resync the extend started.
type resyncReading struct {
	state      string // the replication (8.4: connection) state
	syncTarget bool   // this node is receiving a resync
	done       bool   // connected and in sync: nothing (more) to resync
	refused    bool   // the peers refused each other (StandAlone)
	oosKiB     int64  // out of sync now, -1 unknown
	totalKiB   int64  // the resync's total, estimated; -1 unknown
	sizeKiB    int64  // the device's size, -1 unknown
}

// full reports whether the resync is (close to) the whole device.
func (r resyncReading) full(pct float64) bool {
	if !r.syncTarget || r.sizeKiB <= 0 {
		return false
	}
	amount := max(r.oosKiB, r.totalKiB)
	return float64(amount)*100 >= float64(r.sizeKiB)*pct
}

// watchResync polls the status after `drbdadm up` until it shows a
// partial resync (or none), a full one, a refused connection, or the
// watch times out.
func (a *drbdAdapter) watchResync(ctx context.Context, s *Session, version string) error {
	deadline := time.Now().Add(a.watch)
	minor := -1
	if version == "8.4" {
		var err error
		if minor, err = a.minor(ctx, s); err != nil {
			return err
		}
	}
	var last string
	for {
		r, err := a.readResync(ctx, s, version, minor)
		if err != nil {
			return err
		}
		last = r.state
		switch {
		case r.refused:
			s.Warnf("DRBD refused the connection of %s (StandAlone): see the kernel log (dmesg) for \"Unrelated data\" or split brain", a.c.Resource)
			return fmt.Errorf("%w: %s went StandAlone after up: the peers refused each other; nothing was resynced", ErrStep, a.c.Resource)
		case r.full(a.fullPct):
			s.Warnf("FULL RESYNC: %s is resyncing %d KiB of its %d KiB as SyncTarget: the seed is not used", a.resVol, max(r.oosKiB, r.totalKiB), r.sizeKiB)
			s.Warnf("stop it if the link cannot carry the whole device: drbdadm disconnect %s", a.c.Resource)
			return fmt.Errorf("%w: %w: %s resyncs %d of %d KiB", ErrStep, ErrFullResync, a.resVol, max(r.oosKiB, r.totalKiB), r.sizeKiB)
		case r.syncTarget && r.sizeKiB > 0 && r.oosKiB >= 0:
			s.Logf("drbd: partial resync of %s: %d KiB of %d KiB out of sync (%.2f%%)", a.resVol, r.oosKiB, r.sizeKiB, 100*float64(r.oosKiB)/float64(r.sizeKiB))
			return nil
		case r.done:
			s.Logf("drbd: %s is connected and in sync", a.resVol)
			return nil
		}
		if !time.Now().Add(a.poll).Before(deadline) {
			return fmt.Errorf("%w: %s did not reach a resync within %s (last state: %s): watch it with drbdadm status %s", ErrStep, a.resVol, a.watch, last, a.c.Resource)
		}
		if err := a.sleep(ctx, a.poll); err != nil {
			return err
		}
	}
}

// readResync takes one look at the resync.
func (a *drbdAdapter) readResync(ctx context.Context, s *Session, version string, minor int) (resyncReading, error) {
	r := resyncReading{oosKiB: -1, totalKiB: -1, sizeKiB: -1}
	if version == "8.4" {
		m, ok, err := a.proc84(ctx, s, minor)
		if err != nil {
			return r, err
		}
		if !ok {
			r.state = "down"
			return r, nil
		}
		r.state = m.Connection
		r.oosKiB, r.totalKiB = m.OOSKiB, m.SyncTotalKiB
		r.refused = m.Connection == "StandAlone"
		r.syncTarget = m.Connection == "SyncTarget" || m.Connection == "PausedSyncT" || m.Connection == "WFBitMapT" || m.Connection == "WFSyncUUID"
		r.done = m.Connection == "Connected" && m.Disk == "UpToDate" && m.PeerDisk == "UpToDate"
		size, err := s.ReadFile(ctx, a.c.Host, path.Join(a.c.SysBlock, "drbd"+strconv.Itoa(minor), "size"))
		if err != nil {
			return r, err
		}
		sectors, err := strconv.ParseInt(strings.TrimSpace(string(size)), 10, 64)
		if err != nil || sectors < 0 {
			return r, fmt.Errorf("%s/drbd%d/size: %w: %.40q is not a sector count", a.c.SysBlock, minor, errDRBDFormat, size)
		}
		r.sizeKiB = sectors / 2
		return r, nil
	}
	st, err := a.status9(ctx, s)
	if err != nil {
		return r, err
	}
	dev, ok := st.device(a.volume)
	if !ok {
		r.state = "no volume"
		return r, nil
	}
	r.sizeKiB = dev.SizeKiB
	for _, c := range st.Conns {
		if a.c.Peer != "" && c.Name != a.c.Peer {
			continue
		}
		if c.State == "StandAlone" {
			r.refused = true
		}
		p, ok := c.peerDevice(a.volume)
		if !ok {
			r.state = "connection " + c.State
			continue
		}
		r.state = "connection " + c.State + " replication " + p.Replication
		switch p.Replication {
		case "SyncTarget", "PausedSyncT", "WFBitMapT", "WFSyncUUID", "StartingSyncT":
			r.syncTarget = true
			r.oosKiB = p.OOSKiB
			if p.Done >= 0 && p.Done < 100 && p.OOSKiB >= 0 {
				// The share done says how large the resync was when it
				// began: a full one is caught even when it has run for a
				// while before the first look.
				r.totalKiB = int64(float64(p.OOSKiB) / (1 - p.Done/100))
			}
			return r, nil
		case "Established":
			r.done = c.connected() && dev.Disk == "UpToDate" && p.PeerDisk == "UpToDate"
		}
	}
	return r, nil
}

// Cleanup, on the capture side, runs the second new-current-uuid if Mark
// ran and PostCapture did not (the source must never keep the seed's
// current UUID as its own), then removes the snapshot; on the target side
// it removes the metadata dumps left by a failed node-id fix.
func (a *drbdAdapter) Cleanup(ctx context.Context, s *Session) error {
	var errs []error
	if a.markAttempted && !a.secondDone {
		s.Warnf("the capture did not finish: running the second new-current-uuid of %s anyway, or the source would keep the seed's current UUID and a peer with it would never be resynced", a.resVol)
		if err := a.secondUUID(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	if a.snapshotTaken {
		if _, err := a.c.SnapshotRemove.Run(ctx, s); err != nil {
			errs = append(errs, fmt.Errorf("remove the capture's snapshot: %w: remove it by hand", err))
		} else {
			a.snapshotTaken = false
		}
	}
	if err := a.removeWorkFiles(ctx, s); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
