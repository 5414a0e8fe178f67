package device

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// devnum is a device number split into its major and minor parts, as
// sysfs and mountinfo print it ("8:17").
type devnum struct{ major, minor uint32 }

func (d devnum) String() string {
	return strconv.FormatUint(uint64(d.major), 10) + ":" + strconv.FormatUint(uint64(d.minor), 10)
}

// parseDevnum parses "MAJOR:MINOR".
func parseDevnum(s string) (devnum, error) {
	maj, min, ok := strings.Cut(s, ":")
	if !ok {
		return devnum{}, fmt.Errorf("device number %q: want MAJOR:MINOR", s)
	}
	a, err := strconv.ParseUint(maj, 10, 32)
	if err != nil {
		return devnum{}, fmt.Errorf("device number %q: %w", s, err)
	}
	b, err := strconv.ParseUint(min, 10, 32)
	if err != nil {
		return devnum{}, fmt.Errorf("device number %q: %w", s, err)
	}
	return devnum{uint32(a), uint32(b)}, nil
}

// mount is one line of /proc/PID/mountinfo (see proc_pid_mountinfo(5)):
//
//	36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	id p  dev  root  point       options    optional - type source    super options
//
// Path fields are unescaped: the kernel writes space, tab, newline and
// backslash as \040, \011, \012 and \134.
type mount struct {
	id, parent uint64
	dev        devnum // st_dev of files on this mount; for btrfs an anonymous 0:N
	root       string // the directory of the filesystem mounted here (bind mounts)
	point      string // mount point
	fstype     string
	source     string // "/dev/sdb1", "none", "server:/export", ...
}

// errMalformed is wrapped by the parsers' errors.
var errMalformed = errors.New("malformed line")

// parseMountinfo parses the whole of a mountinfo file. Empty lines are
// skipped; any other line that does not parse is an error naming its line
// number, because a safety check must not skip what it cannot read.
func parseMountinfo(r io.Reader) ([]mount, error) {
	var mounts []mount
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if line = strings.TrimSuffix(line, "\n"); line != "" {
			m, perr := parseMountinfoLine(line)
			if perr != nil {
				return nil, fmt.Errorf("device: mountinfo line %d: %w", n, perr)
			}
			mounts = append(mounts, m)
		}
		if err == io.EOF {
			return mounts, nil
		}
		if err != nil {
			return nil, fmt.Errorf("device: reading mountinfo: %w", err)
		}
	}
}

// parseMountinfoLine parses one line without its newline. Fields are
// separated by single spaces; an empty field (an empty mount source) is
// kept as an empty string.
func parseMountinfoLine(line string) (mount, error) {
	f := strings.Split(line, " ")
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+4 {
		return mount{}, fmt.Errorf("%w: want 6 fields, optional fields, \"-\" and 3 more, got %d fields", errMalformed, len(f))
	}
	var m mount
	var err error
	if m.id, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return mount{}, fmt.Errorf("%w: mount ID: %w", errMalformed, err)
	}
	if m.parent, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return mount{}, fmt.Errorf("%w: parent ID: %w", errMalformed, err)
	}
	if m.dev, err = parseDevnum(f[2]); err != nil {
		return mount{}, fmt.Errorf("%w: %w", errMalformed, err)
	}
	m.root = unescapeOctal(f[3])
	m.point = unescapeOctal(f[4])
	m.fstype = unescapeOctal(f[sep+1])
	m.source = unescapeOctal(f[sep+2])
	return m, nil
}

// unescapeOctal undoes the kernel's mangling of paths in /proc files:
// a backslash followed by three octal digits (at most \377) is that byte.
// Anything else is kept as it is.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3' {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return '0' <= c && c <= '7' }
