package verify_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/verify"
)

// Digest-only images (capture --digest-only) captured from real files:
// verify checks every structure they hold, and Device proves a device
// matches them or names its changed chunks and 64 KiB blocks.

const digestChunk = 256 * kib

// digestImage captures data digest-only into a new directory and returns
// the source path, the image store, its directory and its manifest.
func digestImage(t testing.TB, data []byte) (string, *dir.Store, string, *format.Manifest) {
	t.Helper()
	root := t.TempDir()
	srcPath := filepath.Join(root, "source.img")
	if err := os.WriteFile(srcPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := engine.OpenSource(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	d := filepath.Join(root, "image")
	st, err := dir.New(d)
	if err != nil {
		t.Fatal(err)
	}
	res, err := engine.Capture(context.Background(), src, st, engine.CaptureOptions{DigestOnly: true, ChunkSize: digestChunk, SegmentSize: 4 * kib * 16, Workers: 2})
	if err != nil {
		t.Fatalf("digest-only capture: %v", err)
	}
	return srcPath, st, d, res.Manifest
}

func TestCheckDigestOnlyImage(t *testing.T) {
	t.Parallel()
	data := sourceBytes(21, 3*mib+5000)
	_, st, d, m := digestImage(t, data)
	if !m.Header.RequiresFeature(format.FeatureDigestOnly) {
		t.Fatalf("the image does not require %q: %v", format.FeatureDigestOnly, m.Header.Requires)
	}
	var stored uint64
	for _, c := range m.Chunks {
		if c.Kind == format.KindStored {
			stored++
		}
	}
	rep := check(t, st, m)
	want := []verify.CheckKind{verify.CheckDigestEntries, verify.CheckStoredDigests, verify.CheckSegments, verify.CheckManifests}
	if !rep.OK() || !rep.DigestOnly || rep.Digests != stored || rep.ChunksOK != 0 || !slices.Equal(rep.Checked, want) {
		t.Fatalf("Check of an intact digest-only image: ok %v, digest-only %v, digests %d (want %d), chunks ok %d (want 0: there is no data), checked %v (want %v), findings %v",
			rep.OK(), rep.DigestOnly, rep.Digests, stored, rep.ChunksOK, rep.Checked, want, rep.Findings)
	}

	// Every structure it holds is checked: a frame header, an index
	// entry's block digest, the footer, a segment that is missing.
	seg := format.DataID(0).Key()
	fi, err := os.Stat(path(d, seg))
	if err != nil {
		t.Fatal(err)
	}
	var c0 format.ChunkEntry
	for _, c := range m.Chunks {
		if c.Kind == format.KindStored && c.Segment == 0 {
			c0 = c
			break
		}
	}
	for _, tc := range []struct {
		name string
		off  int64
	}{
		{"frame header chunk index", c0.Offset + 8},
		{"index block digest", fi.Size() - 64 - 8}, // the last block digest of the last entry
		{"footer magic", fi.Size() - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st2, d2 := copyDir(t, d)
			flip(t, d2, seg, tc.off, 0x01)
			rep := check(t, st2, m)
			if rep.OK() {
				t.Fatalf("Check passes a digest-only image with byte %d of %s changed", tc.off, seg)
			}
		})
	}
	t.Run("missing segment", func(t *testing.T) {
		st2, d2 := copyDir(t, d)
		remove(t, d2, seg)
		if rep := check(t, st2, m); rep.OK() {
			t.Fatal("Check passes a digest-only image without its first segment")
		}
	})
}

// copyDir copies an image directory and opens the copy.
func copyDir(t testing.TB, d string) (*dir.Store, string) {
	t.Helper()
	d2 := writeTree(t, t.TempDir(), readTree(t, d))
	st, err := dir.Open(d2)
	if err != nil {
		t.Fatal(err)
	}
	return st, d2
}

func TestDeviceDigestOnlyOneChangedByte(t *testing.T) {
	t.Parallel()
	data := sourceBytes(22, 2*mib+777)
	clear(data[6*digestChunk : 7*digestChunk]) // a zero chunk
	srcPath, st, _, m := digestImage(t, data)
	ctx := context.Background()

	rep, err := verify.Device(ctx, m, srcPath, verify.DeviceOptions{Workers: 2, Store: st})
	if err != nil || !rep.OK() {
		t.Fatalf("Device of the captured file: %v, findings %v", err, rep.Findings)
	}
	want := []verify.CheckKind{verify.CheckChunkHashes, verify.CheckBlockDigests, verify.CheckSourceSHA256}
	if !slices.Equal(rep.Checked, want) {
		t.Fatalf("checked %v, want %v", rep.Checked, want)
	}

	for _, tc := range []struct {
		name string
		off  int64
	}{
		{"in a stored chunk", 5*digestChunk + 3*64*kib + 100},
		{"in a zero chunk", zeroChunkByte(t, m)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			off := tc.off
			changed := slices.Clone(data)
			changed[off] ^= 0x40
			dev := filepath.Join(t.TempDir(), "device.img")
			if err := os.WriteFile(dev, changed, 0o600); err != nil {
				t.Fatal(err)
			}
			rep, err := verify.Device(ctx, m, dev, verify.DeviceOptions{Workers: 2, Store: st})
			if err != nil {
				t.Fatal(err)
			}
			chunk := uint64(off / digestChunk)
			block := off / (64 * kib) * (64 * kib)
			if got := rep.BadChunks(); !slices.Equal(got, []uint64{chunk}) {
				t.Fatalf("bad chunks %v, want [%d]", got, chunk)
			}
			wantRange := verify.ChangedRange{Chunk: chunk, Offset: block, Length: 64 * kib, Located: true}
			if !slices.Equal(rep.Changed, []verify.ChangedRange{wantRange}) {
				t.Fatalf("changed %v, want %v", rep.Changed, wantRange)
			}
			msg := rep.Findings[0].Err.Error()
			if !strings.Contains(msg, fmt.Sprintf("bytes %d-%d", block, block+64*kib-1)) {
				t.Fatalf("the finding does not name the changed block %d-%d: %s", block, block+64*kib-1, msg)
			}
			if !errors.Is(rep.Err(), verify.ErrDamaged) || engine.KindOf(fmt.Errorf("%w: %w", engine.ErrIntegrity, rep.Err())) != engine.KindIntegrity {
				t.Fatalf("report error %v", rep.Err())
			}
			if !slices.Contains(rep.Checked, verify.CheckSourceSHA256) || rep.SourceSHA256 == m.Header.SHA256 {
				t.Fatalf("the whole-source SHA-256 was not recomputed or matches although a byte changed: %s", rep.SourceSHA256)
			}
		})
	}
}

// zeroChunkByte returns an offset inside a zero chunk of m.
func zeroChunkByte(t testing.TB, m *format.Manifest) int64 {
	t.Helper()
	for i, c := range m.Chunks {
		if c.Kind == format.KindZero {
			off, n := m.ChunkRange(uint64(i))
			return off + n/2
		}
	}
	t.Fatal("the test image has no zero chunk")
	return 0
}

// TestDeviceChecksDigestOnlyBlockDigests: the block digests of a
// digest-only image are checked by Device against the data they describe:
// an image whose index records a wrong block digest for a chunk whose
// hash is right is reported as damaged, not passed.
func TestDeviceChecksDigestOnlyBlockDigests(t *testing.T) {
	t.Parallel()
	data := sourceBytes(23, 1*mib)
	root := t.TempDir()
	srcPath := filepath.Join(root, "source.img")
	if err := os.WriteFile(srcPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// An image written by the format package directly: each chunk's hash
	// is right, chunk 1's third block digest is not.
	d := filepath.Join(root, "image")
	create := func(key string) (io.WriteCloser, error) {
		p := filepath.Join(d, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, err
		}
		return os.Create(p)
	}
	iw, err := format.NewImageWriter(create, [16]byte{1, 2, 3}, 1<<20, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		raw := data[i*digestChunk : (i+1)*digestChunk]
		blocks := make([]format.BlockDigest, format.NumBlocks(len(raw)))
		ec := format.DigestChunk(raw, blocks)
		if i == 1 {
			ec.Blocks[2][0] ^= 0xff
		}
		if err := iw.Add(&ec); err != nil {
			t.Fatal(err)
		}
	}
	whole := sha256.Sum256(data)
	sum := hex.EncodeToString(whole[:])
	m, err := iw.Finish(format.Header{Tool: "test", Size: int64(len(data)), ChunkSize: digestChunk, Requires: []string{format.FeatureDigestOnly},
		Compression: format.Compression{Codec: "none"}, SHA256: sum, Source: format.Source{Path: srcPath, Kind: "file", Size: int64(len(data))},
		CaptureStart: time.Now().UTC(), CaptureEnd: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, format.ManifestKey), mb, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := dir.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	// Precondition: its structure is sound, so only a device can tell.
	if rep := check(t, st, m); !rep.OK() {
		t.Fatalf("the crafted image fails Check: %v", rep.Findings)
	}
	rep, err := verify.Device(context.Background(), m, srcPath, verify.DeviceOptions{Workers: 2, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || len(rep.BadChunks()) != 0 || !strings.Contains(rep.Err().Error(), "do not match the chunk its hash names") {
		t.Fatalf("a wrong block digest in the index passed or was blamed on the device: ok %v, bad chunks %v, %v", rep.OK(), rep.BadChunks(), rep.Err())
	}
	// Without the store only the chunk hashes are compared, and the
	// report says so: no block digest check is claimed.
	rep, err = verify.Device(context.Background(), m, srcPath, verify.DeviceOptions{Workers: 2})
	if err != nil || !rep.OK() || slices.Contains(rep.Checked, verify.CheckBlockDigests) {
		t.Fatalf("Device without the store: %v, ok %v, checked %v", err, rep.OK(), rep.Checked)
	}
}

// FuzzDigestOnlyDamage damages a digest-only image at random (the same
// damage as FuzzParityDamage: flips, overwrites, truncations, appended
// bytes, deletions) and checks that verify.Check never reports it intact
// while a file differs from the capture, and that Device, comparing the
// unchanged source with it, never blames the source: damage it reads (a
// segment index) is the image's finding, never a changed chunk.
func FuzzDigestOnlyDamage(f *testing.F) {
	data := sourceBytes(24, 900*kib+555)
	clear(data[256*kib : 512*kib]) // a zero chunk
	srcPath, _, d0, _ := digestImage(f, data)
	files := readTree(f, d0)
	var keys []string
	for k := range files {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	idx := func(key string) byte { return byte(slices.Index(keys, key)) }
	op := func(kind byte, key string, off int, val byte) []byte {
		return []byte{kind, idx(key), byte(off), byte(off >> 8), byte(off >> 16), val}
	}
	seg0 := format.DataID(0).Key()
	f.Add([]byte{})
	f.Add(op(0, seg0, 10, 0x01))                  // a frame header
	f.Add(op(0, seg0, len(files[seg0])-70, 0x80)) // an index's last block digest
	f.Add(op(4, seg0, 40, 0))                     // a truncation
	f.Add(op(6, format.ManifestKey, 0, 0))        // the manifest deleted
	f.Add(op(0, format.ManifestKey, 200, 0x10))   // in the manifest
	f.Fuzz(func(t *testing.T, ops []byte) {
		d := writeTree(t, t.TempDir(), files)
		did := applyDamage(t, d, keys, files, ops)
		changed := len(diffFiles(files, readTree(t, d))) > 0
		st, err := dir.Open(d)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		m, err := loadManifest(ctx, st)
		if err != nil {
			if !changed {
				t.Fatalf("undamaged image: %v", err)
			}
			return
		}
		rep, err := verify.Check(ctx, st, m, verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: 1, Readers: 1}})
		if err != nil {
			t.Fatalf("after %v: Check failed instead of reporting damage: %v", did, err)
		}
		if rep.OK() == changed {
			t.Fatalf("after %v: Check ok %v, but files changed %v: %v", did, rep.OK(), changed, rep.Findings)
		}
		drep, err := verify.Device(ctx, m, srcPath, verify.DeviceOptions{Workers: 2, Store: st})
		if err != nil {
			t.Fatalf("after %v: Device failed instead of reporting damage: %v", did, err)
		}
		if bad := drep.BadChunks(); len(bad) > 0 {
			t.Fatalf("after %v: Device blames chunks %v of the unchanged source: %v", did, bad, drep.Findings)
		}
	})
}

// TestDeviceDamagedIndex: a segment index that fails its checks is the
// image's damage, named once for its segment (Unchecked), and does not
// fail the device, whose chunks all match their chunk hashes; the block
// digest check is not claimed.
func TestDeviceDamagedIndex(t *testing.T) {
	t.Parallel()
	data := sourceBytes(25, 2*mib)
	srcPath, _, d, m := digestImage(t, data)
	seg := format.DataID(0).Key()
	fi, err := os.Stat(path(d, seg))
	if err != nil {
		t.Fatal(err)
	}
	st, d2 := copyDir(t, d)
	flip(t, d2, seg, fi.Size()-64-8, 0x01) // a block digest of the index's last entry
	rep, err := verify.Device(context.Background(), m, srcPath, verify.DeviceOptions{Workers: 2, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	var segNotes int
	for _, f := range rep.Unchecked {
		if f.Key == seg && !f.IsChunk {
			segNotes++
		}
	}
	if segNotes != 1 || !rep.OK() || slices.Contains(rep.Checked, verify.CheckBlockDigests) {
		t.Fatalf("damaged index: %d note(s) for %s (want 1), ok %v (want true), checked %v; findings %v, unchecked %v",
			segNotes, seg, rep.OK(), rep.Checked, rep.Findings, rep.Unchecked)
	}
}
