//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// seeded is a source captured with the fake product's capture-side steps,
// restored onto a target file, and that target's receipt.
type seeded struct {
	fp      fakeProduct
	data    []byte
	src     string
	img     string
	target  string
	receipt string
}

// newSeeded captures a 1 MiB source with the exec adapter (post_capture
// printing token), restores it and writes the target's receipt.
func newSeeded(t *testing.T, token string, then ...map[string]string) seeded {
	t.Helper()
	fp := newFakeProduct(t, token, then...)
	d := t.TempDir()
	s := seeded{fp: fp, data: randBytes(61, mib+1234), img: filepath.Join(d, "seed"),
		target: filepath.Join(d, "target.img"), receipt: filepath.Join(d, "target.receipt")}
	s.src = writeFile(t, filepath.Join(d, "source.img"), s.data)
	if r := captureAdapterCLI(t, "--adapter", "exec", "--config", fp.config, "--chunk-size", "64KiB", "--quiet", s.src, s.img); r.code != exitOK {
		t.Fatalf("capture with the exec adapter: %s", r)
	}
	must(t, "restore", "--quiet", s.img, s.target)
	must(t, "verify", "--quiet", "--device", s.target, "--receipt", s.receipt, s.img)
	return s
}

// extend runs seedship extend with the exec adapter and the fake
// product's configuration.
func (s seeded) extend(t *testing.T, want int, flags ...string) cliResult {
	t.Helper()
	return s.extendOf(t, want, s.img, s.target, flags...)
}

func (s seeded) extendOf(t *testing.T, want int, img, target string, flags ...string) cliResult {
	t.Helper()
	args := append([]string{"extend", "--adapter", "exec", "--config", s.fp.config}, flags...)
	return expect(t, want, append(args, img, target)...)
}

// TestCaptureWithAdapter: the capture-side steps run in order around the
// capture (mark before it, post_capture after it, cleanup last), the seed
// token lands in the manifest with a mark point not after the capture
// start, and the token's fields are the post_capture output.
func TestCaptureWithAdapter(t *testing.T) {
	t.Parallel()
	s := newSeeded(t, "volume=r0/0\nbitmap=/var/lib/bitmap")
	if got, want := s.fp.names(t), []string{"mark", "post_capture", "cleanup"}; !slices.Equal(got, want) {
		t.Fatalf("capture-side calls %q, want %q", got, want)
	}
	for _, c := range s.fp.calls(t) {
		if !strings.HasSuffix(c, "\tcapture") {
			t.Errorf("call %q: want the side placeholder expanded to capture", c)
		}
	}
	m := loadManifest(t, s.img)
	tok := tokenOf(t, s.img)
	if tok.Adapter != "exec" || tok.Fields["volume"] != "r0/0" || tok.Fields["bitmap"] != "/var/lib/bitmap" {
		t.Errorf("token %+v: want adapter exec and the post_capture fields", tok)
	}
	if tok.Mark.IsZero() || tok.Mark.After(m.Header.CaptureStart) {
		t.Errorf("mark %s, capture start %s: want the mark not after the start", tok.Mark, m.Header.CaptureStart)
	}
}

// TestCaptureAdapterFlags: the adapter's flags are refused where they
// cannot work, before anything is created.
func TestCaptureAdapterFlags(t *testing.T) {
	t.Parallel()
	fp := newFakeProduct(t, "volume=v")
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "source.img"), randBytes(62, 256*kib))
	dest := filepath.Join(d, "seed")
	for _, tc := range []struct {
		name  string
		args  []string
		names []string
	}{
		{"config without adapter", []string{"--config", fp.config}, []string{"--adapter NAME"}},
		{"dry run without adapter", []string{"--dry-run"}, []string{"--adapter NAME"}},
		{"adapter without config", []string{"--adapter", "exec"}, []string{"--config FILE"}},
		{"resume with adapter", []string{"--adapter", "exec", "--config", fp.config, "--resume"}, []string{"--resume", "mark point"}},
		{"adapter other than the config's", []string{"--adapter", "drbd", "--config", fp.config}, []string{"--adapter drbd", `"exec"`}},
		{"missing config", []string{"--adapter", "exec", "--config", filepath.Join(d, "none.json")}, []string{"none.json"}},
		{"several destinations", []string{"--adapter", "exec", "--config", fp.config, "--volume-size", "1GiB"}, []string{"one DEST"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := captureAdapterCLI(t, append(append(tc.args, "--chunk-size", "64KiB"), src, dest)...)
			if r.code != exitUsage {
				t.Errorf("want exit 2, got %s", r)
			}
			errorLine(t, r, tc.names...)
			absent(t, dest, "a refused capture must not create DEST")
			if len(fp.calls(t)) != 0 {
				t.Errorf("the product ran %q", fp.calls(t))
			}
		})
	}
}

// TestCaptureAdapterDryRun: --dry-run prints the steps, runs none of the
// changing commands, does not capture and creates nothing.
func TestCaptureAdapterDryRun(t *testing.T) {
	t.Parallel()
	fp := newFakeProduct(t, "volume=v")
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "source.img"), randBytes(63, 256*kib))
	dest := filepath.Join(d, "seed")
	before := treeOf(t, d)
	productBefore := treeOf(t, fp.root)
	r := captureAdapterCLI(t, "--adapter", "exec", "--config", fp.config, "--dry-run", "--chunk-size", "64KiB", src, dest)
	if r.code != exitOK {
		t.Fatalf("dry run: %s", r)
	}
	for _, want := range []string{"would run " + filepath.Join(fp.root, "bin", "mark") + " capture", "would capture"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run output does not contain %q:\n%s", want, r.stdout)
		}
	}
	if after := treeOf(t, d); !mapsEqual(before, after) {
		t.Errorf("dry run changed %s: %q -> %q", d, keys(before), keys(after))
	}
	if after := treeOf(t, fp.root); !mapsEqual(productBefore, after) {
		t.Errorf("dry run ran the product (its log changed): %q", fp.calls(t))
	}
}

// TestExtendWithReceipt: with a passing receipt for this image and this
// target, extend runs the target-side steps in order with the target and
// the token's fields, and says which checks held.
func TestExtendWithReceipt(t *testing.T) {
	t.Parallel()
	s := newSeeded(t, "volume=r0/0")
	capture := len(s.fp.calls(t))
	r := s.extend(t, exitOK, "--receipt", s.receipt)
	calls := s.fp.calls(t)[capture:]
	want := []string{
		"pre_extend\textend\t" + s.target + "\tr0/0",
		"extend\textend\t" + s.target + "\tr0/0",
		"cleanup\textend",
	}
	if !slices.Equal(calls, want) {
		t.Fatalf("extend-side calls:\n%q\nwant\n%q\n%s", calls, want, r)
	}
	for _, cond := range []string{"seed token", "mark point is not after", "not mounted", "receipt for this image", "the device the receipt names", "not written since"} {
		if !strings.Contains(r.stderr, "check ok: ") || !strings.Contains(r.stderr, cond) {
			t.Errorf("extend does not report the check %q:\n%s", cond, r)
		}
	}
	if !strings.Contains(r.stdout, "on the evidence of receipt") {
		t.Errorf("extend does not say what its evidence was: %s", r)
	}
}

// TestExtendRefusals: every failed check is one line naming its
// condition, with exit 2 (nothing proven) or 3 (the target differs), and
// the product's extend never runs after it.
func TestExtendRefusals(t *testing.T) {
	t.Parallel()
	s := newSeeded(t, "volume=r0/0")
	d := t.TempDir()

	// Another image of the same product, and its restored target's receipt.
	other := newSeeded(t, "volume=r0/0")

	// A second target with the same bytes: the receipt is not its.
	twin := filepath.Join(d, "twin.img")
	must(t, "restore", "--quiet", s.img, twin)

	// A receipt of a target that differs from the image.
	bad := filepath.Join(d, "bad.img")
	must(t, "restore", "--quiet", s.img, bad)
	flipFileByte(t, bad, 4096)
	badReceipt := filepath.Join(d, "bad.receipt")
	expect(t, exitIntegrity, "verify", "--quiet", "--device", bad, "--receipt", badReceipt, s.img)

	malformed := writeFile(t, filepath.Join(d, "malformed.receipt"), readFile(t, s.receipt)[:100])

	// An image captured without --adapter: no seed token.
	plain := captureImage(t, s.src, "--chunk-size", "64KiB")

	for _, tc := range []struct {
		name     string
		img      string
		target   string
		flags    []string
		code     int
		names    []string
		readBack bool // the refusal comes after extend read the target back
	}{
		{"receipt of another image", s.img, s.target, []string{"--receipt", other.receipt}, exitUsage,
			[]string{"a receipt for this image that passed", other.receipt, "is for another image"}, false},
		{"receipt of another target", s.img, twin, []string{"--receipt", s.receipt}, exitUsage,
			[]string{"the target is the device the receipt names", twin, "not the target of receipt"}, false},
		{"failed receipt", s.img, bad, []string{"--receipt", badReceipt}, exitIntegrity,
			[]string{"a receipt for this image that passed", "failed read-back", "differ"}, false},
		{"malformed receipt", s.img, s.target, []string{"--receipt", malformed}, exitUsage,
			[]string{"a receipt for this image that passed", malformed, "not usable"}, false},
		{"missing receipt", s.img, s.target, []string{"--receipt", filepath.Join(d, "none.receipt")}, exitUsage,
			[]string{"none.receipt does not exist", "verify --device"}, false},
		{"no receipt, target differs", s.img, bad, nil, exitIntegrity,
			[]string{"the target reads back as the image", bad, "differ"}, true},
		{"image without a seed token", plain, s.target, []string{"--receipt", s.receipt}, exitUsage,
			[]string{"no seed token"}, false},
		{"no adapter", s.img, s.target, []string{"--adapter", ""}, exitUsage, []string{"--adapter NAME is required"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(s.fp.calls(t))
			targetBefore := readFile(t, tc.target)
			r := s.extendOf(t, tc.code, tc.img, tc.target, tc.flags...)
			errorLine(t, r, tc.names...)
			if calls := s.fp.calls(t)[before:]; len(calls) != 0 {
				t.Errorf("the product ran after a failed check: %q", calls)
			}
			if !slices.Equal(readFile(t, tc.target), targetBefore) {
				t.Errorf("a refused extend changed the target")
			}
		})
	}
}

func flipFileByte(t *testing.T, path string, off int64) {
	t.Helper()
	b := readFile(t, path)
	b[off] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestExtendMarkAfterCapture: a token whose mark point is after the
// capture start (the product started tracking too late) is refused, and
// the product's extend never runs.
func TestExtendMarkAfterCapture(t *testing.T) {
	t.Parallel()
	late := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	s := newSeeded(t, "volume=r0/0\nmark="+late)
	before := len(s.fp.calls(t))
	r := s.extend(t, exitUsage, "--receipt", s.receipt)
	errorLine(t, r, "the mark point is not after the capture start", late, "neither the seed nor the change map")
	if calls := s.fp.calls(t)[before:]; len(calls) != 0 {
		t.Errorf("the product ran after a failed check: %q", calls)
	}
}

// TestExtendWrittenSinceReceipt: a target written after its receipt
// (same bytes, but written) is refused with the way out, --reverify,
// which reads it back and then extends.
func TestExtendWrittenSinceReceipt(t *testing.T) {
	t.Parallel()
	s := newSeeded(t, "volume=r0/0")
	time.Sleep(10 * time.Millisecond) // past the file system's timestamp granularity
	if err := os.WriteFile(s.target, readFile(t, s.target), 0o600); err != nil {
		t.Fatal(err)
	}
	before := len(s.fp.calls(t))
	r := s.extend(t, exitUsage, "--receipt", s.receipt)
	errorLine(t, r, "the target was not written since the read-back", "modified", "--reverify")
	if len(s.fp.calls(t)) != before {
		t.Fatalf("the product ran after a failed check: %q", s.fp.calls(t)[before:])
	}
	r = s.extend(t, exitOK, "--receipt", s.receipt, "--reverify")
	if !strings.Contains(r.stderr, "check ok: the target reads back as the image") || !s.fp.ran(t, "extend") {
		t.Errorf("extend --reverify did not read back and extend: %s", r)
	}
}

// TestExtendReadsBackWithoutReceipt: without a receipt extend reads the
// target back itself before the steps, and says so.
func TestExtendReadsBackWithoutReceipt(t *testing.T) {
	t.Parallel()
	s := newSeeded(t, "volume=r0/0")
	r := s.extend(t, exitOK)
	if !strings.Contains(r.stderr, "check ok: the target reads back as the image") || !strings.Contains(r.stdout, "evidence of read-back") {
		t.Errorf("extend without a receipt did not read back: %s", r)
	}
	if got := s.fp.names(t); !slices.Equal(got[len(got)-3:], []string{"pre_extend", "extend", "cleanup"}) {
		t.Errorf("calls %q", got)
	}
}

// TestExtendDryRun: --dry-run runs the checks, prints the commands the
// steps would run, runs none of them, reads nothing back and changes no
// file: the image, the target, the receipt and the product's tree (its
// argv log included) are byte for byte as before.
func TestExtendDryRun(t *testing.T) {
	t.Parallel()
	s := newSeeded(t, "volume=r0/0")
	root := filepath.Dir(s.img)
	for _, tc := range []struct {
		name  string
		flags []string
		want  []string
	}{
		{"with a receipt", []string{"--receipt", s.receipt}, []string{"check ok: a receipt for this image that passed"}},
		{"without a receipt", nil, []string{"would read " + s.target + " back"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, productBefore := treeOf(t, root), treeOf(t, s.fp.root)
			r := s.extend(t, exitOK, append([]string{"--dry-run"}, tc.flags...)...)
			for _, want := range append(tc.want, "would run "+filepath.Join(s.fp.root, "bin", "extend")+" extend "+s.target+" r0/0", "nothing was changed") {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("dry run output does not contain %q:\n%s", want, r)
				}
			}
			if after := treeOf(t, root); !mapsEqual(before, after) {
				t.Errorf("dry run changed %s", root)
			}
			if after := treeOf(t, s.fp.root); !mapsEqual(productBefore, after) {
				t.Errorf("dry run ran the product: %q", s.fp.calls(t))
			}
		})
	}
}

// TestExtendInterrupted: an interrupt while the product's extend runs
// stops it, runs the cleanup step all the same, and exits 130.
func TestExtendInterrupted(t *testing.T) {
	t.Parallel()
	started := filepath.Join(t.TempDir(), "extend-started")
	s := newSeeded(t, "volume=r0/0", map[string]string{"extend": "touch " + shellQuote(started) + "; exec sleep 30"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(started); err == nil {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t0 := time.Now()
	r := seedshipCtx(ctx, "extend", "--adapter", "exec", "--config", s.fp.config, "--receipt", s.receipt, s.img, s.target)
	if r.code != exitInterrupted {
		t.Fatalf("want exit 130, got %s", r)
	}
	if el := time.Since(t0); el > 4*time.Second {
		t.Errorf("the interrupt took %s to stop the extend command", el)
	}
	if got := s.fp.names(t); len(got) < 2 || got[len(got)-2] != "extend" || got[len(got)-1] != "cleanup" {
		t.Errorf("calls %q: want the interrupted extend followed by cleanup", got)
	}
}

// TestExtendJSON: with --json, stdout is one JSON object saying what the
// evidence was and which checks held, in a dry run too (the step log goes
// to stderr then).
func TestExtendJSON(t *testing.T) {
	t.Parallel()
	s := newSeeded(t, "volume=r0/0")
	for _, tc := range []struct {
		name     string
		flags    []string
		evidence string
		checks   int
	}{
		{"receipt", []string{"--receipt", s.receipt}, "receipt", 6},
		{"read-back", nil, "read-back", 4},
		{"dry run", []string{"--dry-run"}, "none (dry run)", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out extendJSON
			decodeJSON(t, s.extend(t, exitOK, append([]string{"--json"}, tc.flags...)...), &out)
			if out.Evidence != tc.evidence || len(out.Checks) != tc.checks || out.Target != s.target || out.Adapter != "exec" ||
				out.DryRun != slices.Contains(tc.flags, "--dry-run") {
				t.Errorf("extend --json: %+v, want evidence %q and %d checks", out, tc.evidence, tc.checks)
			}
		})
	}
}
