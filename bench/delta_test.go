//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// deltaFloor is the bound: computing a delta reads the source at
// no less than the speed of `openssl dgst -sha256` of it.
const deltaFloor = 1.0

// deltaLimit is the bound on the delta image of 1,000 scattered
// 4 KiB writes to a 1 GiB image.
const deltaLimit = 80 * mib

// deltaJSON is the part of `seedship delta --json` the benchmark reads.
type deltaJSON struct {
	ChangedChunks uint64 `json:"changed_chunks"`
	ChangedBlocks int64  `json:"changed_blocks"`
	Chunks        uint64 `json:"chunks"`
	ChunkSize     int    `json:"chunk_size"`
	StoredBytes   int64  `json:"stored_bytes"`
	DigestsBytes  int64  `json:"base_digests_bytes"`
	SHA256        string `json:"sha256"`
}

// BenchmarkDelta is the delta case: the realistic 1 GiB ext4
// image (SEEDSHIP_BENCH_DELTA_MIB overrides the size) is captured, 1,000
// random 4 KiB writes (pseudo-random bytes at random 4 KiB-aligned
// offsets, seed 7) change a copy of it, and `seedship delta` of the copy
// against the image is timed against `openssl dgst -sha256` of the copy,
// alternating, c.rounds rounds. It reports the ratio (floor 1.0), the
// delta image's size (at most 80 MiB) and the time to apply it onto a
// target restored from the image, which must then equal the copy.
//
//	go test -tags bench -run '^$' -bench Delta -benchtime 1x ./bench/
func BenchmarkDelta(b *testing.B) {
	c := setup(b)
	sizeMiB, err := envInt("SEEDSHIP_BENCH_DELTA_MIB", 1024)
	if err != nil {
		b.Fatal(err)
	}
	img := c.image(b, sizeMiB)
	size := fileSize(b, img)
	c.needSpace(b, 3*size)
	w := c.scratch(b, fmt.Sprintf("delta-%dMiB", sizeMiB))
	base, changed, delta, target := filepath.Join(w, "base"), filepath.Join(w, "changed.img"), filepath.Join(w, "delta"), filepath.Join(w, "target.img")
	exe(b, c.captureArgv(false, img, base)...)
	shell(b, fmt.Sprintf("cp %s %s", q(img), q(changed)))
	scatter(b, changed, 1000, 7)
	warm(b, changed)

	var last run
	p := measure(b, c, "delta", size,
		func(ours bool) {
			if ours {
				os.RemoveAll(delta)
			}
		},
		func() run {
			last = exe(b, c.bin, "delta", "--json", base, changed, delta)
			return last
		},
		func() run { return exe(b, "openssl", "dgst", "-sha256", changed) })
	p.floor = deltaFloor
	var dj deltaJSON
	if err := json.Unmarshal(last.stdout, &dj); err != nil {
		b.Fatalf("delta --json: %v\n%s", err, last.stdout)
	}
	// CPU seconds (user + system) are steadier than wall time on a shared
	// machine: the delta's includes the whole-source SHA-256 (one serial
	// stream, the same work as openssl's) and the block digests.
	var oursCPU, peerCPU []time.Duration
	for range c.rounds {
		os.RemoveAll(delta)
		oursCPU = append(oursCPU, cpuOf(b, c.bin, "delta", "--quiet", base, changed, delta))
		peerCPU = append(peerCPU, cpuOf(b, "openssl", "dgst", "-sha256", changed))
	}
	b.ReportMetric(median(oursCPU).Seconds(), "delta_cpu_s")
	b.ReportMetric(median(peerCPU).Seconds(), "delta_peer_cpu_s")
	deltaBytes := treeSize(b, delta)
	b.ReportMetric(float64(deltaBytes)/mib, "delta_image_MiB")

	exe(b, c.bin, "restore", "--quiet", base, target)
	warmDir(b, delta)
	apply := exe(b, c.bin, "restore", "--quiet", delta, target)
	if err := exec.Command("cmp", "-s", changed, target).Run(); err != nil {
		b.Fatalf("the target after the delta differs from the changed image: %v", err)
	}
	b.ReportMetric(apply.elapsed.Seconds(), "delta_apply_s")

	sizeVerdict := "ok"
	if deltaBytes > deltaLimit {
		sizeVerdict = "OVER"
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n=== delta: %d MiB realistic ext4 image (seed %s), 1,000 random 4 KiB writes, %d rounds, medians; ratio = openssl time / seedship time; %d CPUs\n",
		sizeMiB, c.seed, c.rounds, runtime.NumCPU())
	p.oursName, p.peerName = "seedship delta", "openssl dgst -sha256"
	fmt.Fprintln(&out, p)
	fmt.Fprintf(&out, "CPU (user+system), medians: seedship delta %.2fs vs openssl dgst -sha256 %.2fs -> %.2f   [rounds: %s | %s]\n",
		median(oursCPU).Seconds(), median(peerCPU).Seconds(), median(peerCPU).Seconds()/median(oursCPU).Seconds(), fmtDurs(oursCPU), fmtDurs(peerCPU))
	fmt.Fprintf(&out, "delta image: %d bytes (%.1f MiB; limit 80 MiB: %s): %d of %d chunks of %d KiB changed (%d blocks of 64 KiB), stored %d bytes, base digests %d bytes\n",
		deltaBytes, float64(deltaBytes)/mib, sizeVerdict, dj.ChangedChunks, dj.Chunks, dj.ChunkSize>>10, dj.ChangedBlocks, dj.StoredBytes, dj.DigestsBytes)
	fmt.Fprintf(&out, "apply: seedship restore DELTA TARGET onto the restored base in %.2fs (peak RSS %.1f MiB); the target equals the changed image (cmp)\n",
		apply.elapsed.Seconds(), float64(apply.maxRSS)/1024)
	fmt.Print(out.String())
}

// scatter makes n writes of 4 KiB of pseudo-random bytes at random 4 KiB-
// aligned offsets of the file p.
func scatter(b *testing.B, p string, n int, seed uint64) {
	b.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 3))
	page := make([]byte, 4096)
	for range n {
		for i := range page {
			page[i] = byte(r.Uint32())
		}
		if _, err := f.WriteAt(page, r.Int64N(fi.Size()/4096)*4096); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuOf runs argv to completion and returns the CPU time (user and
// system) the process used.
func cpuOf(b *testing.B, argv ...string) time.Duration {
	b.Helper()
	syscall.Sync()
	cmd := exec.Command(argv[0], argv[1:]...)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}
