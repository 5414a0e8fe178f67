package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/dir"
)

// These tests drive the CLI through run, as a user would, on real files,
// the real directory store and (in loop_test.go) real loop devices.

const (
	kib = 1 << 10
	mib = 1 << 20
)

// cliResult is one run of the CLI.
type cliResult struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("seedship %s: exit %d\n--- stdout:\n%s--- stderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// cliMu serialises runs of the CLI: urfave/cli applies its package-level
// help and version flags on every run, so concurrent runs in one process
// race (the real binary runs once per process).
var cliMu sync.Mutex

func seedshipCtx(ctx context.Context, args ...string) cliResult {
	var out, errb bytes.Buffer
	cliMu.Lock()
	code := run(ctx, append([]string{"seedship"}, args...), &out, &errb)
	cliMu.Unlock()
	return cliResult{args: args, code: code, stdout: out.String(), stderr: errb.String()}
}

// expect runs the CLI and reports (without stopping the test) an exit
// code other than want.
func expect(t *testing.T, want int, args ...string) cliResult {
	t.Helper()
	r := seedshipCtx(context.Background(), args...)
	if r.code != want {
		t.Errorf("want exit %d, got %s", want, r)
	}
	return r
}

// must runs the CLI and stops the test unless it exits 0.
func must(t *testing.T, args ...string) cliResult {
	t.Helper()
	r := seedshipCtx(context.Background(), args...)
	if r.code != exitOK {
		t.Fatalf("want exit 0, got %s", r)
	}
	return r
}

// oneLineError checks that stderr is exactly one line, "seedship: ...",
// containing every one of names.
func oneLineError(t *testing.T, r cliResult, names ...string) {
	t.Helper()
	msg := strings.TrimRight(r.stderr, "\n")
	if msg == "" || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "seedship: ") {
		t.Errorf("want a one-line error \"seedship: ...\" on stderr, got %s", r)
		return
	}
	for _, n := range names {
		if !strings.Contains(msg, n) {
			t.Errorf("error %q does not name %q", msg, n)
		}
	}
}

func randBytes(seed byte, n int) []byte {
	c := rand.NewChaCha8([32]byte{seed, 'c', 'l', 'i'})
	b := make([]byte, n)
	_, _ = c.Read(b)
	return b
}

func textBytes(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "%06d seedship restores block for block; compressible text line\n", i)
	}
	return b.Bytes()[:n]
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func shaHex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func absent(t *testing.T, path, why string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (%v): %s", path, err, why)
	}
}

// treeOf maps every file under root to its content, for before/after
// comparisons; it includes temporary files.
func treeOf(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	if _, err := os.Stat(root); errors.Is(err, fs.ErrNotExist) {
		return out
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func noTemps(t *testing.T, root string) {
	t.Helper()
	for f := range treeOf(t, root) {
		if strings.Contains(f, dir.TempPrefix) {
			t.Errorf("temporary file %s left in %s", f, root)
		}
	}
}

// segmentFiles returns the sizes of the data segment files in an image.
func segmentFiles(t *testing.T, img string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	des, err := os.ReadDir(filepath.Join(img, "data"))
	if errors.Is(err, fs.ErrNotExist) {
		return out
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[de.Name()] = fi.Size()
	}
	return out
}

func loadManifest(t *testing.T, img string) *format.Manifest {
	t.Helper()
	m, err := format.DecodeManifest(readFile(t, filepath.Join(img, format.ManifestKey)))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// imageInfo is the part of info --json these tests pin down.
type imageInfo struct {
	Size        int64  `json:"size"`
	ChunkSize   int    `json:"chunk_size"`
	Chunks      uint64 `json:"chunks"`
	ZeroChunks  uint64 `json:"zero_chunks"`
	StoredBytes int64  `json:"stored_bytes"`
	Segments    int    `json:"segments"`
	SHA256      string `json:"sha256"`
	Compression struct {
		Codec string `json:"codec"`
		Level int    `json:"level"`
	} `json:"compression"`
	Source struct {
		Path string `json:"path"`
		Kind string `json:"kind"`
		Size int64  `json:"size"`
	} `json:"source"`
}

// captureOut is the part of capture --json these tests pin down.
type captureOut struct {
	Source     string `json:"source"`
	Size       int64  `json:"size"`
	ChunkSize  int    `json:"chunk_size"`
	Chunks     uint64 `json:"chunks"`
	ZeroChunks uint64 `json:"zero_chunks"`
	Segments   int    `json:"segments"`
	SHA256     string `json:"sha256"`
}

type verifyOut struct {
	OK         bool   `json:"ok"`
	ChunksOK   uint64 `json:"chunks_ok"`
	ZeroChunks uint64 `json:"zero_chunks"`
	Findings   []struct {
		Chunk  *uint64 `json:"chunk"`
		Offset int64   `json:"offset"`
		Length int64   `json:"length"`
		Error  string  `json:"error"`
	} `json:"findings"`
}

type restoreOut struct {
	Size          int64  `json:"size"`
	ChunksWritten uint64 `json:"chunks_written"`
	ZeroChunks    uint64 `json:"zero_chunks"`
	ZeroedBytes   int64  `json:"zeroed_bytes"`
	SkippedZeros  bool   `json:"skipped_zeros"`
	SHA256        string `json:"sha256"`
}

func decodeJSON(t *testing.T, r cliResult, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("stdout is not one JSON object (%v): %s", err, r)
	}
}

// captureImage captures src into a new image directory with the given
// capture flags and returns the image path.
func captureImage(t *testing.T, src string, flags ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "seed")
	must(t, append(append([]string{"capture", "--quiet"}, flags...), src, img)...)
	return img
}

// expectedZeroChunks counts the all-zero chunks of data.
func expectedZeroChunks(data []byte, chunk int) uint64 {
	var n uint64
	for off := 0; off < len(data); off += chunk {
		if isZero(data[off:min(off+chunk, len(data))]) {
			n++
		}
	}
	return n
}

// checkInfo checks info --json of img against the source bytes and the
// files on disk.
func checkInfo(t *testing.T, img string, data []byte, chunk int) imageInfo {
	t.Helper()
	var info imageInfo
	decodeJSON(t, must(t, "info", "--json", img), &info)
	segs := segmentFiles(t, img)
	var onDisk int64
	for _, n := range segs {
		onDisk += n
	}
	want := imageInfo{
		Size:        int64(len(data)),
		ChunkSize:   chunk,
		Chunks:      uint64((len(data) + chunk - 1) / chunk),
		ZeroChunks:  expectedZeroChunks(data, chunk),
		StoredBytes: onDisk,
		Segments:    len(segs),
		SHA256:      shaHex(data),
	}
	got := info
	got.Compression, got.Source = want.Compression, want.Source
	if got != want {
		t.Errorf("info --json:\n got %+v\nwant %+v (sha256 and stored_bytes from the source bytes and the segment files on disk)", got, want)
	}
	if info.Source.Size != int64(len(data)) {
		t.Errorf("info source.size %d, want %d", info.Source.Size, len(data))
	}
	return info
}

type roundTrip struct {
	name   string
	source func(t *testing.T, dir string) string // writes the source, returns its path
	flags  []string                              // capture flags
	chunk  int                                   // the chunk size the flags select
	check  func(t *testing.T, info imageInfo, data []byte, img string)
	fsck   bool // the source is an ext4 image: e2fsck the restored copy
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []roundTrip{
		{
			name: "ext4 filesystem", chunk: format.DefaultChunkSize, fsck: true,
			source: makeExt4,
			check: func(t *testing.T, info imageInfo, data []byte, img string) {
				if want := uint64(64 * mib / format.DefaultChunkSize); info.Chunks != want {
					t.Errorf("64 MiB at default chunks: %d chunks, want %d", info.Chunks, want)
				}
			},
		},
		{
			name: "sparse with holes and zero ranges", chunk: 1 * mib, flags: []string{"--chunk-size", "1MiB"},
			source: makeSparse,
			check: func(t *testing.T, info imageInfo, data []byte, img string) {
				// Chunks 1, 2, 3 (written zeros), 4, 6, 8, 9 are zero.
				if info.ZeroChunks != 7 || info.Chunks != 11 {
					t.Errorf("zero_chunks %d of %d, want 7 of 11", info.ZeroChunks, info.Chunks)
				}
				if info.StoredBytes >= 5*mib {
					t.Errorf("stored_bytes %d for 4 stored chunks, most of them compressible: zero chunks stored?", info.StoredBytes)
				}
			},
		},
		{
			name: "size not a multiple of the chunk size", chunk: 1 * mib, flags: []string{"--chunk-size", "1MiB"},
			source: func(t *testing.T, d string) string {
				return writeFile(t, filepath.Join(d, "odd.img"), randBytes(1, 3*mib+12345))
			},
			check: func(t *testing.T, info imageInfo, data []byte, img string) {
				if info.Chunks != 4 {
					t.Errorf("3 MiB + 12345 at 1 MiB: %d chunks, want 4", info.Chunks)
				}
			},
		},
		{
			name: "zero-length source", chunk: format.DefaultChunkSize,
			source: func(t *testing.T, d string) string { return writeFile(t, filepath.Join(d, "empty.img"), nil) },
			check: func(t *testing.T, info imageInfo, data []byte, img string) {
				if info.Chunks != 0 || info.Segments != 0 {
					t.Errorf("empty source: %d chunks in %d segments, want none", info.Chunks, info.Segments)
				}
			},
		},
		{
			name: "one-byte source", chunk: format.DefaultChunkSize,
			source: func(t *testing.T, d string) string { return writeFile(t, filepath.Join(d, "one.img"), []byte{'x'}) },
			check: func(t *testing.T, info imageInfo, data []byte, img string) {
				if info.Chunks != 1 || info.ZeroChunks != 0 || info.Segments != 1 {
					t.Errorf("one byte: %d chunks, %d zero, %d segments; want 1, 0, 1", info.Chunks, info.ZeroChunks, info.Segments)
				}
			},
		},
		{
			name: "one zero byte", chunk: format.DefaultChunkSize,
			source: func(t *testing.T, d string) string { return writeFile(t, filepath.Join(d, "zero.img"), []byte{0}) },
			check: func(t *testing.T, info imageInfo, data []byte, img string) {
				if info.Chunks != 1 || info.ZeroChunks != 1 || info.Segments != 0 {
					t.Errorf("one zero byte: %d chunks, %d zero, %d segments; want 1, 1, 0", info.Chunks, info.ZeroChunks, info.Segments)
				}
			},
		},
		{
			name: "64KiB chunks", chunk: 64 * kib, flags: []string{"--chunk-size", "64KiB"},
			source: func(t *testing.T, d string) string {
				return writeFile(t, filepath.Join(d, "mixed.img"), mixed(40, 64*kib, 999))
			},
			check: func(t *testing.T, info imageInfo, data []byte, img string) {
				if info.Chunks != 41 || info.ZeroChunks == 0 {
					t.Errorf("%d chunks, %d zero; want 41 with some zero", info.Chunks, info.ZeroChunks)
				}
			},
		},
		{
			name: "no compression", chunk: 1 * mib, flags: []string{"--chunk-size", "1MiB", "--level", "-1"},
			source: func(t *testing.T, d string) string {
				return writeFile(t, filepath.Join(d, "raw.img"), mixed(6, mib, 4321))
			},
			check: func(t *testing.T, info imageInfo, data []byte, img string) {
				if info.Compression.Codec != "none" {
					t.Errorf("--level -1: compression %+v, want codec none", info.Compression)
				}
				for i, c := range loadManifest(t, img).Chunks {
					if c.Kind == format.KindStored && c.Codec != format.CodecRaw {
						t.Errorf("--level -1: chunk %d stored as %v, want raw", i, c.Codec)
					}
				}
				var nonzero int64
				for off := 0; off < len(data); off += mib {
					if b := data[off:min(off+mib, len(data))]; !isZero(b) {
						nonzero += int64(len(b))
					}
				}
				if info.StoredBytes < nonzero {
					t.Errorf("--level -1 stored %d bytes, less than the %d non-zero bytes", info.StoredBytes, nonzero)
				}
			},
		},
		{
			name: "small segments", chunk: 64 * kib, flags: []string{"--chunk-size", "64KiB", "--segment-size", "1MiB", "--level", "1"},
			source: func(t *testing.T, d string) string {
				return writeFile(t, filepath.Join(d, "segs.img"), randBytes(2, 5*mib+333))
			},
			check: func(t *testing.T, info imageInfo, data []byte, img string) {
				if info.Segments < 5 {
					t.Errorf("5 MiB of random data at --segment-size 1MiB: %d segments, want at least 5", info.Segments)
				}
				for name, size := range segmentFiles(t, img) {
					if size > 2*mib {
						t.Errorf("segment %s is %d bytes at --segment-size 1MiB", name, size)
					}
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			work := t.TempDir()
			src := tc.source(t, work)
			data := readFile(t, src)
			img := filepath.Join(work, "seed")

			var cj captureOut
			decodeJSON(t, must(t, append(append([]string{"capture", "--json"}, tc.flags...), src, img)...), &cj)
			noTemps(t, img)
			info := checkInfo(t, img, data, tc.chunk)
			if want := (captureOut{Source: src, Size: info.Size, ChunkSize: info.ChunkSize, Chunks: info.Chunks,
				ZeroChunks: info.ZeroChunks, Segments: info.Segments, SHA256: shaHex(data)}); cj != want {
				t.Errorf("capture --json:\n got %+v\nwant %+v", cj, want)
			}
			if tc.check != nil {
				tc.check(t, info, data, img)
			}

			var v verifyOut
			decodeJSON(t, must(t, "verify", "--json", img), &v)
			if !v.OK || len(v.Findings) != 0 || v.ChunksOK+v.ZeroChunks != info.Chunks || v.ZeroChunks != info.ZeroChunks {
				t.Errorf("verify --json: %+v, want ok with %d chunks (%d zero)", v, info.Chunks, info.ZeroChunks)
			}

			target := filepath.Join(work, "restored.img")
			var ro restoreOut
			decodeJSON(t, must(t, "restore", "--json", img, target), &ro)
			if ro.Size != int64(len(data)) || ro.SHA256 != shaHex(data) || ro.ChunksWritten+ro.ZeroChunks != info.Chunks {
				t.Errorf("restore --json: %+v", ro)
			}
			got := readFile(t, target)
			if !bytes.Equal(got, data) {
				t.Fatalf("restored %s (%d bytes) differs from the source (%d bytes)", target, len(got), len(data))
			}
			if out, err := exec.Command("cmp", src, target).CombinedOutput(); err != nil {
				t.Errorf("cmp %s %s: %v %s", src, target, err, out)
			}
			if tc.fsck {
				if out, err := exec.Command("e2fsck", "-fn", target).CombinedOutput(); err != nil {
					t.Errorf("e2fsck -fn on the restored image: %v\n%s", err, out)
				}
			}
			must(t, "verify", "--device", target, img)
			// The restored copy's hash is what the manifest promises.
			if info.SHA256 != shaHex(got) {
				t.Errorf("sha256 of the restored copy %s, manifest %s", shaHex(got), info.SHA256)
			}
		})
	}
}

// mixed returns n chunks of chunk bytes cycling random, zero, text, and a
// tail of tail random bytes.
func mixed(n, chunk, tail int) []byte {
	var out []byte
	for i := range n {
		switch i % 3 {
		case 0:
			out = append(out, randBytes(byte(i), chunk)...)
		case 1:
			out = append(out, make([]byte, chunk)...)
		case 2:
			out = append(out, textBytes(chunk)...)
		}
	}
	return append(out, randBytes(200, tail)...)
}

// makeSparse writes a sparse file of 10 MiB + 777 bytes: holes, a range of
// written zeros, and data at chunk starts, ends and in the short tail.
func makeSparse(t *testing.T, d string) string {
	p := filepath.Join(d, "sparse.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(10*mib + 777); err != nil {
		t.Fatal(err)
	}
	writes := []struct {
		off  int64
		data []byte
	}{
		{0, randBytes(3, 1000)},              // chunk 0: data, then zeros
		{3 * mib, make([]byte, mib)},         // chunk 3: written zeros, not a hole
		{6*mib - 1, []byte{1}},               // chunk 5: one byte at its very end
		{7 * mib, textBytes(300 * kib)},      // chunk 7: text
		{10*mib + 767, randBytes(4, 10)},     // chunk 10 (short): the last bytes
		{8*mib + 100, make([]byte, 200*kib)}, // chunk 8: more written zeros
	}
	for _, w := range writes {
		if _, err := f.WriteAt(w.data, w.off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// makeExt4 makes a 64 MiB ext4 image holding text, random and binary
// files with mkfs.ext4 -d.
func makeExt4(t *testing.T, d string) string {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("needs mkfs.ext4 (e2fsprogs)")
	}
	root := filepath.Join(d, "tree")
	writeFile(t, filepath.Join(root, "README.txt"), textBytes(200*kib))
	writeFile(t, filepath.Join(root, "random.bin"), randBytes(5, 3*mib+17))
	bin := make([]byte, 512*kib)
	for i := range bin {
		bin[i] = byte(i * 7 % 251) // structured binary
	}
	writeFile(t, filepath.Join(root, "sub", "dir", "table.bin"), bin)
	writeFile(t, filepath.Join(root, "sub", "empty"), nil)
	img := filepath.Join(d, "ext4.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", root, img, "64M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	return img
}

// image is a captured test image with several segments and zero chunks.
type image struct {
	src  string // source file
	data []byte // source bytes
	img  string // image directory
	m    *format.Manifest
}

func newImage(t *testing.T) image {
	t.Helper()
	d := t.TempDir()
	data := randBytes(11, 5*mib+4321)
	clear(data[mib : mib+4*64*kib]) // four zero chunks in segment 0/1
	src := writeFile(t, filepath.Join(d, "source.img"), data)
	img := captureImage(t, src, "--chunk-size", "64KiB", "--segment-size", "1MiB")
	im := image{src: src, data: data, img: img, m: loadManifest(t, img)}
	if len(im.m.Segments) < 4 || im.m.Header.ZeroChunks != 4 {
		t.Fatalf("test image has %d segments and %d zero chunks, want >= 4 and 4", len(im.m.Segments), im.m.Header.ZeroChunks)
	}
	return im
}

// copyImage copies an image directory for a test that damages it.
func copyImage(t *testing.T, img string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	for name, content := range treeOf(t, img) {
		writeFile(t, filepath.Join(dst, filepath.FromSlash(name)), []byte(content))
	}
	return dst
}

func segPath(img string, n uint32) string {
	return filepath.Join(img, filepath.FromSlash(format.DataID(n).Key()))
}

// badChunkLines returns the chunk indices listed in "BAD chunk N:" lines.
func badChunkLines(stderr string) []uint64 {
	var out []uint64
	for line := range strings.SplitSeq(stderr, "\n") {
		var n uint64
		if _, err := fmt.Sscanf(line, "BAD chunk %d:", &n); err == nil {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// restoreRefused checks that restore of img fails with code and does not
// create a new target, nor change an existing one.
func restoreRefused(t *testing.T, img string, code int, names ...string) {
	t.Helper()
	d := t.TempDir()
	fresh := filepath.Join(d, "new-target.img")
	r := expect(t, code, "restore", img, fresh)
	if code == exitUsage {
		oneLineError(t, r, names...)
	}
	absent(t, fresh, "a refused restore must not create its target")
	existing := writeFile(t, filepath.Join(d, "existing-target.img"), []byte("precious data that must survive"))
	expect(t, code, "restore", img, existing)
	if b := readFile(t, existing); string(b) != "precious data that must survive" {
		t.Errorf("a refused restore changed its existing target to %d bytes", len(b))
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	im := newImage(t)

	t.Run("source missing", func(t *testing.T) {
		t.Parallel()
		d := t.TempDir()
		src, dest := filepath.Join(d, "no-such-disk.img"), filepath.Join(d, "seed")
		oneLineError(t, expect(t, exitUsage, "capture", src, dest), src)
		absent(t, dest, "nothing may be written for bad input")
	})
	t.Run("source is a directory", func(t *testing.T) {
		t.Parallel()
		d := t.TempDir()
		dest := filepath.Join(d, "seed")
		oneLineError(t, expect(t, exitUsage, "capture", d, dest), d, "directory")
		absent(t, dest, "nothing may be written for bad input")
	})
	t.Run("source is a character device", func(t *testing.T) {
		t.Parallel()
		dest := filepath.Join(t.TempDir(), "seed")
		oneLineError(t, expect(t, exitUsage, "capture", "/dev/null", dest), "/dev/null", "character device")
		absent(t, dest, "nothing may be written for bad input")
	})
	t.Run("destination not empty", func(t *testing.T) {
		t.Parallel()
		dest := t.TempDir()
		writeFile(t, filepath.Join(dest, "taxes-2024.pdf"), []byte("keep me"))
		writeFile(t, filepath.Join(dest, "photos", "a.jpg"), []byte("and me"))
		before := treeOf(t, dest)
		oneLineError(t, expect(t, exitUsage, "capture", im.src, dest), dest, "not empty")
		if after := treeOf(t, dest); !mapsEqual(before, after) {
			t.Errorf("destination changed: before %v, after %v", keys(before), keys(after))
		}
	})
	t.Run("destination is another image", func(t *testing.T) {
		t.Parallel()
		dest := copyImage(t, im.img)
		before := treeOf(t, dest)
		oneLineError(t, expect(t, exitUsage, "capture", im.src, dest), dest)
		if after := treeOf(t, dest); !mapsEqual(before, after) {
			t.Errorf("existing image changed by a refused capture")
		}
	})
	t.Run("destination is a file", func(t *testing.T) {
		t.Parallel()
		dest := writeFile(t, filepath.Join(t.TempDir(), "notes.txt"), []byte("keep"))
		oneLineError(t, expect(t, exitUsage, "capture", im.src, dest), dest)
		if string(readFile(t, dest)) != "keep" {
			t.Errorf("capture changed the file given as destination")
		}
	})
	t.Run("bad capture options write nothing", func(t *testing.T) {
		t.Parallel()
		for _, flags := range [][]string{
			{"--chunk-size", "3000"}, {"--chunk-size", "96KiB"}, {"--chunk-size", "1GiB"}, {"--chunk-size", "lots"},
			{"--level", "0"}, {"--level", "23"}, {"--segment-size", "4KiB"}, {"--segment-size", "-1"},
		} {
			dest := filepath.Join(t.TempDir(), "seed")
			r := expect(t, exitUsage, append(append([]string{"capture"}, flags...), im.src, dest)...)
			oneLineError(t, r)
			if !strings.Contains(r.stderr, flags[0]) && !strings.Contains(r.stderr, flags[1]) {
				t.Errorf("error for capture %v names neither the flag nor the value: %s", flags, r)
			}
			absent(t, dest, fmt.Sprintf("capture %v is a usage error: nothing may be written, not even the directory", flags))
		}
	})

	t.Run("image missing", func(t *testing.T) {
		t.Parallel()
		img := filepath.Join(t.TempDir(), "no-such-image")
		for _, cmd := range [][]string{{"info", img}, {"verify", img}, {"verify", "--device", im.src, img}} {
			oneLineError(t, expect(t, exitUsage, cmd...), img)
		}
		restoreRefused(t, img, exitUsage, img)
	})
	t.Run("image is a file", func(t *testing.T) {
		t.Parallel()
		for _, cmd := range [][]string{{"info", im.src}, {"verify", im.src}} {
			oneLineError(t, expect(t, exitUsage, cmd...), im.src)
		}
	})
	t.Run("image without manifest", func(t *testing.T) {
		t.Parallel()
		img := copyImage(t, im.img)
		if err := os.Remove(filepath.Join(img, format.ManifestKey)); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range [][]string{{"info", img}, {"verify", img}} {
			oneLineError(t, expect(t, exitUsage, cmd...), img, "no manifest")
		}
		restoreRefused(t, img, exitUsage, "no manifest")
	})
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		code   int
		names  []string
	}{
		{"manifest bit flip", func(b []byte) []byte { b[len(b)/2] ^= 0x04; return b }, exitIntegrity, []string{"manifest"}},
		{"manifest bit flip in the tables", func(b []byte) []byte { b[len(b)-200] ^= 0x80; return b }, exitIntegrity, []string{"manifest"}},
		{"manifest truncated", func(b []byte) []byte { return b[:len(b)-1] }, exitIntegrity, []string{"manifest", "truncated"}},
		{"manifest truncated to half", func(b []byte) []byte { return b[:len(b)/2] }, exitIntegrity, []string{"manifest"}},
		{"manifest empty", func(b []byte) []byte { return b[:0] }, exitIntegrity, []string{"manifest"}},
		{"manifest version 1", func(b []byte) []byte { b[8], b[9] = 1, 0; return b }, exitUsage, []string{"version 1", "older seedship"}},
		{"manifest version 2", func(b []byte) []byte { b[8], b[9] = 2, 0; return b }, exitUsage, []string{"version 2", "older seedship"}},
		{"manifest version 4", func(b []byte) []byte { b[8], b[9] = 4, 0; return b }, exitUsage, []string{"version 4"}},
		{"manifest version 256", func(b []byte) []byte { b[8], b[9] = 0, 1; return b }, exitUsage, []string{"version 256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := copyImage(t, im.img)
			p := filepath.Join(img, format.ManifestKey)
			writeFile(t, p, tc.mutate(readFile(t, p)))
			for _, cmd := range [][]string{{"info", img}, {"verify", img}, {"verify", "--device", im.src, img}} {
				oneLineError(t, expect(t, tc.code, cmd...), tc.names...)
			}
			restoreRefused(t, img, tc.code, tc.names...)
		})
	}

	t.Run("segment missing", func(t *testing.T) {
		t.Parallel()
		img := copyImage(t, im.img)
		if err := os.Remove(segPath(img, 2)); err != nil {
			t.Fatal(err)
		}
		want := im.m.SegmentChunks()[2]
		r := expect(t, exitIntegrity, "verify", img)
		if got := badChunkLines(r.stderr); !slices.Equal(got, want) {
			t.Errorf("verify lists bad chunks %v, want the chunks of segment 2: %v\n%s", got, want, r)
		}
		if !strings.Contains(r.stderr, format.DataID(2).Key()) {
			t.Errorf("verify does not name the missing segment %s: %s", format.DataID(2).Key(), r)
		}
		var v verifyOut
		r = expect(t, exitIntegrity, "verify", "--json", img)
		decodeJSON(t, r, &v)
		var got []uint64
		for _, f := range v.Findings {
			if f.Chunk != nil {
				got = append(got, *f.Chunk)
			}
		}
		slices.Sort(got)
		if v.OK || !slices.Equal(got, want) {
			t.Errorf("verify --json: ok %v, chunks %v; want not ok, chunks %v", v.OK, got, want)
		}
		restoreRefused(t, img, exitIntegrity)
		// The data still on the device is not affected by the image.
		must(t, "verify", "--device", im.src, img)
	})
	t.Run("segment damaged", func(t *testing.T) {
		t.Parallel()
		img := copyImage(t, im.img)
		k := im.m.SegmentChunks()[1][3] // a stored chunk in segment 1
		c := im.m.Chunks[k]
		off, length := im.m.ChunkRange(k)
		p := segPath(img, 1)
		seg := readFile(t, p)
		seg[c.Offset+format.FrameHeaderSize+int64(c.PayloadLen)/2] ^= 0x01
		writeFile(t, p, seg)

		r := expect(t, exitIntegrity, "verify", img)
		if got := badChunkLines(r.stderr); !slices.Equal(got, []uint64{k}) {
			t.Errorf("verify lists bad chunks %v, want [%d]: %s", got, k, r)
		}
		rng := fmt.Sprintf("%d-%d", off, off+length-1)
		if !strings.Contains(r.stderr, fmt.Sprintf("chunk %d", k)) || !strings.Contains(r.stderr, rng) {
			t.Errorf("verify does not name chunk %d and its byte range %s: %s", k, rng, r)
		}
		var v verifyOut
		decodeJSON(t, expect(t, exitIntegrity, "verify", "--json", img), &v)
		if len(v.Findings) != 1 || v.Findings[0].Chunk == nil || *v.Findings[0].Chunk != k ||
			v.Findings[0].Offset != off || v.Findings[0].Length != length {
			t.Errorf("verify --json findings %+v, want chunk %d at %d+%d", v.Findings, k, off, length)
		}
		if v.ChunksOK != im.m.Header.Chunks-im.m.Header.ZeroChunks-1 {
			t.Errorf("verify --json: %d chunks ok, want all stored but one (%d)", v.ChunksOK, im.m.Header.Chunks-im.m.Header.ZeroChunks-1)
		}
		target := filepath.Join(t.TempDir(), "target.img")
		r = expect(t, exitIntegrity, "restore", img, target)
		if !strings.Contains(r.stderr, fmt.Sprintf("chunk %d", k)) {
			t.Errorf("restore does not name the damaged chunk %d: %s", k, r)
		}
		// Whatever restore wrote before it stopped passed its hash.
		if got, err := os.ReadFile(target); err == nil {
			for i := range im.m.Chunks {
				o, n := im.m.ChunkRange(uint64(i))
				if b := got[o : o+n]; !isZero(b) && !bytes.Equal(b, im.data[o:o+n]) {
					t.Errorf("restore wrote chunk %d with bytes that are not the source's", i)
				}
			}
		}
	})
	for _, cut := range []struct {
		name string
		keep func(size int64) int64
	}{
		{"segment truncated in its footer", func(size int64) int64 { return size - 10 }},
		{"segment truncated in its frames", func(size int64) int64 { return size / 2 }},
	} {
		t.Run(cut.name, func(t *testing.T) {
			t.Parallel()
			img := copyImage(t, im.img)
			p := segPath(img, 3)
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, cut.keep(fi.Size())); err != nil {
				t.Fatal(err)
			}
			r := expect(t, exitIntegrity, "verify", img)
			if !strings.Contains(r.stderr, "BAD ") {
				t.Errorf("verify of a truncated segment lists nothing: %s", r)
			}
			restoreRefused(t, img, exitIntegrity)
		})
	}

	t.Run("verify --device smaller than the image", func(t *testing.T) {
		t.Parallel()
		small := writeFile(t, filepath.Join(t.TempDir(), "small.img"), im.data[:mib])
		r := expect(t, exitIntegrity, "verify", "--device", small, im.img)
		oneLineError(t, r, small)
	})
	t.Run("verify --device differs", func(t *testing.T) {
		t.Parallel()
		changed := bytes.Clone(im.data)
		changed[3*mib+5] ^= 0xFF // chunk 48
		dev := writeFile(t, filepath.Join(t.TempDir(), "dev.img"), changed)
		r := expect(t, exitIntegrity, "verify", "--device", dev, im.img)
		if got := badChunkLines(r.stderr); !slices.Equal(got, []uint64{48}) {
			t.Errorf("verify --device lists %v, want [48]: %s", got, r)
		}
	})

	t.Run("target file smaller than the source is grown", func(t *testing.T) {
		t.Parallel()
		target := writeFile(t, filepath.Join(t.TempDir(), "t.img"), bytes.Repeat([]byte{0xEE}, 100*kib))
		must(t, "restore", im.img, target)
		if got := readFile(t, target); !bytes.Equal(got, im.data) {
			t.Errorf("restore onto a smaller file: %d bytes, equal %v; want the %d source bytes", len(got), bytes.Equal(got, im.data), len(im.data))
		}
	})
	t.Run("target file larger than the source is cut to size", func(t *testing.T) {
		t.Parallel()
		target := writeFile(t, filepath.Join(t.TempDir(), "t.img"), bytes.Repeat([]byte{0xEE}, len(im.data)+3*mib))
		must(t, "restore", im.img, target)
		if got := readFile(t, target); !bytes.Equal(got, im.data) {
			t.Errorf("restore onto a larger 0xEE file: %d bytes, equal %v; want the %d source bytes", len(got), bytes.Equal(got, im.data), len(im.data))
		}
	})
	t.Run("target is a file of the image", func(t *testing.T) {
		t.Parallel()
		// Restoring onto the image being read destroys the image.
		img := copyImage(t, im.img)
		before := treeOf(t, img)
		for _, key := range []string{format.ManifestKey, format.DataID(0).Key(), format.DataID(uint32(len(im.m.Segments) - 1)).Key()} {
			target := filepath.Join(img, filepath.FromSlash(key))
			oneLineError(t, expect(t, exitUsage, "restore", img, target), target)
			if !mapsEqual(before, treeOf(t, img)) {
				t.Fatalf("restore onto %s changed the image", key)
			}
		}
		must(t, "verify", img)
	})
	t.Run("target is a directory", func(t *testing.T) {
		t.Parallel()
		d := t.TempDir()
		oneLineError(t, expect(t, exitUsage, "restore", im.img, d), d)
	})
	t.Run("target is a character device", func(t *testing.T) {
		t.Parallel()
		oneLineError(t, expect(t, exitUsage, "restore", im.img, "/dev/null"), "/dev/null")
	})
}

// TestRestoreOntoSource restores an image onto the file it was captured
// from, by the same path, through a symlink, and by a different spelling
// from another directory. The source was changed after the capture, so an
// overwrite would lose that change.
func TestRestoreOntoSource(t *testing.T) {
	d := t.TempDir()
	data := mixed(4, 64*kib, 100)
	src := writeFile(t, filepath.Join(d, "disk.img"), data)

	changed := bytes.Clone(data)
	copy(changed[10:], "written after the capture")
	unchanged := func(t *testing.T) {
		t.Helper()
		if !bytes.Equal(readFile(t, src), changed) {
			t.Fatalf("the capture source was overwritten")
		}
	}
	link := filepath.Join(d, "link.img")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(d, "hardlink.img")
	if err := os.Link(src, hard); err != nil {
		t.Fatal(err)
	}

	t.Run("absolute path", func(t *testing.T) {
		img := captureImage(t, src, "--chunk-size", "64KiB")
		writeFile(t, src, changed)
		oneLineError(t, expect(t, exitUsage, "restore", img, src), src, "capture source")
		unchanged(t)
		oneLineError(t, expect(t, exitUsage, "restore", img, link), link, "capture source")
		unchanged(t)
		oneLineError(t, expect(t, exitUsage, "restore", img, hard), hard, "capture source")
		unchanged(t)
	})
	t.Run("captured by a relative path", func(t *testing.T) {
		writeFile(t, src, data)
		img := filepath.Join(t.TempDir(), "seed")
		t.Chdir(d)
		must(t, "capture", "-q", "--chunk-size", "64KiB", "disk.img", img)
		writeFile(t, src, changed)
		// The operator later restores from another directory.
		t.Chdir(t.TempDir())
		oneLineError(t, expect(t, exitUsage, "restore", img, src), src, "capture source")
		unchanged(t)
	})
}

func TestUsage(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	src := writeFile(t, filepath.Join(d, "s.img"), []byte("abc"))
	img := captureImage(t, src)

	t.Run("flag after the arguments", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			flag string
		}{
			{[]string{"verify", img, "--json"}, "--json"},
			{[]string{"info", img, "-q"}, "-q"},
			{[]string{"restore", img, filepath.Join(d, "t.img"), "--target-zeroed"}, "--target-zeroed"},
			{[]string{"capture", src, filepath.Join(d, "x"), "--level", "1"}, "--level"},
		} {
			oneLineError(t, expect(t, exitUsage, tc.args...), tc.flag, "put flags before")
		}
		absent(t, filepath.Join(d, "t.img"), "a usage error writes nothing")
		absent(t, filepath.Join(d, "x"), "a usage error writes nothing")
	})
	t.Run("version", func(t *testing.T) {
		r := expect(t, exitOK, "--version")
		if !strings.Contains(r.stdout, version) {
			t.Errorf("--version prints %q, want the version %q", r.stdout, version)
		}
	})
	t.Run("unknown flag", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			name string
		}{
			{[]string{"verify", "--bogus", img}, "bogus"},
			{[]string{"capture", "--fast", src, filepath.Join(d, "y")}, "fast"},
			{[]string{"restore", "--force", img, filepath.Join(d, "y")}, "force"},
			{[]string{"--bogus"}, "bogus"},
		} {
			oneLineError(t, expect(t, exitUsage, tc.args...), tc.name)
		}
		absent(t, filepath.Join(d, "y"), "a usage error writes nothing")
	})
	t.Run("unknown command", func(t *testing.T) {
		r := expect(t, exitUsage, "bogus", img)
		oneLineError(t, r, "bogus")
	})
	t.Run("wrong number of arguments", func(t *testing.T) {
		for _, args := range [][]string{{"verify"}, {"info", img, img}, {"restore", img}, {"capture", src}} {
			oneLineError(t, expect(t, exitUsage, args...), args[0])
		}
	})
	t.Run("help", func(t *testing.T) {
		for _, args := range [][]string{{"--help"}, {"capture", "--help"}, {"info", "--help"}, {"verify", "--help"}, {"restore", "--help"}, {"copy", "--help"}} {
			r := expect(t, exitOK, args...)
			for _, want := range []string{"EXIT STATUS", "0    success", "1    runtime error", "2    usage error or bad input",
				"3    integrity failure", "130  interrupted", "continues it"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("seedship %s does not document the exit codes (%q): %s", strings.Join(args, " "), want, r)
				}
			}
		}
	})
}

// TestCaptureInterrupted cancels a capture mid-way and checks that the
// destination does not look like an image.
func TestCaptureInterrupted(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	srcPath := writeFile(t, filepath.Join(d, "big.img"), randBytes(21, 32*mib))

	t.Run("engine cancelled mid-capture", func(t *testing.T) {
		t.Parallel()
		src, err := engine.OpenSource(srcPath)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		dest := filepath.Join(t.TempDir(), "seed")
		st, err := dir.New(dest)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		cancelled := false
		_, err = engine.Capture(ctx, src, st, engine.CaptureOptions{
			ChunkSize: 64 * kib, SegmentSize: 1 * mib, Workers: 2,
			Progress: func(p engine.Progress) {
				if !cancelled && p.Done > 0 && p.Done < p.Total {
					cancelled = true
					cancel()
				}
			},
		})
		if !cancelled || !errors.Is(err, context.Canceled) {
			t.Fatalf("capture cancelled mid-way (%v): %v, want context.Canceled", cancelled, err)
		}
		absent(t, filepath.Join(dest, format.ManifestKey), "an interrupted capture must not write a manifest")
		noTemps(t, dest)
		r := expect(t, exitUsage, "verify", dest)
		oneLineError(t, r, "capture did not finish", "capture --resume")
		restoreRefused(t, dest, exitUsage, "capture did not finish")
	})
	t.Run("CLI with a cancelled context", func(t *testing.T) {
		t.Parallel()
		dest := filepath.Join(t.TempDir(), "seed")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := seedshipCtx(ctx, "capture", srcPath, dest)
		if r.code != exitInterrupted {
			t.Errorf("interrupted capture: want exit %d, got %s", exitInterrupted, r)
		}
		absent(t, filepath.Join(dest, format.ManifestKey), "an interrupted capture must not write a manifest")
		noTemps(t, dest)
		// Nothing was stored: the hint is the same capture, not --resume.
		argv := continueArgs(t, r)
		if want := []string{"seedship", "capture", srcPath, dest}; !slices.Equal(argv, want) {
			t.Errorf("continue with %q, want %q", argv, want)
		}
		must(t, argv[1:]...)
	})
}

// continueArgs checks that r's stderr is the one-line error and then the
// line naming the command that continues the run, and returns that
// command split into words by a real shell, as an operator would run it.
func continueArgs(t *testing.T, r cliResult) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	const prefix = "seedship: to continue, run: "
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "seedship: ") || !strings.HasPrefix(lines[1], prefix) {
		t.Fatalf("want an error line and %q on stderr, got %s", prefix+"...", r)
	}
	return shellWords(t, strings.TrimPrefix(lines[1], prefix))
}

// shellWords splits a command line as sh does.
func shellWords(t *testing.T, cmdline string) []string {
	t.Helper()
	out, err := exec.Command("sh", "-c", `for a in `+cmdline+`; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatalf("sh cannot read %q: %v", cmdline, err)
	}
	return strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
