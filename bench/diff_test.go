//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/store/dir"
)

// BenchmarkDiff times `seedship diff IMAGE DEV` of the realistic image
// after 1,000 random 4 KiB writes against `openssl dgst -sha256 DEV` (the
// issue's floor: diff reads the device at no less than that speed), for a
// full image and for a digest-only one, and reports the size of the
// digest-only image of the benchmark disk (the ceiling: 1 MiB).
// The output of each diff is checked: exactly the touched 64 KiB blocks,
// coalesced.
//
//	go test -tags bench -run '^$' -bench 'Diff' -benchtime 1x ./bench/
func BenchmarkDiff(b *testing.B) {
	c := setup(b)
	src := c.image(b, c.sizeMiB)
	size := fileSize(b, src)
	w := c.scratch(b, "diff")
	c.needSpace(b, size+256*mib)

	dev := filepath.Join(w, "device.img")
	wantRanges, wantBytes := changedCopy(b, src, dev, 1000)
	full := filepath.Join(w, "full")
	exe(b, c.captureArgv(false, src, full)...)
	digests := filepath.Join(w, "digests")
	start := time.Now()
	captureDigestOnly(b, src, digests)
	digestCapture := time.Since(start)
	digestBytes := treeSize(b, digests)
	b.ReportMetric(float64(digestBytes), "digest_only_image_bytes")
	b.ReportMetric(float64(digestBytes)/float64(size)*float64(1<<40)/mib, "digest_only_MiB_per_TiB")
	warm(b, src)
	warm(b, dev)
	warmDir(b, full)

	peer := func() run { return exe(b, "openssl", "dgst", "-sha256", dev) }
	var pairs []*pair
	for _, img := range []struct{ name, path string }{{"diff", full}, {"diff_digest_only", digests}} {
		p := measure(b, c, img.name, size, nil, func() run {
			r := diffRun(b, c.bin, img.path, dev)
			var out struct {
				RangeCount   int64 `json:"range_count"`
				ChangedBytes int64 `json:"changed_bytes"`
				Identical    *bool `json:"identical"`
			}
			if err := json.Unmarshal(r.stdout, &out); err != nil {
				b.Fatalf("diff --json: %v\n%s", err, r.stdout)
			}
			if out.RangeCount != wantRanges || out.ChangedBytes != wantBytes || out.Identical == nil || *out.Identical {
				b.Fatalf("diff of %s: %d ranges, %d bytes; want %d ranges, %d bytes (the touched blocks)", img.name, out.RangeCount, out.ChangedBytes, wantRanges, wantBytes)
			}
			return r
		}, peer)
		pairs = append(pairs, p)
	}
	fmt.Printf("\nBenchmarkDiff (%d MiB realistic image, 1,000 random 4 KiB writes: %d ranges, %d bytes changed)\n", size/mib, wantRanges, wantBytes)
	for _, p := range pairs {
		fmt.Printf("  %s  (peer: openssl dgst -sha256 of the device; floor 1.00: %s)\n", p, map[bool]string{true: "ok", false: "BELOW FLOOR"}[p.ratio() >= 1])
	}
	fmt.Printf("  digest-only image: %d bytes (%.1f KiB; ceiling 1 MiB: %s), %.1f MiB per TiB of this disk; captured in %s\n",
		digestBytes, float64(digestBytes)/1024, map[bool]string{true: "ok", false: "ABOVE CEILING"}[digestBytes < mib],
		float64(digestBytes)/float64(size)*float64(1<<40)/mib, digestCapture.Round(time.Millisecond))
}

// changedCopy copies src to dst and makes n writes of 4 KiB of random
// bytes at random offsets (seeded), and returns how many coalesced 64 KiB
// ranges they touch and the bytes of those ranges.
func changedCopy(b *testing.B, src, dst string, n int) (ranges, changed int64) {
	b.Helper()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	size, err := io.Copy(out, in)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(11, 4))
	buf := make([]byte, 4<<10)
	touched := map[int64]bool{}
	for range n {
		off := r.Int64N(size - int64(len(buf)))
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		if _, err := out.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
		for blk := off >> 16; blk <= (off+int64(len(buf))-1)>>16; blk++ {
			touched[blk] = true
		}
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
	blocks := make([]int64, 0, len(touched))
	for blk := range touched {
		blocks = append(blocks, blk)
	}
	slices.Sort(blocks)
	for i, blk := range blocks {
		if i == 0 || blocks[i-1] != blk-1 {
			ranges++
		}
		changed += min(64<<10, size-blk<<16)
	}
	return ranges, changed
}

// captureDigestOnly captures src digest-only into dst, in process (the
// CLI's --digest-only flag is capture's).
func captureDigestOnly(b *testing.B, src, dst string) {
	b.Helper()
	s, err := engine.OpenSource(src)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	st, err := dir.New(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := engine.Capture(context.Background(), s, st, engine.CaptureOptions{DigestOnly: true}); err != nil {
		b.Fatalf("digest-only capture of %s: %v", src, err)
	}
}

// diffRun runs `seedship diff --json IMAGE DEV`, which exits 3 when they
// differ (its normal result here), as exe runs other commands.
func diffRun(b *testing.B, bin, img, dev string) run {
	b.Helper()
	syscall.Sync()
	cmd := exec.Command(bin, "diff", "--json", img, dev)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	el := time.Since(start)
	var ee *exec.ExitError
	if err != nil && (!errors.As(err, &ee) || ee.ExitCode() != 3) {
		b.Fatalf("seedship diff --json %s %s: %v\n%s", img, dev, err, strings.TrimSpace(stderr.String()))
	}
	r := run{elapsed: el, stdout: stdout.Bytes()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss
	}
	return r
}
