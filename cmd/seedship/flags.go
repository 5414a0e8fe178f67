package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
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
		&cli.IntFlag{Name: "jobs", Usage: "parallel transfers to and from object storage (default 4)", Category: "Object storage"},
		&cli.StringFlag{Name: "bwlimit", Usage: "cap object-storage traffic, e.g. 50MiB/s (default: no limit)", Category: "Object storage"},
	}
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
		return nil, fmt.Errorf("image %s: %w", loc, err)
	}
	return s, nil
}

// createStore opens an image location for writing: a directory (created)
// or s3://bucket/prefix (the bucket must exist).
func createStore(c *cli.Context, loc string) (store.Store, error) {
	if isS3(loc) {
		return openS3(c, loc)
	}
	s, err := dir.New(loc)
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", loc, err)
	}
	return s, nil
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
	if j := c.Int("jobs"); j > 0 {
		cfg.Connections = j
	}
	st, err := s3.New(c.Context, cfg)
	if err != nil {
		return nil, err
	}
	var out store.Store = retry.New(st, retry.Options{})
	if bw := c.String("bwlimit"); bw != "" {
		rate, err := ratelimit.ParseRate(bw)
		if err != nil {
			return nil, usagef("bad --bwlimit %q: %v", bw, err)
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
