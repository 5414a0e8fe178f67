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

// Parsers of what mdadm and the md driver print: `mdadm --examine DEV`
// (1.x superblocks), `mdadm --detail ARRAY`, `mdadm --examine-bitmap DEV`
// and /proc/mdstat, each shaped after mdadm's super1.c, Detail.c and
// bitmap.c and the kernel's md.c and md-bitmap.c. Hostile text in, facts
// out or an error naming what was missing.

// errMDFormat marks output the md parsers do not understand.
var errMDFormat = errors.New("unexpected output")

// mdColonFields reads "Key : value" lines (mdadm pads the key to align the
// colons); the first occurrence of a key wins.
func mdColonFields(out []byte, stop func(line string) bool) map[string]string {
	fields := make(map[string]string)
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if stop != nil && stop(line) {
			break
		}
		k, v, ok := strings.Cut(line, " : ")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, dup := fields[k]; !dup && k != "" {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields
}

var mdUUIDPattern = regexp.MustCompile(`^[0-9a-f]{8}:[0-9a-f]{8}:[0-9a-f]{8}:[0-9a-f]{8}$`)

func mdUUID(what, v string) (string, error) {
	if !mdUUIDPattern.MatchString(v) {
		return "", fmt.Errorf("%w: %s %q is not an md UUID", errMDFormat, what, v)
	}
	return v, nil
}

func mdUint(what, v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a number", errMDFormat, what, v)
	}
	return n, nil
}

// mdExamine is what `mdadm --examine DEV` says of a member's 1.x
// superblock.
type mdExamine struct {
	Version    string // "1.0", "1.1", "1.2"
	ArrayUUID  string
	DeviceUUID string
	Level      string
	Events     uint64
	Role       int // the active slot; a spare or replacement is an error
}

var mdActiveRole = regexp.MustCompile(`^Active device (\d+)$`)

// parseMDExamine parses `mdadm --examine DEV` of a 1.x superblock. A
// spare, a replacement, a bad checksum and 0.90 metadata are errors: none
// of them can be re-added as the seed of its slot.
func parseMDExamine(out []byte) (mdExamine, error) {
	f := mdColonFields(out, nil)
	var e mdExamine
	e.Version = f["Version"]
	if !strings.HasPrefix(e.Version, "1.") {
		return e, fmt.Errorf("%w: superblock version %q: the mdraid adapter supports 1.x metadata", errMDFormat, e.Version)
	}
	var err error
	if e.ArrayUUID, err = mdUUID("Array UUID", f["Array UUID"]); err != nil {
		return e, err
	}
	if e.DeviceUUID, err = mdUUID("Device UUID", f["Device UUID"]); err != nil {
		return e, err
	}
	if e.Events, err = mdUint("Events", f["Events"]); err != nil {
		return e, err
	}
	if cs := f["Checksum"]; !strings.HasSuffix(cs, " - correct") {
		return e, fmt.Errorf("%w: superblock checksum %q is not correct", errMDFormat, cs)
	}
	e.Level = f["Raid Level"]
	g := mdActiveRole.FindStringSubmatch(f["Device Role"])
	if g == nil {
		return e, fmt.Errorf("%w: device role %q is not an active slot", errMDFormat, f["Device Role"])
	}
	if e.Role, err = strconv.Atoi(g[1]); err != nil {
		return e, fmt.Errorf("%w: device role %q", errMDFormat, f["Device Role"])
	}
	return e, nil
}

// mdDetail is what `mdadm --detail ARRAY` says of a running array.
type mdDetail struct {
	Version     string
	Level       string
	RaidDevices int
	Bitmap      string // "Internal", a bitmap file's path, or "" for none
	State       string // "clean, degraded", "active, recovering"...
	UUID        string
	Events      uint64
	Members     []mdMember
}

// mdMember is one row of the device table.
type mdMember struct {
	Number     int      // -1 for "-"
	RaidDevice int      // the slot; -1 for "-" (a spare, or a removed row)
	State      []string // "active", "sync", "spare", "rebuilding", "faulty", "removed", "writemostly"...
	Path       string   // "" for a removed slot
}

// has reports whether the row's state includes word.
func (m mdMember) has(word string) bool {
	for _, w := range m.State {
		if w == word {
			return true
		}
	}
	return false
}

// inSync reports an active, in-sync member.
func (m mdMember) inSync() bool { return m.has("active") && m.has("sync") && !m.has("faulty") }

// member finds the row of path.
func (d *mdDetail) member(path string) (mdMember, bool) {
	for _, m := range d.Members {
		if m.Path == path {
			return m, true
		}
	}
	return mdMember{}, false
}

// inSyncCount is the number of active in-sync members.
func (d *mdDetail) inSyncCount() int {
	n := 0
	for _, m := range d.Members {
		if m.inSync() {
			n++
		}
	}
	return n
}

// slotTaken reports whether a device holds slot role.
func (d *mdDetail) slotTaken(role int) (mdMember, bool) {
	for _, m := range d.Members {
		if m.RaidDevice == role && m.Path != "" && !m.has("removed") {
			return m, true
		}
	}
	return mdMember{}, false
}

// parseMDDetail parses `mdadm --detail ARRAY`.
func parseMDDetail(out []byte) (*mdDetail, error) {
	isTable := func(line string) bool { return strings.HasPrefix(strings.TrimSpace(line), "Number ") }
	f := mdColonFields(out, isTable)
	d := &mdDetail{Version: f["Version"], Level: f["Raid Level"], Bitmap: f["Intent Bitmap"], State: f["State"]}
	var err error
	if d.UUID, err = mdUUID("UUID", f["UUID"]); err != nil {
		return nil, err
	}
	if d.Events, err = mdUint("Events", f["Events"]); err != nil {
		return nil, err
	}
	n, err := mdUint("Raid Devices", f["Raid Devices"])
	if err != nil || n > 1<<16 {
		return nil, fmt.Errorf("%w: Raid Devices %q", errMDFormat, f["Raid Devices"])
	}
	d.RaidDevices = int(n)
	if d.Level == "" {
		return nil, fmt.Errorf("%w: no Raid Level", errMDFormat)
	}
	// The device table follows the "Number Major Minor RaidDevice State"
	// header: four numbers (or "-"), state words, then the path.
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	inTable := false
	for sc.Scan() {
		line := sc.Text()
		if !inTable {
			inTable = isTable(line)
			continue
		}
		words := strings.Fields(line)
		if len(words) == 0 {
			continue
		}
		if len(words) < 5 {
			return nil, fmt.Errorf("%w: device row %q", errMDFormat, line)
		}
		m := mdMember{Number: -1, RaidDevice: -1}
		for i, dst := range []*int{&m.Number, nil, nil, &m.RaidDevice} {
			if words[i] == "-" {
				continue
			}
			v, err := strconv.Atoi(words[i])
			if err != nil || v < 0 {
				return nil, fmt.Errorf("%w: device row %q", errMDFormat, line)
			}
			if dst != nil {
				*dst = v
			}
		}
		rest := words[4:]
		if last := rest[len(rest)-1]; strings.HasPrefix(last, "/") {
			m.Path = last
			rest = rest[:len(rest)-1]
		}
		m.State = rest
		if len(m.State) == 0 {
			return nil, fmt.Errorf("%w: device row %q has no state", errMDFormat, line)
		}
		d.Members = append(d.Members, m)
	}
	if !inTable {
		return nil, fmt.Errorf("%w: no device table", errMDFormat)
	}
	return d, nil
}

// mdBitmap is what `mdadm --examine-bitmap DEV` says of the write-intent
// bitmap of the array DEV belongs to.
type mdBitmap struct {
	Events        uint64
	EventsCleared uint64 // a member older than this needs a full recovery
	ChunkBytes    int64
	Bits          int64
	SyncSizeKiB   int64
}

var (
	mdChunksize  = regexp.MustCompile(`^(\d+) (B|KB|MB|GB|TB)$`)
	mdBitmapBits = regexp.MustCompile(`^(\d+) bits \(chunks\), (\d+) dirty`)
)

// parseMDBitmap parses `mdadm --examine-bitmap DEV` (a bitmap that is not
// clustered).
func parseMDBitmap(out []byte) (mdBitmap, error) {
	f := mdColonFields(out, nil)
	var b mdBitmap
	var err error
	if b.Events, err = mdUint("bitmap Events", f["Events"]); err != nil {
		return b, err
	}
	if b.EventsCleared, err = mdUint("Events Cleared", f["Events Cleared"]); err != nil {
		return b, err
	}
	g := mdChunksize.FindStringSubmatch(f["Chunksize"])
	if g == nil {
		return b, fmt.Errorf("%w: bitmap Chunksize %q", errMDFormat, f["Chunksize"])
	}
	n, err := strconv.ParseInt(g[1], 10, 64)
	if err != nil || n <= 0 || n > 1<<20 {
		return b, fmt.Errorf("%w: bitmap Chunksize %q", errMDFormat, f["Chunksize"])
	}
	b.ChunkBytes = n << map[string]int{"B": 0, "KB": 10, "MB": 20, "GB": 30, "TB": 40}[g[2]]
	g = mdBitmapBits.FindStringSubmatch(f["Bitmap"])
	if g == nil {
		return b, fmt.Errorf("%w: bitmap %q", errMDFormat, f["Bitmap"])
	}
	if b.Bits, err = strconv.ParseInt(g[1], 10, 64); err != nil || b.Bits <= 0 {
		return b, fmt.Errorf("%w: bitmap %q", errMDFormat, f["Bitmap"])
	}
	size, _, _ := strings.Cut(f["Sync Size"], " ")
	if b.SyncSizeKiB, err = strconv.ParseInt(size, 10, 64); err != nil || b.SyncSizeKiB < 0 {
		return b, fmt.Errorf("%w: bitmap Sync Size %q", errMDFormat, f["Sync Size"])
	}
	return b, nil
}

// mdstatArray is one array in /proc/mdstat.
type mdstatArray struct {
	Name    string   // "md0"
	State   string   // "active", "inactive"
	Members []string // kernel names ("sdb", "nbd0", "dm-3"), flags stripped
	// BlocksKiB is the array's size in 1 KiB blocks (-1 if not printed).
	BlocksKiB int64
	// BitmapChunkBytes is the bitmap's chunk (0: no bitmap line).
	BitmapChunkBytes int64
	// Sync is the running resync/recovery/reshape/check, "" if none.
	Sync string
}

var (
	mdstatHead   = regexp.MustCompile(`^(md\S+) : (\S+)(.*)$`)
	mdstatMember = regexp.MustCompile(`^([^\s\[\]()]+)\[\d+\](\([A-Z]\))*$`)
	mdstatBlocks = regexp.MustCompile(`^\s+(\d+) blocks`)
	mdstatBitmap = regexp.MustCompile(`^\s+bitmap: \d+/\d+ pages \[\d+KB\], (\d+)(KB|B) chunk`)
	mdstatSync   = regexp.MustCompile(`\b(recovery|resync|reshape|check|repair)\s*=`)
)

// parseMDStat parses /proc/mdstat.
func parseMDStat(out []byte) ([]mdstatArray, error) {
	var arrays []mdstatArray
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var cur *mdstatArray
	sawHeader := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Personalities :"):
			sawHeader = true
			cur = nil
		case strings.HasPrefix(line, "unused devices:"):
			cur = nil
		case mdstatHead.MatchString(line):
			g := mdstatHead.FindStringSubmatch(line)
			arrays = append(arrays, mdstatArray{Name: g[1], State: g[2], BlocksKiB: -1})
			cur = &arrays[len(arrays)-1]
			for _, w := range strings.Fields(g[3]) {
				if m := mdstatMember.FindStringSubmatch(w); m != nil {
					cur.Members = append(cur.Members, m[1])
				}
			}
		case cur == nil:
		case mdstatBlocks.MatchString(line) && cur.BlocksKiB < 0:
			n, err := strconv.ParseInt(mdstatBlocks.FindStringSubmatch(line)[1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: %s blocks %q", errMDFormat, cur.Name, line)
			}
			cur.BlocksKiB = n
		case mdstatBitmap.MatchString(line):
			g := mdstatBitmap.FindStringSubmatch(line)
			n, err := strconv.ParseInt(g[1], 10, 64)
			if err != nil || n <= 0 || n > 1<<40 {
				return nil, fmt.Errorf("%w: %s bitmap %q", errMDFormat, cur.Name, line)
			}
			if g[2] == "KB" {
				n <<= 10
			}
			cur.BitmapChunkBytes = n
		case mdstatSync.MatchString(line):
			cur.Sync = mdstatSync.FindStringSubmatch(line)[1]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: /proc/mdstat: %v", errMDFormat, err)
	}
	if !sawHeader {
		return nil, fmt.Errorf("%w: no \"Personalities :\" line: not /proc/mdstat", errMDFormat)
	}
	return arrays, nil
}
