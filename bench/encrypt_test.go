//go:build bench

package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/seedship/seedship/seal"
)

// Issue 10's speed floors, as ratios peer time / seedship time.
const (
	// encryptFloor: an encrypted capture or restore takes at most 10%
	// longer than the unencrypted one.
	encryptFloor = 0.91
	// keylessVerifyFloor: keyless verify of an encrypted image is at least
	// 4x as fast as `openssl dgst -sha256` of the raw image.
	keylessVerifyFloor = 4.0
	// deepVerifyFloor: `verify --deep` is no slower than verify was
	// before format 3.
	deepVerifyFloor = 1.0
)

// defaultBaselineRev is "verify today" of issue 10: the last commit before
// image format 3 (encryption). SEEDSHIP_BENCH_BASELINE_REV overrides it.
const defaultBaselineRev = "e9b040c"

// exeInto is exeCPU (volumes_test.go) that appends the command's CPU
// time to cpu.
func exeInto(b *testing.B, cpu *[]time.Duration, argv ...string) run {
	b.Helper()
	r, t := exeCPU(b, argv...)
	*cpu = append(*cpu, t)
	return r
}

// cpuPair is the CPU time of each round of a pair's two commands.
type cpuPair struct{ ours, peer []time.Duration }

// ratio is the peer's median CPU time / ours, oriented like pair.ratio.
func (k *cpuPair) ratio() float64 { return median(k.peer).Seconds() / median(k.ours).Seconds() }

// bestRatio is p's ratio of the fastest rounds: other processes on a
// shared machine only ever slow a command down, so each command's fastest
// round is the one least disturbed.
func bestRatio(p *pair) float64 { return slices.Min(p.peer).Seconds() / slices.Min(p.ours).Seconds() }

// report reports the medians of the CPU times (<oursKey>_cpu_s,
// <peerKey>_cpu_s), their ratio (<ratio>_cpu) and the wall-time ratio of
// the fastest rounds (<ratio>_best).
func (k *cpuPair) report(b *testing.B, p *pair, ratio, oursKey, peerKey string) {
	b.ReportMetric(median(k.ours).Seconds(), oursKey+"_cpu_s")
	b.ReportMetric(median(k.peer).Seconds(), peerKey+"_cpu_s")
	b.ReportMetric(k.ratio(), ratio+"_cpu")
	b.ReportMetric(bestRatio(p), ratio+"_best")
}

// lines are the summary's CPU line and fastest-rounds line for p, each
// with p's floor.
func (k *cpuPair) lines(p *pair) []string {
	return []string{
		fmt.Sprintf("%-16s CPU (user+system): %s %6.2fs vs %s %6.2fs -> ratio %.2f%s   [rounds: %s %s | %s %s]",
			"", p.oursName, median(k.ours).Seconds(), p.peerName, median(k.peer).Seconds(), k.ratio(), verdictOf(k.ratio(), p.floor),
			p.oursName, fmtDurs(k.ours), p.peerName, fmtDurs(k.peer)),
		fmt.Sprintf("%-16s fastest rounds (wall): %s %6.2fs vs %s %6.2fs -> ratio %.2f%s",
			"", p.oursName, slices.Min(p.ours).Seconds(), p.peerName, slices.Min(p.peer).Seconds(), bestRatio(p), verdictOf(bestRatio(p), p.floor)),
	}
}

// summary is p's table line, its CPU and fastest-rounds lines, then notes.
func summary(p *pair, k *cpuPair, notes ...string) []string {
	return append(append([]string{p.String()}, k.lines(p)...), notes...)
}

// verdictOf says how ratio compares with floor, as pair.verdict does.
func verdictOf(ratio, floor float64) string {
	if ratio >= floor {
		return fmt.Sprintf(" (floor %.2f: ok)", floor)
	}
	return fmt.Sprintf(" (floor %.2f: BELOW FLOOR)", floor)
}

// loadAvg is /proc/loadavg's 1, 5 and 15 minute load averages: the
// machine may be shared, and the figures mean little without it.
func loadAvg() string {
	bs, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(bs))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// recipientOf returns the age public key (age1…) of the one X25519
// identity in the file at path.
func recipientOf(b *testing.B, path string) string {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ids, err := seal.ParseIdentitiesFile(path, f)
	if err != nil {
		b.Fatal(err)
	}
	if len(ids) != 1 {
		b.Fatalf("%s holds %d identities: the benchmark wants one", path, len(ids))
	}
	x, ok := ids[0].(*age.X25519Identity)
	if !ok {
		b.Fatalf("%s: the benchmark wants an X25519 identity (age-keygen), not %T", path, ids[0])
	}
	return x.Recipient().String()
}

var (
	baselineOnce                         sync.Once
	baselineBin, baselineRev, noBaseline string
	baselineErr                          error
)

// baseline returns the seedship binary built from the commit
// SEEDSHIP_BENCH_BASELINE_REV (default e9b040c) and its full hash, building
// it once into the bench directory (seedship-baseline-HASH, kept for later
// runs) from `git archive` of that commit. skip is non-empty, and says
// why, when there is no git or the commit is not in the repository.
func (c *config) baseline(b *testing.B) (bin, rev, skip string) {
	b.Helper()
	baselineOnce.Do(func() {
		baselineBin, baselineRev, noBaseline, baselineErr = c.buildBaseline()
	})
	if baselineErr != nil {
		b.Fatal(baselineErr)
	}
	return baselineBin, baselineRev, noBaseline
}

func (c *config) buildBaseline() (bin, rev, skip string, err error) {
	want := os.Getenv("SEEDSHIP_BENCH_BASELINE_REV")
	if want == "" {
		want = defaultBaselineRev
	}
	git, err := exec.LookPath("git")
	if err != nil {
		return "", "", "no git on PATH: the baseline seedship (SEEDSHIP_BENCH_BASELINE_REV=" + want + ") cannot be built", nil
	}
	out, err := exec.Command(git, "-C", c.root, "rev-parse", "--verify", "--quiet", want+"^{commit}").Output()
	if err != nil {
		return "", "", fmt.Sprintf("commit %q is not in the repository at %s (a shallow clone?): fetch it or set SEEDSHIP_BENCH_BASELINE_REV to one that is", want, c.root), nil
	}
	rev = strings.TrimSpace(string(out))
	bin = filepath.Join(c.dir, "seedship-baseline-"+rev)
	if _, err := os.Stat(bin); err == nil {
		return bin, rev, "", nil
	}
	src, err := os.MkdirTemp("", "seedship-baseline-src-")
	if err != nil {
		return "", "", "", err
	}
	defer os.RemoveAll(src)
	tarball := filepath.Join(src, "src.tar")
	tmp := bin + ".tmp"
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", "", "", fmt.Errorf("the benchmark builds the baseline seedship with go: %w", err)
	}
	steps := [][]string{
		{git, "-C", c.root, "archive", "-o", tarball, rev},
		{"tar", "-x", "-f", tarball, "-C", src},
		{gobin, "build", "-o", tmp, "./cmd/seedship"},
	}
	fmt.Printf("bench: building the baseline seedship at %s into %s (once; cached)\n", rev[:12], bin)
	for _, argv := range steps {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GOWORK=off")
		if o, err := cmd.CombinedOutput(); err != nil {
			return "", "", "", fmt.Errorf("building the baseline seedship (SEEDSHIP_BENCH_BASELINE_REV=%s): %s: %v\n%s", want, strings.Join(argv, " "), err, o)
		}
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", "", "", err
	}
	return bin, rev, "", nil
}

// encryptionOf is the encryption part of `seedship info --json` (absent
// on a plain image).
func (c *config) encryptionOf(b *testing.B, image string) *struct {
	AEAD       string   `json:"aead"`
	Recipients []string `json:"recipients"`
} {
	b.Helper()
	var in struct {
		Encryption *struct {
			AEAD       string   `json:"aead"`
			Recipients []string `json:"recipients"`
		} `json:"encryption"`
	}
	r := exe(b, c.bin, "info", "--json", image)
	if err := json.Unmarshal(r.stdout, &in); err != nil {
		b.Fatalf("info --json %s: %v\n%s", image, err, r.stdout)
	}
	return in.Encryption
}

// checkDepth runs `verify --json ARGS` once (untimed) and fails unless it
// passes at the given depth ("transport" or "deep"): the timed runs of the
// same command (--quiet) then measure the check this names.
func (c *config) checkDepth(b *testing.B, depth string, args ...string) {
	b.Helper()
	r := exe(b, append([]string{c.bin, "verify", "--json"}, args...)...)
	var v struct {
		OK    bool   `json:"ok"`
		Depth string `json:"depth"`
	}
	if err := json.Unmarshal(r.stdout, &v); err != nil {
		b.Fatalf("verify --json %s: %v\n%s", strings.Join(args, " "), err, r.stdout)
	}
	if !v.OK || v.Depth != depth {
		b.Fatalf("verify --json %s: ok %v at depth %q, want ok at depth %q\n%s", strings.Join(args, " "), v.OK, v.Depth, depth, r.stdout)
	}
}

// BenchmarkEncrypt measures issue 10's speed requirements on the realistic
// image of SEEDSHIP_BENCH_SIZE_MIB, each against its peer in the same run
// (alternating order, c.rounds rounds, medians, as BenchmarkSeedship):
//
//   - capture: `capture --recipient R` against a plain capture (floor
//     0.91, within 10%), with the CPU time of both;
//   - restore: `restore --identity F` of the encrypted image against a
//     restore of the plain one (floor 0.91); both restored files must
//     equal the source (cmp);
//   - verify: keyless `verify` of the encrypted image (transport only)
//     against `openssl dgst -sha256` of the raw image (floor 4);
//   - deep: `verify --deep` of the plain image, and identity: `verify
//     --identity F` of the encrypted one, each against `verify` by the
//     seedship of SEEDSHIP_BENCH_BASELINE_REV (default e9b040c, the last
//     commit before format 3) of its own image of the same source (floor
//     1.0).
//
// Each pair also reports the ratio of CPU time and of the fastest rounds.
// The key is the published test identity testdata/seal/identity-1.txt.
//
//	SEEDSHIP_BENCH_ROUNDS=3 go test -tags bench -run '^$' -bench Encrypt -benchtime 1x ./bench/
func BenchmarkEncrypt(b *testing.B) {
	c := setup(b)
	img := c.image(b, c.sizeMiB)
	size := fileSize(b, img)
	c.needSpace(b, 3*size)
	w := c.scratch(b, fmt.Sprintf("encrypt-%dMiB", c.sizeMiB))
	identity := filepath.Join(c.root, "testdata", "seal", "identity-1.txt")
	recipient := recipientOf(b, identity)
	enc, plain, old := filepath.Join(w, "encrypted"), filepath.Join(w, "plain"), filepath.Join(w, "baseline")
	target, plainTarget := filepath.Join(w, "target"), filepath.Join(w, "target-plain")
	loadStart := loadAvg()
	var lines []string

	var encInfo, plainInfo captureJSON
	var discard []time.Duration
	captureEnc := func(b *testing.B, cpu *[]time.Duration) run {
		r := exeInto(b, cpu, c.captureArgv(true, img, enc, "--recipient", recipient)...)
		if err := json.Unmarshal(r.stdout, &encInfo); err != nil {
			b.Fatalf("capture --recipient --json: %v\n%s", err, r.stdout)
		}
		return r
	}
	capturePlain := func(b *testing.B, cpu *[]time.Duration) run {
		r := exeInto(b, cpu, c.captureArgv(true, img, plain)...)
		if err := json.Unmarshal(r.stdout, &plainInfo); err != nil {
			b.Fatalf("capture --json: %v\n%s", err, r.stdout)
		}
		return r
	}
	// A sub-benchmark run on its own still finds its images (untimed).
	ensure := func(b *testing.B, dst string, capture func(*testing.B, *[]time.Duration) run) {
		if _, err := os.Stat(filepath.Join(dst, "manifest.ssm")); err != nil {
			os.RemoveAll(dst)
			capture(b, &discard)
		}
	}

	b.Run("capture", func(b *testing.B) {
		warm(b, img)
		var k cpuPair
		p := &pair{op: "capture", bytes: size, oursName: "encrypted", peerName: "plain", floor: encryptFloor}
		p.rounds(b, c,
			func(ours bool) {
				if ours {
					os.RemoveAll(enc)
				} else {
					os.RemoveAll(plain)
				}
			},
			func() run { return captureEnc(b, &k.ours) },
			func() run { return capturePlain(b, &k.peer) })
		if encInfo.SHA256 != "" && encInfo.SHA256 != plainInfo.SHA256 {
			b.Fatalf("the encrypted and plain captures recorded different source SHA-256s: %s vs %s", encInfo.SHA256, plainInfo.SHA256)
		}
		p.reportVs(b, "encrypted_capture_vs_plain", "encrypted_capture", "plain_capture")
		k.report(b, p, "encrypted_capture_vs_plain", "encrypted_capture", "plain_capture")
		if e := c.encryptionOf(b, enc); e == nil || e.AEAD == "" || !slices.Contains(e.Recipients, recipient) {
			b.Fatalf("info --json of the encrypted image: encryption %+v, want an AEAD and recipient %s", e, recipient)
		}
		if e := c.encryptionOf(b, plain); e != nil {
			b.Fatalf("info --json of the plain image: encryption %+v, want none", e)
		}
		es, ps := treeSize(b, enc), treeSize(b, plain)
		b.ReportMetric(float64(es)/float64(ps), "encrypted_size_vs_plain")
		lines = append(lines, summary(p, &k,
			fmt.Sprintf("%-16s info --json: the encrypted image is sealed (AEAD) for the recipient, the plain one is not", ""),
			fmt.Sprintf("%-16s image size: encrypted %d bytes (%.1f MiB) vs plain %d bytes (%.1f MiB) -> %.4f", "", es, float64(es)/mib, ps, float64(ps)/mib, float64(es)/float64(ps)))...)
		if encInfo.SHA256 != "" {
			lines = append(lines, fmt.Sprintf("%-16s both captures recorded the source SHA-256 %s", "", plainInfo.SHA256))
		}
	})

	b.Run("restore", func(b *testing.B) {
		ensure(b, enc, captureEnc)
		ensure(b, plain, capturePlain)
		warmDir(b, enc)
		warmDir(b, plain)
		var k cpuPair
		p := &pair{op: "restore", bytes: size, oursName: "encrypted", peerName: "plain", floor: encryptFloor}
		p.rounds(b, c,
			func(ours bool) {
				if ours {
					os.Remove(target)
				} else {
					os.Remove(plainTarget)
				}
			},
			func() run {
				return exeInto(b, &k.ours, c.bin, "restore", "--quiet", "--identity", identity, enc, target)
			},
			func() run { return exeInto(b, &k.peer, c.bin, "restore", "--quiet", plain, plainTarget) })
		for _, t := range []string{target, plainTarget} {
			if err := exec.Command("cmp", "-s", img, t).Run(); err != nil {
				b.Fatalf("restored %s differs from %s: %v", t, img, err)
			}
			os.Remove(t)
		}
		p.reportVs(b, "encrypted_restore_vs_plain", "encrypted_restore", "plain_restore")
		k.report(b, p, "encrypted_restore_vs_plain", "encrypted_restore", "plain_restore")
		lines = append(lines, summary(p, &k,
			fmt.Sprintf("%-16s both restored files are byte-identical to the source image (cmp)", ""))...)
	})

	b.Run("verify", func(b *testing.B) {
		ensure(b, enc, captureEnc)
		warmDir(b, enc)
		warm(b, img)
		c.checkDepth(b, "transport", enc)
		var k cpuPair
		p := &pair{op: "keyless verify", bytes: size, oursName: "verify (no key)", peerName: "openssl dgst -sha256", floor: keylessVerifyFloor}
		p.rounds(b, c, nil,
			func() run { return exeInto(b, &k.ours, c.bin, "verify", "--quiet", enc) },
			func() run { return exeInto(b, &k.peer, "openssl", "dgst", "-sha256", img) })
		p.reportVs(b, "keyless_verify_vs_openssl", "keyless_verify", "openssl")
		k.report(b, p, "keyless_verify_vs_openssl", "keyless_verify", "openssl")
		lines = append(lines, summary(p, &k,
			fmt.Sprintf("%-16s verify --json of the encrypted image without a key: ok, depth transport", ""),
			fmt.Sprintf("%-16s keyless verify reads the encrypted image's %d stored bytes (%.1f%% of the raw image); MB/s are of the raw image", "",
				treeSize(b, enc), 100*float64(treeSize(b, enc))/float64(size)))...)
	})

	// The baseline's image of the same source, captured once (untimed) by
	// the first of the two sub-benchmarks that need it.
	var skipNoted bool
	baselineImage := func(b *testing.B) (oldBin, name string) {
		oldBin, rev, skip := c.baseline(b)
		if skip != "" {
			if !skipNoted {
				lines = append(lines, fmt.Sprintf("%-16s skipped (deep and identity): %s", "deep verify:", skip))
				skipNoted = true
			}
			b.Skip(skip)
		}
		if _, err := os.Stat(filepath.Join(old, "manifest.ssm")); err != nil {
			os.RemoveAll(old)
			argv := []string{oldBin, "capture", "--quiet"}
			if c.level != 0 {
				argv = append(argv, "--level", strconv.Itoa(c.level))
			}
			oc := exe(b, append(argv, img, old)...)
			lines = append(lines, fmt.Sprintf("%-16s baseline: seedship at %s (SEEDSHIP_BENCH_BASELINE_REV), verify of its own format-2 image of the same source (captured untimed in %.2fs)",
				"", rev[:12], oc.elapsed.Seconds()))
		}
		return oldBin, "verify@" + rev[:7]
	}

	b.Run("deep", func(b *testing.B) {
		oldBin, baseName := baselineImage(b)
		ensure(b, plain, capturePlain)
		warmDir(b, old)
		warmDir(b, plain)
		c.checkDepth(b, "deep", "--deep", plain)
		var k cpuPair
		p := &pair{op: "deep verify", bytes: size, oursName: "verify --deep", peerName: baseName, floor: deepVerifyFloor}
		p.rounds(b, c, nil,
			func() run { return exeInto(b, &k.ours, c.bin, "verify", "--quiet", "--deep", plain) },
			func() run { return exeInto(b, &k.peer, oldBin, "verify", "--quiet", old) })
		p.reportVs(b, "deep_verify_vs_baseline", "deep_verify", "baseline_verify")
		k.report(b, p, "deep_verify_vs_baseline", "deep_verify", "baseline_verify")
		lines = append(lines, summary(p, &k,
			fmt.Sprintf("%-16s verify --json --deep of the plain image: ok, depth deep", ""))...)
	})

	b.Run("identity", func(b *testing.B) {
		oldBin, baseName := baselineImage(b)
		ensure(b, enc, captureEnc)
		warmDir(b, old)
		warmDir(b, enc)
		c.checkDepth(b, "deep", "--identity", identity, enc)
		var k cpuPair
		p := &pair{op: "identity verify", bytes: size, oursName: "verify --identity (encrypted)", peerName: baseName, floor: deepVerifyFloor}
		p.rounds(b, c, nil,
			func() run { return exeInto(b, &k.ours, c.bin, "verify", "--quiet", "--identity", identity, enc) },
			func() run { return exeInto(b, &k.peer, oldBin, "verify", "--quiet", old) })
		p.reportVs(b, "identity_verify_vs_baseline", "identity_verify", "baseline_verify")
		k.report(b, p, "identity_verify_vs_baseline", "identity_verify", "baseline_verify")
		lines = append(lines, summary(p, &k,
			fmt.Sprintf("%-16s verify --json --identity of the encrypted image: ok, depth deep", ""))...)
	})

	var out strings.Builder
	fmt.Fprintf(&out, "\n=== encryption (issue 10 speed): %d MiB realistic ext4 image (seed %s), capture %s, recipient %s (testdata/seal/identity-1.txt), %d rounds, medians; ratio = peer time / first command's time; %d CPUs; load average (1 5 15 min) at start %s, at end %s\n",
		c.sizeMiB, c.seed, c.compression(b, plain), recipient, c.rounds, runtime.NumCPU(), loadStart, loadAvg())
	for _, l := range lines {
		fmt.Fprintln(&out, l)
	}
	fmt.Fprintf(&out, "floors: capture and restore %.2f (encrypted within 10%% of plain), keyless verify %.2f (4x openssl dgst -sha256 of the raw image), verify --deep and --identity %.2f (no slower than the baseline's verify)\n",
		encryptFloor, keylessVerifyFloor, deepVerifyFloor)
	fmt.Print(out.String())
}
