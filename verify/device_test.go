package verify_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/verify"
)

// TestDeviceSourceSHA256: verify --device recomputes the whole-source
// SHA-256; a manifest whose sha256 is wrong fails although every chunk
// matches, and the report lists what was checked.
func TestDeviceSourceSHA256(t *testing.T) {
	dir := filepath.Join(vectorDir, "basic")
	mb, err := os.ReadFile(filepath.Join(dir, "image", format.ManifestKey))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(dir, "source.bin")
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		sha    func(string) string
		skip   bool
		ok     bool
		checks []verify.CheckKind
	}{
		{"true", func(s string) string { return s }, false, true, []verify.CheckKind{verify.CheckChunkHashes, verify.CheckSourceSHA256}},
		{"wrong", func(s string) string { return strings.Repeat("0", 64) }, false, false, []verify.CheckKind{verify.CheckChunkHashes, verify.CheckSourceSHA256}},
		{"skipped", func(s string) string { return strings.Repeat("0", 64) }, true, true, []verify.CheckKind{verify.CheckChunkHashes}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := format.DecodeManifest(mb)
			if err != nil {
				t.Fatal(err)
			}
			m.Header.SHA256 = tc.sha(m.Header.SHA256)
			rep, err := verify.Device(ctx, m, src, verify.DeviceOptions{Workers: 3, SkipSourceSHA256: tc.skip})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() != tc.ok || !slices.Equal(rep.Checked, tc.checks) {
				t.Fatalf("ok %v checked %v (findings %v), want %v %v", rep.OK(), rep.Checked, rep.Findings, tc.ok, tc.checks)
			}
			if !tc.ok && (len(rep.Findings) != 1 || !errors.Is(rep.Findings[0].Err, format.ErrChecksum) || !format.IsDamage(rep.Err())) {
				t.Fatalf("findings %v: want one whole-source checksum finding", rep.Findings)
			}
			if rep.ChunksOK+rep.ZeroChunks != uint64(len(m.Chunks)) {
				t.Fatalf("%d+%d chunks checked, want %d", rep.ChunksOK, rep.ZeroChunks, len(m.Chunks))
			}
		})
	}
}
