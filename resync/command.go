package resync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Command is a configured command: in the configuration file either an
// argv array, run on this system, or an object {"host": NAME, "argv":
// [...]}, run on the named host of [Config.Hosts]. Commands are argv,
// never shell lines: a word with spaces stays one word.
type Command struct {
	Host string   `json:"host,omitempty"` // "" = this system
	Argv []string `json:"argv"`
}

// UnmarshalJSON accepts the array or the object form (unknown fields
// refused).
func (c *Command) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var argv []string
		if err := json.Unmarshal(b, &argv); err != nil {
			return err
		}
		*c = Command{Argv: argv}
		return nil
	}
	type plain Command // without this method
	var p plain
	if err := strictDecode(b, &p); err != nil {
		return err
	}
	*c = Command(p)
	return nil
}

// IsZero reports whether the command was left out of the configuration.
func (c Command) IsZero() bool { return c.Host == "" && len(c.Argv) == 0 }

// Check refuses an empty argv or an unknown host, naming field.
func (c Command) Check(cfg *Config, field string) error {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return cfg.FieldError(field, "missing command: give its argv, e.g. [\"/path/to/tool\", \"arg\"]")
	}
	if c.Host != "" {
		if _, err := cfg.Host(c.Host); err != nil {
			return cfg.FieldError(field+".host", "no host named %q: add it to hosts", c.Host)
		}
	}
	return nil
}

// Require is Check for a command the adapter cannot do without.
func (c Command) Require(cfg *Config, field string) error {
	if c.IsZero() {
		return cfg.FieldError(field, "missing: this command is required (it is never guessed)")
	}
	return c.Check(cfg, field)
}

// String is the command as a copyable shell line.
func (c Command) String() string { return describe(c.Host, c.Argv) }

// Run runs the command through s.Do (printed only, in dry run).
func (c Command) Run(ctx context.Context, s *Session) ([]byte, error) {
	return s.Do(ctx, c.Host, c.Argv...)
}

// expand replaces {name} placeholders inside each argv word from vars;
// a {…} that names no var is an error naming it (the config check
// catches those before anything runs; this is the last line).
func expand(argv []string, vars map[string]string) ([]string, error) {
	out := make([]string, len(argv))
	for i, w := range argv {
		var b strings.Builder
		rest := w
		for {
			open := strings.IndexByte(rest, '{')
			if open < 0 {
				b.WriteString(rest)
				break
			}
			end := strings.IndexByte(rest[open:], '}')
			if end < 0 {
				b.WriteString(rest)
				break
			}
			name := rest[open+1 : open+end]
			if !isPlaceholderName(name) {
				// Not a placeholder ("{}" or shell braces): literal.
				b.WriteString(rest[:open+end+1])
				rest = rest[open+end+1:]
				continue
			}
			v, ok := vars[name]
			if !ok {
				return nil, fmt.Errorf("{%s} has no value here", name)
			}
			b.WriteString(rest[:open])
			b.WriteString(v)
			rest = rest[open+end+1:]
		}
		out[i] = b.String()
	}
	return out, nil
}

// placeholderNames lists the {name} words used in argv.
func placeholderNames(argv []string) []string {
	var names []string
	for _, w := range argv {
		rest := w
		for {
			open := strings.IndexByte(rest, '{')
			if open < 0 {
				break
			}
			end := strings.IndexByte(rest[open:], '}')
			if end < 0 {
				break
			}
			if name := rest[open+1 : open+end]; isPlaceholderName(name) {
				names = append(names, name)
			}
			rest = rest[open+end+1:]
		}
	}
	return names
}

// isPlaceholderName reports whether {name} is a placeholder: side,
// target, mark or token.KEY. Any other {...} is literal, so an argv like
// ["awk", "{print $1}"] or ["sh", "-c", "echo ${HOME}"] passes unchanged.
func isPlaceholderName(name string) bool {
	switch name {
	case "side", "target", "mark":
		return true
	}
	key, ok := strings.CutPrefix(name, "token.")
	return ok && checkTokenKey(key) == nil
}

// sortedKeys is m's keys in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// joinErrs is errors.Join, named for the cleanup paths that collect.
func joinErrs(errs []error) error { return errors.Join(errs...) }
