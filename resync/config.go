package resync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// maxConfigSize bounds what LoadConfig reads: a configuration is a few
// KiB; anything near this is not one.
const maxConfigSize = 1 << 20

// Config is the operator's configuration file (JSON), loaded with
// [LoadConfig]. The top level holds the common fields below and one
// object per adapter ("sios", "drbd", "mdraid", "exec"), decoded by the
// adapter with [Config.Section]. Unknown top-level fields are refused.
//
//	{
//	  "adapter": "sios",
//	  "hosts": [{"name": "nodea"}, {"name": "nodeb", "ssh": ["ssh", "-o", "BatchMode=yes", "root@nodeb"]}],
//	  "bin": {"ssh": "/usr/bin/ssh"},
//	  "sios": {...}
//	}
type Config struct {
	// Adapter names the replication product's adapter (see [Names]).
	Adapter string `json:"adapter"`
	// Hosts are the systems of the mirror; the first is this one.
	Hosts []HostConfig `json:"hosts,omitempty"`
	// Bin maps an executable name to its path ("drbdadm":
	// "/usr/sbin/drbdadm"), for tests and odd installs; see [Config.Exe].
	Bin map[string]string `json:"bin,omitempty"`
	// Sections holds the per-adapter objects by name, raw; adapters
	// decode theirs with [Config.Section].
	Sections map[string]json.RawMessage `json:"-"`

	path string // the file it was loaded from, for error messages
}

// HostConfig is one system of the mirror.
type HostConfig struct {
	// Name is how adapters and the other fields of the configuration
	// refer to the host.
	Name string `json:"name"`
	// SSH is the argv prefix that reaches the host, e.g. ["ssh", "-o",
	// "BatchMode=yes", "root@nodeb"]; the command to run there is
	// appended as one shell-quoted word. Empty means this system.
	SSH []string `json:"ssh,omitempty"`
}

// LoadConfig reads and checks the configuration file at path: the JSON
// must be one object with known fields, name a registered adapter, and
// pass that adapter's own checks (its constructor, see [Register]).
// Errors are one line naming the file and the field, and wrap
// [ErrConfig].
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: config %s: %w", ErrConfig, path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: config %s: %w", ErrConfig, path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("%w: config %s: larger than %d bytes: not a seedship resync configuration", ErrConfig, path, maxConfigSize)
	}
	cfg, err := ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	// The adapter's constructor checks its section (required commands,
	// paths) without touching the world, so a bad file is refused here,
	// before any step runs.
	if _, err := New(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// ParseConfig decodes and checks the common part of a configuration
// (everything [LoadConfig] checks except the adapter's section); name is
// used in error messages. Errors wrap [ErrConfig].
func ParseConfig(name string, data []byte) (*Config, error) {
	cfg := &Config{path: name}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, cfg.FieldError("", "not a JSON object: %v", err)
	}
	if top == nil {
		return nil, cfg.FieldError("", "not a JSON object")
	}
	known := Names()
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first bad field named is the same every time
	for _, k := range keys {
		raw := top[k]
		switch {
		case k == "adapter":
			if err := strictDecode(raw, &cfg.Adapter); err != nil {
				return nil, cfg.FieldError("adapter", "%v", err)
			}
		case k == "hosts":
			if err := strictDecode(raw, &cfg.Hosts); err != nil {
				return nil, cfg.FieldError("hosts", "%v", err)
			}
		case k == "bin":
			if err := strictDecode(raw, &cfg.Bin); err != nil {
				return nil, cfg.FieldError("bin", "%v", err)
			}
		case slices.Contains(known, k):
			if cfg.Sections == nil {
				cfg.Sections = make(map[string]json.RawMessage)
			}
			cfg.Sections[k] = raw
		default:
			return nil, cfg.FieldError(k, "unknown field: use adapter, hosts, bin or an adapter section (%s)", strings.Join(known, ", "))
		}
	}
	if cfg.Adapter == "" {
		return nil, cfg.FieldError("adapter", "missing: name one of %s", strings.Join(known, ", "))
	}
	if !slices.Contains(known, cfg.Adapter) {
		return nil, cfg.FieldError("adapter", "unknown adapter %q: use one of %s", cfg.Adapter, strings.Join(known, ", "))
	}
	seen := make(map[string]bool, len(cfg.Hosts))
	for i, h := range cfg.Hosts {
		field := fmt.Sprintf("hosts[%d].name", i)
		switch {
		case h.Name == "":
			return nil, cfg.FieldError(field, "missing: every host needs a name")
		case seen[h.Name]:
			return nil, cfg.FieldError(field, "host %q is listed twice", h.Name)
		}
		seen[h.Name] = true
		if len(h.SSH) > 0 && h.SSH[0] == "" {
			return nil, cfg.FieldError(fmt.Sprintf("hosts[%d].ssh", i), "the first word must be the ssh executable")
		}
	}
	for name, p := range cfg.Bin {
		if p == "" {
			return nil, cfg.FieldError("bin."+name, "empty path: give the executable's path or leave the entry out")
		}
	}
	return cfg, nil
}

// Path is the file the configuration was loaded from.
func (c *Config) Path() string { return c.path }

// Section decodes the adapter section name into v, strictly: a field v
// does not have is refused. A missing section leaves v unchanged. Errors
// name the file and the section and wrap [ErrConfig].
func (c *Config) Section(name string, v any) error {
	raw, ok := c.Sections[name]
	if !ok {
		return nil
	}
	if err := strictDecode(raw, v); err != nil {
		return c.FieldError(name, "%v", err)
	}
	return nil
}

// Exe is the path of executable name: Bin[name] if set, else name
// (looked up in PATH when run).
func (c *Config) Exe(name string) string {
	if p, ok := c.Bin[name]; ok {
		return p
	}
	return name
}

// Host finds the host called name in Hosts. The empty name is this
// system, also when Hosts is empty.
func (c *Config) Host(name string) (HostConfig, error) {
	if name == "" {
		return HostConfig{}, nil
	}
	for _, h := range c.Hosts {
		if h.Name == name {
			return h, nil
		}
	}
	return HostConfig{}, c.FieldError("hosts", "no host named %q: add it to hosts", name)
}

// FieldError is a one-line configuration error naming the file and the
// field ("sios.extend", "hosts[1].ssh"), wrapping [ErrConfig]; adapters'
// constructors use it for their sections.
func (c *Config) FieldError(field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	msg = strings.Join(strings.Fields(msg), " ") // one line, whatever the cause said
	path := "(no file)"
	if c != nil && c.path != "" {
		path = c.path
	}
	if field == "" {
		return fmt.Errorf("%w: config %s: %s", ErrConfig, path, msg)
	}
	return fmt.Errorf("%w: config %s: %s: %s", ErrConfig, path, field, msg)
}

// strictDecode decodes one JSON value into v, refusing unknown fields and
// trailing data.
func strictDecode(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the value")
	}
	return nil
}
