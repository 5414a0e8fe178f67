package verify_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/verify"
)

// These tests capture encrypted images (spec §11) with the engine and
// check that a check without the key is a transport check that says so,
// finds every damaged stored byte and names its chunk, and that a check
// with the key, or of a plain image, is the deep one.

// encImage is an encrypted parity image in a directory, with the identity
// that opens it.
type encImage struct {
	testImage
	id age.Identity
}

// newIdentity makes an age X25519 identity and its recipient.
func newIdentity(t testing.TB) (age.Identity, seal.Recipient) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	r, err := seal.ParseRecipient("test", id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	return id, r
}

// captureEncrypted captures data with parity 2+1, 64 KiB chunks and
// 256 KiB segments, encrypted for a new identity, into a new directory.
// The capture's resume key goes to a state directory of the test's own.
func captureEncrypted(t testing.TB, data []byte) encImage {
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
	imgDir := filepath.Join(root, "image")
	st, err := dir.New(imgDir)
	if err != nil {
		t.Fatal(err)
	}
	id, r := newIdentity(t)
	g := format.Geometry{K: 2, M: 1}
	res, err := engine.Capture(context.Background(), src, st, engine.CaptureOptions{
		ChunkSize: 64 * kib, SegmentSize: 256 * kib, Parity: &g, Workers: 2, Level: 3,
		Encrypt: &engine.EncryptOptions{Recipients: []seal.Recipient{r}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Manifest.Encrypted() {
		t.Fatal("the capture made a plain image")
	}
	geo, _ := res.Manifest.Geometry()
	return encImage{testImage{data: data, dir: imgDir, m: res.Manifest, g: geo, files: readTree(t, imgDir)}, id}
}

// openImage opens the image in d afresh (a manifest of its own, locked
// when encrypted) and unlocks it with ids, if any.
func openImage(t testing.TB, d string, ids ...age.Identity) *seed.Image {
	t.Helper()
	st, err := dir.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	im, err := seed.Open(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) > 0 {
		if err := im.Unlock(ids); err != nil {
			t.Fatal(err)
		}
	}
	return im
}

// storedChunks counts the stored chunks of m.
func storedChunks(m *format.Manifest) (n uint64) {
	for _, c := range m.Chunks {
		if c.Kind == format.KindStored {
			n++
		}
	}
	return n
}

// TestCheckDepth: a check is deep on a plain image and on an unlocked
// encrypted one, transport-only on a locked one or when asked; a deep
// check of a locked image is refused before anything is read; the report
// says which check it was, lists only the checks that ran, and carries
// the transport note exactly when no chunk was opened.
func TestCheckDepth(t *testing.T) {
	t.Parallel()
	enc := captureEncrypted(t, sourceBytes(31, 20*64*kib+999))
	plain := captureParity(t, t.TempDir(), sourceBytes(31, 20*64*kib+999), format.Geometry{K: 2, M: 1}, 256*kib, 64*kib)
	deepChecks := []verify.CheckKind{verify.CheckChunkHashes, verify.CheckBlockDigests,
		verify.CheckSegments, verify.CheckParityRows, verify.CheckManifests}
	transportChecks := []verify.CheckKind{verify.CheckStoredDigests, verify.CheckSegments, verify.CheckParityRows, verify.CheckManifests}
	for _, tc := range []struct {
		name      string
		dir       string
		ids       []age.Identity
		transport bool
		deep      bool
		depth     verify.Depth
		checks    []verify.CheckKind
		err       error
	}{
		{"plain default", plain.dir, nil, false, false, verify.DepthDeep, deepChecks, nil},
		{"plain --deep", plain.dir, nil, false, true, verify.DepthDeep, deepChecks, nil},
		{"plain --transport", plain.dir, nil, true, false, verify.DepthTransport, transportChecks, nil},
		{"encrypted without key", enc.dir, nil, false, false, verify.DepthTransport, transportChecks, nil},
		{"encrypted without key --transport", enc.dir, nil, true, false, verify.DepthTransport, transportChecks, nil},
		{"encrypted without key --deep", enc.dir, nil, false, true, "", nil, format.ErrNoKey},
		{"encrypted with key", enc.dir, []age.Identity{enc.id}, false, false, verify.DepthDeep, deepChecks, nil},
		{"encrypted with key --deep", enc.dir, []age.Identity{enc.id}, false, true, verify.DepthDeep, deepChecks, nil},
		{"encrypted with key --transport", enc.dir, []age.Identity{enc.id}, true, false, verify.DepthTransport, transportChecks, nil},
		{"both", plain.dir, nil, true, true, "", nil, verify.ErrDepth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := openImage(t, tc.dir, tc.ids...)
			m := im.Manifest()
			rep, err := verify.CheckImage(context.Background(), im, verify.CheckOptions{ScanOptions: verify.ScanOptions{
				Workers: 2, Transport: tc.transport, Deep: tc.deep}})
			if tc.err != nil {
				if !errors.Is(err, tc.err) || rep != nil {
					t.Fatalf("CheckImage: report %v, error %v; want no report and an error wrapping %v", rep, err, tc.err)
				}
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !rep.OK() || rep.Depth != tc.depth || !slices.Equal(rep.Checked, tc.checks) {
				t.Fatalf("ok %v depth %q checked %v (findings %v), want ok %q %v", rep.OK(), rep.Depth, rep.Checked, rep.Findings, tc.depth, tc.checks)
			}
			// A transport check hashes every stored frame; a deep one
			// checks the chunks against their chunk hashes instead.
			n, stored := storedChunks(m), uint64(0)
			if tc.depth == verify.DepthTransport {
				stored = storedChunks(m)
			}
			if rep.ChunksOK != n || rep.StoredChecked != stored || (rep.StoredBytes > 0) != (stored > 0) {
				t.Fatalf("%d chunks ok, %d stored digests checked over %d bytes; want %d chunks, %d digests", rep.ChunksOK, rep.StoredChecked, rep.StoredBytes, n, stored)
			}
			if rep.ChunksOK+rep.ZeroChunks != m.Header.Chunks || rep.BytesChecked+int64(rep.ZeroChunks)*64*kib < m.Header.Size-64*kib {
				t.Fatalf("%d+%d chunks, %d bytes: not the whole image", rep.ChunksOK, rep.ZeroChunks, rep.BytesChecked)
			}
			wantNote := ""
			if tc.depth == verify.DepthTransport {
				wantNote = "transport integrity only: the chunks were not decrypted and checked against their source digests"
			}
			if rep.TransportOnly() != (tc.depth == verify.DepthTransport) || rep.Note() != wantNote {
				t.Fatalf("TransportOnly %v note %q, want %q", rep.TransportOnly(), rep.Note(), wantNote)
			}
		})
	}
}

// frameByte returns the offset in its segment of byte k of chunk i's
// frame (k < 0 counts from the frame's end).
func frameByte(m *format.Manifest, i uint64, k int64) int64 {
	c := m.Chunks[i]
	if k < 0 {
		k += c.FrameLen()
	}
	return c.Offset + k
}

// midChunk returns a stored chunk in the middle of the image.
func midChunk(t testing.TB, m *format.Manifest) uint64 {
	t.Helper()
	for i := len(m.Chunks) / 2; i < len(m.Chunks); i++ {
		if m.Chunks[i].Kind == format.KindStored {
			return uint64(i)
		}
	}
	t.Fatal("no stored chunk in the second half")
	return 0
}

// TestEncryptedDamageLocated: a flipped bit anywhere in a sealed frame
// (header, nonce, ciphertext, tag) is found by a check with and without
// the key and named by its chunk, source range and stored range; a
// repair without the key rebuilds it from parity, after which a deep
// check with the key passes.
func TestEncryptedDamageLocated(t *testing.T) {
	t.Parallel()
	enc := captureEncrypted(t, sourceBytes(32, 24*64*kib+4321))
	i := midChunk(t, enc.m)
	c := enc.m.Chunks[i]
	if !c.Codec.Sealed() {
		t.Fatalf("chunk %d has codec %#x, want a sealed one", i, byte(c.Codec))
	}
	key := format.DataID(c.Segment).Key()
	for _, tc := range []struct {
		name string
		k    int64 // byte of the frame
	}{
		{"frame header", 12},
		{"nonce", format.FrameHeaderSize + 3},
		{"ciphertext", format.FrameHeaderSize + 12 + int64(c.PayloadLen-28)/2},
		{"tag", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			_, d := enc.copy(t, t.TempDir())
			flip(t, d, key, frameByte(enc.m, i, tc.k), 0x10)
			off, length := enc.m.ChunkRange(i)
			for _, ids := range [][]age.Identity{nil, {enc.id}} {
				im := openImage(t, d, ids...)
				rep, err := verify.CheckImage(ctx, im, verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: 2}})
				if err != nil {
					t.Fatal(err)
				}
				if got := rep.BadChunks(); !slices.Equal(got, []uint64{i}) {
					t.Fatalf("with %d identities: bad chunks %v, want [%d] (findings %v)", len(ids), got, i, rep.Findings)
				}
				f := rep.Findings[slices.IndexFunc(rep.Findings, func(f verify.Finding) bool { return f.IsChunk })]
				if f.Offset != off || f.Length != length || f.Segment != c.Segment || f.FrameOffset != c.Offset || f.FrameLength != c.FrameLen() {
					t.Fatalf("finding %+v, want chunk %d at source %d+%d, segment %d stored %d+%d", f, i, off, length, c.Segment, c.Offset, c.FrameLen())
				}
				if !format.IsDamage(rep.Err()) || !rep.Repairable(im.Manifest()) {
					t.Fatalf("report error %v repairable %v: want damage, repairable", rep.Err(), rep.Repairable(im.Manifest()))
				}
				for _, s := range []string{"chunk " + itoa(int(i)) + ":", "source bytes " + itoa(int(off)) + "-" + itoa(int(off+length-1)),
					"stored bytes " + itoa(int(c.Offset)) + "-" + itoa(int(c.Offset+c.FrameLen()-1))} {
					if !strings.Contains(f.String(), s) {
						t.Fatalf("finding %q does not name %q", f, s)
					}
				}
				// A transport check (no key) checks stored digests; a deep
				// one checks the chunks against their chunk hashes instead.
				if got := slices.Contains(rep.Checked, verify.CheckStoredDigests); got != (len(ids) == 0) {
					t.Fatalf("with %d identities: stored digests listed %v: %v", len(ids), got, rep.Checked)
				}
			}
			st, err := dir.Open(d)
			if err != nil {
				t.Fatal(err)
			}
			res, err := engine.CheckImage(ctx, st, engine.CheckOptions{Repair: true, Workers: 2})
			if err != nil {
				t.Fatalf("repair without the key: %v", err)
			}
			if res.After == nil || !res.After.OK() || !res.After.TransportOnly() || !slices.Contains(res.Rewritten, key) {
				t.Fatalf("repair without the key: after %+v, rewrote %v; want %s rewritten and a clean transport check", res.After, res.Rewritten, key)
			}
			rep, err := verify.CheckImage(ctx, openImage(t, d, enc.id), verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: 2, Deep: true}})
			if err != nil || !rep.OK() || rep.Depth != verify.DepthDeep {
				t.Fatalf("deep check after the repair: %v, %v depth %q", err, rep.Findings, rep.Depth)
			}
		})
	}
}

// TestEncryptedFramesSwapped: two chunks' sealed frames of equal length
// swapped within a segment pass no check: without the key their stored
// digests differ from the index's, with it their associated data (the
// chunk index) does too.
func TestEncryptedFramesSwapped(t *testing.T) {
	t.Parallel()
	// Random data throughout: every chunk is stored raw, so sealed frames
	// are all the same length.
	data := make([]byte, 16*64*kib)
	_, _ = rand.NewChaCha8([32]byte{33}).Read(data)
	enc := captureEncrypted(t, data)
	var a, b = -1, -1
	for i, c := range enc.m.Chunks {
		if c.Kind != format.KindStored {
			continue
		}
		if a < 0 {
			a = i
			continue
		}
		if c.Segment == enc.m.Chunks[a].Segment && c.PayloadLen == enc.m.Chunks[a].PayloadLen {
			b = i
			break
		}
	}
	if b < 0 {
		t.Fatal("the test image has no two frames of equal length in one segment")
	}
	ca, cb := enc.m.Chunks[a], enc.m.Chunks[b]
	_, d := enc.copy(t, t.TempDir())
	key := format.DataID(ca.Segment).Key()
	p := path(d, key)
	seg, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// Swap the payloads only: the frame headers name their chunks.
	pa := seg[ca.Offset+format.FrameHeaderSize : ca.Offset+ca.FrameLen()]
	pb := seg[cb.Offset+format.FrameHeaderSize : cb.Offset+cb.FrameLen()]
	tmp := slices.Clone(pa)
	copy(pa, pb)
	copy(pb, tmp)
	if err := os.WriteFile(p, seg, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ids := range [][]age.Identity{nil, {enc.id}} {
		rep, err := verify.CheckImage(context.Background(), openImage(t, d, ids...), verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: 2}})
		if err != nil {
			t.Fatal(err)
		}
		if got := rep.BadChunks(); !slices.Equal(got, []uint64{uint64(a), uint64(b)}) {
			t.Fatalf("with %d identities: bad chunks %v, want [%d %d]", len(ids), got, a, b)
		}
	}
}

// TestDeviceEncrypted: a device is checked against an encrypted image
// only with its key: without it Device refuses before opening the
// device; with it every chunk is compared through the keyed hasher, a
// changed block is located through the keyed block digests of the
// segment indexes, a zero chunk that is no longer zero is found, and the
// whole-source SHA-256 is compared with the sealed one.
func TestDeviceEncrypted(t *testing.T) {
	t.Parallel()
	data := sourceBytes(34, 12*64*kib+777)
	enc := captureEncrypted(t, data)
	ctx := context.Background()
	sum := sha256.Sum256(data)
	locked := openImage(t, enc.dir).Manifest()
	if rep, err := verify.Device(ctx, locked, "/nonexistent/device", verify.DeviceOptions{}); rep != nil || !errors.Is(err, format.ErrNoKey) || !errors.Is(err, verify.ErrNeedsKey) {
		t.Fatalf("Device without the key: report %v, error %v; want none and an error wrapping ErrNeedsKey and format.ErrNoKey", rep, err)
	}
	im := openImage(t, enc.dir, enc.id)
	m := im.Manifest()
	if m.Header.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("unsealed sha256 %s, want the source's", m.Header.SHA256)
	}
	var zero, stored uint64 = 1 << 63, 1 << 63
	for i, c := range m.Chunks {
		if c.Kind == format.KindZero && zero == 1<<63 {
			zero = uint64(i)
		}
		if c.Kind == format.KindStored && i > 2 && stored == 1<<63 {
			stored = uint64(i)
		}
	}
	if zero == 1<<63 || stored == 1<<63 {
		t.Fatal("the test image needs a zero chunk and a stored one")
	}
	for _, tc := range []struct {
		name    string
		change  int64 // byte of the device to change; -1: none
		chunk   uint64
		located bool
	}{
		{"intact", -1, 0, false},
		{"stored chunk, second block", int64(stored)*64*kib + 64*kib/2, stored, true},
		{"zero chunk", int64(zero)*64*kib + 5, zero, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := filepath.Join(t.TempDir(), "dev.img")
			b := slices.Clone(data)
			if tc.change >= 0 {
				b[tc.change] ^= 0x40
			}
			if err := os.WriteFile(dev, b, 0o600); err != nil {
				t.Fatal(err)
			}
			rep, err := verify.Device(ctx, m, dev, verify.DeviceOptions{Workers: 2, Store: im.Store()})
			if err != nil {
				t.Fatal(err)
			}
			want := []verify.CheckKind{verify.CheckChunkHashes, verify.CheckBlockDigests, verify.CheckSourceSHA256}
			if !slices.Equal(rep.Checked, want) || rep.Depth != "" {
				t.Fatalf("checked %v depth %q, want %v and no image depth", rep.Checked, rep.Depth, want)
			}
			if tc.change < 0 {
				if !rep.OK() || rep.SourceSHA256 != m.Header.SHA256 || rep.ChunksOK+rep.ZeroChunks != m.Header.Chunks {
					t.Fatalf("intact device: ok %v sha %s chunks %d+%d, findings %v", rep.OK(), rep.SourceSHA256, rep.ChunksOK, rep.ZeroChunks, rep.Findings)
				}
				return
			}
			if got := rep.BadChunks(); !slices.Equal(got, []uint64{tc.chunk}) {
				t.Fatalf("bad chunks %v, want [%d] (findings %v)", got, tc.chunk, rep.Findings)
			}
			blk := tc.change &^ (64*kib - 1)
			if len(rep.Changed) != 1 || rep.Changed[0].Located != tc.located || rep.Changed[0].Offset != blk {
				t.Fatalf("changed %+v, want the block at %d located", rep.Changed, blk)
			}
		})
	}
}

// TestReceiptOfEncryptedImage: a read-back of a device against an
// unlocked encrypted image makes a passing receipt that parses, bound to
// the image's manifest hash and the sealed whole-source SHA-256.
func TestReceiptOfEncryptedImage(t *testing.T) {
	t.Parallel()
	data := sourceBytes(35, 6*64*kib+99)
	enc := captureEncrypted(t, data)
	m := openImage(t, enc.dir, enc.id).Manifest()
	dev := filepath.Join(t.TempDir(), "dev.img")
	if err := os.WriteFile(dev, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := readBack(t, m, dev, nil)
	if !r.Passed() {
		t.Fatalf("receipt of an intact device: %s", r.Result.Reason)
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := verify.ParseReceipt(b)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got.Image.SourceSHA256 != hex.EncodeToString(sum[:]) || got.Image.ManifestSHA256 != hex.EncodeToString(m.Hash[:]) {
		t.Fatalf("receipt image %+v, want the source's SHA-256 and the manifest's hash", got.Image)
	}
}

// TestStoredDigestsListed: a check lists the stored digests as checked
// only when every stored chunk's stored digest was checked or the chunk
// is a finding: with a segment index damaged, a deep check still checks
// that segment's chunks against their chunk hashes but has no stored
// digests for them, so it does not list them; a transport check reports
// those chunks as damage (it has nothing else to check them by).
func TestStoredDigestsListed(t *testing.T) {
	t.Parallel()
	plain := captureParity(t, t.TempDir(), sourceBytes(36, 12*64*kib+5), format.Geometry{K: 2, M: 1}, 256*kib, 64*kib)
	seg := format.DataID(1).Key()
	inSeg := plain.m.SegmentChunks()[1]
	for _, tc := range []struct {
		name       string
		damage     bool
		transport  bool
		listed     bool
		badChunks  []uint64
		chunkHashs bool
	}{
		{"intact deep", false, false, false, nil, true},
		{"intact transport", false, true, true, nil, false},
		{"index damaged deep", true, false, false, nil, true},
		{"index damaged transport", true, true, true, inSeg, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, d := plain.copy(t, t.TempDir())
			if tc.damage {
				fi, err := os.Stat(path(d, seg))
				if err != nil {
					t.Fatal(err)
				}
				flip(t, d, seg, fi.Size()-format.FooterSize-3, 0x01) // a block digest of the last entry
			}
			rep, err := verify.CheckImage(context.Background(), openImage(t, d), verify.CheckOptions{ScanOptions: verify.ScanOptions{Workers: 2, Transport: tc.transport}})
			if err != nil {
				t.Fatal(err)
			}
			if got := slices.Contains(rep.Checked, verify.CheckStoredDigests); got != tc.listed {
				t.Fatalf("stored digests listed %v, want %v: checked %v, findings %v", got, tc.listed, rep.Checked, rep.Findings)
			}
			if got := slices.Contains(rep.Checked, verify.CheckChunkHashes); got != tc.chunkHashs {
				t.Fatalf("chunk hashes listed %v, want %v", got, tc.chunkHashs)
			}
			if got := rep.BadChunks(); !slices.Equal(got, tc.badChunks) {
				t.Fatalf("bad chunks %v, want %v", got, tc.badChunks)
			}
			if tc.damage == rep.OK() {
				t.Fatalf("ok %v with the index damaged %v: %v", rep.OK(), tc.damage, rep.Findings)
			}
		})
	}
}
