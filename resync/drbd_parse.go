package resync

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Parsers of what the DRBD tools print. Each takes the tool's output as
// hostile text (a wrong binary, a changed format, a truncated pipe) and
// either returns the facts the adapter needs or an error naming what was
// missing; none trusts a field it did not find.

// errDRBDFormat marks output the DRBD parsers do not understand.
var errDRBDFormat = errors.New("unexpected output")

// drbdUUIDMask clears bit 0 of a generation UUID: DRBD uses it as a flag
// (the node was primary when it made the UUID) and ignores it when it
// compares UUIDs, and so must we.
const drbdUUIDMask = ^uint64(1)

// sameDRBDUUID reports whether two generation UUIDs name the same data
// generation (bit 0 ignored, as DRBD's uuid_compare does).
func sameDRBDUUID(a, b uint64) bool { return a&drbdUUIDMask == b&drbdUUIDMask }

// formatDRBDUUID prints a UUID as the DRBD tools do (16 upper-case hex
// digits).
func formatDRBDUUID(u uint64) string { return fmt.Sprintf("%016X", u) }

// parseDRBDUUID parses a UUID as get-gi prints it: 16 hex digits (dump-md
// prints "0x" before them; its callers strip that).
func parseDRBDUUID(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("%w: UUID %q is not 16 hex digits", errDRBDFormat, s)
	}
	u, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: UUID %q is not hex", errDRBDFormat, s)
	}
	return u, nil
}

// drbdGI is the generation identifiers `drbdadm get-gi` prints: the
// current UUID, the bitmap UUID (for DRBD 9, of the peer slot named in the
// command) and two history UUIDs, followed by flags.
type drbdGI struct {
	Current, Bitmap uint64
	History         [2]uint64
}

// parseDRBDGetGI parses one line of `drbdadm get-gi`: DRBD 8.4 prints 4
// UUIDs and 7 flags (11 colon-separated fields), DRBD 9 4 UUIDs, 7
// device flags and 5 peer flags (16 fields).
func parseDRBDGetGI(out []byte) (drbdGI, error) {
	line := strings.TrimSpace(string(out))
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		return drbdGI{}, fmt.Errorf("%w: get-gi printed more than one line", errDRBDFormat)
	}
	fields := strings.Split(line, ":")
	if len(fields) != 11 && len(fields) != 16 {
		return drbdGI{}, fmt.Errorf("%w: get-gi line has %d fields, want 11 (DRBD 8.4) or 16 (DRBD 9): %.80q", errDRBDFormat, len(fields), line)
	}
	var u [4]uint64
	for i := range u {
		v, err := parseDRBDUUID(fields[i])
		if err != nil {
			return drbdGI{}, fmt.Errorf("get-gi field %d: %w", i+1, err)
		}
		u[i] = v
	}
	for i, f := range fields[4:] {
		if f != "0" && f != "1" {
			return drbdGI{}, fmt.Errorf("%w: get-gi flag %d is %q, not 0 or 1", errDRBDFormat, i+1, f)
		}
	}
	return drbdGI{Current: u[0], Bitmap: u[1], History: [2]uint64{u[2], u[3]}}, nil
}

// drbdVersion reads the module version from the first line of /proc/drbd
// ("version: 8.4.11-1 (api:1/proto:86-101)", "version: 9.2.8 (api:2/...)")
// and reduces it to the adapter's two families: "8.4" or "9".
func drbdVersion(proc []byte) (family, full string, err error) {
	line, _, _ := bytes.Cut(proc, []byte("\n"))
	rest, ok := strings.CutPrefix(strings.TrimSpace(string(line)), "version:")
	if !ok {
		return "", "", fmt.Errorf("%w: /proc/drbd does not start with \"version:\"", errDRBDFormat)
	}
	full, _, _ = strings.Cut(strings.TrimSpace(rest), " ")
	switch {
	case strings.HasPrefix(full, "8.4."):
		return "8.4", full, nil
	case strings.HasPrefix(full, "9."):
		return "9", full, nil
	}
	return "", full, fmt.Errorf("%w: DRBD version %q: the drbd adapter supports 8.4 and 9", errDRBDFormat, full)
}

// drbd84Minor is one minor's entry in DRBD 8.4's /proc/drbd.
type drbd84Minor struct {
	Minor      int
	Connection string // cs: StandAlone, WFConnection, Connected, SyncTarget...
	Role       string // ro: this node's role (before the slash)
	PeerRole   string
	Disk       string // ds: this node's disk state
	PeerDisk   string
	OOSKiB     int64 // oos: out of sync, KiB; -1 if not printed
	// SyncTotalKiB is the total of the running resync from the progress
	// line ("sync'ed: 17.1% (870332/1048508)K", or "...)M" in MiB above
	// 4 GiB); -1 if none.
	SyncTotalKiB int64
}

var (
	drbd84MinorLine = regexp.MustCompile(`^\s*(\d+): cs:(\S+)`)
	drbd84Synced    = regexp.MustCompile(`sync'ed: *[0-9.]+% \((\d+)/(\d+)\)([KM])`)
)

// parseDRBD84Proc parses DRBD 8.4's /proc/drbd and returns the entry of
// minor, or ok false if the minor is not listed (or "Unconfigured": the
// resource is down).
func parseDRBD84Proc(proc []byte, minor int) (m drbd84Minor, ok bool, err error) {
	sc := bufio.NewScanner(bytes.NewReader(proc))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	in := false
	for sc.Scan() {
		line := sc.Text()
		if g := drbd84MinorLine.FindStringSubmatch(line); g != nil {
			if in {
				break // the next minor: ours is complete
			}
			n, err := strconv.Atoi(g[1])
			if err != nil || n != minor {
				continue
			}
			if g[2] == "Unconfigured" {
				return drbd84Minor{}, false, nil
			}
			in = true
			m = drbd84Minor{Minor: n, OOSKiB: -1, SyncTotalKiB: -1}
		}
		if !in {
			continue
		}
		if g := drbd84Synced.FindStringSubmatch(line); g != nil {
			total, err := strconv.ParseInt(g[2], 10, 64)
			if err != nil || total > 1<<40 {
				return drbd84Minor{}, false, fmt.Errorf("%w: /proc/drbd minor %d: progress total %q", errDRBDFormat, minor, g[2])
			}
			if g[3] == "M" { // the kernel prints a resync of more than 4 GiB in MiB
				total <<= 10
			}
			m.SyncTotalKiB = total
			continue
		}
		for _, tok := range strings.Fields(line) {
			k, v, found := strings.Cut(tok, ":")
			if !found {
				continue
			}
			switch k {
			case "cs":
				m.Connection = v
			case "ro":
				m.Role, m.PeerRole, _ = strings.Cut(v, "/")
			case "ds":
				m.Disk, m.PeerDisk, _ = strings.Cut(v, "/")
			case "oos":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 0 {
					return drbd84Minor{}, false, fmt.Errorf("%w: /proc/drbd minor %d: oos:%s", errDRBDFormat, minor, v)
				}
				m.OOSKiB = n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return drbd84Minor{}, false, fmt.Errorf("%w: /proc/drbd: %v", errDRBDFormat, err)
	}
	if !in {
		return drbd84Minor{}, false, nil
	}
	if m.Connection == "" || m.Role == "" || m.Disk == "" {
		return drbd84Minor{}, false, fmt.Errorf("%w: /proc/drbd minor %d lacks the cs, ro or ds field", errDRBDFormat, minor)
	}
	return m, true, nil
}

// drbd9Status is one resource as `drbdsetup status RES --verbose
// --statistics` prints it (DRBD 9).
type drbd9Status struct {
	Name    string
	NodeID  int // -1 if not printed
	Role    string
	Devices []drbd9Device
	Conns   []drbd9Conn
}

type drbd9Device struct {
	Volume  int
	Minor   int    // -1 if not printed
	Disk    string // UpToDate, Inconsistent, Diskless...
	SizeKiB int64  // -1 if not printed (needs --verbose --statistics)
}

type drbd9Conn struct {
	Name   string // "" for a connection printed without a name
	NodeID int    // -1 if not printed
	// State is the connection state; the tool leaves it out when it is
	// Connected (without --verbose), so "" reads as Connected.
	State string
	Role  string
	Peers []drbd9PeerDevice
}

type drbd9PeerDevice struct {
	Volume int
	// Replication is the replication state (Established, SyncTarget...);
	// the tool leaves it out when it is Off or Established (without
	// --verbose), so "" reads as not resyncing.
	Replication string
	PeerDisk    string
	OOSKiB      int64   // out-of-sync, KiB; -1 if not printed
	Done        float64 // percent of the running resync done; -1 if not printed
}

// connected reports whether the connection is established.
func (c drbd9Conn) connected() bool { return c.State == "" || c.State == "Connected" }

// device returns the resource's device of volume vol.
func (st *drbd9Status) device(vol int) (drbd9Device, bool) {
	for _, d := range st.Devices {
		if d.Volume == vol {
			return d, true
		}
	}
	return drbd9Device{}, false
}

// peerDevice returns connection c's peer device of volume vol.
func (c drbd9Conn) peerDevice(vol int) (drbd9PeerDevice, bool) {
	for _, p := range c.Peers {
		if p.Volume == vol {
			return p, true
		}
	}
	return drbd9PeerDevice{}, false
}

// parseDRBD9Status parses `drbdsetup status RES [--verbose]
// [--statistics]` for one resource. The tool wraps its lines at the
// terminal's width and leaves fields out by verbosity, so the parser reads
// a stream of words instead of lines: the first word is the resource's
// name; a word without a colon starts a connection (its name); "volume:N"
// starts a device before the first connection and a peer device after it;
// "node-id:N" after a device or peer device starts a connection printed
// without a name; every other key:value word belongs to what was started
// last.
func parseDRBD9Status(out []byte) (*drbd9Status, error) {
	words := strings.Fields(string(out))
	if len(words) == 0 {
		return nil, fmt.Errorf("%w: empty status", errDRBDFormat)
	}
	if strings.Contains(words[0], ":") {
		return nil, fmt.Errorf("%w: status does not start with a resource name: %.40q", errDRBDFormat, words[0])
	}
	st := &drbd9Status{Name: words[0], NodeID: -1}
	const (
		inResource = iota
		inDevice
		inConn
		inPeer
	)
	where := inResource
	dev := func() *drbd9Device { return &st.Devices[len(st.Devices)-1] }
	conn := func() *drbd9Conn { return &st.Conns[len(st.Conns)-1] }
	peer := func() *drbd9PeerDevice { c := conn(); return &c.Peers[len(c.Peers)-1] }
	newConn := func(name string) {
		st.Conns = append(st.Conns, drbd9Conn{Name: name, NodeID: -1})
		where = inConn
	}
	newPeer := func(vol int) {
		c := conn()
		c.Peers = append(c.Peers, drbd9PeerDevice{Volume: vol, OOSKiB: -1, Done: -1})
		where = inPeer
	}
	newDevice := func(vol int) {
		st.Devices = append(st.Devices, drbd9Device{Volume: vol, Minor: -1, SizeKiB: -1})
		where = inDevice
	}
	for _, w := range words[1:] {
		k, v, ok := strings.Cut(w, ":")
		if !ok {
			newConn(w)
			continue
		}
		if v == "" {
			return nil, fmt.Errorf("%w: status word %q has no value", errDRBDFormat, w)
		}
		switch k {
		case "volume":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%w: status word %q", errDRBDFormat, w)
			}
			if len(st.Conns) == 0 {
				newDevice(n)
			} else {
				newPeer(n)
			}
			continue
		case "node-id":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%w: status word %q", errDRBDFormat, w)
			}
			switch {
			case where == inResource && st.NodeID < 0:
				st.NodeID = n
			case where == inConn && conn().NodeID < 0:
				conn().NodeID = n
			default:
				newConn("")
				conn().NodeID = n
			}
			continue
		}
		// The tool leaves volume 0 out when it is the only one.
		switch {
		case where == inResource && (k == "disk" || k == "minor"):
			newDevice(0)
		case where == inConn && (k == "replication" || k == "peer-disk"):
			newPeer(0)
		}
		var err error
		switch where {
		case inResource:
			if k == "role" {
				st.Role = v
			}
		case inDevice:
			d := dev()
			switch k {
			case "disk":
				d.Disk = v
			case "minor":
				d.Minor, err = parseNonNegInt(v)
			case "size":
				d.SizeKiB, err = parseNonNegInt64(v)
			}
		case inConn:
			c := conn()
			switch k {
			case "connection":
				c.State = v
			case "role":
				c.Role = v
			}
		case inPeer:
			p := peer()
			switch k {
			case "replication":
				p.Replication = v
			case "peer-disk":
				p.PeerDisk = v
			case "out-of-sync":
				p.OOSKiB, err = parseNonNegInt64(v)
			case "done":
				p.Done, err = strconv.ParseFloat(v, 64)
				if err == nil && (p.Done < 0 || p.Done > 100) {
					err = errors.New("out of range")
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: status word %q: %v", errDRBDFormat, w, err)
		}
	}
	if st.Role == "" {
		return nil, fmt.Errorf("%w: status of %s has no role", errDRBDFormat, st.Name)
	}
	return st, nil
}

func parseNonNegInt(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err == nil && n < 0 {
		err = errors.New("negative")
	}
	return n, err
}

func parseNonNegInt64(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err == nil && n < 0 {
		err = errors.New("negative")
	}
	return n, err
}

// drbdMetaDump is the header of `drbdadm dump-md` (drbdmeta's dump of the
// on-disk metadata): what the adapter checks and edits. The bitmap that
// follows is not parsed.
type drbdMetaDump struct {
	Format  string // "v08" (DRBD 8.4) or "v09" (DRBD 9)
	NodeID  int    // v09 only; -1 for v08
	Current uint64
	// Bitmap is the v08 bitmap UUID (its single peer); v09 keeps one per
	// peer slot in Peers.
	Bitmap uint64
	Peers  map[int]drbdMetaPeer // v09: peer slots by node-id
}

type drbdMetaPeer struct {
	BitmapIndex int
	BitmapUUID  uint64
}

var (
	drbdMDVersion = regexp.MustCompile(`^version "(v0[89])";$`)
	drbdMDNodeID  = regexp.MustCompile(`^node-id (\d+);$`)
	drbdMDCurrent = regexp.MustCompile(`^current-uuid (0x[0-9A-Fa-f]{16});$`)
	drbdMDPeer    = regexp.MustCompile(`^peer\[(\d+)\] \{$`)
	drbdMDBmIndex = regexp.MustCompile(`^bitmap-index (-?\d+);$`)
	drbdMDBmUUID  = regexp.MustCompile(`^bitmap-uuid (0x[0-9A-Fa-f]{16});$`)
	drbdMDV08UUID = regexp.MustCompile(`^(0x[0-9A-Fa-f]{16}); (0x[0-9A-Fa-f]{16}); 0x[0-9A-Fa-f]{16}; 0x[0-9A-Fa-f]{16};$`)
)

// drbdMaxPeerSlots is DRBD_NODE_ID_MAX: drbdmeta dumps this many peer
// slots.
const drbdMaxPeerSlots = 32

// parseDRBDMetaDump parses the header of a dump-md: up to the history
// UUIDs (v09) or the uuid block (v08). It may be given only the first
// part of a dump (the bitmap after the header can be large).
func parseDRBDMetaDump(dump []byte) (*drbdMetaDump, error) {
	md := &drbdMetaDump{NodeID: -1}
	sc := bufio.NewScanner(bytes.NewReader(dump))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	curPeer := -1
	inV08 := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		switch {
		case md.Format == "":
			g := drbdMDVersion.FindStringSubmatch(line)
			if g == nil {
				return nil, fmt.Errorf("%w: dump-md does not start with a version line: %.60q", errDRBDFormat, line)
			}
			md.Format = g[1]
		case strings.HasPrefix(line, "This_is_an_unclean"):
			// drbdmeta --force marks an unclean dump (activity log not
			// applied); the header is still right.
		case md.Format == "v08" && line == "uuid {":
			inV08 = true
		case inV08:
			if g := drbdMDV08UUID.FindStringSubmatch(line); g != nil {
				md.Current, _ = parseDRBDUUID(g[1][2:])
				md.Bitmap, _ = parseDRBDUUID(g[2][2:])
				return md, nil
			}
			return nil, fmt.Errorf("%w: dump-md v08 uuid block: %.60q", errDRBDFormat, line)
		case md.Format == "v09" && curPeer >= 0:
			if line == "}" {
				curPeer = -1
				continue
			}
			p := md.Peers[curPeer]
			if g := drbdMDBmIndex.FindStringSubmatch(line); g != nil {
				n, err := strconv.Atoi(g[1])
				if err != nil || n < -1 || n >= drbdMaxPeerSlots {
					return nil, fmt.Errorf("%w: dump-md bitmap-index %s", errDRBDFormat, g[1])
				}
				p.BitmapIndex = n
			} else if g := drbdMDBmUUID.FindStringSubmatch(line); g != nil {
				p.BitmapUUID, _ = parseDRBDUUID(g[1][2:])
			}
			md.Peers[curPeer] = p
		case md.Format == "v09":
			if g := drbdMDNodeID.FindStringSubmatch(line); g != nil {
				n, err := strconv.Atoi(g[1])
				if err != nil || n >= drbdMaxPeerSlots {
					return nil, fmt.Errorf("%w: dump-md node-id %s", errDRBDFormat, g[1])
				}
				md.NodeID = n
			} else if g := drbdMDCurrent.FindStringSubmatch(line); g != nil {
				md.Current, _ = parseDRBDUUID(g[1][2:])
			} else if g := drbdMDPeer.FindStringSubmatch(line); g != nil {
				n, err := strconv.Atoi(g[1])
				if err != nil || n >= drbdMaxPeerSlots {
					return nil, fmt.Errorf("%w: dump-md peer slot %s", errDRBDFormat, g[1])
				}
				if md.Peers == nil {
					md.Peers = make(map[int]drbdMetaPeer)
				}
				if _, dup := md.Peers[n]; dup {
					return nil, fmt.Errorf("%w: dump-md peer slot %d twice", errDRBDFormat, n)
				}
				md.Peers[n] = drbdMetaPeer{BitmapIndex: -1}
				curPeer = n
			} else if strings.HasPrefix(line, "history-uuids") {
				if md.NodeID < 0 || md.Current == 0 || len(md.Peers) == 0 {
					return nil, fmt.Errorf("%w: dump-md v09 header lacks node-id, current-uuid or peer slots", errDRBDFormat)
				}
				return md, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: dump-md: %v", errDRBDFormat, err)
	}
	return nil, fmt.Errorf("%w: dump-md ends before its header does", errDRBDFormat)
}

// checkDRBDNodeIDFix checks that edited is orig with the node-id moved
// from one node to another as the DRBD 9 user's guide's truck-based
// replication procedure does it: node-id from -> to, and the peer slots
// of the two nodes exchanged (each keeps its bitmap index and UUID), every
// other slot unchanged.
func checkDRBDNodeIDFix(orig, edited *drbdMetaDump, from, to int) error {
	switch {
	case orig.NodeID != from:
		return fmt.Errorf("the dump's node-id is %d, not %d", orig.NodeID, from)
	case edited.NodeID != to:
		return fmt.Errorf("the edited dump's node-id is %d, not %d", edited.NodeID, to)
	case edited.Current != orig.Current:
		return fmt.Errorf("the edited dump's current UUID changed")
	case len(edited.Peers) != len(orig.Peers):
		return fmt.Errorf("the edited dump has %d peer slots, the original %d", len(edited.Peers), len(orig.Peers))
	}
	for n, p := range orig.Peers {
		m := n
		switch n {
		case from:
			m = to
		case to:
			m = from
		}
		q, ok := edited.Peers[m]
		if !ok || q != p {
			return fmt.Errorf("the edited dump's peer slot %d is not the original's slot %d", m, n)
		}
	}
	return nil
}

// drbdNodeIDSedArgs are the sed expressions of the DRBD 9 user's guide
// ("Using truck-based replication") that move the metadata's node-id from
// one node to another and exchange the two nodes' peer slots.
func drbdNodeIDSedArgs(from, to int) []string {
	return []string{
		"-e", fmt.Sprintf("s/^node-id %d;/node-id %d;/", from, to),
		"-e", fmt.Sprintf(`s/^peer\[%d\] /peer-NEW /`, from),
		"-e", fmt.Sprintf(`s/^peer\[%d\] /peer[%d] /`, to, from),
		"-e", fmt.Sprintf("s/^peer-NEW /peer[%d] /", to),
	}
}

// parseDRBDUpDryRun reads what `drbdadm -d up RES` prints (the commands
// it would run; nothing runs), drbdadm's reading of drbd.conf for this
// host: this node's node-id from "drbdsetup new-resource RES NODE-ID",
// and the peers' node-ids from "drbdsetup new-peer RES NODE-ID
// --_name=NAME" (the names, "" if not printed).
func parseDRBDUpDryRun(out []byte, res string) (self int, peers map[int]string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	self = -1
	peers = make(map[int]string)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) < 4 || (w[0] != "drbdsetup" && !strings.HasSuffix(w[0], "/drbdsetup")) || w[2] != res {
			continue
		}
		if w[1] != "new-resource" && w[1] != "new-peer" {
			continue
		}
		n, err := strconv.Atoi(w[3])
		if err != nil || n < 0 || n >= drbdMaxPeerSlots {
			return -1, nil, fmt.Errorf("%w: drbdadm -d up: node-id %q", errDRBDFormat, w[3])
		}
		if w[1] == "new-peer" {
			name := ""
			for _, o := range w[4:] {
				if v, ok := strings.CutPrefix(o, "--_name="); ok {
					name = v
				}
			}
			peers[n] = name
			continue
		}
		if self >= 0 && self != n {
			return -1, nil, fmt.Errorf("%w: drbdadm -d up names two node-ids for %s", errDRBDFormat, res)
		}
		self = n
	}
	if self < 0 {
		return -1, nil, fmt.Errorf("%w: drbdadm -d up prints no \"drbdsetup new-resource %s NODE-ID\"", errDRBDFormat, res)
	}
	if _, dup := peers[self]; dup {
		return -1, nil, fmt.Errorf("%w: drbdadm -d up: node-id %d is this node and a peer", errDRBDFormat, self)
	}
	return self, peers, nil
}
