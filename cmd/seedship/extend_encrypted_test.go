//go:build linux

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestExtendEncrypted: an encrypted image seals its seed token (spec
// §11.5), so extend needs the image's key: without one it is refused in
// one line (exit 2) before any product step runs; with it, the token is
// read, the target is read back with the keyed digests and the product's
// extend runs with the token's fields.
func TestExtendEncrypted(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	identity, recipient := ageKey(t, d, "key.txt")
	fp := newFakeProduct(t, "volume=r0/0")
	data := randBytes(67, mib+4321)
	src := writeFile(t, filepath.Join(d, "source.img"), data)
	img, target := filepath.Join(d, "seed"), filepath.Join(d, "target.img")
	if r := captureAdapterCLI(t, "--adapter", "exec", "--config", fp.config, "--recipient", recipient,
		"--chunk-size", "64KiB", "--quiet", src, img); r.code != exitOK {
		t.Fatalf("encrypted capture with the exec adapter: %s", r)
	}
	must(t, "restore", "--quiet", "--identity", identity, img, target)
	extend := func(want int, flags ...string) cliResult {
		args := append([]string{"extend", "--adapter", "exec", "--config", fp.config}, flags...)
		return expect(t, want, append(args, img, target)...)
	}

	r := extend(exitUsage)
	oneLineError(t, r, "encrypted", "identity")
	if fp.ran(t, "extend") {
		t.Fatalf("a refused extend ran the product's extend: %q", fp.calls(t))
	}
	other, _ := ageKey(t, d, "other.txt")
	oneLineError(t, extend(exitUsage, "--identity", other), "encrypted")

	r = extend(exitOK, "--identity", identity)
	if !strings.Contains(r.stderr, "check ok: the target reads back as the image") {
		t.Errorf("extend with the key did not read the target back: %s", r)
	}
	if calls := strings.Join(fp.calls(t), "\n"); !strings.Contains(calls, "extend\textend\t"+target+"\tr0/0") {
		t.Errorf("the product's extend did not get the sealed token's fields: %q", calls)
	}
}
