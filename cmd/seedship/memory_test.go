//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
)

// rssLimit is the bound every command must stay under (issue 8, item 6).
const rssLimit = 512 * mib

// underLimit runs seedship with args, which must succeed, and fails the
// test if its peak RSS reaches rssLimit.
func underLimit(t *testing.T, args ...string) {
	t.Helper()
	r, rss := peakRSS(t, args...)
	if r.code != exitOK {
		t.Fatalf("want exit 0, got %s", r)
	}
	t.Logf("seedship %s: peak RSS %d MiB", strings.Join(args, " "), rss>>20)
	if rss >= rssLimit {
		t.Errorf("seedship %s: peak RSS %d MiB, want under %d MiB", strings.Join(args, " "), rss>>20, rssLimit>>20)
	}
}

// TestMemoryLargeChunks: an incompressible source captured with the
// largest chunk size, plainly and with parity at the size the capture's
// own advice names, then restored and verified with the most workers:
// every command stays under 512 MiB of RSS, and so does a resumed restore
// onto a target that differs everywhere. (Restore and verify took the
// chunk size from the image and reached 630-820 MB; a parity capture at
// the advised segment size 600 MB.)
func TestMemoryLargeChunks(t *testing.T) {
	if testing.Short() {
		t.Skip("captures and restores 600 MiB several times")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		devicetest.Skipf(t, "needs /proc/self/status to measure RSS")
	}
	d := t.TempDir()
	data := randBytes(61, 600*mib)
	srcPath := writeFile(t, filepath.Join(d, "src.img"), data)
	want := shaHex(data)

	plain := filepath.Join(d, "plain")
	underLimit(t, "capture", "--quiet", "--chunk-size", "64MiB", "--workers", "64", srcPath, plain)

	// Parity: whatever the capture refuses, it names options that work
	// and fit.
	parityArgs := []string{"--chunk-size", "64MiB", "--parity", "10+2"}
	refused := filepath.Join(d, "refused")
	r := seedshipCtx(context.Background(), append(append([]string{"capture", "--quiet"}, parityArgs...), srcPath, refused)...)
	if r.code == exitUsage {
		oneLineError(t, r, "--parity 10+2", "--segment-size")
		seg := regexp.MustCompile(`use (?:--chunk-size (\S+) )?--segment-size (\S+) or smaller`).FindStringSubmatch(r.stderr)
		if seg == nil {
			t.Fatalf("the parity advice names no segment size: %s", r)
		}
		if seg[1] != "" {
			parityArgs[1] = seg[1]
		}
		parityArgs = append(parityArgs, "--segment-size", seg[2])
	} else if r.code != exitOK {
		t.Fatalf("want exit 0 or 2, got %s", r)
	}
	withParity := filepath.Join(d, "parity")
	underLimit(t, append(append([]string{"capture", "--quiet", "--workers", "64"}, parityArgs...), srcPath, withParity)...)

	for _, img := range []string{plain, withParity} {
		underLimit(t, "verify", "--quiet", "--workers", "64", img)
		out := filepath.Join(d, "restored.img")
		underLimit(t, "restore", "--quiet", "--workers", "64", img, out)
		if got := shaHex(readFile(t, out)); got != want {
			t.Fatalf("restore of %s: sha256 %s, want %s", img, got, want)
		}
		if err := os.Remove(out); err != nil {
			t.Fatal(err)
		}
	}

	// --resume onto a target that differs everywhere: the comparison of
	// the target with the image, then the read of every chunk.
	target := filepath.Join(d, "differs.img")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(target, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	underLimit(t, "restore", "--quiet", "--resume", "--workers", "64", plain, target)
	if got := shaHex(readFile(t, target)); got != want {
		t.Fatalf("resumed restore: sha256 %s, want %s", got, want)
	}
}
