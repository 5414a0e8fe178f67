//go:build bench

package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// volumesFloor is the floor for volumes_capture_vs_one: capture to
// four directories on one disk runs at no less than 0.9 of capture to one.
const volumesFloor = 0.9

// dropCaches writes back dirty pages and drops the page cache (root only),
// so the next read comes from the disk.
func dropCaches(b *testing.B) {
	b.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Skipf("cannot drop the page cache (needs root): %v", err)
	}
}

// exeCPU is exe that also returns the CPU time (user and system) the
// command used: a measure the load of other processes does not move.
func exeCPU(b *testing.B, argv ...string) (run, time.Duration) {
	b.Helper()
	syscall.Sync()
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	el := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	r := run{elapsed: el, stdout: stdout.Bytes()}
	var cpu time.Duration
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return r, cpu
}

// volumeCaptureJSON is the part of `seedship capture --json` over volumes
// the benchmark reads.
type volumeCaptureJSON struct {
	Volumes []struct {
		Volume          int     `json:"volume"`
		Bytes           int64   `json:"bytes"`
		ReadBack        string  `json:"readback"`
		ReadBackBytes   int64   `json:"readback_bytes"`
		ReadBackSeconds float64 `json:"readback_seconds"`
	} `json:"volumes"`
}

// BenchmarkVolumes measures capture onto four volume directories on one
// disk (--no-readback) against capture into one directory, and the
// read-back of the four volumes (`seedship label --check`, which syncs,
// drops each file from the page cache and reads it back) against
// `cat FILES > /dev/null` after dropping the page cache.
func BenchmarkVolumes(b *testing.B) {
	c := setup(b)
	img := c.image(b, c.sizeMiB)
	size := fileSize(b, img)
	c.needSpace(b, 2*size)
	w := c.scratch(b, fmt.Sprintf("volumes-%dMiB", c.sizeMiB))
	one := filepath.Join(w, "one")
	var vols []string
	for i := range 4 {
		vols = append(vols, filepath.Join(w, fmt.Sprintf("vol%d", i+1)))
	}
	var lines []string
	removeAll := func(ps ...string) {
		for _, p := range ps {
			os.RemoveAll(p)
		}
	}

	b.Run("capture", func(b *testing.B) {
		warm(b, img)
		p := &pair{op: "volumes capture", bytes: size, oursName: "4 volumes", peerName: "1 directory", floor: volumesFloor}
		var cpuOurs, cpuPeer []time.Duration
		p.rounds(b, c,
			func(ours bool) {
				if ours {
					removeAll(vols...)
				} else {
					removeAll(one)
				}
			},
			func() run {
				argv := c.captureArgv(false, img, vols[0], "--no-readback")
				r, cpu := exeCPU(b, append(argv, vols[1:]...)...)
				cpuOurs = append(cpuOurs, cpu)
				return r
			},
			func() run {
				r, cpu := exeCPU(b, c.captureArgv(false, img, one)...)
				cpuPeer = append(cpuPeer, cpu)
				return r
			})
		p.reportVs(b, "volumes_capture_vs_one", "volumes4_capture", "dir1_capture")
		cpuRatio := median(cpuPeer).Seconds() / median(cpuOurs).Seconds()
		b.ReportMetric(cpuRatio, "volumes_capture_cpu_vs_one")
		lines = append(lines, p.String(), fmt.Sprintf("%-16s CPU time (user+sys) 4 volumes %.2fs vs 1 directory %.2fs -> ratio %.2f   [rounds: %s | %s]",
			"volumes cpu:", median(cpuOurs).Seconds(), median(cpuPeer).Seconds(), cpuRatio, fmtDurs(cpuOurs), fmtDurs(cpuPeer)))
		removeAll(one)
	})

	b.Run("readback", func(b *testing.B) {
		if _, err := os.Stat(filepath.Join(vols[3], "manifest.ssm")); err != nil {
			removeAll(vols...)
			argv := c.captureArgv(false, img, vols[0], "--no-readback")
			exe(b, append(argv, vols[1:]...)...)
		}
		var files []string
		var bytes int64
		for _, v := range vols {
			err := filepath.WalkDir(v, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() && !strings.HasPrefix(d.Name(), ".") {
					files = append(files, q(p))
					fi, _ := d.Info()
					bytes += fi.Size()
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		p := &pair{op: "read-back", bytes: bytes, oursName: "label --check", peerName: "cat after drop_caches"}
		p.rounds(b, c,
			func(bool) { dropCaches(b) },
			func() run {
				r := exe(b, append([]string{c.bin, "label", "--check", "--json"}, vols...)...)
				var out []struct {
					Check *struct {
						ReadBack string `json:"readback"`
					} `json:"check"`
				}
				if err := json.Unmarshal(r.stdout, &out); err != nil || len(out) != 4 {
					b.Fatalf("label --check --json: %v\n%s", err, r.stdout)
				}
				for _, o := range out {
					if o.Check == nil || o.Check.ReadBack != "ok" {
						b.Fatalf("label --check --json: a volume did not read back ok:\n%s", r.stdout)
					}
				}
				return r
			},
			func() run { return shell(b, "cat "+strings.Join(files, " ")+" > /dev/null") })
		p.reportVs(b, "readback_vs_cat", "readback", "cat")
		lines = append(lines, p.String())
	})

	// The capture's own read-back, as its --json reports it.
	b.Run("capture-readback", func(b *testing.B) {
		removeAll(vols...)
		argv := append(c.captureArgv(true, img, vols[0]), vols[1:]...)
		start := time.Now()
		r := exe(b, argv...)
		el := time.Since(start)
		var out volumeCaptureJSON
		if err := json.Unmarshal(r.stdout, &out); err != nil || len(out.Volumes) != 4 {
			b.Fatalf("capture --json: %v\n%s", err, r.stdout)
		}
		var rb int64
		var slowest float64
		for _, v := range out.Volumes {
			if v.ReadBack != "ok" || v.ReadBackBytes != v.Bytes {
				b.Fatalf("volume %d: read-back %q of %d of %d bytes", v.Volume, v.ReadBack, v.ReadBackBytes, v.Bytes)
			}
			rb += v.ReadBackBytes
			slowest = max(slowest, v.ReadBackSeconds)
		}
		b.ReportMetric(float64(rb)/1e6/slowest, "capture_readback_MB/s")
		lines = append(lines, fmt.Sprintf("%-16s capture onto 4 volumes with read-back: %6.2fs in all; the read-back of %d bytes over 4 volumes in parallel took %.2fs (%.1f MB/s)",
			"capture+readback:", el.Seconds(), rb, slowest, float64(rb)/1e6/slowest))
	})

	var out strings.Builder
	fmt.Fprintf(&out, "\n=== seedship capture onto 4 volume directories on one disk vs 1 directory (ratio = 1-dir time / 4-volume time, >= %.2f), and read-back vs cat after drop_caches: %d MiB realistic ext4 image (seed %s), %d rounds, medians; %d CPUs\n",
		volumesFloor, c.sizeMiB, c.seed, c.rounds, runtime.NumCPU())
	for _, l := range lines {
		fmt.Fprintln(&out, l)
	}
	fmt.Print(out.String())
}
