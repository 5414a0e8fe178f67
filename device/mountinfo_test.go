package device

import (
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []mount
	}{
		{
			name:  "empty",
			input: "",
		},
		{
			name:  "one mount, no optional fields",
			input: "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n",
			want:  []mount{{id: 27, parent: 1, dev: devnum{254, 0}, root: "/", point: "/", fstype: "ext4", source: "/dev/vda"}},
		},
		{
			name:  "several optional fields, no trailing newline",
			input: "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 shared:7 propagate_from:2 - ext3 /dev/root rw,errors=continue",
			want:  []mount{{id: 36, parent: 35, dev: devnum{98, 0}, root: "/mnt1", point: "/mnt/parent", fstype: "ext3", source: "/dev/root"}},
		},
		{
			name:  "escaped space, tab, newline and backslash",
			input: `40 27 8:17 / /mnt/my\040disk\011x\012y\134z rw - vfat /dev/sdb1 rw` + "\n",
			want:  []mount{{id: 40, parent: 27, dev: devnum{8, 17}, root: "/", point: "/mnt/my disk\tx\ny\\z", fstype: "vfat", source: "/dev/sdb1"}},
		},
		{
			name:  "escaped source and bind-mount root",
			input: `41 27 8:18 /home/a\040b /srv rw shared:3 - ext4 /dev/disk/by-label/my\040data rw` + "\n",
			want:  []mount{{id: 41, parent: 27, dev: devnum{8, 18}, root: "/home/a b", point: "/srv", fstype: "ext4", source: "/dev/disk/by-label/my data"}},
		},
		{
			name:  "backslash not followed by three octal digits is literal",
			input: `42 27 0:50 / /a\09\1\ rw - tmpfs x\400 rw` + "\n",
			want:  []mount{{id: 42, parent: 27, dev: devnum{0, 50}, root: "/", point: `/a\09\1\`, fstype: "tmpfs", source: `x\400`}},
		},
		{
			name:  "empty source, blank lines, btrfs anonymous device",
			input: "\n43 27 0:45 /@ /data rw - btrfs  rw\n\n44 27 0:46 / /x rw - btrfs /dev/sdc rw,space_cache\n",
			want: []mount{
				{id: 43, parent: 27, dev: devnum{0, 45}, root: "/@", point: "/data", fstype: "btrfs", source: ""},
				{id: 44, parent: 27, dev: devnum{0, 46}, root: "/", point: "/x", fstype: "btrfs", source: "/dev/sdc"},
			},
		},
		{
			name:  "a field named - among the first six is not the separator",
			input: "45 27 0:47 / - rw - tmpfs tmpfs rw\n",
			want:  []mount{{id: 45, parent: 27, dev: devnum{0, 47}, root: "/", point: "-", fstype: "tmpfs", source: "tmpfs"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMountinfo(strings.NewReader(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseMountinfoErrors(t *testing.T) {
	tests := []struct {
		name, input, wantLine string
	}{
		{"too few fields", "27 1 254:0 / / rw - ext4\n", "line 1"},
		{"no separator", "27 1 254:0 / / rw ext4 /dev/vda rw\n", "line 1"},
		{"bad device number", "1 1 8:0 / / rw - ext4 /dev/a rw\n27 1 254 / / rw - ext4 /dev/vda rw\n", "line 2"},
		{"minor too large", "27 1 8:4294967296 / / rw - ext4 /dev/vda rw\n", "line 1"},
		{"bad mount ID", "x 1 254:0 / / rw - ext4 /dev/vda rw\n", "line 1"},
		{"bad parent ID", "27 -1 254:0 / / rw - ext4 /dev/vda rw\n", "line 1"},
		{"tabs are not separators", "27\t1\t254:0\t/\t/\trw\t-\text4\t/dev/vda\trw\n", "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseMountinfo(strings.NewReader(tt.input))
			if !errors.Is(err, errMalformed) {
				t.Fatalf("err = %v, want errMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.wantLine) {
				t.Errorf("err = %v, want it to name %s", err, tt.wantLine)
			}
		})
	}
}

// TestParseMountinfoSelf parses this process's real mount table.
func TestParseMountinfoSelf(t *testing.T) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no /proc/self/mountinfo on this system: %v", err)
	}
	defer f.Close()
	mounts, err := parseMountinfo(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if m.point == "/" {
			return
		}
	}
	t.Errorf("no mount on / among %d mounts", len(mounts))
}

// escapeOctal mangles s the way the kernel does for mountinfo and swaps.
func escapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			b.WriteString(`\`)
			b.WriteString(strconv.FormatUint(uint64(c)|0o1000, 8)[1:])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func formatMountinfoLine(m mount) string {
	return strings.Join([]string{
		strconv.FormatUint(m.id, 10), strconv.FormatUint(m.parent, 10), m.dev.String(),
		escapeOctal(m.root), escapeOctal(m.point), "rw", "-",
		escapeOctal(m.fstype), escapeOctal(m.source), "rw",
	}, " ")
}

// FuzzParseMountinfo checks that the parser never panics and that what it
// parses survives being written back the kernel's way and parsed again.
func FuzzParseMountinfo(f *testing.F) {
	f.Add("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n")
	f.Add("36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue")
	f.Add(`40 27 8:17 / /mnt/my\040disk\011x\012y\134z rw - vfat /dev/sdb1 rw` + "\n")
	f.Add("43 27 0:45 /@ /data rw - btrfs  rw\n\n")
	f.Add(`42 27 0:50 / /a\09\1\ rw - tmpfs x\400 rw`)
	f.Add("1 1 1:1 / - - - - - -\n")
	f.Fuzz(func(t *testing.T, input string) {
		mounts, err := parseMountinfo(strings.NewReader(input))
		if err != nil {
			return
		}
		var lines []string
		for _, m := range mounts {
			lines = append(lines, formatMountinfoLine(m))
		}
		again, err := parseMountinfo(strings.NewReader(strings.Join(lines, "\n")))
		if err != nil {
			t.Fatalf("re-parsing %q: %v", lines, err)
		}
		if !reflect.DeepEqual(mounts, again) && !(len(mounts) == 0 && len(again) == 0) {
			t.Fatalf("round trip changed the mounts:\n%+v\n%+v", mounts, again)
		}
	})
}
