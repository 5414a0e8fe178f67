package resync

import (
	"bytes"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of the post_capture output that [ParseTokenLines] accepts: a
// token is a handful of short facts, and the output is untrusted.
const (
	maxTokenOutput = 64 << 10
	maxTokenFields = 256
	maxTokenKey    = 64
	maxTokenValue  = 4096
)

// ParseTokenLines parses the stdout of the exec adapter's post_capture
// command: one KEY=VALUE per line. Blank lines and lines starting with
// '#' are skipped; a CR before the newline is dropped. KEY is 1 to 64 of
// [A-Za-z0-9_.-]; VALUE is the rest of the line, verbatim (no quotes
// are removed), at most 4096 bytes of UTF-8 without control characters.
// The key "mark" is the mark point in RFC 3339 (e.g.
// 2026-12-03T11:00:00Z) and becomes mark (zero if absent); every other
// key becomes a field. A line without '=', a bad key, a repeated key, the
// reserved key "adapter", or more than 256 fields or 64 KiB is an error
// naming the line.
func ParseTokenLines(out []byte) (fields map[string]string, mark time.Time, err error) {
	if len(out) > maxTokenOutput {
		return nil, time.Time{}, fmt.Errorf("post_capture printed %d bytes: a token is at most %d (print chatter to stderr)", len(out), maxTokenOutput)
	}
	fields = make(map[string]string)
	seenMark := false
	for n, line := range bytes.Split(out, []byte("\n")) {
		lineNo := n + 1
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(bytes.TrimSpace(line)) == 0 || line[0] == '#' {
			continue
		}
		eq := bytes.IndexByte(line, '=')
		if eq < 0 {
			return nil, time.Time{}, fmt.Errorf("post_capture output line %d: not KEY=VALUE (print chatter to stderr)", lineNo)
		}
		key, value := string(line[:eq]), line[eq+1:]
		if err := checkTokenKey(key); err != nil {
			return nil, time.Time{}, fmt.Errorf("post_capture output line %d: %w", lineNo, err)
		}
		if err := checkTokenValue(value); err != nil {
			return nil, time.Time{}, fmt.Errorf("post_capture output line %d: %s: %w", lineNo, key, err)
		}
		if key == "mark" {
			if seenMark {
				return nil, time.Time{}, fmt.Errorf("post_capture output line %d: mark given twice", lineNo)
			}
			seenMark = true
			mark, err = time.Parse(time.RFC3339Nano, string(value))
			if err != nil {
				return nil, time.Time{}, fmt.Errorf("post_capture output line %d: mark %q: use RFC 3339, e.g. 2026-12-03T11:00:00Z", lineNo, value)
			}
			mark = mark.UTC()
			continue
		}
		if _, dup := fields[key]; dup {
			return nil, time.Time{}, fmt.Errorf("post_capture output line %d: %s given twice", lineNo, key)
		}
		if len(fields) == maxTokenFields {
			return nil, time.Time{}, fmt.Errorf("post_capture output line %d: more than %d fields", lineNo, maxTokenFields)
		}
		fields[key] = string(value)
	}
	return fields, mark, nil
}

// FormatTokenLines writes fields and mark (if not zero) in the format
// ParseTokenLines reads, keys sorted; values must satisfy its rules.
func FormatTokenLines(fields map[string]string, mark time.Time) []byte {
	var b bytes.Buffer
	if !mark.IsZero() {
		fmt.Fprintf(&b, "mark=%s\n", mark.UTC().Format(time.RFC3339Nano))
	}
	for _, k := range sortedKeys(fields) {
		fmt.Fprintf(&b, "%s=%s\n", k, fields[k])
	}
	return b.Bytes()
}

func checkTokenKey(key string) error {
	if key == "" || len(key) > maxTokenKey {
		return fmt.Errorf("key %q: use 1 to %d of A-Z a-z 0-9 _ . -", key, maxTokenKey)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("key %q: use 1 to %d of A-Z a-z 0-9 _ . -", key, maxTokenKey)
		}
	}
	if key == "adapter" {
		return fmt.Errorf("key %q is reserved (the token names its adapter itself)", key)
	}
	return nil
}

func checkTokenValue(v []byte) error {
	if len(v) > maxTokenValue {
		return fmt.Errorf("value longer than %d bytes", maxTokenValue)
	}
	if !utf8.Valid(v) {
		return fmt.Errorf("value is not UTF-8")
	}
	for _, r := range string(v) {
		if unicode.IsControl(r) && r != '\t' {
			return fmt.Errorf("value has control character %U", r)
		}
	}
	return nil
}
