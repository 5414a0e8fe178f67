package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// The tests of a delta of an encrypted base (spec §12): real files, the
// directory store, small sizes. The base is captured in 256 KiB chunks
// (trustOpts); the delta's chunk size varies, so that its blocks are
// compared with the base's keyed digests at the base's places whether
// or not the two chunkings coincide.

// changedSource writes a copy of data (at least 2 MiB) changed by n
// random 4 KiB writes in its first 2 MiB, one 256 KiB range zeroed (a new
// zero chunk), and grow bytes appended, and returns its path and bytes.
// The rest is unchanged, so a delta has chunks of kind base.
func changedSource(t *testing.T, data []byte, n, grow int, seed uint64) (string, []byte) {
	t.Helper()
	b := append(bytes.Clone(data), make([]byte, grow)...)
	r := mrand.New(mrand.NewPCG(seed, 9))
	for range n {
		off := r.IntN(2<<20/4096) * 4096
		for i := off; i < off+4096; i++ {
			b[i] = byte(r.Uint32())
		}
	}
	clear(b[1<<20 : 1<<20+256<<10]) // text before: a changed chunk, now zero
	for i := len(data); i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	p := filepath.Join(t.TempDir(), "changed.img")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, b
}

// encDelta computes the delta of srcPath against base into a new
// directory.
func encDelta(t *testing.T, base store.Store, srcPath string, opts DeltaOptions) (string, *dir.Store, *DeltaResult, error) {
	t.Helper()
	d := filepath.Join(t.TempDir(), "delta")
	st, err := dir.New(d)
	if err != nil {
		t.Fatal(err)
	}
	src, err := OpenSource(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	res, err := Delta(context.Background(), base, src, st, opts)
	return d, st, res, err
}

// applyDelta restores the delta in st onto target.
func applyDelta(st store.Store, target string, ids ...age.Identity) (*RestoreResult, error) {
	return Restore(context.Background(), st, target, RestoreOptions{Identities: ids, Workers: 2})
}

// plainDigests returns, as needles, every plaintext chunk hash and block
// digest of data in chunks of cs bytes (format.ChunkHash): what a reader
// without the key could use to confirm a guess of the contents.
func plainDigests(data []byte, cs int, needles map[string][]byte) {
	for i := 0; i*cs < len(data); i++ {
		raw := data[i*cs : min((i+1)*cs, len(data))]
		if format.IsZero(raw) {
			continue // a zero chunk's plaintext digests are public knowledge
		}
		blocks := make([]format.BlockDigest, format.NumBlocks(len(raw)))
		h := format.ChunkHash(raw, blocks)
		needles[fmt.Sprintf("%d-byte chunk %d's plaintext hash", cs, i)] = bytes.Clone(h[:])
		for k, bd := range blocks {
			if !format.IsZero(raw[k*blockSize : min((k+1)*blockSize, len(raw))]) {
				needles[fmt.Sprintf("%d-byte chunk %d block %d's plaintext digest", cs, i, k)] = bytes.Clone(bd[:])
			}
		}
	}
}

// TestEncryptedDelta: the delta of an encrypted base is encrypted for
// the base's recipients (the same identity opens it), holds only the
// changed chunks, and applied onto a target restored from the base gives
// the changed source byte for byte; applied again it writes nothing.
// None of its files holds the source's marker, path, SHA-256 or any
// plaintext digest of the changed source's or the base's bytes. A keyless
// copy carries it, and a keyed verify passes.
func TestEncryptedDelta(t *testing.T) {
	encStateHome(t)
	const marker = "MARKER-de17a-5eed-99"
	basePath, data := markerSource(t, marker)
	key := newTestKey(t)
	_, base, bm := encCapture(t, basePath, encOpts("", key.r))
	for _, tc := range []struct {
		name      string
		chunkSize int // the delta's; the base's is 256 KiB
		grow      int
		parity    *format.Geometry
	}{
		{"64 KiB chunks (default)", 0, 0, nil},
		{"chunks as the base's, parity", 256 << 10, 0, &format.Geometry{K: 2, M: 1}},
		{"1 MiB chunks, grown", 1 << 20, 300_001, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srcPath, changed := changedSource(t, data, 40, tc.grow, uint64(tc.chunkSize+tc.grow))
			d, dst, res, err := encDelta(t, base, srcPath, DeltaOptions{ChunkSize: tc.chunkSize, Identities: []age.Identity{key.id}, Workers: 2,
				Parity: tc.parity, SegmentSize: 256 << 10})
			if err != nil {
				t.Fatalf("delta of an encrypted base: %v", err)
			}
			m := res.Manifest
			if !m.Encrypted() || !m.Header.RequiresFeature(format.FeatureDelta) || m.Header.ChunkHash != format.ChunkHashKeyed {
				t.Fatalf("delta requires %v, chunk hash %s: want an encrypted delta", m.Header.Requires, m.Header.ChunkHash)
			}
			if (tc.parity != nil) != (m.Header.Parity != nil) {
				t.Fatalf("delta parity %+v, asked %+v", m.Header.Parity, tc.parity)
			}
			if res.ChangedChunks == 0 || res.ChangedChunks >= m.Header.Chunks {
				t.Fatalf("%d of %d chunks changed: the comparison with the base's keyed digests is off", res.ChangedChunks, m.Header.Chunks)
			}
			sawZero, sawSealed := false, false
			for _, c := range m.Chunks {
				sawZero = sawZero || c.Kind == format.KindZero
				sawSealed = sawSealed || (c.Kind == format.KindStored && c.Codec.Sealed())
			}
			// The zeroed 256 KiB range is a whole chunk up to 256 KiB chunks.
			if !sawSealed || (m.Header.ChunkSize <= 256<<10 && !sawZero) {
				t.Fatalf("zero chunks %v, sealed chunks %v: the delta is not what the test means to check", sawZero, sawSealed)
			}

			// The base's identity alone opens it; it applies onto a
			// target restored from the base, and again harmlessly.
			target, err := restoreTo(t, base, key.id)
			if err != nil {
				t.Fatalf("restore the base: %v", err)
			}
			ar, err := applyDelta(dst, target, key.id)
			if err != nil {
				t.Fatalf("apply the encrypted delta: %v", err)
			}
			sameFile(t, srcPath, target)
			if ar.Delta.Written == 0 || ar.Delta.VerifiedBytes == 0 {
				t.Fatalf("apply wrote %d chunks, read back %d bytes", ar.Delta.Written, ar.Delta.VerifiedBytes)
			}
			again, err := applyDelta(dst, target, key.id)
			if err != nil {
				t.Fatalf("apply the delta again: %v", err)
			}
			if again.Delta.Written != 0 || again.Delta.AlreadyApplied != again.Delta.Checked {
				t.Fatalf("applied again: %d written, %d of %d already applied; want none written", again.Delta.Written, again.Delta.AlreadyApplied, again.Delta.Checked)
			}
			sameFile(t, srcPath, target)

			// Nothing in it confirms a guess of the contents.
			whole := sha256.Sum256(changed)
			needles := map[string][]byte{
				"the marker":           []byte(marker),
				"the source path":      []byte(srcPath),
				"the SHA-256 (hex)":    []byte(fmt.Sprintf("%x", whole)),
				"the SHA-256 (binary)": whole[:],
			}
			plainDigests(changed, m.Header.ChunkSize, needles)
			plainDigests(data, bm.Header.ChunkSize, needles) // what base.digests would hold in a plaintext delta
			files := treeFiles(t, d)
			sawTable := false
			for _, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				sawTable = sawTable || filepath.Base(f) == format.BaseDigestsKey
				for what, n := range needles {
					if bytes.Contains(b, n) {
						t.Errorf("%s holds %s", f, what)
					}
				}
			}
			if !sawTable {
				t.Fatalf("delta files %v: no %s", files, format.BaseDigestsKey)
			}
			// The needles are there to be found in a plaintext delta of
			// the same change: its table holds the base's plaintext
			// digests of the first changed block, its segments the marker.
			_, pbase, _ := encCapture(t, basePath, trustOpts())
			pd, _, _, err := encDelta(t, pbase, srcPath, DeltaOptions{ChunkSize: tc.chunkSize, Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			first := 0
			for bytes.Equal(data[first*blockSize:(first+1)*blockSize], changed[first*blockSize:(first+1)*blockSize]) {
				first++
			}
			bcs := bm.Header.ChunkSize
			what := fmt.Sprintf("%d-byte chunk %d block %d's plaintext digest", bcs, first*blockSize/bcs, first%(bcs/blockSize))
			for _, w := range []string{what, "the marker", "the SHA-256 (hex)"} {
				if n, ok := needles[w]; !ok || !treeContains(t, pd, n) {
					t.Errorf("the plaintext delta does not hold %s: the search would miss it", w)
				}
			}

			// A keyless copy carries it (base digests checked on the
			// way); a keyed deep verify of the copy passes; the copy
			// applies too.
			cd := filepath.Join(t.TempDir(), "copy")
			cst, err := dir.New(cd)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Copy(context.Background(), dst, cst, CopyOptions{}); err != nil {
				t.Fatalf("keyless copy of the encrypted delta: %v", err)
			}
			if _, err := CheckImage(context.Background(), cst, CheckOptions{Identities: []age.Identity{key.id}, Deep: true, Workers: 2}); err != nil {
				t.Fatalf("verify --deep of the copied delta: %v", err)
			}
			t2, err := restoreTo(t, base, key.id)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := applyDelta(cst, t2, key.id); err != nil {
				t.Fatalf("apply the copied delta: %v", err)
			}
			sameFile(t, srcPath, t2)
		})
	}
}

// TestEncryptedDeltaRefusals: an encrypted delta is refused, in one line
// and with nothing written, without an identity (computing it and
// applying it), onto a target not in the base state, and as the base of
// another delta; a delta whose base-digest table is a plaintext one is
// damage.
func TestEncryptedDeltaRefusals(t *testing.T) {
	encStateHome(t)
	key, other := newTestKey(t), newTestKey(t)
	basePath := mixedSource(t, 4<<20+12345)
	data, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	_, base, _ := encCapture(t, basePath, encOpts("", key.r))
	srcPath, _ := changedSource(t, data, 20, 0, 11)
	ids := []age.Identity{key.id}

	oneLine := func(t *testing.T, what string, err error, kind Kind, says string) {
		t.Helper()
		if err == nil || KindOf(err) != kind || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), says) {
			t.Fatalf("%s: %v (kind %v), want one line of kind %v saying %q", what, err, KindOf(err), kind, says)
		}
	}
	for _, tc := range []struct {
		name string
		ids  []age.Identity
		says string
	}{
		{"no identity", nil, "no identity given opens this image's key"},
		{"another key's identity", []age.Identity{other.id}, "no identity given opens this image's key"},
	} {
		t.Run("delta with "+tc.name, func(t *testing.T) {
			d, _, _, err := encDelta(t, base, srcPath, DeltaOptions{Identities: tc.ids})
			oneLine(t, "delta of an encrypted base", err, KindBadInput, tc.says)
			if files := treeFiles(t, d); len(files) != 0 {
				t.Fatalf("refused delta wrote %v", files)
			}
		})
	}

	_, dst, res, err := encDelta(t, base, srcPath, DeltaOptions{Identities: ids, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("apply without identity", func(t *testing.T) {
		target, err := restoreTo(t, base, key.id)
		if err != nil {
			t.Fatal(err)
		}
		before := fileSum(t, target)
		_, err = applyDelta(dst, target)
		oneLine(t, "apply without identity", err, KindBadInput, "no identity given opens this image's key")
		if fileSum(t, target) != before {
			t.Fatal("a refused apply changed the target")
		}
	})
	t.Run("target not in the base state", func(t *testing.T) {
		target, err := restoreTo(t, base, key.id)
		if err != nil {
			t.Fatal(err)
		}
		// Change one byte inside the first range the delta writes.
		var first uint64
		for i, c := range res.Manifest.Chunks {
			if c.Kind != format.KindBase {
				first = uint64(i)
				break
			}
		}
		off, _ := res.Manifest.ChunkRange(first)
		f, err := os.OpenFile(target, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off+100); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, off+100); err != nil {
			t.Fatal(err)
		}
		f.Close()
		before := fileSum(t, target)
		_, err = applyDelta(dst, target, key.id)
		oneLine(t, "apply onto a foreign target", err, KindBadInput, "hold neither the bytes of base image")
		if !errors.Is(err, ErrNotBaseState) {
			t.Fatalf("apply onto a foreign target: %v, want ErrNotBaseState", err)
		}
		if fileSum(t, target) != before {
			t.Fatal("a refused apply changed the target")
		}
	})
	t.Run("an encrypted delta as a base", func(t *testing.T) {
		d, _, _, err := encDelta(t, dst, srcPath, DeltaOptions{Identities: ids})
		oneLine(t, "delta of an encrypted delta", err, KindBadInput, "encrypted delta")
		if files := treeFiles(t, d); len(files) != 0 {
			t.Fatalf("refused delta wrote %v", files)
		}
	})
}

// fileSum returns the SHA-256 of the file at p.
func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestEncryptedDeltaKeyedTable: an encrypted delta's base-digest table
// records the base's chunk size and the base's keyed digests at the
// base's places, and encodes back to its bytes. A base chunk size that is
// none, or a table whose keying does not match its delta, is damage.
func TestEncryptedDeltaKeyedTable(t *testing.T) {
	encStateHome(t)
	key := newTestKey(t)
	basePath := randomSource(t, 3<<20+5000, 3)
	data, err := os.ReadFile(basePath)
	if err != nil {
		t.Fatal(err)
	}
	bd, base, bm := encCapture(t, basePath, encOpts("", key.r))
	srcPath, changed := changedSource(t, data, 3, 0, 5)
	_, dst, res, err := encDelta(t, base, srcPath, DeltaOptions{Identities: []age.Identity{key.id}, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	tb, err := os.ReadFile(filepath.Join(dst.Root(), format.BaseDigestsKey))
	if err != nil {
		t.Fatal(err)
	}
	br, err := format.NewBaseDigestsReader(bytes.NewReader(tb))
	if err != nil {
		t.Fatal(err)
	}
	if br.BaseChunkSize() != bm.Header.ChunkSize {
		t.Fatalf("table's base chunk size %d, base's %d", br.BaseChunkSize(), bm.Header.ChunkSize)
	}
	// The base's keyed digest of each of its blocks at its place, from
	// the base's keys (its identity).
	keys := openManifest(t, bd, key.id).Keys()
	h := format.NewKeyedHasher(keys)
	bcs := int64(bm.Header.ChunkSize)
	n := 0
	var entries []format.BaseDigestsEntry
	err = format.WalkBaseDigests(br, res.Manifest, func(e format.BaseDigestsEntry) error {
		entries = append(entries, format.BaseDigestsEntry{Chunk: e.Chunk, Blocks: slices.Clone(e.Blocks)})
		off, _ := res.Manifest.ChunkRange(e.Chunk)
		for k, got := range e.Blocks {
			o := off + int64(k)*blockSize
			want := h.Block(uint64(o/bcs), int(o%bcs/blockSize), data[o:min(o+blockSize, int64(len(data)))])
			if got != want {
				return fmt.Errorf("chunk %d block %d: table %x, base's keyed digest %x", e.Chunk, k, got, want)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 || bytes.Equal(changed[:len(data)], data) {
		t.Fatalf("%d digests checked", n)
	}
	if again, err := format.EncodeKeyedBaseDigests(br.Header(), br.BaseChunkSize(), entries); err != nil || !bytes.Equal(again, tb) {
		t.Fatalf("the keyed table read does not encode back to its bytes (%v)", err)
	}
	// A base chunk size that is no chunk size is damage.
	bad := bytes.Clone(tb)
	binary.LittleEndian.PutUint32(bad[32:], 12345)
	if _, err := format.NewBaseDigestsReader(bytes.NewReader(bad)); !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("base chunk size 12345: %v, want ErrCorrupt", err)
	}
	// The same table marked plaintext (base chunk size 0) does not fit
	// the encrypted delta.
	plain := bytes.Clone(tb)
	clear(plain[32:36])
	err = format.CheckBaseDigests(bytes.NewReader(plain), res.Manifest)
	if !errors.Is(err, format.ErrCorrupt) {
		t.Fatalf("a plaintext table for an encrypted delta: %v, want ErrCorrupt", err)
	}
}
