package resync

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Realistic outputs of the DRBD tools, shaped after drbd-utils' printers
// (drbdsetup.c status, drbdmeta.c dump-md, get-gi) and DRBD 8.4's
// /proc/drbd. Lines longer than 80 columns wrap as drbdsetup's
// wrap_printf wraps them on a pipe.

// After the first new-current-uuid the peer's slot holds the old current
// UUID (its bitmap is cleared); after the second, the mark UUID (DRBD 9's
// rotate_current_into_bitmap, 8.4's drbd_uuid_new_current).
const drbdGI9AfterMark = "7C2F3A6B9E0D4A11:4B1D2E3F5A6C7D8F:0000000000000000:0000000000000000:1:1:1:0:1:0:0:0:0:0:0:1\n"
const drbdGI9AfterSecond = "5E6F708192A3B4C5:7C2F3A6B9E0D4A10:4B1D2E3F5A6C7D8E:0000000000000000:1:1:1:0:1:0:0:0:0:0:0:1\n"
const drbdGI84AfterMark = "7C2F3A6B9E0D4A11:4B1D2E3F5A6C7D8F:0000000000000000:0000000000000000:1:1:1:0:0:0:0\n"
const drbdGI84AfterSecond = "5E6F708192A3B4C5:7C2F3A6B9E0D4A10:4B1D2E3F5A6C7D8E:0000000000000000:1:1:1:0:0:0:0\n"

const drbd9StatusSource = `r0 node-id:0 role:Primary suspended:no force-io-failures:no
    write-ordering:flush
  volume:0 minor:1 disk:UpToDate backing_dev:/dev/vg0/r0 quorum:yes open:yes
      size:10485404 read:2096 written:524288 al-writes:12 bm-writes:0
      upper-pending:0 lower-pending:0 al-suspended:no blocked:no
  nodeb node-id:1 connection:StandAlone role:Unknown tls:no congested:no
      ap-in-flight:0 rs-in-flight:0
    volume:0 replication:Off peer-disk:DUnknown resync-suspended:no
        received:0 sent:0 out-of-sync:0 pending:0 unacked:0
`

const drbd9StatusSourceConnected = `r0 node-id:0 role:Primary suspended:no force-io-failures:no
    write-ordering:flush
  volume:0 minor:1 disk:UpToDate backing_dev:/dev/vg0/r0 quorum:yes open:yes
      size:10485404 read:2096 written:524288 al-writes:12 bm-writes:0
      upper-pending:0 lower-pending:0 al-suspended:no blocked:no
  nodeb node-id:1 connection:Connected role:Secondary tls:no congested:no
      ap-in-flight:0 rs-in-flight:0
    volume:0 replication:Established peer-disk:UpToDate resync-suspended:no
        received:0 sent:524288 out-of-sync:0 pending:0 unacked:0
`

const drbd9StatusTargetConnecting = `r0 node-id:1 role:Secondary suspended:no force-io-failures:no
    write-ordering:flush
  volume:0 minor:1 disk:Outdated backing_dev:/dev/vg0/r0 quorum:yes open:no
      size:10485404 read:0 written:0 al-writes:0 bm-writes:0 upper-pending:0
      lower-pending:0 al-suspended:no blocked:no
  nodea node-id:0 connection:Connecting role:Unknown tls:no congested:no
      ap-in-flight:0 rs-in-flight:0
    volume:0 replication:Off peer-disk:DUnknown resync-suspended:no
        received:0 sent:0 out-of-sync:0 pending:0 unacked:0
`

const drbd9StatusTargetPartial = `r0 node-id:1 role:Secondary suspended:no force-io-failures:no
    write-ordering:flush
  volume:0 minor:1 disk:Inconsistent backing_dev:/dev/vg0/r0 quorum:yes
      open:no
      size:10485404 read:0 written:1320 al-writes:0 bm-writes:3
      upper-pending:0 lower-pending:0 al-suspended:no blocked:no
  nodea node-id:0 connection:Connected role:Primary tls:no congested:no
      ap-in-flight:0 rs-in-flight:1024
    volume:0 replication:SyncTarget peer-disk:UpToDate done:12.50
        resync-suspended:no
        received:1320 sent:0 out-of-sync:9240 pending:0 unacked:0 dbdt1:1.20
        eta:8
`

// A full resync seen a little after it began: 0.40% done.
const drbd9StatusTargetFull = `r0 node-id:1 role:Secondary suspended:no force-io-failures:no
    write-ordering:flush
  volume:0 minor:1 disk:Inconsistent backing_dev:/dev/vg0/r0 quorum:yes
      open:no
      size:10485404 read:0 written:41940 al-writes:0 bm-writes:9
      upper-pending:0 lower-pending:0 al-suspended:no blocked:no
  nodea node-id:0 connection:Connected role:Primary tls:no congested:no
      ap-in-flight:0 rs-in-flight:4096
    volume:0 replication:SyncTarget peer-disk:UpToDate done:0.40
        resync-suspended:no
        received:41940 sent:0 out-of-sync:10443464 pending:0 unacked:0
        dbdt1:40.96 eta:255
`

const drbd9StatusTargetStandAlone = `r0 node-id:1 role:Secondary suspended:no force-io-failures:no
    write-ordering:flush
  volume:0 minor:1 disk:Outdated backing_dev:/dev/vg0/r0 quorum:yes open:no
      size:10485404 read:0 written:0 al-writes:0 bm-writes:0 upper-pending:0
      lower-pending:0 al-suspended:no blocked:no
  nodea node-id:0 connection:StandAlone role:Unknown tls:no congested:no
      ap-in-flight:0 rs-in-flight:0
    volume:0 replication:Off peer-disk:DUnknown resync-suspended:no
        received:0 sent:0 out-of-sync:0 pending:0 unacked:0
`

// The terse form (no --verbose): volume 0 and Connected are left out.
const drbd9StatusTerse = `r0 role:Secondary
  disk:UpToDate
  nodea role:Primary
    peer-disk:UpToDate
`

const drbd84ProcSource = `version: 8.4.11-1 (api:1/proto:86-101)
GIT-hash: 66145a308421e9c124ec391a7848ac20203bb03c build by mockbuild@, 2018-11-03 01:26:55
 0: cs:StandAlone ro:Primary/Unknown ds:UpToDate/DUnknown   r-----
    ns:0 nr:0 dw:524288 dr:2096 al:12 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
 1: cs:Unconfigured
`

const drbd84ProcTargetPartial = `version: 8.4.11-1 (api:1/proto:86-101)
GIT-hash: 66145a308421e9c124ec391a7848ac20203bb03c build by mockbuild@, 2018-11-03 01:26:55
 0: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----
    ns:0 nr:1320 dw:1320 dr:0 al:0 bm:1 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:9240
	[>....................] sync'ed: 12.5% (9240/10560)K
	finish: 0:00:08 speed: 1,100 (1,100) want: 4,096 K/sec
`

const drbd84ProcTargetFull = `version: 8.4.11-1 (api:1/proto:86-101)
GIT-hash: 66145a308421e9c124ec391a7848ac20203bb03c build by mockbuild@, 2018-11-03 01:26:55
 0: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----
    ns:0 nr:1310720 dw:1310720 dr:0 al:0 bm:80 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:9174684
	[=>..................] sync'ed: 12.5% (8959/10239)M
	finish: 0:02:10 speed: 70,400 (70,400) want: 102,400 K/sec
`

const drbd84ProcTargetWaiting = `version: 8.4.11-1 (api:1/proto:86-101)
GIT-hash: 66145a308421e9c124ec391a7848ac20203bb03c build by mockbuild@, 2018-11-03 01:26:55
 0: cs:WFConnection ro:Secondary/Unknown ds:Outdated/DUnknown C r-----
    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
`

// What `drbdadm -d up r0` prints on the new node (nodeb, node-id 1), as
// drbd-utils' tests show it.
const drbdUpDryRun = `drbdsetup new-resource r0 1
drbdsetup new-minor r0 1 0
drbdsetup new-peer r0 0 --_name=nodea --protocol=C
drbdsetup new-path r0 0 ipv4:10.0.0.2:7789 ipv4:10.0.0.1:7789
drbdmeta 1 v09 /dev/vg0/r0 internal apply-al
drbdsetup attach 1 /dev/vg0/r0 /dev/vg0/r0 internal
drbdsetup connect r0 0
`

const drbd9Proc = "version: 9.2.8 (api:2/proto:86-122)\nGIT-hash: 9a4b2cfae6b1c4a2f0b8e77ab3d5b4f0c9e1d2a3 build by buildd@, 2026-01-12 09:11:02\nTransports (api:21): tcp (9.2.8)\n"

// drbdDumpV09 is a dump-md of DRBD 9 metadata as drbdmeta prints it: the
// node's own slot and each peer slot, all 32 of them.
func drbdDumpV09(nodeID int, current string, bitmapIndex map[int]int, bitmapUUID map[int]string) string {
	var b strings.Builder
	b.WriteString("# DRBD meta data dump\n# 2026-12-03 10:15:02 +0000 [1796292902]\n# nodeb> drbdmeta 1 v09 /dev/vg0/r0 internal dump-md\n#\n\n")
	b.WriteString("version \"v09\";\n\nmax-peers 1;\n# md_size_sect 720\n# md_offset 10737414144\n# al_offset 10737381376\n# bm_offset 10737053696\n\n")
	fmt.Fprintf(&b, "node-id %d;\ncurrent-uuid 0x%s;\nflags 0x00000011;\nmembers 0x0000000000000003;\n", nodeID, current)
	for i := 0; i < 32; i++ {
		idx, ok := bitmapIndex[i]
		if !ok {
			idx = -1
		}
		uuid := bitmapUUID[i]
		if uuid == "" {
			uuid = "0000000000000000"
		}
		flags, pretty := "0x00000000", ""
		if ok {
			flags, pretty = "0x00010000", " # exists"
		}
		fmt.Fprintf(&b, "peer[%d] {\n    bitmap-index %d;\n    bitmap-uuid 0x%s;\n    bitmap-dagtag 0x0000000000000000;\n    flags %s;%s\n}\n", i, idx, uuid, flags, pretty)
	}
	b.WriteString("history-uuids {")
	for i := 0; i < 32; i++ {
		sep := " "
		if i%4 == 0 {
			sep = "\n        "
		}
		h := "0x0000000000000000"
		if i == 0 {
			h = "0x4B1D2E3F5A6C7D8E"
		}
		b.WriteString(sep + h + ";")
	}
	b.WriteString("\n}\n# al-extents 1237;\nla-size-sect 20970808;\nbm-byte-per-bit 4096;\ndevice-uuid 0x2A3B4C5D6E7F8091;\nla-peer-max-bio-size 1048576;\nal-stripes 1;\nal-stripe-size-4k 8;\n# bm-bytes 327680;\nbitmap[0] {\n   40960 times 0x0000000000000000;\n}\n# bits-set 0;\n")
	return b.String()
}

// drbdSeedDump is the seed's metadata: the source (node 0) right after
// the mark, its peer nodeb (node 1) in bitmap slot 0.
var drbdSeedDump = drbdDumpV09(0, "7C2F3A6B9E0D4A11", map[int]int{1: 0}, nil)

const drbdDumpV08 = `# DRBD meta data dump
# 2026-12-03 10:15:02 +0000 [1796292902]
# nodeb> drbdmeta 0 v08 /dev/vg0/r0 internal dump-md
#

version "v08";

# md_size_sect 262144
# md_offset 10737414144
# al_offset 10737418240
# bm_offset 10737451008

uuid {
    0x7C2F3A6B9E0D4A11; 0x0000000000000000; 0x4B1D2E3F5A6C7D8E; 0x0000000000000000;
    flags 0x00000011;
}
# al-extents 1237;
la-size-sect 20970808;
bm-byte-per-bit 4096;
device-uuid 0x2A3B4C5D6E7F8091;
la-peer-max-bio-size 1048576;
al-stripes 1;
al-stripe-size-4k 8;
# bm-bytes 327680;
bm {
   40960 times 0x0000000000000000;
}
# bits-set 0;
`

func TestParseDRBDGetGI(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		current uint64
		bitmap  uint64
		wantErr bool
	}{
		{"drbd9", drbdGI9AfterSecond, 0x5E6F708192A3B4C5, 0x7C2F3A6B9E0D4A10, false},
		{"drbd84", drbdGI84AfterMark, 0x7C2F3A6B9E0D4A11, 0x4B1D2E3F5A6C7D8F, false},
		{"no newline", strings.TrimSpace(drbdGI84AfterSecond), 0x5E6F708192A3B4C5, 0x7C2F3A6B9E0D4A10, false},
		{"empty", "", 0, 0, true},
		{"show-gi fluff", "\n       +--<  Current data generation UUID  >-\n" + drbdGI84AfterMark, 0, 0, true},
		{"two lines", drbdGI84AfterMark + drbdGI84AfterMark, 0, 0, true},
		{"short uuid", "7C2F3A6B9E0D4A1:0000000000000000:4B1D2E3F5A6C7D8E:0000000000000000:1:1:1:0:0:0:0", 0, 0, true},
		{"not hex", "7C2F3A6B9E0D4AXX:0000000000000000:4B1D2E3F5A6C7D8E:0000000000000000:1:1:1:0:0:0:0", 0, 0, true},
		{"bad flag", "7C2F3A6B9E0D4A11:0000000000000000:4B1D2E3F5A6C7D8E:0000000000000000:1:1:2:0:0:0:0", 0, 0, true},
		{"0x prefix", "0x7C2F3A6B9E0D4A11:0000000000000000:4B1D2E3F5A6C7D8E:0000000000000000:1:1:1:0:0:0:0", 0, 0, true},
		{"12 fields", "7C2F3A6B9E0D4A11:0000000000000000:4B1D2E3F5A6C7D8E:0000000000000000:1:1:1:0:0:0:0:0", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gi, err := parseDRBDGetGI([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, errDRBDFormat) {
					t.Errorf("error %v does not match errDRBDFormat", err)
				}
				return
			}
			if gi.Current != tt.current || gi.Bitmap != tt.bitmap {
				t.Errorf("got current %016X bitmap %016X, want %016X %016X", gi.Current, gi.Bitmap, tt.current, tt.bitmap)
			}
		})
	}
}

func TestSameDRBDUUIDIgnoresBit0(t *testing.T) {
	if !sameDRBDUUID(0x7C2F3A6B9E0D4A11, 0x7C2F3A6B9E0D4A10) {
		t.Error("UUIDs differing in bit 0 (the primary flag) should be the same generation")
	}
	if sameDRBDUUID(0x7C2F3A6B9E0D4A11, 0x7C2F3A6B9E0D4A13) {
		t.Error("UUIDs differing in bit 1 are different generations")
	}
}

func TestDRBDVersion(t *testing.T) {
	tests := []struct {
		in, family string
		wantErr    bool
	}{
		{drbd84ProcSource, "8.4", false},
		{drbd9Proc, "9", false},
		{"version: 8.3.16 (api:88/proto:86-97)\n", "", true},
		{"GIT-hash: x\n", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		family, _, err := drbdVersion([]byte(tt.in))
		if (err != nil) != tt.wantErr || family != tt.family {
			t.Errorf("drbdVersion(%.30q) = %q, %v; want %q, error %v", tt.in, family, err, tt.family, tt.wantErr)
		}
	}
}

func TestParseDRBD84Proc(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		minor   int
		ok      bool
		want    drbd84Minor
		wantErr bool
	}{
		{"standalone primary", drbd84ProcSource, 0, true, drbd84Minor{Minor: 0, Connection: "StandAlone", Role: "Primary", PeerRole: "Unknown", Disk: "UpToDate", PeerDisk: "DUnknown", OOSKiB: 0, SyncTotalKiB: -1}, false},
		{"unconfigured", drbd84ProcSource, 1, false, drbd84Minor{}, false},
		{"absent", drbd84ProcSource, 7, false, drbd84Minor{}, false},
		{"sync target K", drbd84ProcTargetPartial, 0, true, drbd84Minor{Minor: 0, Connection: "SyncTarget", Role: "Secondary", PeerRole: "Primary", Disk: "Inconsistent", PeerDisk: "UpToDate", OOSKiB: 9240, SyncTotalKiB: 10560}, false},
		{"sync target M", drbd84ProcTargetFull, 0, true, drbd84Minor{Minor: 0, Connection: "SyncTarget", Role: "Secondary", PeerRole: "Primary", Disk: "Inconsistent", PeerDisk: "UpToDate", OOSKiB: 9174684, SyncTotalKiB: 10239 << 10}, false},
		{"bad oos", " 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n    oos:x\n", 0, false, drbd84Minor{}, true},
		{"no role", " 0: cs:Connected\n    oos:0\n", 0, false, drbd84Minor{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok, err := parseDRBD84Proc([]byte(tt.in), tt.minor)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if ok != tt.ok || m != tt.want {
				t.Errorf("got %+v ok %v, want %+v ok %v", m, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseDRBD9Status(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		check   func(t *testing.T, st *drbd9Status)
		wantErr bool
	}{
		{"source standalone", drbd9StatusSource, func(t *testing.T, st *drbd9Status) {
			if st.Name != "r0" || st.NodeID != 0 || st.Role != "Primary" {
				t.Errorf("resource %+v", st)
			}
			d, ok := st.device(0)
			if !ok || d.Disk != "UpToDate" || d.Minor != 1 || d.SizeKiB != 10485404 {
				t.Errorf("device %+v", d)
			}
			if len(st.Conns) != 1 || st.Conns[0].Name != "nodeb" || st.Conns[0].NodeID != 1 || st.Conns[0].State != "StandAlone" || st.Conns[0].connected() {
				t.Errorf("connections %+v", st.Conns)
			}
		}, false},
		{"target partial", drbd9StatusTargetPartial, func(t *testing.T, st *drbd9Status) {
			p, ok := st.Conns[0].peerDevice(0)
			if !ok || p.Replication != "SyncTarget" || p.OOSKiB != 9240 || p.Done != 12.5 || p.PeerDisk != "UpToDate" {
				t.Errorf("peer device %+v", p)
			}
			if st.Conns[0].Role != "Primary" || !st.Conns[0].connected() {
				t.Errorf("connection %+v", st.Conns[0])
			}
		}, false},
		{"terse", drbd9StatusTerse, func(t *testing.T, st *drbd9Status) {
			d, ok := st.device(0)
			if !ok || d.Disk != "UpToDate" || d.SizeKiB != -1 {
				t.Errorf("device %+v", d)
			}
			if len(st.Conns) != 1 || !st.Conns[0].connected() {
				t.Errorf("connections %+v", st.Conns)
			}
			if p, ok := st.Conns[0].peerDevice(0); !ok || p.PeerDisk != "UpToDate" {
				t.Errorf("peer device %+v", p)
			}
		}, false},
		{"unnamed connection", "r0 node-id:0 role:Primary\n  volume:0 disk:UpToDate\n  node-id:2 connection:Connecting role:Unknown\n    volume:0 replication:Off\n", func(t *testing.T, st *drbd9Status) {
			if len(st.Conns) != 1 || st.Conns[0].Name != "" || st.Conns[0].NodeID != 2 || st.Conns[0].State != "Connecting" {
				t.Errorf("connections %+v", st.Conns)
			}
		}, false},
		{"two volumes", "r0 role:Primary\n  volume:0 disk:UpToDate\n  volume:1 disk:Inconsistent\n  nodeb connection:StandAlone\n", func(t *testing.T, st *drbd9Status) {
			if d, ok := st.device(1); !ok || d.Disk != "Inconsistent" {
				t.Errorf("volume 1 %+v", d)
			}
		}, false},
		{"empty", "", nil, true},
		{"no role", "r0 node-id:0\n", nil, true},
		{"starts with key", "role:Primary\n", nil, true},
		{"bad volume", "r0 role:Primary\n  volume:x disk:UpToDate\n", nil, true},
		{"bad size", "r0 role:Primary\n  volume:0 disk:UpToDate size:-5\n", nil, true},
		{"bad done", "r0 role:Primary\n  nodea\n    volume:0 replication:SyncTarget done:250\n", nil, true},
		{"empty value", "r0 role:\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := parseDRBD9Status([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				tt.check(t, st)
			}
		})
	}
}

func TestParseDRBDMetaDump(t *testing.T) {
	full := drbdSeedDump
	md, err := parseDRBDMetaDump([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	if md.Format != "v09" || md.NodeID != 0 || md.Current != 0x7C2F3A6B9E0D4A11 || len(md.Peers) != 32 {
		t.Errorf("v09 header %+v", md)
	}
	if p := md.Peers[1]; p.BitmapIndex != 0 || p.BitmapUUID != 0 {
		t.Errorf("peer slot 1 %+v", p)
	}
	if p := md.Peers[0]; p.BitmapIndex != -1 {
		t.Errorf("own slot %+v", p)
	}
	// The header alone (what head -c reads back) is enough.
	cut := full[:strings.Index(full, "history-uuids")+20]
	if _, err := parseDRBDMetaDump([]byte(cut)); err != nil {
		t.Errorf("header only: %v", err)
	}
	md8, err := parseDRBDMetaDump([]byte(drbdDumpV08))
	if err != nil {
		t.Fatal(err)
	}
	if md8.Format != "v08" || md8.Current != 0x7C2F3A6B9E0D4A11 || md8.NodeID != -1 {
		t.Errorf("v08 header %+v", md8)
	}
	unclean := strings.Replace(full, "max-peers 1;", "This_is_an_unclean_meta_data_dump._Don't_trust_the_bitmap.\n# You should \"apply-al\" first, if you plan to restore this.\n\nmax-peers 1;", 1)
	if _, err := parseDRBDMetaDump([]byte(unclean)); err != nil {
		t.Errorf("unclean dump: %v", err)
	}
	bad := []struct{ name, in string }{
		{"empty", ""},
		{"no version", "node-id 0;\n"},
		{"cut in the slots", full[:strings.Index(full, "peer[7]")]},
		{"duplicate slot", strings.Replace(full, "peer[5] {", "peer[4] {", 1)},
		{"slot out of range", strings.Replace(full, "peer[5] {", "peer[40] {", 1)},
		{"node-id out of range", strings.Replace(full, "node-id 0;", "node-id 99;", 1)},
		{"v08 bad uuid", strings.Replace(drbdDumpV08, "0x7C2F3A6B9E0D4A11;", "0x7C2F;", 1)},
	}
	for _, b := range bad {
		if _, err := parseDRBDMetaDump([]byte(b.in)); err == nil {
			t.Errorf("%s: parsed", b.name)
		}
	}
}

func TestCheckDRBDNodeIDFix(t *testing.T) {
	orig, err := parseDRBDMetaDump([]byte(drbdSeedDump))
	if err != nil {
		t.Fatal(err)
	}
	// What the guide's sed makes of it: node-id 0 -> 1, slots 0 and 1
	// exchanged.
	swapped := strings.NewReplacer("node-id 0;", "node-id 1;", "peer[0] {", "peer[1] {", "peer[1] {", "peer[0] {").Replace(drbdSeedDump)
	edited, err := parseDRBDMetaDump([]byte(swapped))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDRBDNodeIDFix(orig, edited, 0, 1); err != nil {
		t.Errorf("the guide's edit refused: %v", err)
	}
	wrong := []struct{ name, text string }{
		{"node-id only", strings.Replace(drbdSeedDump, "node-id 0;", "node-id 1;", 1)},
		{"slots not exchanged", strings.NewReplacer("node-id 0;", "node-id 1;").Replace(drbdSeedDump)},
		{"other slot moved", strings.NewReplacer("node-id 0;", "node-id 1;", "peer[0] {", "peer[1] {", "peer[1] {", "peer[2] {", "peer[2] {", "peer[0] {").Replace(drbdSeedDump)},
		{"uuid changed", strings.NewReplacer("node-id 0;", "node-id 1;", "peer[0] {", "peer[1] {", "peer[1] {", "peer[0] {", "current-uuid 0x7C2F3A6B9E0D4A11", "current-uuid 0x7C2F3A6B9E0D4A13").Replace(drbdSeedDump)},
	}
	for _, w := range wrong {
		e, err := parseDRBDMetaDump([]byte(w.text))
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		if err := checkDRBDNodeIDFix(orig, e, 0, 1); err == nil {
			t.Errorf("%s: accepted", w.name)
		}
	}
	if err := checkDRBDNodeIDFix(orig, edited, 2, 1); err == nil {
		t.Error("a dump from another node accepted")
	}
}

func TestParseDRBDUpDryRun(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
		peers    map[int]string
	}{
		{"drbd-utils", drbdUpDryRun, 1, map[int]string{0: "nodea"}},
		{"full path", "/usr/sbin/drbdsetup new-resource r0 3 --cpu-mask=0\n", 3, map[int]string{}},
		{"other resource only", "drbdsetup new-resource r1 1\n", -1, nil},
		{"none", "", -1, nil},
		{"not a number", "drbdsetup new-resource r0 x\n", -1, nil},
		{"out of range", "drbdsetup new-resource r0 32\n", -1, nil},
		{"two ids", "drbdsetup new-resource r0 1\ndrbdsetup new-resource r0 2\n", -1, nil},
		{"self as peer", "drbdsetup new-resource r0 1\ndrbdsetup new-peer r0 1 --_name=x\n", -1, nil},
		{"bad peer", "drbdsetup new-resource r0 1\ndrbdsetup new-peer r0 -2\n", -1, nil},
		{"8.4 compat", "drbdsetup-84 new-resource r0\n", -1, nil},
	}
	for _, tt := range tests {
		got, peers, err := parseDRBDUpDryRun([]byte(tt.in), "r0")
		if got != tt.want || (err != nil) != (tt.want < 0) {
			t.Errorf("%s: %d, %v; want %d", tt.name, got, err, tt.want)
		}
		if err == nil && fmt.Sprint(peers) != fmt.Sprint(tt.peers) {
			t.Errorf("%s: peers %v, want %v", tt.name, peers, tt.peers)
		}
	}
}

func FuzzParseDRBDUpDryRun(f *testing.F) {
	f.Add(drbdUpDryRun)
	f.Fuzz(func(t *testing.T, in string) {
		n, peers, err := parseDRBDUpDryRun([]byte(in), "r0")
		if err != nil {
			return
		}
		if _, dup := peers[n]; n < 0 || n >= drbdMaxPeerSlots || dup {
			t.Errorf("%q: node-id %d, peers %v", in, n, peers)
		}
	})
}

func FuzzParseDRBDGetGI(f *testing.F) {
	for _, s := range []string{drbdGI9AfterMark, drbdGI84AfterSecond, "", ":::::::::::::::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		gi, err := parseDRBDGetGI([]byte(in))
		if err != nil {
			return
		}
		// What parses prints back as the UUIDs it was read from.
		if !strings.HasPrefix(strings.ToUpper(strings.TrimSpace(in)), formatDRBDUUID(gi.Current)+":"+formatDRBDUUID(gi.Bitmap)) {
			t.Errorf("%q parsed as %016X:%016X", in, gi.Current, gi.Bitmap)
		}
	})
}

func FuzzParseDRBD84Proc(f *testing.F) {
	for _, s := range []string{drbd84ProcSource, drbd84ProcTargetPartial, drbd84ProcTargetFull, drbd84ProcTargetWaiting} {
		f.Add(s, 0)
	}
	f.Fuzz(func(t *testing.T, in string, minor int) {
		m, ok, err := parseDRBD84Proc([]byte(in), minor)
		if err != nil || !ok {
			return
		}
		if m.Minor != minor || m.Connection == "" || m.Role == "" || m.Disk == "" || m.OOSKiB < -1 || m.SyncTotalKiB < -1 {
			t.Errorf("minor %d parsed as %+v", minor, m)
		}
	})
}

func FuzzParseDRBD9Status(f *testing.F) {
	for _, s := range []string{drbd9StatusSource, drbd9StatusTargetPartial, drbd9StatusTargetFull, drbd9StatusTerse, drbd9StatusTargetStandAlone} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		st, err := parseDRBD9Status([]byte(in))
		if err != nil {
			return
		}
		if st.Name == "" || st.Role == "" {
			t.Errorf("parsed without a name or role: %+v", st)
		}
		for _, c := range st.Conns {
			for _, p := range c.Peers {
				if p.OOSKiB < -1 || p.Done > 100 {
					t.Errorf("peer device %+v", p)
				}
			}
		}
	})
}

func FuzzParseDRBDMetaDump(f *testing.F) {
	for _, s := range []string{drbdSeedDump, drbdDumpV08, drbdSeedDump[:2000]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		md, err := parseDRBDMetaDump([]byte(in))
		if err != nil {
			return
		}
		if md.Format != "v08" && md.Format != "v09" {
			t.Errorf("format %q", md.Format)
		}
		if md.Format == "v09" && (md.NodeID < 0 || md.NodeID >= drbdMaxPeerSlots || len(md.Peers) == 0) {
			t.Errorf("v09 header %+v", md)
		}
		// The guide's edit, checked by checkDRBDNodeIDFix, is an
		// involution: moving the node-id there and back is the original.
		if md.Format == "v09" {
			if err := checkDRBDNodeIDFix(md, md, md.NodeID, md.NodeID); err != nil {
				t.Errorf("identity edit refused: %v", err)
			}
		}
	})
}
