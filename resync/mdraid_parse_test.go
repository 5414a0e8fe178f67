package resync

import (
	"strings"
	"testing"
)

// Realistic outputs, shaped after mdadm 4.x (super1.c examine_super1 and
// detail_super1, Detail.c, bitmap.c) and the kernel's /proc/mdstat. The
// array md0 has three slots: sdb and sdc, and the seed disk sdd in slot 2.

const mdExamineSeed = `/dev/sdd:
          Magic : a92b4efc
        Version : 1.2
    Feature Map : 0x1
     Array UUID : 3aaa0122:29827cfa:5331ad66:ca767371
           Name : srv1:0  (local to host srv1)
  Creation Time : Tue Nov  3 09:12:44 2026
     Raid Level : raid1
   Raid Devices : 3

 Avail Dev Size : 20951040 sectors (9.99 GiB 10.73 GB)
     Array Size : 10475520 KiB (9.99 GiB 10.73 GB)
    Data Offset : 18432 sectors
   Super Offset : 8 sectors
   Unused Space : before=18352 sectors, after=0 sectors
          State : clean
    Device UUID : 9d1c7e2a:4f6b8c3d:a1e2f3b4:c5d6e7f8

Internal Bitmap : 8 sectors from superblock
    Update Time : Thu Dec  3 10:14:58 2026
  Bad Block Log : 512 entries available at offset 16 sectors
       Checksum : 5b8a9c1e - correct
         Events : 1843


   Device Role : Active device 2
   Array State : AAA ('A' == active, '.' == missing, 'R' == replacing)
`

const mdDetailFull = `/dev/md0:
           Version : 1.2
     Creation Time : Tue Nov  3 09:12:44 2026
        Raid Level : raid1
        Array Size : 10475520 (9.99 GiB 10.73 GB)
     Used Dev Size : 10475520 (9.99 GiB 10.73 GB)
      Raid Devices : 3
     Total Devices : 3
       Persistence : Superblock is persistent

     Intent Bitmap : Internal

       Update Time : Thu Dec  3 10:14:02 2026
             State : clean 
    Active Devices : 3
   Working Devices : 3
    Failed Devices : 0
     Spare Devices : 0

Consistency Policy : bitmap

              Name : srv1:0  (local to host srv1)
              UUID : 3aaa0122:29827cfa:5331ad66:ca767371
            Events : 1843

    Number   Major   Minor   RaidDevice State
       0       8       16        0      active sync   /dev/sdb
       1       8       32        1      active sync   /dev/sdc
       3       8       48        2      active sync   /dev/sdd
`

const mdDetailDegraded = `/dev/md0:
           Version : 1.2
     Creation Time : Tue Nov  3 09:12:44 2026
        Raid Level : raid1
        Array Size : 10475520 (9.99 GiB 10.73 GB)
     Used Dev Size : 10475520 (9.99 GiB 10.73 GB)
      Raid Devices : 3
     Total Devices : 2
       Persistence : Superblock is persistent

     Intent Bitmap : Internal

       Update Time : Fri Dec 11 16:40:19 2026
             State : clean, degraded 
    Active Devices : 2
   Working Devices : 2
    Failed Devices : 0
     Spare Devices : 0

Consistency Policy : bitmap

              Name : srv1:0  (local to host srv1)
              UUID : 3aaa0122:29827cfa:5331ad66:ca767371
            Events : 2210

    Number   Major   Minor   RaidDevice State
       0       8       16        0      active sync   /dev/sdb
       1       8       32        1      active sync   /dev/sdc
       -       0        0        2      removed
`

const mdDetailReAdded = `/dev/md0:
           Version : 1.2
     Creation Time : Tue Nov  3 09:12:44 2026
        Raid Level : raid1
        Array Size : 10475520 (9.99 GiB 10.73 GB)
     Used Dev Size : 10475520 (9.99 GiB 10.73 GB)
      Raid Devices : 3
     Total Devices : 3
       Persistence : Superblock is persistent

     Intent Bitmap : Internal

       Update Time : Fri Dec 11 16:41:02 2026
             State : clean, degraded, recovering 
    Active Devices : 2
   Working Devices : 3
    Failed Devices : 0
     Spare Devices : 1

Consistency Policy : bitmap

    Rebuild Status : 3% complete

              Name : srv1:0  (local to host srv1)
              UUID : 3aaa0122:29827cfa:5331ad66:ca767371
            Events : 2213

    Number   Major   Minor   RaidDevice State
       0       8       16        0      active sync   /dev/sdb
       1       8       32        1      active sync   /dev/sdc
       3       8      112        2      spare rebuilding   /dev/sdh
`

// The same disk added back as a spare in no slot: what a full recovery
// looks like before it starts.
const mdDetailSpare = `/dev/md0:
           Version : 1.2
        Raid Level : raid1
      Raid Devices : 3
     Intent Bitmap : Internal
             State : clean, degraded 
              UUID : 3aaa0122:29827cfa:5331ad66:ca767371
            Events : 2213

    Number   Major   Minor   RaidDevice State
       0       8       16        0      active sync   /dev/sdb
       1       8       32        1      active sync   /dev/sdc
       -       0        0        2      removed

       3       8      112        -      spare   /dev/sdh
`

const mdBitmapDegraded = `        Filename : /dev/sdb
           Magic : 6d746962
         Version : 4
            UUID : 3aaa0122:29827cfa:5331ad66:ca767371
          Events : 2210
  Events Cleared : 1843
           State : OK
       Chunksize : 4 MB
          Daemon : 5s flush period
      Write Mode : Normal
       Sync Size : 10475520 (9.99 GiB 10.73 GB)
          Bitmap : 2558 bits (chunks), 301 dirty (11.8%)
`

const mdstatFull = `Personalities : [raid1] [linear] [multipath] [raid0] [raid6] [raid5] [raid4] [raid10] 
md0 : active raid1 sdd[3] sdc[1] sdb[0]
      10475520 blocks super 1.2 [3/3] [UUU]
      bitmap: 1/1 pages [4KB], 4096KB chunk

unused devices: <none>
`

const mdstatDegraded = `Personalities : [raid1] [linear] [multipath] [raid0] [raid6] [raid5] [raid4] [raid10] 
md0 : active raid1 sdc[1] sdb[0]
      10475520 blocks super 1.2 [3/2] [UU_]
      bitmap: 1/1 pages [4KB], 4096KB chunk

unused devices: <none>
`

const mdstatCoarse = `Personalities : [raid1] 
md0 : active raid1 sdd[3] sdc[1] sdb[0]
      10475520 blocks super 1.2 [3/3] [UUU]
      bitmap: 0/1 pages [0KB], 65536KB chunk

unused devices: <none>
`

const mdstatRecovering = `Personalities : [raid1] 
md0 : active raid1 sdd[3] sdc[1] sdb[0]
      10475520 blocks super 1.2 [3/2] [UU_]
      [===>.................]  recovery = 17.7% (1857152/10475520) finish=0.7min speed=206350K/sec
      bitmap: 1/1 pages [4KB], 4096KB chunk

unused devices: <none>
`

// The seed disk auto-assembled on the target as md127.
const mdstatAssembled = `Personalities : [raid1] 
md127 : active (auto-read-only) raid1 sdh[3]
      10475520 blocks super 1.2 [3/1] [__U]
      bitmap: 0/1 pages [0KB], 4096KB chunk

md0 : active raid1 sdc[1] sdb[0]
      10475520 blocks super 1.2 [3/2] [UU_]
      bitmap: 1/1 pages [4KB], 4096KB chunk

unused devices: <none>
`

func TestParseMDExamine(t *testing.T) {
	e, err := parseMDExamine([]byte(mdExamineSeed))
	if err != nil {
		t.Fatal(err)
	}
	want := mdExamine{Version: "1.2", ArrayUUID: "3aaa0122:29827cfa:5331ad66:ca767371", DeviceUUID: "9d1c7e2a:4f6b8c3d:a1e2f3b4:c5d6e7f8", Level: "raid1", Events: 1843, Role: 2}
	if e != want {
		t.Errorf("got %+v\nwant %+v", e, want)
	}
	bad := []struct{ name, in string }{
		{"empty", ""},
		{"0.90", strings.Replace(mdExamineSeed, "Version : 1.2", "Version : 0.90.00", 1)},
		{"spare", strings.Replace(mdExamineSeed, "Active device 2", "spare", 1)},
		{"replacement", strings.Replace(mdExamineSeed, "Active device 2", "Replacement device 2", 1)},
		{"bad checksum", strings.Replace(mdExamineSeed, "5b8a9c1e - correct", "5b8a9c1e - expected 5b8a9c1f", 1)},
		{"bad uuid", strings.Replace(mdExamineSeed, "3aaa0122:29827cfa", "3aaa0122-29827cfa", 1)},
		{"bad events", strings.Replace(mdExamineSeed, "Events : 1843", "Events : many", 1)},
		{"no events", strings.Replace(mdExamineSeed, "Events : 1843", "", 1)},
	}
	for _, b := range bad {
		if _, err := parseMDExamine([]byte(b.in)); err == nil {
			t.Errorf("%s: parsed", b.name)
		}
	}
}

func TestParseMDDetail(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, d *mdDetail)
	}{
		{"full", mdDetailFull, func(t *testing.T, d *mdDetail) {
			if d.Level != "raid1" || d.RaidDevices != 3 || d.Bitmap != "Internal" || d.Events != 1843 || d.UUID != "3aaa0122:29827cfa:5331ad66:ca767371" || d.State != "clean" {
				t.Errorf("header %+v", d)
			}
			if m, ok := d.member("/dev/sdd"); !ok || !m.inSync() || m.RaidDevice != 2 || m.Number != 3 {
				t.Errorf("sdd %+v", m)
			}
			if d.inSyncCount() != 3 {
				t.Errorf("in sync %d", d.inSyncCount())
			}
		}},
		{"degraded", mdDetailDegraded, func(t *testing.T, d *mdDetail) {
			if len(d.Members) != 3 || d.Members[2].Path != "" || !d.Members[2].has("removed") || d.Members[2].Number != -1 {
				t.Errorf("rows %+v", d.Members)
			}
			if _, taken := d.slotTaken(2); taken {
				t.Error("removed slot 2 reads as taken")
			}
			if _, taken := d.slotTaken(1); !taken {
				t.Error("slot 1 reads as free")
			}
		}},
		{"re-added", mdDetailReAdded, func(t *testing.T, d *mdDetail) {
			m, ok := d.member("/dev/sdh")
			if !ok || m.RaidDevice != 2 || !m.has("rebuilding") || m.inSync() {
				t.Errorf("sdh %+v", m)
			}
		}},
		{"spare", mdDetailSpare, func(t *testing.T, d *mdDetail) {
			m, ok := d.member("/dev/sdh")
			if !ok || m.RaidDevice != -1 || !m.has("spare") {
				t.Errorf("sdh %+v", m)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseMDDetail([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, d)
		})
	}
	bad := []struct{ name, in string }{
		{"empty", ""},
		{"no table", mdDetailFull[:strings.Index(mdDetailFull, "    Number")]},
		{"short row", strings.Replace(mdDetailFull, "       1       8       32        1      active sync   /dev/sdc", "       1       8", 1)},
		{"bad number", strings.Replace(mdDetailFull, "       1       8       32        1      active", "       x       8       32        1      active", 1)},
		{"no state", strings.Replace(mdDetailFull, "active sync   /dev/sdc", "/dev/sdc", 1)},
		{"no uuid", strings.Replace(mdDetailFull, "UUID : 3aaa0122:29827cfa:5331ad66:ca767371", "UUID : ", 1)},
		{"no level", strings.Replace(mdDetailFull, "Raid Level : raid1", "", 1)},
	}
	for _, b := range bad {
		if _, err := parseMDDetail([]byte(b.in)); err == nil {
			t.Errorf("%s: parsed", b.name)
		}
	}
}

func TestParseMDBitmap(t *testing.T) {
	b, err := parseMDBitmap([]byte(mdBitmapDegraded))
	if err != nil {
		t.Fatal(err)
	}
	want := mdBitmap{Events: 2210, EventsCleared: 1843, ChunkBytes: 4 << 20, Bits: 2558, SyncSizeKiB: 10475520}
	if b != want {
		t.Errorf("got %+v\nwant %+v", b, want)
	}
	for in, chunk := range map[string]int64{"512 B": 512, "64 KB": 64 << 10, "64 MB": 64 << 20, "1 GB": 1 << 30} {
		b, err := parseMDBitmap([]byte(strings.Replace(mdBitmapDegraded, "4 MB", in, 1)))
		if err != nil || b.ChunkBytes != chunk {
			t.Errorf("Chunksize %s: %d, %v; want %d", in, b.ChunkBytes, err, chunk)
		}
	}
	bad := []struct{ name, in string }{
		{"empty", ""},
		{"clustered", strings.Replace(mdBitmapDegraded, "  Events Cleared : 1843\n", "", 1)},
		{"bad chunk", strings.Replace(mdBitmapDegraded, "4 MB", "4 XB", 1)},
		{"no bits", strings.Replace(mdBitmapDegraded, "2558 bits", "many bits", 1)},
		{"zero bits", strings.Replace(mdBitmapDegraded, "2558 bits", "0 bits", 1)},
	}
	for _, c := range bad {
		if _, err := parseMDBitmap([]byte(c.in)); err == nil {
			t.Errorf("%s: parsed", c.name)
		}
	}
}

func TestParseMDStat(t *testing.T) {
	arrays, err := parseMDStat([]byte(mdstatAssembled))
	if err != nil {
		t.Fatal(err)
	}
	if len(arrays) != 2 {
		t.Fatalf("arrays %+v", arrays)
	}
	a127 := arrays[0]
	if a127.Name != "md127" || a127.State != "active" || strings.Join(a127.Members, ",") != "sdh" || a127.BlocksKiB != 10475520 || a127.BitmapChunkBytes != 4<<20 {
		t.Errorf("md127 %+v", a127)
	}
	if strings.Join(arrays[1].Members, ",") != "sdc,sdb" {
		t.Errorf("md0 %+v", arrays[1])
	}
	rec, err := parseMDStat([]byte(mdstatRecovering))
	if err != nil || rec[0].Sync != "recovery" {
		t.Errorf("recovering: %+v %v", rec, err)
	}
	coarse, err := parseMDStat([]byte(mdstatCoarse))
	if err != nil || coarse[0].BitmapChunkBytes != 64<<20 {
		t.Errorf("coarse: %+v %v", coarse, err)
	}
	flags, err := parseMDStat([]byte("Personalities : [raid1]\nmd1 : active raid1 sdf[2](S) sde[1](F) sdd[0](W)\n      1024 blocks super 1.2 [2/1] [U_]\n\nunused devices: <none>\n"))
	if err != nil || strings.Join(flags[0].Members, ",") != "sdf,sde,sdd" || flags[0].BitmapChunkBytes != 0 {
		t.Errorf("flags: %+v %v", flags, err)
	}
	if _, err := parseMDStat([]byte("md0 : active raid1 sdb[0]\n")); err == nil {
		t.Error("text without the Personalities line parsed as /proc/mdstat")
	}
	if _, err := parseMDStat([]byte("Personalities : \nmd0 : active raid1 sdb[0]\n      bitmap: 1/1 pages [4KB], 0KB chunk\n")); err == nil {
		t.Error("a zero bitmap chunk parsed")
	}
}

func FuzzParseMDExamine(f *testing.F) {
	f.Add(mdExamineSeed)
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		e, err := parseMDExamine([]byte(in))
		if err != nil {
			return
		}
		if !mdUUIDPattern.MatchString(e.ArrayUUID) || !mdUUIDPattern.MatchString(e.DeviceUUID) || e.Role < 0 || !strings.HasPrefix(e.Version, "1.") {
			t.Errorf("parsed %+v", e)
		}
	})
}

func FuzzParseMDDetail(f *testing.F) {
	for _, s := range []string{mdDetailFull, mdDetailDegraded, mdDetailReAdded, mdDetailSpare} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		d, err := parseMDDetail([]byte(in))
		if err != nil {
			return
		}
		for _, m := range d.Members {
			if len(m.State) == 0 || m.RaidDevice < -1 || m.Number < -1 {
				t.Errorf("row %+v", m)
			}
		}
		if !mdUUIDPattern.MatchString(d.UUID) {
			t.Errorf("uuid %q", d.UUID)
		}
	})
}

func FuzzParseMDBitmap(f *testing.F) {
	f.Add(mdBitmapDegraded)
	f.Fuzz(func(t *testing.T, in string) {
		b, err := parseMDBitmap([]byte(in))
		if err != nil {
			return
		}
		if b.ChunkBytes <= 0 || b.Bits <= 0 || b.SyncSizeKiB < 0 {
			t.Errorf("parsed %+v", b)
		}
	})
}

func FuzzParseMDStat(f *testing.F) {
	for _, s := range []string{mdstatFull, mdstatDegraded, mdstatCoarse, mdstatRecovering, mdstatAssembled} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		arrays, err := parseMDStat([]byte(in))
		if err != nil {
			return
		}
		for _, a := range arrays {
			if !strings.HasPrefix(a.Name, "md") || a.BitmapChunkBytes < 0 || a.BlocksKiB < -1 {
				t.Errorf("array %+v", a)
			}
			for _, m := range a.Members {
				if m == "" || strings.ContainsAny(m, "[]() \t") {
					t.Errorf("member %q", m)
				}
			}
		}
	})
}
