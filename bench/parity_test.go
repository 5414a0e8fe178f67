//go:build bench

package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// parityFloor is the floor for parity_capture_vs_plain: a capture
// with parity takes at most 15% longer than one without.
const parityFloor = 0.87

// infoJSON is the part of `seedship info --json` the benchmarks read.
type infoJSON struct {
	StoredBytes    int64  `json:"stored_bytes"`
	Segments       int    `json:"segments"`
	Parity         string `json:"parity"`
	ParityBytes    int64  `json:"parity_bytes"`
	ParitySegments int    `json:"parity_segments"`
	SHA256         string `json:"sha256"`
}

func (c *config) info(b *testing.B, env []string, image string) infoJSON {
	b.Helper()
	var in infoJSON
	r := exeEnv(b, env, c.bin, "info", "--json", image)
	if err := json.Unmarshal(r.stdout, &in); err != nil {
		b.Fatalf("info --json %s: %v\n%s", image, err, r.stdout)
	}
	return in
}

// verifyJSON is the part of `seedship verify --json` the benchmark reads.
type verifyJSON struct {
	OK          bool     `json:"ok"`
	Repaired    []string `json:"repaired"`
	FoundBefore int      `json:"found_before_repair"`
}

func fileSHA256(b *testing.B, p string) string {
	b.Helper()
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		b.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// parseGeometry parses "K+M".
func parseGeometry(b *testing.B, s string) (k, m int) {
	b.Helper()
	if _, err := fmt.Sscanf(s, "%d+%d", &k, &m); err != nil || k <= 0 || m <= 0 {
		b.Fatalf("parity %q: want K+M, e.g. 10+2", s)
	}
	return k, m
}

// overheadGuaranteed is the stored size from which spec §5.5 bounds one
// stripe's parity by M/K + 5% of its data, whatever its frames, at the
// capture defaults (8 MiB chunks, 256 KiB rows): 20 × M × ((K−1)/K × F +
// R), F an 8 MiB chunk's frame and index entry. Smaller images whose
// chunks compress evenly stay within it too; this is the worst case.
func overheadGuaranteed(k, m int) int64 {
	const chunk, row = 8 << 20, 256 << 10
	frame := int64(24 + chunk + 92 + 8*(chunk>>16))
	return 20 * int64(m) * (int64(k-1)*frame/int64(k) + row)
}

// BenchmarkParity measures `capture --parity K+M` (SEEDSHIP_BENCH_PARITY,
// default 10+2) against a plain capture of the same image, the stored
// overhead of the parity, and `verify --repair` rebuilding one deleted data
// segment.
func BenchmarkParity(b *testing.B) {
	c := setup(b)
	geo := os.Getenv("SEEDSHIP_BENCH_PARITY")
	if geo == "" {
		geo = "10+2"
	}
	k, m := parseGeometry(b, geo)
	img := c.image(b, c.sizeMiB)
	size := fileSize(b, img)
	c.needSpace(b, 2*size)
	w := c.scratch(b, fmt.Sprintf("parity-%dMiB", c.sizeMiB))
	par, plain := filepath.Join(w, "parity"), filepath.Join(w, "plain")
	var lines []string

	var parInfo, plainInfo captureJSON
	captureParity := func(b *testing.B) run {
		r := exe(b, c.captureArgv(true, img, par, "--parity", geo)...)
		if err := json.Unmarshal(r.stdout, &parInfo); err != nil {
			b.Fatalf("capture --json: %v\n%s", err, r.stdout)
		}
		return r
	}

	b.Run("capture", func(b *testing.B) {
		warm(b, img)
		p := &pair{op: "parity capture", bytes: size, oursName: "parity", peerName: "plain", floor: parityFloor}
		p.rounds(b, c,
			func(ours bool) {
				if ours {
					os.RemoveAll(par)
				} else {
					os.RemoveAll(plain)
				}
			},
			func() run { return captureParity(b) },
			func() run {
				r := exe(b, c.captureArgv(true, img, plain)...)
				if err := json.Unmarshal(r.stdout, &plainInfo); err != nil {
					b.Fatalf("capture --json: %v\n%s", err, r.stdout)
				}
				return r
			})
		if parInfo.SHA256 != plainInfo.SHA256 {
			b.Fatalf("parity and plain captures recorded different source SHA-256s: %s vs %s", parInfo.SHA256, plainInfo.SHA256)
		}
		in := c.info(b, nil, par)
		if in.Parity != geo || in.ParityBytes <= 0 {
			b.Fatalf("info --json of the parity image: parity %q, %d parity bytes", in.Parity, in.ParityBytes)
		}
		overhead := float64(in.ParityBytes) / float64(in.StoredBytes)
		limit := float64(m)/float64(k) + 0.05
		if overhead > limit && in.StoredBytes >= overheadGuaranteed(k, m) {
			b.Errorf("parity overhead %.3f over M/K + 5%% = %.3f for %d stored bytes (spec §5.5 guarantees it from %d)",
				overhead, limit, in.StoredBytes, overheadGuaranteed(k, m))
		}
		p.reportVs(b, "parity_capture_vs_plain", "parity_capture", "plain_capture")
		b.ReportMetric(overhead, "parity_overhead")
		lines = append(lines, p.String(),
			fmt.Sprintf("parity overhead: parity_bytes %d / stored_bytes %d = %.3f, M/K + 5%% = %.3f (%d data segments, %d parity segments; plain capture: %d segments)",
				in.ParityBytes, in.StoredBytes, overhead, limit, in.Segments, in.ParitySegments, plainInfo.Segments))
		os.RemoveAll(plain)
	})

	b.Run("repair", func(b *testing.B) {
		if _, err := os.Stat(filepath.Join(par, "manifest.ssm")); err != nil {
			os.RemoveAll(par)
			captureParity(b)
		}
		// Stripe 0 is data segments 0 … K-1 and parity segments 0 … M-1
		// (spec/FORMAT.md); data segment 0 is the one deleted.
		var stripe []string
		var stripeBytes int64
		for i := range k {
			p := filepath.Join(par, "data", fmt.Sprintf("%08d.seg", i))
			if _, err := os.Stat(p); err != nil {
				break // a short stripe
			}
			stripe = append(stripe, p)
		}
		for j := range m {
			stripe = append(stripe, filepath.Join(par, "parity", fmt.Sprintf("%08d.par", j)))
		}
		for _, p := range stripe {
			stripeBytes += fileSize(b, p)
		}
		victim := stripe[0]
		rel, _ := filepath.Rel(par, victim)
		want := fileSHA256(b, victim)
		warmDir(b, par)

		p := &pair{op: "repair", bytes: stripeBytes, oursName: "verify --repair", peerName: "verify"}
		p.rounds(b, c,
			func(ours bool) {
				if ours {
					if err := os.Remove(victim); err != nil {
						b.Fatal(err)
					}
				}
			},
			func() run {
				r := exe(b, c.bin, "verify", "--repair", "--json", par) // exe fails unless the exit status is 0
				var v verifyJSON
				if err := json.Unmarshal(r.stdout, &v); err != nil {
					b.Fatalf("verify --repair --json: %v\n%s", err, r.stdout)
				}
				if !v.OK || !slices.Contains(v.Repaired, filepath.ToSlash(rel)) {
					b.Fatalf("verify --repair --json after deleting %s: %s", rel, r.stdout)
				}
				if got := fileSHA256(b, victim); got != want {
					b.Fatalf("repaired %s has sha256 %s, the captured one had %s", rel, got, want)
				}
				return r
			},
			func() run { return exe(b, c.bin, "verify", "--quiet", par) })
		mr := median(p.ours)
		b.ReportMetric(float64(mr.Nanoseconds()), "ns/op")
		b.ReportMetric(mr.Seconds(), "repair_s")
		b.ReportMetric(mbps(stripeBytes, mr), "repair_stripe_MB/s")
		b.ReportMetric(float64(p.rssKiB)/1024, "repair_RSS_MiB")
		b.ReportMetric(p.ratio(), "verify_vs_repair")
		mv := median(p.peer)
		lines = append(lines,
			fmt.Sprintf("%-16s verify --repair --json after deleting %s: %6.2fs, exit 0 (stripe 0: %d data + %d parity segments, %d bytes -> %.1f MB/s, peak RSS %.1f MiB); plain verify of the image %6.2fs -> ratio verify/repair %.2f   [rounds: repair %s | verify %s]",
				"repair:", rel, mr.Seconds(), len(stripe)-m, m, stripeBytes, mbps(stripeBytes, mr), float64(p.rssKiB)/1024,
				mv.Seconds(), p.ratio(), fmtDurs(p.ours), fmtDurs(p.peer)),
			fmt.Sprintf("repair: %s was rebuilt byte-identical (sha256) in every round; verify --repair also scans the whole image before and after the rebuild", rel))
	})

	var out strings.Builder
	fmt.Fprintf(&out, "\n=== seedship capture --parity %s vs plain capture: %d MiB realistic ext4 image (seed %s), capture %s, %d rounds, medians; ratio = plain time / parity time (>= %.2f: parity within 15%%); %d CPUs\n",
		geo, c.sizeMiB, c.seed, c.compression(b, par), c.rounds, parityFloor, runtime.NumCPU())
	for _, l := range lines {
		fmt.Fprintln(&out, l)
	}
	fmt.Print(out.String())
}
