package engine_test

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
)

// TestDigestOnlyImageCost checks what a digest-only image of a realistic
// source costs, byte for byte: per stored chunk its frame header (24), its
// index entry (92 + 8 per 64 KiB block) and its chunk table entry (56);
// per zero chunk its table entry only; per segment its header, footer and
// table entry (32 + 64 + 56); and the manifest's fixed parts. No data.
func TestDigestOnlyImageCost(t *testing.T) {
	srcPath, data := realisticSource(t)
	opts := diffCaptureOpts(true)
	res, _, root := capture(t, srcPath, opts)
	m := res.Manifest
	var stored, zero, blocks int64
	for i, c := range m.Chunks {
		switch c.Kind {
		case format.KindStored:
			stored++
			_, n := m.ChunkRange(uint64(i))
			blocks += int64(format.NumBlocks(int(n)))
		case format.KindZero:
			zero++
		default:
			t.Fatalf("chunk %d of kind %s in a digest-only image", i, c.Kind)
		}
	}
	if stored == 0 || zero == 0 {
		t.Fatalf("the realistic source should have stored and zero chunks: %d stored, %d zero", stored, zero)
	}
	segs := int64(len(m.Segments))
	wantSegments := segs*(32+64) + stored*(24+92) + 8*blocks
	if m.Header.StoredBytes != wantSegments {
		t.Fatalf("segments hold %d bytes, want %d = %d segments × 96 + %d stored chunks × 116 + %d blocks × 8",
			m.Header.StoredBytes, wantSegments, segs, stored, blocks)
	}
	mb, err := os.ReadFile(filepath.Join(root, format.ManifestKey))
	if err != nil {
		t.Fatal(err)
	}
	hl := int64(binary.LittleEndian.Uint32(mb[12:16]))
	if want := 32 + hl + 56*int64(len(m.Chunks)) + 56*segs + 40; int64(len(mb)) != want {
		t.Fatalf("manifest is %d bytes, want %d", len(mb), want)
	}
	files := imageFiles(t, root)
	var total int64
	for _, n := range files {
		total += n
	}
	if want := int64(len(mb)) + wantSegments; total != want {
		t.Fatalf("the image's files hold %d bytes, want %d (manifest and segments only): %v", total, want, files)
	}
	// Every frame is a bare header: the image holds no source bytes.
	if m.Header.StoredBytes >= int64(len(data))/1000 {
		t.Fatalf("a digest-only image of %d bytes stores %d bytes", len(data), m.Header.StoredBytes)
	}
	t.Logf("digest-only image of a %d MiB source (%d stored, %d zero chunks of %d KiB): %d bytes, %.4f%% of the source",
		len(data)>>20, stored, zero, opts.ChunkSize>>10, total, 100*float64(total)/float64(len(data)))
}

func TestDigestOnlyRefusesCopyAndRestore(t *testing.T) {
	srcPath := writeSource(t, chunkPlan("RTZR").build(256*kib, 1000, 'R'))
	_, st, _ := capture(t, srcPath, engine.CaptureOptions{DigestOnly: true, ChunkSize: 256 * kib, Workers: 2})
	ctx := context.Background()

	dst, dstRoot := newDest(t)
	_, err := engine.Copy(ctx, st, dst, engine.CopyOptions{})
	if !errors.Is(err, engine.ErrBadInput) || !strings.Contains(err.Error(), "digest-only image") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Copy of a digest-only image: %v; want one line of bad input naming it", err)
	}
	if files := imageFiles(t, dstRoot); len(files) != 0 {
		t.Fatalf("Copy refused, yet wrote %v", files)
	}

	target := filepath.Join(t.TempDir(), "target.img")
	before := []byte("the target's own bytes")
	if err := os.WriteFile(target, before, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = engine.Restore(ctx, st, target, engine.RestoreOptions{})
	if !errors.Is(err, engine.ErrBadInput) || !strings.Contains(err.Error(), "digest-only image") {
		t.Fatalf("Restore of a digest-only image: %v; want bad input naming it", err)
	}
	if after, _ := os.ReadFile(target); string(after) != string(before) {
		t.Fatalf("Restore refused, yet the target changed: %q", after)
	}
}
