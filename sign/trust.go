package sign

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// Trust is the set of keys whose signatures are accepted: the lines of a
// public key file or of an OpenSSH allowed_signers file.
type Trust struct {
	name    string
	entries []entry
}

// entry is one line of a trust file.
type entry struct {
	line int
	// principals is the allowed_signers principals field (a pattern list),
	// or for a bare public key line its comment; either may be empty.
	principals string
	key        ssh.PublicKey
	keyBytes   []byte // key.Marshal(), compared with a signature's key
	// namespaces is the namespaces="…" pattern list; hasNamespaces tells
	// an absent option (every namespace) from an empty one (none).
	namespaces    string
	hasNamespaces bool
	validAfter    time.Time // zero: no bound
	validBefore   time.Time // zero: no bound
}

// LoadTrust reads and parses the trust file at path (see [ParseTrust]).
func LoadTrust(path string) (*Trust, error) {
	b, err := readBounded(path, MaxTrustSize)
	if err != nil {
		return nil, fmt.Errorf("trust file %s: %w: %v", path, ErrBadTrust, err)
	}
	return ParseTrust(path, b)
}

// ParseTrust parses a trust file named name: either public keys, one per
// line as in id_ed25519.pub ("ssh-ed25519 AAAA… comment"), or an OpenSSH
// allowed_signers file (ssh-keygen(1), ALLOWED SIGNERS): "principals
// [options] keytype base64-key", where options are namespaces="…",
// valid-after="…" and valid-before="…". The two kinds may be mixed; blank
// lines and lines starting with '#' are ignored. It is stricter than
// OpenSSH, which skips a line it cannot read: any such line is an error
// naming it, as a typo must not silently drop a trusted key; so is a
// cert-authority line, as seedship trusts listed keys only.
func ParseTrust(name string, data []byte) (*Trust, error) {
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		// A private key given by mistake: say so, rather than call its
		// first line a bad allowed_signers line.
		return nil, fmt.Errorf("trust file %s: %w: it is a private key; give the public key (.pub) or an allowed_signers file", name, ErrBadTrust)
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // a byte order mark from an editor
	t := &Trust{name: name}
	for n, raw := range bytes.Split(data, []byte("\n")) {
		line := strings.TrimLeft(string(raw), " \t\r")
		line = strings.TrimRight(line, " \t\r")
		if line == "" || line[0] == '#' {
			continue
		}
		e, err := parseTrustLine(line)
		if err != nil {
			return nil, fmt.Errorf("trust file %s line %d: %w: %v", name, n+1, ErrBadTrust, err)
		}
		e.line = n + 1
		t.entries = append(t.entries, e)
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("trust file %s: %w: it lists no keys; give a public key file (id_ed25519.pub) or an allowed_signers file", name, ErrBadTrust)
	}
	return t, nil
}

// String names the trust file.
func (t *Trust) String() string { return t.name }

// Len returns the number of keys the trust file lists.
func (t *Trust) Len() int { return len(t.entries) }

// parseTrustLine parses one non-blank, non-comment line.
func parseTrustLine(line string) (entry, error) {
	first, _, _ := strings.Cut(line, " ")
	first, _, _ = strings.Cut(first, "\t")
	if isKeyType(first) {
		// A public key file's line: the comment names the signer.
		key, comment, err := parseKey(line)
		return entry{principals: comment, key: key, keyBytes: marshalKey(key)}, err
	}
	principals, rest, err := principalsField(line)
	if err != nil {
		return entry{}, err
	}
	var e entry
	e.principals = principals
	if rest == "" {
		return entry{}, errors.New("no key after the principals")
	}
	first, _, _ = strings.Cut(rest, " ")
	first, _, _ = strings.Cut(first, "\t")
	if !isKeyType(first) {
		var opts string
		opts, rest, err = optionsField(rest)
		if err != nil {
			return entry{}, err
		}
		if err := e.parseOptions(opts); err != nil {
			return entry{}, err
		}
		if rest == "" {
			return entry{}, errors.New("no key after the options")
		}
	}
	e.key, _, err = parseKey(rest)
	e.keyBytes = marshalKey(e.key)
	return e, err
}

// principalsField splits off the principals field: a double-quoted string
// (which may hold spaces) or a run of non-blank characters.
func principalsField(line string) (principals, rest string, err error) {
	if line[0] == '"' {
		end := strings.IndexByte(line[1:], '"')
		if end < 0 {
			return "", "", errors.New("the principals' opening quote is not closed")
		}
		principals, rest = line[1:1+end], line[2+end:]
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			return "", "", errors.New("no blank after the quoted principals")
		}
	} else {
		end := strings.IndexAny(line, " \t")
		if end < 0 {
			end = len(line)
		}
		principals, rest = line[:end], line[end:]
		if strings.IndexByte(principals, '"') >= 0 {
			return "", "", errors.New("a quote inside the principals; quote the whole field")
		}
	}
	if principals == "" {
		return "", "", errors.New("empty principals")
	}
	return principals, strings.TrimLeft(rest, " \t"), nil
}

// optionsField splits off the options field: everything up to the first
// blank outside double quotes (OpenSSH's sshkey_advance_past_options).
func optionsField(s string) (opts, rest string, err error) {
	quoted := false
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !quoted && (c == ' ' || c == '\t') {
			break
		}
		if c == '\\' && i+1 < len(s) && s[i+1] == '"' {
			i++
		} else if c == '"' {
			quoted = !quoted
		}
	}
	if quoted {
		return "", "", errors.New("an option's quote is not closed")
	}
	return s[:i], strings.TrimLeft(s[i:], " \t"), nil
}

// parseOptions parses the comma-separated options of an allowed_signers
// line, as OpenSSH's sshsigopt_parse does (keywords in any case, values
// in double quotes, each option at most once), except that cert-authority
// is refused.
func (e *entry) parseOptions(opts string) error {
	var after, before bool
	for opts != "" {
		keyword, _, _ := strings.Cut(opts, "=")
		keyword, _, _ = strings.Cut(keyword, ",")
		var value string
		var err error
		switch strings.ToLower(keyword) {
		case "cert-authority":
			return errors.New("cert-authority is not supported: seedship trusts listed keys only; list the signer's own public key")
		case "namespaces":
			if e.hasNamespaces {
				return errors.New(`more than one "namespaces" option`)
			}
			if value, opts, err = optionValue(keyword, opts); err != nil {
				return err
			}
			e.namespaces, e.hasNamespaces = value, true
		case "valid-after", "valid-before":
			seen, bound := &after, &e.validAfter
			if strings.EqualFold(keyword, "valid-before") {
				seen, bound = &before, &e.validBefore
			}
			if *seen {
				return fmt.Errorf("more than one %q option", strings.ToLower(keyword))
			}
			*seen = true
			if value, opts, err = optionValue(keyword, opts); err != nil {
				return err
			}
			if *bound, err = parseTime(value); err != nil {
				return fmt.Errorf("%s=%q: %v", strings.ToLower(keyword), value, err)
			}
		default:
			return fmt.Errorf("unknown option %q (allowed_signers options are namespaces, valid-after, valid-before)", keyword)
		}
		if opts == "" {
			break
		}
		if opts[0] != ',' {
			return fmt.Errorf("unexpected %q after the %s option", opts, strings.ToLower(keyword))
		}
		opts = opts[1:]
		if opts == "" {
			return errors.New("the options end with a comma")
		}
	}
	if after && before && !e.validBefore.After(e.validAfter) {
		return errors.New("valid-before is not after valid-after")
	}
	return nil
}

// optionValue reads keyword="value" from the start of opts, returning the
// value (with \" unescaped) and what follows it.
func optionValue(keyword, opts string) (value, rest string, err error) {
	s := opts[len(keyword):]
	if !strings.HasPrefix(s, `="`) {
		return "", "", fmt.Errorf("option %s needs a value in double quotes: %s=\"…\"", strings.ToLower(keyword), strings.ToLower(keyword))
	}
	s = s[2:]
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '"':
			b.WriteByte('"')
			i++
		case s[i] == '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", fmt.Errorf("option %s: the closing quote is missing", strings.ToLower(keyword))
}

// parseTime parses an allowed_signers time: YYYYMMDD, YYYYMMDDHHMM or
// YYYYMMDDHHMMSS, in UTC with a "Z" or "UTC" suffix, else in local time
// (OpenSSH's parse_absolute_time).
func parseTime(s string) (time.Time, error) {
	loc := time.Local
	upper := strings.ToUpper(s)
	switch {
	case len(s) > 3 && strings.HasSuffix(upper, "UTC"):
		s, loc = s[:len(s)-3], time.UTC
	case len(s) > 1 && strings.HasSuffix(upper, "Z"):
		s, loc = s[:len(s)-1], time.UTC
	}
	layouts := map[int]string{8: "20060102", 12: "200601021504", 14: "20060102150405"}
	layout, ok := layouts[len(s)]
	if !ok {
		return time.Time{}, errors.New("not a time: give YYYYMMDD[Z], YYYYMMDDHHMM[Z] or YYYYMMDDHHMMSS[Z]")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return time.Time{}, errors.New("not a time: only digits before the Z")
		}
	}
	t, err := time.ParseInLocation(layout, s, loc)
	if err != nil {
		return time.Time{}, errors.New("not a valid date and time")
	}
	if t.Unix() <= 0 {
		return time.Time{}, errors.New("a time before 1970")
	}
	return t, nil
}

// keyTypes are the key types of public key lines; DSA keys and
// certificates are listed so that they are refused by name rather than
// misread as principals or options.
var keyTypes = map[string]bool{
	ssh.KeyAlgoED25519: true, ssh.KeyAlgoRSA: true, dsaKeyType: true,
	ssh.KeyAlgoECDSA256: true, ssh.KeyAlgoECDSA384: true, ssh.KeyAlgoECDSA521: true,
	ssh.KeyAlgoSKED25519: true, ssh.KeyAlgoSKECDSA256: true,
	ssh.CertAlgoED25519v01: true, ssh.CertAlgoRSAv01: true, dsaKeyType + "-cert-v01@openssh.com": true,
	ssh.CertAlgoECDSA256v01: true, ssh.CertAlgoECDSA384v01: true, ssh.CertAlgoECDSA521v01: true,
	ssh.CertAlgoSKED25519v01: true, ssh.CertAlgoSKECDSA256v01: true,
}

// dsaKeyType names DSA keys, which OpenSSH no longer accepts.
const dsaKeyType = "ssh-dss"

func isKeyType(s string) bool { return keyTypes[s] }

// parseKey parses "keytype base64 [comment]".
func parseKey(s string) (ssh.PublicKey, string, error) {
	fields := strings.Fields(s)
	if len(fields) < 2 {
		return nil, "", fmt.Errorf("no key: expected \"keytype base64-key\", got %q", clip(s))
	}
	typ, b64 := fields[0], fields[1]
	if !isKeyType(typ) {
		return nil, "", fmt.Errorf("unknown key type %q", clip(typ))
	}
	if strings.HasPrefix(typ, dsaKeyType) {
		return nil, "", errors.New("DSA keys are not accepted (insecure, and removed from OpenSSH); list an ed25519 key")
	}
	if strings.Contains(typ, "-cert-") {
		return nil, "", fmt.Errorf("%s is a certificate: seedship trusts plain keys only; list the signer's own public key", typ)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, "", fmt.Errorf("%s key: bad base64", typ)
	}
	key, err := ssh.ParsePublicKey(raw)
	if err != nil {
		return nil, "", fmt.Errorf("%s key: %s", typ, printable(err.Error()))
	}
	if key.Type() != typ {
		return nil, "", fmt.Errorf("the key is %s but the line says %s", key.Type(), typ)
	}
	comment := strings.TrimSpace(s[strings.Index(s, b64)+len(b64):])
	return key, comment, nil
}

func marshalKey(k ssh.PublicKey) []byte {
	if k == nil {
		return nil
	}
	return k.Marshal()
}

// clip shortens hostile text quoted (with %q) in a message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// printable makes hostile text, such as a parser's error that quotes the
// input, safe to put unquoted in a one-line message: every rune that is
// not printable becomes '?', and it is cut at 80 runes.
func printable(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == 80 {
			b.WriteString("…")
			break
		}
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = '?'
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// matchPatternList reports how s matches an OpenSSH pattern list
// (ssh_config(5) PATTERNS: comma-separated globs with * and ?, each
// possibly negated by a leading !): -1 if a negated pattern matches, 1 if
// a plain one does, 0 if none (OpenSSH's match_pattern_list).
func matchPatternList(s, list string) int {
	positive := false
	for _, p := range strings.Split(list, ",") {
		negated := strings.HasPrefix(p, "!")
		if negated {
			p = p[1:]
		}
		if matchPattern(s, p) {
			if negated {
				return -1
			}
			positive = true
		}
	}
	if positive {
		return 1
	}
	return 0
}

// matchPattern matches s against a glob of * (any run) and ? (any byte),
// in time linear in len(s)·len(p) at worst (the classic backtrack to the
// last star).
func matchPattern(s, p string) bool {
	si, pi, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			si++
			pi++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			mark++
			si, pi = mark, star+1
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
