package dir

import (
	"os"
	"strings"
	"time"
	"unicode"
)

// holderMax bounds what is read of a lock file: its contents are whatever
// another process (or an attacker) wrote.
const holderMax = 512

// writeHolder replaces the contents of the lock file f with owner and the
// time, and syncs them, so a refused writer can name the holder.
func writeHolder(f *os.File, owner string) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	line := oneLine(owner) + " since " + time.Now().UTC().Format(time.RFC3339) + "\n"
	if _, err := f.WriteAt([]byte(line), 0); err != nil {
		return err
	}
	return f.Sync()
}

// readHolder returns the holder named in the lock file f, as one printable
// line, or a placeholder when the file is empty or unreadable.
func readHolder(f *os.File) string {
	b := make([]byte, holderMax)
	n, _ := f.ReadAt(b, 0)
	if h := oneLine(string(b[:n])); h != "" {
		return h
	}
	return "another process (its lock file names no holder)"
}

// oneLine makes s a single printable line.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, s)
	return strings.Join(strings.Fields(s), " ")
}
