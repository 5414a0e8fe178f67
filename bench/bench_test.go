//go:build bench

// Package bench compares seedship's capture, verify and restore with the
// peer commands an operator would otherwise run (zstd, openssl dgst, sync)
// on the same realistic ext4 image, and records seedship's peak memory.
// BenchmarkParity and BenchmarkS3 compare seedship commands with each
// other: capture with and without parity (and a repair from parity), and
// capture and restore with a local S3 server and with a directory.
// BenchmarkSparse times verify and restore of a 64 GiB image that is 99%
// zeros against the 5 s bound. BenchmarkEncrypt (encrypt_test.go)
// measures issue 10's speed floors: encrypted against plain capture and
// restore, keyless verify against openssl, and verify --deep against the
// seedship before format 3.
// Results are ratios measured in the same run, never timed assertions.
//
//	go test -tags bench -run '^$' -bench . -benchtime 1x -timeout 90m ./bench/
//
// See README.md for the environment variables and what each metric means.
package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/verify"
)

const mib = 1 << 20

// config is read once from the environment.
type config struct {
	root    string // repository root (holds go.mod)
	dir     string // SEEDSHIP_BENCH_DIR: images and scratch space
	sizeMiB int    // SEEDSHIP_BENCH_SIZE_MIB
	seed    string // SEEDSHIP_BENCH_SEED
	rounds  int    // SEEDSHIP_BENCH_ROUNDS
	keep    bool   // SEEDSHIP_BENCH_KEEP: keep scratch outputs
	level   int    // SEEDSHIP_BENCH_LEVEL: capture --level (0: seedship's default)
	bin     string // freshly built seedship
	binDir  string
}

var (
	cfgOnce sync.Once
	cfg     *config
	cfgErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cfg != nil && cfg.binDir != "" {
		os.RemoveAll(cfg.binDir)
	}
	os.Exit(code)
}

func envInt(name string, def int) (int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}

// setup reads the environment and builds bin/seedship into a temporary
// directory, once per test binary.
func setup(b *testing.B) *config {
	b.Helper()
	cfgOnce.Do(func() { cfg, cfgErr = loadConfig() })
	if cfgErr != nil {
		b.Fatal(cfgErr)
	}
	return cfg
}

func loadConfig() (*config, error) {
	c := &config{dir: os.Getenv("SEEDSHIP_BENCH_DIR"), seed: os.Getenv("SEEDSHIP_BENCH_SEED"), keep: os.Getenv("SEEDSHIP_BENCH_KEEP") != ""}
	if c.dir == "" {
		c.dir = "/var/tmp/seedship-bench"
	}
	if c.seed == "" {
		c.seed = "1"
	}
	var err error
	if c.sizeMiB, err = envInt("SEEDSHIP_BENCH_SIZE_MIB", 4096); err != nil {
		return nil, err
	}
	if c.rounds, err = envInt("SEEDSHIP_BENCH_ROUNDS", 3); err != nil {
		return nil, err
	}
	if v := os.Getenv("SEEDSHIP_BENCH_LEVEL"); v != "" {
		if c.level, err = strconv.Atoi(v); err != nil || c.level == 0 {
			return nil, fmt.Errorf("SEEDSHIP_BENCH_LEVEL=%q: want a zstd level 1-22 or -1", v)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for c.root = wd; ; c.root = filepath.Dir(c.root) {
		if _, err := os.Stat(filepath.Join(c.root, "go.mod")); err == nil {
			break
		}
		if c.root == filepath.Dir(c.root) {
			return nil, fmt.Errorf("no go.mod above %s", wd)
		}
	}
	for _, tool := range []string{"zstd", "openssl", "sh", "sync", "cmp", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err2 := exec.LookPath("/usr/sbin/" + tool); err2 != nil {
				return nil, fmt.Errorf("the benchmark needs %s: %w", tool, err)
			}
		}
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	if c.binDir, err = os.MkdirTemp("", "seedship-bench-bin-"); err != nil {
		return nil, err
	}
	c.bin = filepath.Join(c.binDir, "seedship")
	// go test puts its own GOROOT/bin first on PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("the benchmark builds seedship with go: %w", err)
	}
	cmd := exec.Command(gobin, "build", "-o", c.bin, "./cmd/seedship")
	cmd.Dir = c.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/seedship: %v\n%s", err, out)
	}
	return c, nil
}

// image returns the path of the cached realistic ext4 image of sizeMiB,
// making it with scripts/mkimage.sh if needed. The cache key includes a
// hash of the script, so editing the script makes new images.
func (c *config) image(b *testing.B, sizeMiB int) string {
	b.Helper()
	script := filepath.Join(c.root, "scripts", "mkimage.sh")
	sb, err := os.ReadFile(script)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(sb)
	stem := fmt.Sprintf("ext4-%dMiB-seed%s-", sizeMiB, c.seed)
	img := filepath.Join(c.dir, stem+hex.EncodeToString(sum[:4])+".img")
	if _, err := os.Stat(img); err == nil {
		return img
	}
	// Images of the same size and seed from an older script are stale.
	old, _ := filepath.Glob(filepath.Join(c.dir, stem+"*.img"))
	for _, o := range old {
		os.Remove(o)
	}
	c.needSpace(b, int64(sizeMiB)*mib) // staging plus the image
	// Printed, not logged: a parent benchmark's log is not shown.
	fmt.Printf("bench: making %s with scripts/mkimage.sh (once; cached)\n", img)
	start := time.Now()
	cmd := exec.Command("bash", script, img, strconv.Itoa(sizeMiB), c.seed)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("scripts/mkimage.sh: %v\n%s", err, stderr.String())
	}
	fmt.Printf("bench: made in %s: %s\n", time.Since(start).Round(time.Second), strings.TrimSpace(stderr.String()))
	return img
}

// needSpace fails early with a clear message when the bench directory's
// file system has less than n bytes free.
func (c *config) needSpace(b *testing.B, n int64) {
	b.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(c.dir, &st); err != nil {
		b.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < n+512*mib {
		b.Fatalf("%s has %d MiB free; this benchmark needs about %d MiB: set SEEDSHIP_BENCH_DIR to a larger disk or lower SEEDSHIP_BENCH_SIZE_MIB",
			c.dir, free/mib, (n+512*mib)/mib)
	}
}

// scratch returns a fresh working directory for outputs, removed when the
// benchmark ends unless SEEDSHIP_BENCH_KEEP is set.
func (c *config) scratch(b *testing.B, name string) string {
	b.Helper()
	w := filepath.Join(c.dir, "work-"+name)
	if err := os.RemoveAll(w); err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(w, 0o755); err != nil {
		b.Fatal(err)
	}
	if !c.keep {
		b.Cleanup(func() { os.RemoveAll(w) })
	}
	return w
}

// captureArgv is the seedship capture command line; extra options go
// before SOURCE and DEST.
func (c *config) captureArgv(withJSON bool, src, dst string, extra ...string) []string {
	argv := []string{c.bin, "capture", "--quiet"}
	if withJSON {
		argv = append(argv, "--json")
	}
	if c.level != 0 {
		argv = append(argv, "--level", strconv.Itoa(c.level))
	}
	argv = append(argv, extra...)
	return append(argv, src, dst)
}

// run is one finished command.
type run struct {
	elapsed time.Duration
	maxRSS  int64 // KiB, of the process itself (not of a shell's children)
	stdout  []byte
}

// exe runs argv to completion and fails the benchmark if it fails. Dirty
// pages from earlier steps are written back first (untimed), so no command
// pays for another's writes; the page cache is left alone.
func exe(b *testing.B, argv ...string) run {
	b.Helper()
	return exeEnv(b, nil, argv...)
}

// exeEnv is exe with the child's environment env (nil: this process's).
func exeEnv(b *testing.B, env []string, argv ...string) run {
	b.Helper()
	syscall.Sync()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	el := time.Since(start)
	if err != nil {
		b.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, stderr.String())
	}
	r := run{elapsed: el, stdout: stdout.Bytes()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss // KiB on Linux
	}
	return r
}

func shell(b *testing.B, script string) run {
	b.Helper()
	return exe(b, "sh", "-c", script)
}

// q quotes s for sh.
func q(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// warm reads path once so the first timed command does not alone pay for
// a cold page cache. Nothing is dropped between commands.
func warm(b *testing.B, path string) {
	b.Helper()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
}

func warmDir(b *testing.B, root string) {
	b.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			warm(b, p)
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}

// treeSize sums the apparent sizes of the regular files under root:
// segments plus manifest, what a copy of the image transfers.
func treeSize(b *testing.B, root string) int64 {
	b.Helper()
	var n int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func fileSize(b *testing.B, p string) int64 {
	b.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

// pair is one seedship command measured against its peer, or (with
// oursName and peerName set) one seedship command against another.
type pair struct {
	op         string
	bytes      int64 // raw image bytes processed
	ours, peer []time.Duration
	rssKiB     int64 // max over rounds
	peerRSSKiB int64 // max over rounds; shown when peerName is set

	oursName, peerName string  // labels in the table; "" means seedship vs peer
	floor              float64 // the ratio the issue asks for, 0: none
}

func (p *pair) ratio() float64 { return median(p.peer).Seconds() / median(p.ours).Seconds() }

// measure runs ours and peer alternately for rounds rounds, alternating
// which goes first, each preceded by its untimed prepare step (which is
// told whether seedship or the peer runs next).
func measure(b *testing.B, c *config, op string, size int64, prepare func(ours bool), ours func() run, peer func() run) *pair {
	b.Helper()
	p := &pair{op: op, bytes: size}
	p.rounds(b, c, prepare, ours, peer)
	b.ReportMetric(float64(median(p.ours).Nanoseconds()), "ns/op")
	b.ReportMetric(p.ratio(), op+"_vs_peer")
	b.ReportMetric(mbps(size, median(p.ours)), op+"_MB/s")
	b.ReportMetric(mbps(size, median(p.peer)), op+"_peer_MB/s")
	b.ReportMetric(float64(p.rssKiB)/1024, op+"_RSS_MiB")
	return p
}

// rounds runs ours and peer alternately, as measure describes, and
// records their times and peak RSS in p.
func (p *pair) rounds(b *testing.B, c *config, prepare func(ours bool), ours func() run, peer func() run) {
	b.Helper()
	for i := range c.rounds {
		steps := []bool{true, false}
		if i%2 == 1 {
			steps = []bool{false, true}
		}
		for _, isOurs := range steps {
			if prepare != nil {
				prepare(isOurs)
			}
			// What the previous run wrote is flushed now, untimed, so
			// that its writeback is not charged to the next command.
			syscall.Sync()
			if isOurs {
				r := ours()
				p.ours = append(p.ours, r.elapsed)
				p.rssKiB = max(p.rssKiB, r.maxRSS)
			} else {
				r := peer()
				p.peer = append(p.peer, r.elapsed)
				p.peerRSSKiB = max(p.peerRSSKiB, r.maxRSS)
			}
		}
	}
}

// reportVs reports the metrics of a pair of two seedship commands:
// ns/op (ours), ratio (peer time / our time), <oursKey>_MB/s,
// <peerKey>_MB/s, <oursKey>_RSS_MiB and <peerKey>_RSS_MiB.
func (p *pair) reportVs(b *testing.B, ratio, oursKey, peerKey string) {
	b.ReportMetric(float64(median(p.ours).Nanoseconds()), "ns/op")
	b.ReportMetric(p.ratio(), ratio)
	b.ReportMetric(mbps(p.bytes, median(p.ours)), oursKey+"_MB/s")
	b.ReportMetric(mbps(p.bytes, median(p.peer)), peerKey+"_MB/s")
	b.ReportMetric(float64(p.rssKiB)/1024, oursKey+"_RSS_MiB")
	b.ReportMetric(float64(p.peerRSSKiB)/1024, peerKey+"_RSS_MiB")
}

// verdict says how the ratio compares with the floor.
func (p *pair) verdict() string {
	if p.floor == 0 {
		return ""
	}
	if p.ratio() >= p.floor {
		return fmt.Sprintf(" (floor %.2f: ok)", p.floor)
	}
	return fmt.Sprintf(" (floor %.2f: BELOW FLOOR)", p.floor)
}

func fmtDurs(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%.2f", d.Seconds()))
	}
	return strings.Join(s, " ")
}

func (p *pair) String() string {
	mo, mp := median(p.ours), median(p.peer)
	if p.peerName != "" {
		return fmt.Sprintf("%-16s %s %6.2fs (%7.1f MB/s, peak RSS %5.1f MiB) vs %s %6.2fs (%7.1f MB/s, peak RSS %5.1f MiB) -> ratio %.2f%s   [rounds: %s %s | %s %s]",
			p.op+":", p.oursName, mo.Seconds(), mbps(p.bytes, mo), float64(p.rssKiB)/1024,
			p.peerName, mp.Seconds(), mbps(p.bytes, mp), float64(p.peerRSSKiB)/1024, p.ratio(), p.verdict(),
			p.oursName, fmtDurs(p.ours), p.peerName, fmtDurs(p.peer))
	}
	return fmt.Sprintf("%-8s seedship %6.2fs (%7.1f MB/s, peak RSS %5.1f MiB) vs peer %6.2fs (%7.1f MB/s) -> ratio %.2f   [rounds: seedship %s | peer %s]",
		p.op+":", mo.Seconds(), mbps(p.bytes, mo), float64(p.rssKiB)/1024, mp.Seconds(), mbps(p.bytes, mp), p.ratio(),
		fmtDurs(p.ours), fmtDurs(p.peer))
}

// compression describes how the image at seed was compressed, from
// `seedship info --json`.
func (c *config) compression(b *testing.B, seed string) string {
	b.Helper()
	out, err := exec.Command(c.bin, "info", "--json", seed).Output()
	if err != nil {
		return "(compression unknown)"
	}
	var info struct {
		Compression struct {
			Codec string `json:"codec"`
			Level int    `json:"level"`
		} `json:"compression"`
	}
	if json.Unmarshal(out, &info) != nil {
		return "(compression unknown)"
	}
	if info.Compression.Codec != "zstd" {
		return info.Compression.Codec
	}
	return fmt.Sprintf("zstd level %d", info.Compression.Level)
}

// captureJSON is the part of `seedship capture --json` the benchmark reads.
type captureJSON struct {
	Size        int64  `json:"size"`
	Chunks      uint64 `json:"chunks"`
	ZeroChunks  uint64 `json:"zero_chunks"`
	StoredBytes int64  `json:"stored_bytes"`
	Segments    int    `json:"segments"`
	Parity      string `json:"parity"`
	ParityBytes int64  `json:"parity_bytes"`
	SHA256      string `json:"sha256"`
}

// BenchmarkSeedship measures capture, verify and restore of a realistic
// ext4 image of SEEDSHIP_BENCH_SIZE_MIB against the peer commands.
func BenchmarkSeedship(b *testing.B) {
	c := setup(b)
	img := c.image(b, c.sizeMiB)
	size := fileSize(b, img)
	c.needSpace(b, 3*size)
	w := c.scratch(b, fmt.Sprintf("%dMiB", c.sizeMiB))
	seed := filepath.Join(w, "seed")
	zst := filepath.Join(w, "img.zst")
	target := filepath.Join(w, "target")
	peerTarget := filepath.Join(w, "target-peer")
	peerCapture := fmt.Sprintf("zstd -T0 -3 -q -f < %s > %s && sync %s && openssl dgst -sha256 %s", q(img), q(zst), q(zst), q(img))
	var pairs []*pair
	var notes []string

	var capInfo captureJSON
	captureOnce := func(b *testing.B) {
		os.RemoveAll(seed)
		r := exe(b, c.captureArgv(true, img, seed)...)
		if err := json.Unmarshal(r.stdout, &capInfo); err != nil {
			b.Fatalf("capture --json: %v\n%s", err, r.stdout)
		}
	}
	// A sub-benchmark run on its own still finds its inputs.
	ensureInputs := func(b *testing.B) {
		if _, err := os.Stat(filepath.Join(seed, "manifest.ssm")); err != nil {
			captureOnce(b)
		}
		if _, err := os.Stat(zst); err != nil {
			shell(b, peerCapture)
		}
	}

	b.Run("capture", func(b *testing.B) {
		warm(b, img)
		r, pr := run{}, run{}
		p := measure(b, c, "capture", size,
			func(ours bool) {
				if ours {
					os.RemoveAll(seed)
				} else {
					os.Remove(zst)
				}
			},
			func() run {
				r = exe(b, c.captureArgv(true, img, seed)...)
				return r
			},
			func() run {
				pr = shell(b, peerCapture)
				return pr
			})
		if err := json.Unmarshal(r.stdout, &capInfo); err != nil {
			b.Fatalf("capture --json: %v\n%s", err, r.stdout)
		}
		// openssl prints "SHA2-256(img)= <hex>".
		f := strings.Fields(string(pr.stdout))
		if len(f) == 0 || !strings.EqualFold(f[len(f)-1], capInfo.SHA256) {
			b.Fatalf("capture recorded sha256 %s, openssl says %q", capInfo.SHA256, pr.stdout)
		}
		ours, theirs := treeSize(b, seed), fileSize(b, zst)
		b.ReportMetric(float64(ours)/float64(theirs), "image_size_vs_zst")
		pairs = append(pairs, p)
		notes = append(notes, "capture: the image's whole-source SHA-256 matches openssl dgst -sha256",
			fmt.Sprintf("image size: seedship %d bytes (%.1f MiB, %d of %d chunks zero) vs img.zst %d bytes (%.1f MiB) -> ratio %.3f",
				ours, float64(ours)/mib, capInfo.ZeroChunks, capInfo.Chunks, theirs, float64(theirs)/mib, float64(ours)/float64(theirs)))
	})

	b.Run("verify", func(b *testing.B) {
		ensureInputs(b)
		warm(b, img)
		warmDir(b, seed)
		p := measure(b, c, "verify", size, nil,
			func() run { return exe(b, c.bin, "verify", "--quiet", seed) },
			func() run { return exe(b, "openssl", "dgst", "-sha256", img) })
		pairs = append(pairs, p)
	})

	b.Run("restore", func(b *testing.B) {
		ensureInputs(b)
		warmDir(b, seed)
		warm(b, zst)
		p := measure(b, c, "restore", size,
			func(ours bool) {
				if ours {
					os.Remove(target)
				} else {
					os.Remove(peerTarget)
				}
			},
			func() run { return exe(b, c.bin, "restore", "--quiet", seed, target) },
			func() run {
				return shell(b, fmt.Sprintf("zstd -d -T0 -q -f < %s > %s && sync %s", q(zst), q(peerTarget), q(peerTarget)))
			})
		if err := exec.Command("cmp", "-s", img, target).Run(); err != nil {
			b.Fatalf("restored %s differs from %s: %v", target, img, err)
		}
		pairs = append(pairs, p)
		notes = append(notes, "restore: the restored file is byte-identical to the source image (cmp)")
		os.Remove(target)
		os.Remove(peerTarget)
	})

	var out strings.Builder
	fmt.Fprintf(&out, "\n=== seedship vs peer commands: %d MiB realistic ext4 image (seed %s), capture %s, %d rounds, medians; ratio = peer time / seedship time (>= 1: seedship at least as fast); %d CPUs\n",
		c.sizeMiB, c.seed, c.compression(b, seed), c.rounds, runtime.NumCPU())
	for _, p := range pairs {
		fmt.Fprintln(&out, p)
	}
	for _, n := range notes {
		fmt.Fprintln(&out, n)
	}
	fmt.Fprintln(&out, "peers: capture = zstd -T0 -3 -q -f < img > img.zst && sync img.zst && openssl dgst -sha256 img;"+
		" verify = openssl dgst -sha256 img; restore = zstd -d -T0 -q -f < img.zst > target && sync target")
	fmt.Print(out.String())
}

// BenchmarkMemoryScaling captures, verifies and restores a 1 GiB image and
// one of SEEDSHIP_BENCH_SIZE_MIB (4 GiB by default), or the sizes listed in
// SEEDSHIP_BENCH_MEM_SIZES (MiB, comma-separated), and reports seedship's
// peak RSS for each: it should not grow with the device size.
func BenchmarkMemoryScaling(b *testing.B) {
	c := setup(b)
	sizes := []int{1024, c.sizeMiB}
	if c.sizeMiB == 1024 {
		sizes = []int{256, 1024}
	}
	if v := os.Getenv("SEEDSHIP_BENCH_MEM_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 16 {
				b.Fatalf("SEEDSHIP_BENCH_MEM_SIZES=%q: want sizes in MiB (at least 16), comma-separated", v)
			}
			sizes = append(sizes, n)
		}
	}
	slices.Sort(sizes)
	sizes = slices.Compact(sizes)
	type row struct {
		size                     int
		capture, verify, restore int64 // KiB
	}
	var rows []row
	for _, s := range sizes {
		b.Run(fmt.Sprintf("%dMiB", s), func(b *testing.B) {
			img := c.image(b, s)
			c.needSpace(b, 2*fileSize(b, img))
			w := c.scratch(b, fmt.Sprintf("mem-%dMiB", s))
			seed, target := filepath.Join(w, "seed"), filepath.Join(w, "target")
			r := row{size: s}
			r.capture = exe(b, c.captureArgv(false, img, seed)...).maxRSS
			r.verify = exe(b, c.bin, "verify", "--quiet", seed).maxRSS
			r.restore = exe(b, c.bin, "restore", "--quiet", seed, target).maxRSS
			b.ReportMetric(float64(r.capture)/1024, "capture_RSS_MiB")
			b.ReportMetric(float64(r.verify)/1024, "verify_RSS_MiB")
			b.ReportMetric(float64(r.restore)/1024, "restore_RSS_MiB")
			rows = append(rows, r)
		})
	}
	if len(rows) < 2 {
		return
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\n=== seedship peak RSS (MiB) by image size\n%-10s %10s %10s %10s\n", "size", "capture", "verify", "restore")
	for _, r := range rows {
		fmt.Fprintf(&out, "%-10s %10.1f %10.1f %10.1f\n", fmt.Sprintf("%d MiB", r.size),
			float64(r.capture)/1024, float64(r.verify)/1024, float64(r.restore)/1024)
	}
	a, z := rows[0], rows[len(rows)-1]
	g := func(x, y int64) float64 { return float64(y) / float64(x) }
	fmt.Fprintf(&out, "growth for %.0fx the size: capture x%.2f, verify x%.2f, restore x%.2f (1.00 = flat)\n",
		float64(z.size)/float64(a.size), g(a.capture, z.capture), g(a.verify, z.verify), g(a.restore, z.restore))
	fmt.Print(out.String())
}

// The in-process benchmarks below call the packages directly, for CPU
// profiles (go test -cpuprofile); they are skipped unless
// SEEDSHIP_BENCH_INPROC is set.

func inproc(b *testing.B) (*config, string) {
	if os.Getenv("SEEDSHIP_BENCH_INPROC") == "" {
		b.Skip("set SEEDSHIP_BENCH_INPROC=1 to run the in-process benchmarks (for -cpuprofile)")
	}
	c := setup(b)
	img := c.image(b, c.sizeMiB)
	warm(b, img)
	return c, img
}

func inprocCapture(b *testing.B, img, dst string) {
	b.Helper()
	os.RemoveAll(dst)
	src, err := engine.OpenSource(img)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	st, err := dir.New(dst)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := engine.Capture(context.Background(), src, st, engine.CaptureOptions{Tool: "bench", Level: cfg.level}); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkInprocCapture(b *testing.B) {
	c, img := inproc(b)
	dst := filepath.Join(c.scratch(b, "inproc"), "seed")
	b.SetBytes(fileSize(b, img))
	b.ResetTimer()
	for range b.N {
		inprocCapture(b, img, dst)
	}
}

func BenchmarkInprocVerify(b *testing.B) {
	c, img := inproc(b)
	dst := filepath.Join(c.scratch(b, "inproc"), "seed")
	inprocCapture(b, img, dst)
	st, err := dir.Open(dst)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	m, err := engine.OpenImage(ctx, st)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(m.Header.Size)
	b.ResetTimer()
	for range b.N {
		rep, err := verify.Check(ctx, st, m, verify.CheckOptions{})
		if err != nil || !rep.OK() {
			b.Fatal(err, rep.Err())
		}
	}
}

func BenchmarkInprocRestore(b *testing.B) {
	c, img := inproc(b)
	w := c.scratch(b, "inproc")
	dst, target := filepath.Join(w, "seed"), filepath.Join(w, "target")
	inprocCapture(b, img, dst)
	st, err := dir.Open(dst)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fileSize(b, img))
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		os.Remove(target)
		b.StartTimer()
		if _, err := engine.Restore(context.Background(), st, target, engine.RestoreOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
