package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// badValues are values every numeric flag must refuse: zero, negative,
// nonsense, and past its bound.
var badValues = map[string][]string{
	"workers":      {"0", "-5", "garbage", "1.5", "", fmt.Sprint(maxWorkers + 1), "100000000000000000000"},
	"jobs":         {"0", "-5", "garbage", "1.5", "", fmt.Sprint(maxJobs + 1)},
	"level":        {"0", "-5", "garbage", "23"},
	"chunk-size":   {"0", "-5", "garbage", "", "4KiB", "96KiB", "128MiB", "1GiB", "99999999999999999999"},
	"segment-size": {"0", "-5", "garbage", "", "4KiB", "17GiB", "1TiB"},
	"parity":       {"0+0", "-1+2", "10+0", "garbage", "10+", "+2", "300+2"},
	"bwlimit":      {"0", "-5", "garbage", "1Mb", "0.1B/s", "off/s"},
	"path-style":   {"garbage", "sideways"},
}

// TestNumericFlags gives every numeric flag of every command zero, a
// negative number, nonsense and a value past its bound, and checks for
// exit 2, a one-line error naming the flag and what it accepts, and that
// nothing was written. The flags come from the commands themselves, so a
// new numeric flag without a rule fails here.
func TestNumericFlags(t *testing.T) {
	t.Parallel()
	im := newImage(t)
	for _, cmd := range newApp(nil, nil).Commands {
		for _, f := range cmd.Flags {
			name := f.Names()[0]
			if _, ok := numericFlags[name]; !ok {
				if isNumericFlagName(name) {
					t.Errorf("%s --%s has no rule in numericFlags", cmd.Name, name)
				}
				continue
			}
			values, ok := badValues[name]
			if !ok {
				t.Errorf("no bad values to try for --%s", name)
				continue
			}
			t.Run(cmd.Name+"/"+name, func(t *testing.T) {
				t.Parallel()
				for _, v := range values {
					d := t.TempDir()
					out := filepath.Join(d, "out")
					before := treeOf(t, im.img)
					args := append([]string{cmd.Name, "--" + name, v}, commandArgs(cmd.Name, im, out)...)
					r := expect(t, exitUsage, args...)
					oneLineError(t, r, "--"+name, "use ")
					absent(t, out, fmt.Sprintf("%s --%s %q is bad input: nothing may be written", cmd.Name, name, v))
					if !mapsEqual(before, treeOf(t, im.img)) {
						t.Errorf("%s --%s %q changed the image", cmd.Name, name, v)
					}
				}
			})
		}
	}
}

// isNumericFlagName lists the flags that take numbers, rates or sizes.
func isNumericFlagName(name string) bool {
	for _, s := range []string{"size", "workers", "jobs", "level", "limit", "parity", "count", "timeout"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// commandArgs are arguments that make cmd run on the test image, writing
// (if it writes) only to out.
func commandArgs(cmd string, im image, out string) []string {
	switch cmd {
	case "capture":
		return []string{im.src, out}
	case "restore", "copy", "extend":
		return []string{im.img, out}
	}
	return []string{im.img}
}

// TestFlagBounds: the largest accepted values work.
func TestFlagBounds(t *testing.T) {
	t.Parallel()
	im := newImage(t)
	d := t.TempDir()
	img := filepath.Join(d, "seed")
	must(t, "capture", "-q", "--workers", fmt.Sprint(maxWorkers), "--jobs", fmt.Sprint(maxJobs), "--bwlimit", "1GiB/s",
		"--chunk-size", "64MiB", "--segment-size", "16GiB", "--level", "-1", im.src, img)
	must(t, "verify", "-q", "--workers", fmt.Sprint(maxWorkers), "--jobs", "1", img)
	target := filepath.Join(d, "target.img")
	must(t, "restore", "-q", "--workers", "1", "--jobs", fmt.Sprint(maxJobs), im.img, target)
	if !bytes.Equal(readFile(t, target), im.data) {
		t.Errorf("restore with the bounds' values did not restore the source")
	}
}

// TestPartSize: the S3 part buffers of all transfers together never hold
// more than at the default 4 transfers.
func TestPartSize(t *testing.T) {
	t.Parallel()
	for jobs := 1; jobs <= maxJobs; jobs++ {
		ps := partSizeFor(jobs)
		if ps < 5<<20 || ps > 16<<20 {
			t.Errorf("partSizeFor(%d) = %d, outside S3's minimum 5 MiB and the default 16 MiB", jobs, ps)
		}
		if int64(jobs)*ps > 64<<20 {
			t.Errorf("%d jobs × %d-byte parts hold %d MiB, more than the default 4 × 16 MiB", jobs, ps, int64(jobs)*ps>>20)
		}
	}
	if partSizeFor(4) != 16<<20 {
		t.Errorf("partSizeFor(4) = %d, want the default 16 MiB", partSizeFor(4))
	}
}

// TestBadLocations: locations that are neither a path nor a valid
// s3://bucket/prefix are refused before anything is written. (Not
// parallel: it changes directory, to catch a URL taken for a relative path.)
func TestBadLocations(t *testing.T) {
	im := newImage(t)
	for _, loc := range []string{"gs://bucket/x", "S3://bucket/x", "https://example.com/seed", "s3://", "s3:///x", "s3://Bad_Bucket/x",
		"s3://bucket/x?versionId=1", "s3://bucket//x", "s3://bucket/a/../b"} {
		d := t.TempDir()
		t.Chdir(d) // a location taken for a relative path would appear here
		target := filepath.Join(d, "target.img")
		for _, args := range [][]string{
			{"capture", im.src, loc}, {"info", loc}, {"verify", loc}, {"restore", loc, target},
			{"copy", im.img, loc}, {"copy", loc, filepath.Join(d, "copy")},
			{"restore", "--fallback", loc, im.img, target}, {"verify", "--repair", "--fallback", loc, im.img},
		} {
			oneLineError(t, expect(t, exitUsage, args...), loc)
		}
		if tree := treeOf(t, d); len(tree) != 0 {
			t.Errorf("refused commands with %s wrote %v", loc, keys(tree))
		}
	}
	// A URL where a device or file belongs.
	for _, args := range [][]string{
		{"capture", "s3://bucket/disk", filepath.Join(t.TempDir(), "seed")},
		{"restore", im.img, "s3://bucket/target"},
		{"verify", "--device", "s3://bucket/dev", im.img},
	} {
		oneLineError(t, expect(t, exitUsage, args...), "s3://bucket/")
	}
}
