package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// openStore opens an image location for reading: a directory that must
// exist.
func openStore(ctx context.Context, loc string) (store.Store, error) {
	_ = ctx
	s, err := dir.Open(loc)
	if errors.Is(err, store.ErrNotExist) {
		return nil, fmt.Errorf("%w: image %s does not exist: check the path (is the drive mounted?)", engine.ErrBadInput, loc)
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", loc, err)
	}
	return s, nil
}

// createStore opens an image location for writing, creating a directory.
func createStore(ctx context.Context, loc string) (store.Store, error) {
	_ = ctx
	s, err := dir.New(loc)
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", loc, err)
	}
	return s, nil
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
