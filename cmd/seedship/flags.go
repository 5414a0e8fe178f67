package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/store/ratelimit"
	"github.com/seedship/seedship/store/retry"
	"github.com/seedship/seedship/store/s3"
)

// s3Flags are the flags of every command that may reach object storage.
// Credentials, region and endpoint follow the AWS conventions
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
// AWS_ENDPOINT_URL, AWS_PROFILE, ~/.aws/credentials); the flags override.
func s3Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "endpoint", Usage: "S3 endpoint URL for s3:// locations, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:7070 (default: AWS_ENDPOINT_URL, else AWS)", Category: "Object storage"},
		&cli.StringFlag{Name: "region", Usage: "S3 region (default: AWS_REGION, else asked from the bucket)", Category: "Object storage"},
		&cli.StringFlag{Name: "path-style", Value: "auto", Usage: "S3 addressing: auto, path or virtual", Category: "Object storage"},
		&cli.StringFlag{Name: "profile", Usage: "profile in the shared AWS credentials file (default: AWS_PROFILE, else default)", Category: "Object storage"},
		&cli.IntFlag{Name: "jobs", Usage: fmt.Sprintf("parallel transfers to and from object storage, 1 to %d", maxJobs), DefaultText: "4", Category: "Object storage"},
		&cli.StringFlag{Name: "bwlimit", Usage: "cap object-storage traffic, e.g. 50MiB/s, at least 1 B/s", DefaultText: "no limit", Category: "Object storage"},
	}
}

// workersFlag is --workers of a command whose workers do kind of work;
// note follows the range in the usage.
func workersFlag(kind, note string) cli.Flag {
	return &cli.IntFlag{Name: "workers", Usage: fmt.Sprintf("%s workers, 1 to %d%s", kind, maxWorkers, note), DefaultText: "number of CPUs"}
}

// isS3 reports whether loc names object storage.
func isS3(loc string) bool { return strings.HasPrefix(loc, "s3://") }

// openStore opens an image location for reading: an existing directory,
// or s3://bucket/prefix.
func openStore(c *cli.Context, loc string) (store.Store, error) {
	if isS3(loc) {
		return openS3(c, loc)
	}
	s, err := dir.Open(loc)
	if errors.Is(err, store.ErrNotExist) {
		return nil, fmt.Errorf("%w: image %s does not exist: check the path (is the drive mounted?)", engine.ErrBadInput, loc)
	}
	if err != nil {
		return nil, openError("image "+loc, err)
	}
	return s, nil
}

// checkFallback checks the syntax of --fallback, when given, before
// anything is opened.
func checkFallback(c *cli.Context) error {
	if loc := c.String("fallback"); loc != "" {
		return checkImageLocation("fallback", loc)
	}
	return nil
}

// openFallback opens the second copy of the image that --fallback names,
// or returns nil without --fallback.
func openFallback(c *cli.Context) (store.Store, error) {
	loc := c.String("fallback")
	if loc == "" {
		return nil, nil
	}
	return openStore(c, loc)
}

// createStore opens an image location for writing: a directory (created)
// or s3://bucket/prefix (the bucket must exist).
func createStore(c *cli.Context, loc string) (store.Store, error) {
	if isS3(loc) {
		return openS3(c, loc)
	}
	s, err := dir.New(loc)
	if err != nil {
		return nil, openError("destination "+loc, err)
	}
	return s, nil
}

// openError wraps the failure to open a store, which happens before
// anything is read or written: one that retrying cannot fix (a file where
// a directory should be, no permission, no bucket) is bad input. what
// names the location, or is "" when err already names it.
func openError(what string, err error) error {
	if what != "" {
		err = fmt.Errorf("%s: %w", what, err)
	}
	if store.IsPermanent(err) {
		return fmt.Errorf("%w: %w", engine.ErrBadInput, err)
	}
	return err
}

// openS3 connects to s3://bucket/prefix, checking credentials and the
// bucket before anything else happens, and wraps the store in retries
// with backoff and, with --bwlimit, a rate limit.
func openS3(c *cli.Context, loc string) (store.Store, error) {
	cfg, err := s3.ConfigFromEnv(loc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", engine.ErrBadInput, err)
	}
	if v := c.String("endpoint"); v != "" {
		cfg.Endpoint = v
	}
	if v := c.String("region"); v != "" {
		cfg.Region = v
	}
	if v := c.String("profile"); v != "" {
		cfg.Profile = v
	}
	if cfg.PathStyle, err = s3.ParsePathStyle(c.String("path-style")); err != nil {
		return nil, usagef("%v", err)
	}
	if c.IsSet("jobs") {
		cfg.Connections = c.Int("jobs")
	}
	cfg.PartSize = partSizeFor(cfg.Connections)
	st, err := s3.New(c.Context, cfg)
	if err != nil {
		// Credentials, bucket and endpoint are checked before anything is
		// read or written.
		return nil, openError("", err)
	}
	var out store.Store = retry.New(st, retry.Options{})
	if bw := c.String("bwlimit"); bw != "" {
		rate, err := parseRate(bw)
		if err != nil {
			return nil, err
		}
		lim := ratelimit.NewLimiter(rate)
		out = ratelimit.New(out, lim, lim)
	}
	return out, nil
}

// parseSize parses sizes such as 4194304, 4M, 4MiB, 1G, 64k.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"tb", 1 << 40},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, usagef("bad size %q: use a number with an optional unit, e.g. 4MiB", s)
	}
	return n * mult, nil
}

// Bounds of the numeric flags. Each is documented in the flag's usage and
// checked (with checkFlags) before a command reads or writes anything.
const (
	// maxWorkers bounds --workers: the engine's bound, past which workers
	// add only memory on any machine seedship targets.
	maxWorkers = engine.MaxWorkers
	// maxJobs bounds --jobs. Every transfer holds an S3 part buffer;
	// partSizeFor shrinks the parts as jobs grow, so that up to maxJobs
	// transfers hold no more than the default 4 do.
	maxJobs = 12
	// s3PartBudget is what the part buffers of all parallel transfers may
	// hold together: 4 transfers × s3.DefaultPartSize.
	s3PartBudget = 4 * s3.DefaultPartSize
	// maxSegmentSize bounds --segment-size: a segment must fit in one S3
	// multipart upload of the smallest parts (10,000 × 5 MiB), and larger
	// segments only make a lost or damaged one cost more to fetch again.
	maxSegmentSize = 16 << 30
)

// partSizeFor returns the S3 part size for jobs parallel transfers: the
// default 16 MiB up to 4 jobs, then smaller (never below S3's 5 MiB
// minimum), so memory does not grow with --jobs.
func partSizeFor(jobs int) int64 {
	if jobs <= 0 {
		return s3.DefaultPartSize
	}
	return max(s3.MinPartSize, min(int64(s3.DefaultPartSize), int64(s3PartBudget/jobs)))
}

// flagRule checks the value of one numeric flag; accepted describes the
// values it accepts, for the one-line error.
type flagRule struct {
	accepted string
	check    func(c *cli.Context, name string) bool
}

// intIn accepts an integer flag's value in [lo, hi].
func intIn(lo, hi int) func(*cli.Context, string) bool {
	return func(c *cli.Context, name string) bool { v := c.Int(name); return v >= lo && v <= hi }
}

// sizeIn accepts a size flag's value (see parseSize) in [lo, hi], a power
// of two if pow2.
func sizeIn(lo, hi int64, pow2 bool) func(*cli.Context, string) bool {
	return func(c *cli.Context, name string) bool {
		v, err := parseSize(c.String(name))
		return err == nil && v >= lo && v <= hi && (!pow2 || v&(v-1) == 0)
	}
}

// numericFlags are the rules for every numeric flag of every command (and
// --path-style, the one other flag with a fixed set of values).
var numericFlags = map[string]flagRule{
	"workers": {fmt.Sprintf("a whole number from 1 to %d", maxWorkers), intIn(1, maxWorkers)},
	"jobs":    {fmt.Sprintf("a whole number from 1 to %d", maxJobs), intIn(1, maxJobs)},
	"level": {"1 (fastest) to 22 (smallest), or -1 for no compression", func(c *cli.Context, name string) bool {
		v := c.Int(name)
		return v == -1 || v >= 1 && v <= 22
	}},
	"chunk-size":   {"a power of two from 64KiB to 64MiB", sizeIn(format.MinChunkSize, format.MaxChunkSize, true)},
	"segment-size": {"a size from 64KiB to 16GiB, e.g. 1GiB", sizeIn(format.MinSegmentSize, maxSegmentSize, false)},
	"parity": {"K+M with K ≥ 1, M ≥ 1 and K+M ≤ 256, e.g. 10+2", func(c *cli.Context, name string) bool {
		_, err := parseParity(c.String(name))
		return err == nil
	}},
	"path-style": {"auto, path or virtual", func(c *cli.Context, name string) bool {
		_, err := s3.ParsePathStyle(c.String(name))
		return err == nil
	}},
	"bwlimit": {"a rate of at least 1 byte per second, e.g. 50MiB/s or 800KB/s (leave it out for no limit)", func(c *cli.Context, name string) bool {
		_, err := parseRate(c.String(name))
		return err == nil
	}},
}

// checkFlags rejects, before anything is read or written, every numeric
// flag given with a value out of its range: zero, negative or nonsense is
// never silently replaced by a default.
func checkFlags(c *cli.Context) error {
	for _, f := range c.Command.Flags {
		name := f.Names()[0]
		rule, ok := numericFlags[name]
		if !ok || !c.IsSet(name) {
			continue
		}
		if !rule.check(c, name) {
			return usagef("%s: --%s %s: use %s", c.Command.Name, name, shellQuote(flagValue(c, name)), rule.accepted)
		}
	}
	return nil
}

// flagValue is the value given for a flag, as typed.
func flagValue(c *cli.Context, name string) string {
	if v := c.Value(name); v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

// flagParseError matches the flag package's error for a value it cannot
// parse, e.g. `invalid value "x" for flag -workers: parse error`.
var flagParseError = regexp.MustCompile(`^invalid value "(.*)" for flag -([A-Za-z0-9-]+): `)

// onUsageError turns urfave/cli's flag errors into one-line usage errors;
// a value that does not parse is reported with its flag's accepted range.
func onUsageError(c *cli.Context, err error, _ bool) error {
	if m := flagParseError.FindStringSubmatch(err.Error()); m != nil {
		if rule, ok := numericFlags[m[2]]; ok {
			return usagef("%s: --%s %s: use %s", c.Command.Name, m[2], shellQuote(m[1]), rule.accepted)
		}
	}
	return usagef("%s: %v (see 'seedship %s --help')", c.Command.Name, err, c.Command.Name)
}

// parseRate parses --bwlimit: a rate of at least 1 B/s.
func parseRate(s string) (int64, error) {
	r, err := ratelimit.ParseRate(s)
	if err != nil {
		return 0, usagef("--bwlimit %s: %v", shellQuote(s), err)
	}
	if r <= 0 {
		return 0, usagef("--bwlimit %s: use a rate of at least 1 byte per second, or leave it out for no limit", shellQuote(s))
	}
	return r, nil
}

// urlScheme matches a location that names a URL scheme.
var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://`)

// checkImageLocation checks the syntax of an image location before
// anything is opened: s3://bucket/prefix (parsed strictly by package s3)
// or a path; what names another scheme is refused rather than taken as a
// relative directory named "gs:".
func checkImageLocation(what, loc string) error {
	if isS3(loc) {
		if _, err := s3.ParseURL(loc); err != nil {
			return fmt.Errorf("%w: %s %s: %w", engine.ErrBadInput, what, loc, err)
		}
		return nil
	}
	if urlScheme.MatchString(loc) {
		return fmt.Errorf("%w: %s %s: not a location seedship can use: give a directory or s3://bucket/prefix", engine.ErrBadInput, what, loc)
	}
	if loc == "" {
		return fmt.Errorf("%w: %s is empty: give a directory or s3://bucket/prefix", engine.ErrBadInput, what)
	}
	return nil
}

// checkDeviceLocation checks that loc, a capture source, restore target or
// verified device, names a local device or file, not a URL.
func checkDeviceLocation(what, loc string) error {
	if urlScheme.MatchString(loc) {
		return fmt.Errorf("%w: %s %s: a %s is a block device or file on this host, not a URL", engine.ErrBadInput, what, loc, what)
	}
	if loc == "" {
		return fmt.Errorf("%w: %s is empty: give a block device or file", engine.ErrBadInput, what)
	}
	return nil
}
