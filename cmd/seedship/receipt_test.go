//go:build linux

package main

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/verify"
)

// loadReceipt reads and parses a receipt file.
func loadReceipt(t *testing.T, path string) *verify.Receipt {
	t.Helper()
	r, err := verify.ParseReceipt(readFile(t, path))
	if err != nil {
		t.Fatalf("receipt %s: %v", path, err)
	}
	return r
}

// TestVerifyReceipt: verify --device --receipt writes a receipt binding
// the image (manifest hash, id), the target and the result, on a pass and
// on a fail alike (the fail replacing the earlier pass), atomically (no
// temporary file left); the exit codes stay those of verify.
func TestVerifyReceipt(t *testing.T) {
	t.Parallel()
	im := newImage(t)
	d := t.TempDir()
	target := filepath.Join(d, "target.img")
	must(t, "restore", "--quiet", im.img, target)
	path := filepath.Join(d, "receipts", "target.receipt")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}

	r := must(t, "verify", "--device", target, "--receipt", path, im.img)
	if !strings.Contains(r.stdout, "receipt "+path+" written") {
		t.Errorf("verify does not say it wrote the receipt: %s", r)
	}
	rc := loadReceipt(t, path)
	abs, _ := filepath.Abs(target)
	wantSHA := hex.EncodeToString(im.m.Hash[:])
	switch {
	case !rc.Passed():
		t.Errorf("receipt of a matching target: status %q (%s)", rc.Result.Status, rc.Result.Reason)
	case rc.Image.ManifestSHA256 != wantSHA || rc.Image.ID != im.m.Header.ImageID:
		t.Errorf("receipt image %+v: want manifest sha256 %s and id %s", rc.Image, wantSHA, im.m.Header.ImageID)
	case rc.Target.Path != target || rc.Target.Resolved != abs || rc.Target.Kind != verify.KindFile || rc.Target.Size != int64(len(im.data)):
		t.Errorf("receipt target %+v: want %s, a file of %d bytes", rc.Target, target, len(im.data))
	case rc.Result.SourceSHA256 != shaHex(im.data) || rc.Result.ChunksOK+rc.Result.ZeroChunks != im.m.Header.Chunks:
		t.Errorf("receipt result %+v: want every chunk and the source sha256 %s", rc.Result, shaHex(im.data))
	case rc.Tool != "seedship "+version || rc.Started.IsZero() || rc.Finished.Before(rc.Started):
		t.Errorf("receipt tool %q, started %s, finished %s", rc.Tool, rc.Started, rc.Finished)
	}
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil || rc.Target.FileInode != st.Ino {
		t.Errorf("receipt inode %d, the target's %d (%v)", rc.Target.FileInode, st.Ino, err)
	}
	var out verifyJSON
	decodeJSON(t, must(t, "verify", "--json", "--device", target, "--receipt", path, im.img), &out)
	if out.Receipt != path || !out.OK {
		t.Errorf("verify --json --receipt: receipt %q ok %v, want %q and ok", out.Receipt, out.OK, path)
	}

	flipFileByte(t, target, int64(2*mib+17))
	r = expect(t, exitIntegrity, "verify", "--device", target, "--receipt", path, im.img)
	errorLine(t, r, "chunk(s) differ", "receipt "+path+" written")
	rc = loadReceipt(t, path)
	if rc.Passed() || !rc.Result.Differs || rc.Result.ChunksDiffering != 1 || len(rc.Result.Findings) == 0 {
		t.Errorf("receipt of a differing target: %+v", rc.Result)
	}
	if names := keys(treeOf(t, filepath.Dir(path))); !slices.Equal(names, []string{"target.receipt"}) {
		t.Errorf("receipt directory holds %q, want only the receipt", names)
	}

	// A target too small: an integrity failure, recorded.
	short := writeFile(t, filepath.Join(d, "short.img"), im.data[:len(im.data)-1])
	shortReceipt := filepath.Join(d, "short.receipt")
	expect(t, exitIntegrity, "verify", "--device", short, "--receipt", shortReceipt, im.img)
	if rc := loadReceipt(t, shortReceipt); rc.Passed() || !rc.Result.Differs {
		t.Errorf("receipt of a short target: %+v", rc.Result)
	}
}

// TestVerifyReceiptBadInput: a receipt path that cannot be written is
// refused before the read-back, with exit 2, and nothing is written.
func TestVerifyReceiptBadInput(t *testing.T) {
	t.Parallel()
	im := newImage(t)
	d := t.TempDir()
	target := writeFile(t, filepath.Join(d, "target.img"), im.data)
	for _, tc := range []struct {
		name    string
		args    []string
		names   []string
		created string // a path that must stay absent
	}{
		{"receipt without device", []string{"verify", "--receipt", filepath.Join(d, "r1"), im.img}, []string{"--device DEV"}, filepath.Join(d, "r1")},
		{"receipt in a missing directory", []string{"verify", "--device", target, "--receipt", filepath.Join(d, "none", "r"), im.img},
			[]string{"none", "create the directory"}, filepath.Join(d, "none")},
		{"receipt is the target", []string{"verify", "--device", target, "--receipt", target, im.img}, []string{"is the device being checked"}, ""},
		{"receipt is a directory", []string{"verify", "--device", target, "--receipt", d, im.img}, []string{"not a regular file"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := treeOf(t, d)
			r := expect(t, exitUsage, tc.args...)
			errorLine(t, r, tc.names...)
			if after := treeOf(t, d); !mapsEqual(before, after) {
				t.Errorf("a refused verify changed %s: %q -> %q", d, keys(before), keys(after))
			}
			if tc.created != "" {
				absent(t, tc.created, "nothing is written on bad input")
			}
		})
	}
}

// TestExtendLoopDevice: on a real loop device, the receipt records the
// device (number, kernel write counters, boot id); extend accepts it; a
// mounted target is refused; after the mount (which writes the
// superblock) the receipt no longer proves anything, and --reverify finds
// the difference; a second device with the same bytes is not the
// receipt's device. The product's extend runs only on the first attempt.
func TestExtendLoopDevice(t *testing.T) {
	devicetest.RequireLoop(t)
	d := t.TempDir()
	src := makeExt4(t, d)
	data := readFile(t, src)
	fp := newFakeProduct(t, "volume=r0/0")
	img := filepath.Join(d, "seed")
	if r := captureAdapterCLI(t, "--adapter", "exec", "--config", fp.config, "--chunk-size", "64KiB", "--quiet", src, img); r.code != exitOK {
		t.Fatalf("capture with the exec adapter: %s", r)
	}
	dev, _ := loopOver(t, make([]byte, len(data)))
	must(t, "restore", "--quiet", img, dev)
	receipt := filepath.Join(d, "dev.receipt")
	must(t, "verify", "--quiet", "--device", dev, "--receipt", receipt, img)
	rc := loadReceipt(t, receipt)
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	if !rc.Passed() || rc.Target.Kind != verify.KindBlock || rc.Target.Major != unix.Major(st.Rdev) || rc.Target.Minor != unix.Minor(st.Rdev) ||
		rc.Target.Writes == "" || rc.Target.BootID == "" || rc.Target.BackingFile == "" {
		t.Fatalf("receipt of %s (%d:%d): %+v", dev, unix.Major(st.Rdev), unix.Minor(st.Rdev), rc)
	}
	extend := func(want int, target string, flags ...string) cliResult {
		t.Helper()
		return expect(t, want, append(append([]string{"extend", "--adapter", "exec", "--config", fp.config}, flags...), img, target)...)
	}
	extendCount := func() int {
		n := 0
		for _, name := range fp.names(t) {
			if name == "extend" {
				n++
			}
		}
		return n
	}

	// A dry run first: its checks (the in-use probe, the flush before the
	// counters are read) must not move the counters the real run checks.
	extend(exitOK, dev, "--receipt", receipt, "--dry-run")
	if extendCount() != 0 {
		t.Fatalf("extend --dry-run ran the product's extend: %q", fp.calls(t))
	}
	extend(exitOK, dev, "--receipt", receipt)
	if extendCount() != 1 {
		t.Fatalf("extend with a good receipt did not run the product's extend: %q", fp.calls(t))
	}

	twin, _ := loopOver(t, data)
	errorLine(t, extend(exitUsage, twin, "--receipt", receipt), "the target is the device the receipt names", twin)

	// Mounted by hand, not with devicetest.Mount: the test unmounts it
	// halfway, and the cleanup only undoes what is left.
	mnt := filepath.Join(d, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	devicetest.Run(t, "mount", dev, mnt)
	mounted := true
	t.Cleanup(func() {
		if mounted {
			devicetest.Run(t, "umount", mnt)
		}
	})
	errorLine(t, extend(exitUsage, dev, "--receipt", receipt), "the target is not mounted and has no holders", "mounted on "+mnt)
	devicetest.Run(t, "umount", mnt)
	mounted = false
	errorLine(t, extend(exitUsage, dev, "--receipt", receipt), "the target was not written since the read-back", "counters moved", "--reverify")
	errorLine(t, extend(exitIntegrity, dev, "--receipt", receipt, "--reverify"), "the target reads back as the image", "differ")
	if extendCount() != 1 {
		t.Errorf("the product's extend ran after a failed check: %q", fp.calls(t))
	}
}
