package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
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
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// These tests make and read real encrypted images: real files, the
// directory store, age keys made for the test (package seal wraps the
// root key for them).

// testKey is an age X25519 key pair made for one test.
type testKey struct {
	id *age.X25519Identity
	r  seal.Recipient
}

func newTestKey(t *testing.T) testKey {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	r, err := seal.ParseRecipient("test", id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	return testKey{id, r}
}

// encStateHome points the resume key directory at a temporary one, so
// that a test sees (and cleans up) only its own resume keys.
func encStateHome(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	t.Setenv("XDG_STATE_HOME", d)
	return d
}

// resumeKeys lists the resume key files under the state home.
func resumeKeys(t *testing.T, home string) []string {
	t.Helper()
	got, err := filepath.Glob(filepath.Join(home, "seedship", "resume", "*.key"))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// encOpts are small capture options (several chunks and segments from a
// few MiB) encrypted for the recipients and passphrase given.
func encOpts(pass string, rs ...seal.Recipient) CaptureOptions {
	o := trustOpts()
	o.Encrypt = &EncryptOptions{Recipients: rs, Passphrase: pass}
	return o
}

// encCapture captures srcPath into a new directory with o.
func encCapture(t *testing.T, srcPath string, o CaptureOptions) (string, *dir.Store, *format.Manifest) {
	t.Helper()
	d := filepath.Join(t.TempDir(), "img")
	st, err := dir.New(d)
	if err != nil {
		t.Fatal(err)
	}
	res, err := captureFile(context.Background(), t, srcPath, st, o)
	if err != nil {
		t.Fatalf("encrypted capture: %v", err)
	}
	return d, st, res.Manifest
}

// restoreTo restores the image in st to a new file and returns its path.
func restoreTo(t *testing.T, st store.Store, ids ...age.Identity) (string, error) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "restored.img")
	_, err := Restore(context.Background(), st, target, RestoreOptions{Identities: ids, Workers: 2})
	return target, err
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ", a, b)
	}
}

// TestEncryptedRoundTrip: an encrypted capture restores byte for byte
// with an identity of any of its recipients, or its passphrase; its
// manifest requires aead and keys its chunk hash; the resume key is gone
// once the capture finished.
func TestEncryptedRoundTrip(t *testing.T) {
	one, two := newTestKey(t), newTestKey(t)
	pass, err := seal.PassphraseIdentity("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	src := mixedSource(t, 5<<20+12345)
	for _, tc := range []struct {
		name string
		opts CaptureOptions
		id   age.Identity
	}{
		{"one recipient", encOpts("", one.r), one.id},
		{"two recipients, the first", encOpts("", one.r, two.r), one.id},
		{"two recipients, the second", encOpts("", one.r, two.r), two.id},
		{"passphrase", encOpts("correct horse battery staple"), pass},
		{"recipient and passphrase, the passphrase", encOpts("correct horse battery staple", one.r), pass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := encStateHome(t)
			_, st, m := encCapture(t, src, tc.opts)
			if !m.Encrypted() || m.Header.ChunkHash != format.ChunkHashKeyed || m.Header.Encryption == nil {
				t.Fatalf("manifest: encrypted %v, chunk_hash %q, encryption %v", m.Encrypted(), m.Header.ChunkHash, m.Header.Encryption)
			}
			if left := resumeKeys(t, home); len(left) != 0 {
				t.Fatalf("resume keys left after the capture: %v", left)
			}
			e := m.Header.Encryption
			var want []string
			for _, r := range tc.opts.Encrypt.Recipients {
				want = append(want, r.String())
			}
			if !slices.Equal(e.Recipients, want) || e.Passphrase != (tc.opts.Encrypt.Passphrase != "") {
				t.Fatalf("encryption names recipients %v, passphrase %v; want %v, %v", e.Recipients, e.Passphrase, want, tc.opts.Encrypt.Passphrase != "")
			}
			target, err := restoreTo(t, st, tc.id)
			if err != nil {
				t.Fatalf("restore: %v", err)
			}
			sameFile(t, src, target)
		})
	}
}

// TestEncryptedDigestOnlyRefused: digest-only and encryption together
// are refused before anything is written.
func TestEncryptedDigestOnlyRefused(t *testing.T) {
	encStateHome(t)
	o := encOpts("", newTestKey(t).r)
	o.DigestOnly = true
	d := filepath.Join(t.TempDir(), "img")
	st, err := dir.New(d)
	if err != nil {
		t.Fatal(err)
	}
	_, err = captureFile(context.Background(), t, mixedSource(t, 1<<20), st, o)
	if KindOf(err) != KindBadInput {
		t.Fatalf("digest-only encrypted capture: %v (kind %v), want bad input", err, KindOf(err))
	}
	if files := treeFiles(t, d); len(files) != 0 {
		t.Fatalf("refused capture wrote %v", files)
	}
}

// treeFiles lists the files under root.
func treeFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if !fi.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEncryptedNeedsIdentity: restoring an encrypted image without an
// identity, or with one that is not a recipient's, is bad input before
// anything is written: a new target is not created, an existing one is
// left as it was. The other commands that open chunks refuse it the
// same way.
func TestEncryptedNeedsIdentity(t *testing.T) {
	encStateHome(t)
	owner, stranger := newTestKey(t), newTestKey(t)
	src := mixedSource(t, 3<<20)
	_, st, _ := encCapture(t, src, encOpts("", owner.r))
	wrongPass, err := seal.PassphraseIdentity("not the passphrase")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ids  []age.Identity
	}{
		{"no identity", nil},
		{"another key", []age.Identity{stranger.id}},
		{"a passphrase, but the image has none", []age.Identity{wrongPass}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, err error) {
				t.Helper()
				if KindOf(err) != KindBadInput || !errors.Is(err, format.ErrNoKey) {
					t.Fatalf("%s: %v (kind %v), want bad input wrapping format.ErrNoKey", what, err, KindOf(err))
				}
			}
			// A target that does not exist is not created.
			target := filepath.Join(t.TempDir(), "new.img")
			_, err := Restore(context.Background(), st, target, RestoreOptions{Identities: tc.ids})
			check("restore to a new file", err)
			if _, serr := os.Stat(target); !errors.Is(serr, os.ErrNotExist) {
				t.Fatalf("refused restore created %s (%v)", target, serr)
			}
			// An existing target keeps its bytes and its modification time.
			existing := filepath.Join(t.TempDir(), "old.img")
			old := bytes.Repeat([]byte("keep me "), 1<<17)
			if err := os.WriteFile(existing, old, 0o600); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Stat(existing)
			_, err = Restore(context.Background(), st, existing, RestoreOptions{Identities: tc.ids})
			check("restore onto an existing file", err)
			after, _ := os.Stat(existing)
			if got, _ := os.ReadFile(existing); !bytes.Equal(got, old) || !after.ModTime().Equal(before.ModTime()) {
				t.Fatalf("refused restore changed %s", existing)
			}
			partialTarget := filepath.Join(t.TempDir(), "partial.img")
			_, err = RestorePartial(context.Background(), st, partialTarget, PartialOptions{Identities: tc.ids})
			check("restore --partial", err)
			if _, serr := os.Stat(partialTarget); !errors.Is(serr, os.ErrNotExist) {
				t.Fatalf("refused partial restore created %s (%v)", partialTarget, serr)
			}
			_, err = Diff(context.Background(), st, src, DiffOptions{Identities: tc.ids})
			check("diff", err)
			if tc.ids != nil {
				// Identities given to copy and verify must open the image.
				dstDir := filepath.Join(t.TempDir(), "copy")
				dst, err := dir.New(dstDir)
				if err != nil {
					t.Fatal(err)
				}
				_, err = Copy(context.Background(), st, dst, CopyOptions{Identities: tc.ids})
				check("copy", err)
				if files := treeFiles(t, dstDir); len(files) != 0 {
					t.Fatalf("refused copy wrote %v", files)
				}
				_, err = CheckImage(context.Background(), st, CheckOptions{Identities: tc.ids})
				check("verify", err)
			}
			_, err = CheckImage(context.Background(), st, CheckOptions{Identities: tc.ids, Deep: true})
			check("verify --deep", err)
		})
	}
}

// openManifest reads and unseals the manifest in d with id.
func openManifest(t *testing.T, d string, id age.Identity) *format.Manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d, format.ManifestKey))
	if err != nil {
		t.Fatal(err)
	}
	m, err := format.DecodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	k, err := format.OpenKeys(&m.Header, []age.Identity{id})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unseal(k); err != nil {
		t.Fatal(err)
	}
	return m
}

// segmentFile is a data segment's bytes with its index entries and where
// each entry lies in the bytes.
type segmentFile struct {
	path    string
	b       []byte
	entries []format.IndexEntry
	at      []int // offset of each entry in b
}

func readSegmentFile(t *testing.T, d string, m *format.Manifest, n uint32) *segmentFile {
	t.Helper()
	p := filepath.Join(d, filepath.FromSlash(format.DataID(n).Key()))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	id, err := m.ImageID()
	if err != nil {
		t.Fatal(err)
	}
	_, entries, err := format.ReadSummary(bytes.NewReader(b), int64(len(b)), format.DataID(n), id)
	if err != nil {
		t.Fatal(err)
	}
	sf := &segmentFile{path: p, b: b, entries: entries}
	pos := int(binary.LittleEndian.Uint64(b[len(b)-64:]))
	for _, e := range entries {
		sf.at = append(sf.at, pos)
		pos += 92 + 8*len(e.Blocks)
	}
	return sf
}

// payload returns entry k's payload bytes (aliasing the segment).
func (sf *segmentFile) payload(k int) []byte {
	e := sf.entries[k]
	return sf.b[e.Offset+24 : e.Offset+24+int64(e.PayloadLen)]
}

// seal writes the segment back as a writer with the image's key would
// have: every stored digest recomputed from the frames as they now are,
// entry k's chunk hash and block digests taken from the index (so a
// test can replace them), the footer's index hash, and the manifest's
// segment table and chunk table, MACed again with the key. What is left
// to catch a change is what needs the key: the AEAD.
func (sf *segmentFile) seal(t *testing.T, d string, m *format.Manifest, n uint32) {
	t.Helper()
	for k, e := range sf.entries {
		frame := sf.b[e.Offset : e.Offset+24+int64(e.PayloadLen)]
		stored := format.FrameDigest(frame[:24], frame[24:])
		copy(sf.b[sf.at[k]+60:], stored[:])
		copy(sf.b[sf.at[k]+28:], e.Hash[:])
		for j, bd := range e.Blocks {
			copy(sf.b[sf.at[k]+92+8*j:], bd[:])
		}
		m.Chunks[e.Index].Hash = e.Hash
	}
	foot := len(sf.b) - 64
	idxOff := binary.LittleEndian.Uint64(sf.b[foot:])
	idxLen := binary.LittleEndian.Uint64(sf.b[foot+8:])
	sum := sha256.Sum256(sf.b[idxOff : idxOff+idxLen])
	copy(sf.b[foot+24:], sum[:])
	if err := os.WriteFile(sf.path, sf.b, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range m.Segments {
		if m.Segments[i].Number == n {
			m.Segments[i].IndexHash = format.Hash(sum)
		}
	}
	mb, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(m.CopyKeys(), format.ManifestKey) {
		if err := os.WriteFile(filepath.Join(d, k), mb, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// wantChunkIntegrity checks that err is an integrity failure naming
// chunk i.
func wantChunkIntegrity(t *testing.T, what string, err error, i uint64) {
	t.Helper()
	if KindOf(err) != KindIntegrity || !strings.Contains(err.Error(), fmt.Sprintf("chunk %d", i)) {
		t.Fatalf("%s: %v (kind %v), want an integrity failure naming chunk %d", what, err, KindOf(err), i)
	}
}

// randomSource writes n bytes of random data (chunks stored raw).
func randomSource(t *testing.T, n int, seed uint64) string {
	t.Helper()
	b := make([]byte, n)
	r := mrand.New(mrand.NewPCG(seed, 5))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	p := filepath.Join(t.TempDir(), "random.img")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEncryptedSwappedChunks: two chunks' sealed payloads swapped, with
// every digest, index hash and the manifest's MAC made to fit (as only
// a holder of the key could), still fail: each payload is bound to its
// chunk index by its associated data. A keyless check, which sees
// consistent stored digests, passes; the restore fails naming the chunk.
func TestEncryptedSwappedChunks(t *testing.T) {
	encStateHome(t)
	key := newTestKey(t)
	o := encOpts("", key.r)
	o.SegmentSize = 4 << 20
	src := randomSource(t, 4*o.ChunkSize, 1)
	d, st, _ := encCapture(t, src, o)
	m := openManifest(t, d, key.id)
	sf := readSegmentFile(t, d, m, 0)
	if len(sf.entries) < 3 || sf.entries[1].PayloadLen != sf.entries[2].PayloadLen || !sf.entries[1].Codec.Sealed() {
		t.Fatalf("want sealed frames 1 and 2 of one length in segment 0: %+v", sf.entries)
	}
	a, b := sf.payload(1), sf.payload(2)
	tmp := bytes.Clone(a)
	copy(a, b)
	copy(b, tmp)
	sf.seal(t, d, m, 0)

	for _, o := range []CheckOptions{{Workers: 2}, {Workers: 2, Transport: true, Identities: []age.Identity{key.id}}} {
		res, err := CheckImage(context.Background(), st, o)
		if err != nil || !res.Final().OK() || !res.Final().TransportOnly() {
			t.Fatalf("transport check (%d identities) of the re-sealed image: %v, want it to pass, transport only (the stored digests fit)", len(o.Identities), err)
		}
	}
	target := filepath.Join(t.TempDir(), "restored.img")
	res, err := Restore(context.Background(), st, target, RestoreOptions{Identities: []age.Identity{key.id}, AllowDamaged: true, Workers: 2})
	wantChunkIntegrity(t, "restore of swapped chunks", err, 1)
	wantChunkIntegrity(t, "restore of swapped chunks", err, 2)
	if !slices.Equal(res.Lost, []uint64{1, 2}) {
		t.Fatalf("restore lost chunks %v, want [1 2]", res.Lost)
	}
	check, err := CheckImage(context.Background(), st, CheckOptions{Identities: []age.Identity{key.id}, Workers: 2})
	if KindOf(err) != KindIntegrity {
		t.Fatalf("keyed check of swapped chunks: %v, want an integrity failure", err)
	}
	var bad []uint64
	for _, f := range check.Final().Findings {
		if f.IsChunk && errors.Is(f.Err, seal.ErrAuthentication) {
			bad = append(bad, f.Chunk)
		}
	}
	slices.Sort(bad)
	if !slices.Equal(bad, []uint64{1, 2}) {
		t.Fatalf("keyed check found chunks %v failing authentication, want [1 2]: %v", bad, check.Final().Findings)
	}
}

// TestEncryptedSplicedChunk: a chunk spliced in from another image under
// the same root key, with its keyed chunk hash and block digests (which
// are the root key's, so they fit) and every digest and the MAC made to
// fit, fails: the chunk key and associated data are the image's own.
func TestEncryptedSplicedChunk(t *testing.T) {
	encStateHome(t)
	key := newTestKey(t)
	root := seal.NewRootKey()
	o := encOpts("", key.r)
	o.SegmentSize = 4 << 20
	o.rootKey = &root
	dA, stA, _ := encCapture(t, randomSource(t, 4*o.ChunkSize, 1), o)
	dB, _, _ := encCapture(t, randomSource(t, 4*o.ChunkSize, 2), o)
	mA, mB := openManifest(t, dA, key.id), openManifest(t, dB, key.id)
	if mA.Header.ImageID == mB.Header.ImageID {
		t.Fatal("two captures made one image ID")
	}
	a, b := readSegmentFile(t, dA, mA, 0), readSegmentFile(t, dB, mB, 0)
	ea, eb := a.entries[1], b.entries[1]
	if ea.PayloadLen != eb.PayloadLen || ea.Codec != eb.Codec {
		t.Fatalf("frames of chunk 1 differ in shape: %+v, %+v", ea, eb)
	}
	copy(a.payload(1), b.payload(1))
	a.entries[1].Hash, a.entries[1].Blocks = eb.Hash, eb.Blocks
	a.seal(t, dA, mA, 0)

	_, err := restoreTo(t, stA, key.id)
	wantChunkIntegrity(t, "restore of a spliced chunk", err, 1)
	if !errors.Is(err, seal.ErrAuthentication) {
		t.Fatalf("restore of a spliced chunk: %v, want the AEAD's authentication failure", err)
	}
}

// TestEncryptedParityRepair: a bit flipped in a sealed payload of an
// image with parity is found and rebuilt: by a restore with the key
// (rebuilt from parity on the way, restored byte for byte), and by
// verify --repair without the key (a rebuilt frame is accepted by its
// stored digest), after which the image restores byte for byte again. A
// keyless copy refuses the damaged segment.
func TestEncryptedParityRepair(t *testing.T) {
	encStateHome(t)
	key := newTestKey(t)
	o := encOpts("", key.r)
	o.Parity = &format.Geometry{K: 2, M: 1}
	src := mixedSource(t, 5<<20+777)
	d, st, m := encCapture(t, src, o)
	if _, parity := m.Geometry(); !parity {
		t.Fatal("no parity")
	}
	mk := openManifest(t, d, key.id)
	sf := readSegmentFile(t, d, mk, 0)
	sf.payload(0)[40] ^= 0x10 // inside the ciphertext
	if err := os.WriteFile(sf.path, sf.b, 0o600); err != nil {
		t.Fatal(err)
	}
	chunk := sf.entries[0].Index

	target, err := restoreTo(t, st, key.id)
	if err != nil {
		t.Fatalf("restore of the damaged image: %v", err)
	}
	sameFile(t, src, target)

	copyDir := filepath.Join(t.TempDir(), "copy")
	dst, err := dir.New(copyDir)
	if err != nil {
		t.Fatal(err)
	}
	cres, err := Copy(context.Background(), st, dst, CopyOptions{})
	if KindOf(err) != KindIntegrity || len(cres.Damaged) != 1 || !strings.HasPrefix(cres.Damaged[0], format.DataID(0).Key()) {
		t.Fatalf("keyless copy of the damaged image: %v (damaged %v), want %s refused", err, cres.Damaged, format.DataID(0).Key())
	}

	res, err := CheckImage(context.Background(), st, CheckOptions{Repair: true, Workers: 2})
	if err != nil {
		t.Fatalf("keyless verify --repair: %v", err)
	}
	found := false
	for _, f := range res.Before.Findings {
		found = found || (f.IsChunk && f.Chunk == chunk)
	}
	if !found || !slices.Contains(res.Rewritten, format.DataID(0).Key()) || !res.After.OK() {
		t.Fatalf("keyless repair: found %v, rewrote %v, after %v; want chunk %d found and %s rewritten",
			res.Before.Findings, res.Rewritten, res.After.Findings, chunk, format.DataID(0).Key())
	}
	target, err = restoreTo(t, st, key.id)
	if err != nil {
		t.Fatalf("restore of the repaired image: %v", err)
	}
	sameFile(t, src, target)
	if _, err := Copy(context.Background(), st, dst, CopyOptions{}); err != nil {
		t.Fatalf("keyless copy of the repaired image: %v", err)
	}
	target, err = restoreTo(t, dst, key.id)
	if err != nil {
		t.Fatalf("restore of the copy: %v", err)
	}
	sameFile(t, src, target)
}

// TestEncryptedManifestMAC: a manifest changed with its SHA-256 made to
// fit (what a keyless forger can do) passes a keyless open but fails
// the MAC under the image's key: an integrity failure (exit 3), before
// anything is written.
func TestEncryptedManifestMAC(t *testing.T) {
	encStateHome(t)
	key := newTestKey(t)
	o := encOpts("", key.r)
	o.Tool = "seedship-macs-test"
	d, st, _ := encCapture(t, mixedSource(t, 2<<20), o)
	p := filepath.Join(d, format.ManifestKey)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, []byte("seedship-macs-test"))
	if at < 0 {
		t.Fatal("tool name not in the manifest")
	}
	b[at+len("seedship-macs-")] = 'T'
	body := len(b) - 72 // the keyed trailer: SHA-256, HMAC, magic
	sum := sha256.Sum256(b[:body])
	copy(b[body:], sum[:])
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenImage(context.Background(), st); err != nil {
		t.Fatalf("keyless open of the forged manifest: %v, want it accepted (its SHA-256 fits)", err)
	}
	target := filepath.Join(t.TempDir(), "new.img")
	_, err = Restore(context.Background(), st, target, RestoreOptions{Identities: []age.Identity{key.id}})
	if KindOf(err) != KindIntegrity {
		t.Fatalf("restore of a forged manifest: %v (kind %v), want integrity", err, KindOf(err))
	}
	if _, serr := os.Stat(target); !errors.Is(serr, os.ErrNotExist) {
		t.Fatalf("refused restore created %s", target)
	}
}

// markerSource is a source holding a known marker string many times
// (compressible text chunks), random chunks and zero chunks.
func markerSource(t *testing.T, marker string) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	for i := 0; b.Len() < 3<<20; i++ {
		fmt.Fprintf(&b, "record %d: %s says the secret is in the source\n", i, marker)
	}
	data := append(b.Bytes()[:3<<20], make([]byte, 1<<20)...)
	r := mrand.New(mrand.NewPCG(7, 7))
	tail := make([]byte, 1<<20+4321)
	for i := range tail {
		tail[i] = byte(r.Uint32())
	}
	data = append(data, tail...)
	p := filepath.Join(t.TempDir(), "marker-"+marker+".img")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, data
}

// TestEncryptedImageHidesSource: no file of an encrypted image (data and
// parity segments, manifest and its copies) holds the marker string of
// the source, the source's path, its SHA-256 (hex or binary), or any
// plaintext chunk hash or block digest of it (format.ChunkHash): what a
// reader without the key could use to confirm a guess of the contents.
func TestEncryptedImageHidesSource(t *testing.T) {
	encStateHome(t)
	const marker = "MARKER-5eed-c0ffee-42"
	srcPath, data := markerSource(t, marker)
	o := encOpts("", newTestKey(t).r)
	o.Parity = &format.Geometry{K: 2, M: 1}
	d, _, m := encCapture(t, srcPath, o)

	whole := sha256.Sum256(data)
	needles := map[string][]byte{
		"the marker":           []byte(marker),
		"the source path":      []byte(srcPath),
		"the SHA-256 (hex)":    []byte(fmt.Sprintf("%x", whole)),
		"the SHA-256 (binary)": whole[:],
		"the SHA-256 (base64)": []byte(base64.StdEncoding.EncodeToString(whole[:])),
	}
	cs := m.Header.ChunkSize
	for i := 0; i*cs < len(data); i++ {
		raw := data[i*cs : min((i+1)*cs, len(data))]
		blocks := make([]format.BlockDigest, format.NumBlocks(len(raw)))
		h := format.ChunkHash(raw, blocks)
		needles[fmt.Sprintf("chunk %d's plaintext hash", i)] = bytes.Clone(h[:])
		for k, bd := range blocks {
			needles[fmt.Sprintf("chunk %d block %d's plaintext digest", i, k)] = bytes.Clone(bd[:])
		}
	}
	files := treeFiles(t, d)
	if len(files) < 4 {
		t.Fatalf("image files: %v", files)
	}
	var sawParity, sawSealed bool
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sawParity = sawParity || strings.Contains(f, "parity")
		for what, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s holds %s", f, what)
			}
		}
	}
	for _, c := range m.Chunks {
		sawSealed = sawSealed || (c.Kind == format.KindStored && c.Codec.Sealed())
	}
	if !sawParity || !sawSealed {
		t.Fatalf("parity files %v, sealed chunks %v: the image is not what the test means to search", sawParity, sawSealed)
	}
	// The needles are there to be found in a plaintext image of it.
	plain := trustOpts()
	plain.Parity = o.Parity
	dp, _, _ := encCapture(t, srcPath, plain)
	for _, what := range []string{"the marker", "the SHA-256 (hex)", "chunk 5 block 0's plaintext digest"} {
		if !treeContains(t, dp, needles[what]) {
			t.Errorf("the plaintext image does not hold %s: the search would miss it", what)
		}
	}
}

// treeContains reports whether any file under root contains n.
func treeContains(t *testing.T, root string, n []byte) bool {
	t.Helper()
	for _, f := range treeFiles(t, root) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, n) {
			return true
		}
	}
	return false
}

// TestEncryptedResume: an interrupted encrypted capture leaves a sealed
// checkpoint (no source path, no hash state in the clear) and its resume
// identity on this host (mode 0600). Without that key file and without
// an identity the resume is refused (bad input, the one line); with it,
// or with a recipient's identity, the capture resumes, restores byte for
// byte, and the key file is gone at the end.
func TestEncryptedResume(t *testing.T) {
	key := newTestKey(t)
	srcPath := mixedSource(t, 12<<20+999)
	for _, tc := range []struct {
		name     string
		keepFile bool           // resume on the host that began it
		ids      []age.Identity // given to the resume
		parity   *format.Geometry
	}{
		{"on the same host", true, nil, nil},
		{"on the same host, with parity", true, nil, &format.Geometry{K: 2, M: 1}},
		{"elsewhere with a recipient's identity", false, []age.Identity{key.id}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := encStateHome(t)
			o := encOpts("", key.r)
			o.Parity = tc.parity
			d, st := interrupted(t, srcPath, 2, o)
			keys := resumeKeys(t, home)
			if len(keys) != 1 {
				t.Fatalf("resume keys after the interruption: %v, want one", keys)
			}
			if fi, err := os.Stat(keys[0]); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("resume key %s: %v, mode %v; want 0600", keys[0], err, fi.Mode())
			}
			ck, err := os.ReadFile(filepath.Join(d, CheckpointKey))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(ck, []byte(srcPath)) || bytes.Contains(ck, []byte("sha256_state")) {
				t.Fatalf("the encrypted capture's checkpoint shows the source path or hash state in the clear: %s", ck)
			}
			moved := keys[0] + ".elsewhere"
			if err := os.Rename(keys[0], moved); err != nil {
				t.Fatal(err)
			}
			ro := resumeOpts()
			_, err = captureFile(context.Background(), t, srcPath, st, ro)
			if KindOf(err) != KindBadInput || !strings.Contains(err.Error(), errNoResumeKey) {
				t.Fatalf("resume without its key: %v (kind %v), want bad input: %s", err, KindOf(err), errNoResumeKey)
			}
			if tc.keepFile {
				if err := os.Rename(moved, keys[0]); err != nil {
					t.Fatal(err)
				}
			}
			ro.Identities = tc.ids
			res, err := captureFile(context.Background(), t, srcPath, st, ro)
			if err != nil {
				t.Fatalf("resume: %v", err)
			}
			if res.ResumedAt == 0 || !res.Manifest.Encrypted() {
				t.Fatalf("resumed at %d, encrypted %v", res.ResumedAt, res.Manifest.Encrypted())
			}
			// The resumed manifest still says whom the image is for.
			if e := res.Manifest.Header.Encryption; len(e.Recipients) != 1 || e.Recipients[0] != key.r.String() {
				t.Errorf("the resumed manifest names recipients %q, want [%s]", e.Recipients, key.r.String())
			}
			if tc.keepFile {
				if left := resumeKeys(t, home); len(left) != 0 {
					t.Fatalf("resume keys left after the resumed capture finished: %v", left)
				}
			}
			target, err := restoreTo(t, st, key.id)
			if err != nil {
				t.Fatalf("restore of the resumed image: %v", err)
			}
			sameFile(t, srcPath, target)
		})
	}
}

// TestEncryptedCompare: the commands that compare a device with an
// encrypted image do it with its keyed digests: diff locates changed
// 64 KiB blocks (in stored chunks and in zero chunks, whose keyed block
// digests are bound to their place), and a resumed restore fetches only
// the chunks that differ.
func TestEncryptedCompare(t *testing.T) {
	encStateHome(t)
	key := newTestKey(t)
	ids := []age.Identity{key.id}
	srcPath := mixedSource(t, 6<<20+4099)
	_, st, m := encCapture(t, srcPath, encOpts("", key.r))
	data, err := os.ReadFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	// mixedSource: MiB 2 is zero, MiB 0 random; the last block is short.
	changed := []int64{2<<20 + 3*blockSize, 5 * blockSize, int64(len(data)) - 100}
	dev := bytes.Clone(data)
	for _, off := range changed {
		dev[off] ^= 0xff
	}
	devPath := filepath.Join(t.TempDir(), "dev.img")
	if err := os.WriteFile(devPath, dev, 0o600); err != nil {
		t.Fatal(err)
	}
	var got []int64
	res, err := Diff(context.Background(), st, devPath, DiffOptions{Identities: ids, OnRange: func(r DiffRange) error {
		if !r.Located {
			t.Errorf("range %+v not located to its blocks", r)
		}
		got = append(got, r.Offset)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{5 * blockSize, 2<<20 + 3*blockSize, (int64(len(data)) - 100) / blockSize * blockSize}
	if !slices.Equal(got, want) || res.ChangedChunks != 3 {
		t.Fatalf("diff found ranges at %v (%d chunks), want %v (3 chunks)", got, res.ChangedChunks, want)
	}
	same, err := Diff(context.Background(), st, srcPath, DiffOptions{Identities: ids})
	if err != nil || !same.Identical() {
		t.Fatalf("diff of the source itself: %v, identical %v", err, same != nil && same.Identical())
	}

	rres, err := Restore(context.Background(), st, devPath, RestoreOptions{Identities: ids, Resume: true, Workers: 2})
	if err != nil {
		t.Fatalf("resumed restore: %v", err)
	}
	sameFile(t, srcPath, devPath)
	if wantIn := len(m.Chunks) - 3; rres.InPlace != wantIn {
		t.Fatalf("resumed restore found %d chunks in place, want %d", rres.InPlace, wantIn)
	}
}

// TestEncryptedPartialRestore: restore --partial of a whole encrypted
// image writes every chunk and its final check (verify.Device, with the
// image's keyed hasher) passes.
func TestEncryptedPartialRestore(t *testing.T) {
	encStateHome(t)
	key := newTestKey(t)
	ids := []age.Identity{key.id}
	srcPath := mixedSource(t, 3<<20+4099)
	_, st, _ := encCapture(t, srcPath, encOpts("", key.r))
	target := filepath.Join(t.TempDir(), "partial.img")
	pres, err := RestorePartial(context.Background(), st, target, PartialOptions{Identities: ids, State: target + ".state", Workers: 2})
	if err != nil {
		t.Fatalf("partial restore: %v", err)
	}
	if !pres.Complete {
		t.Fatalf("partial restore of a whole image did not complete: %+v", pres)
	}
	sameFile(t, srcPath, target)
}

// TestEncryptedCopyAndFallback: a keyless copy of an encrypted image is
// complete (its stored bytes checked against their stored digests), and
// a restore of an image missing a segment takes it from that copy as its
// fallback, byte for byte.
func TestEncryptedCopyAndFallback(t *testing.T) {
	encStateHome(t)
	key := newTestKey(t)
	srcPath := mixedSource(t, 4<<20+17)
	d, st, m := encCapture(t, srcPath, encOpts("", key.r))
	copyDir := filepath.Join(t.TempDir(), "copy")
	cp, err := dir.New(copyDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(context.Background(), st, cp, CopyOptions{}); err != nil {
		t.Fatalf("keyless copy: %v", err)
	}
	keyed, err := dir.New(filepath.Join(t.TempDir(), "keyed-copy"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(context.Background(), st, keyed, CopyOptions{Identities: []age.Identity{key.id}}); err != nil {
		t.Fatalf("copy with the key: %v", err)
	}
	if target, err := restoreTo(t, keyed, key.id); err != nil {
		t.Fatalf("restore of the keyed copy: %v", err)
	} else {
		sameFile(t, srcPath, target)
	}
	if err := os.Remove(filepath.Join(d, filepath.FromSlash(format.DataID(1).Key()))); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restored.img")
	res, err := Restore(context.Background(), st, target, RestoreOptions{Identities: []age.Identity{key.id}, Fallback: cp, Workers: 2})
	if err != nil {
		t.Fatalf("restore with the fallback: %v", err)
	}
	var inSeg1 []uint64
	for i, c := range m.Chunks {
		if c.Kind == format.KindStored && c.Segment == 1 {
			inSeg1 = append(inSeg1, uint64(i))
		}
	}
	if len(inSeg1) == 0 || !slices.Equal(res.Fetched, inSeg1) {
		t.Fatalf("fetched %v from the fallback, want the chunks of %s: %v", res.Fetched, format.DataID(1).Key(), inSeg1)
	}
	sameFile(t, srcPath, target)
}

// TestEncryptedOpenImageKeyed: without a key an encrypted image's
// manifest shows no sealed field; with one its sha256 and source are
// the source's; a command that needs the key refuses without one.
func TestEncryptedOpenImageKeyed(t *testing.T) {
	encStateHome(t)
	key := newTestKey(t)
	srcPath := mixedSource(t, 1<<20+5)
	_, st, _ := encCapture(t, srcPath, encOpts("", key.r))
	data, err := os.ReadFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := OpenImageKeyed(context.Background(), st, nil, nil, false)
	if err != nil || m.Unsealed() || m.Header.SHA256 != "" || m.Header.Source.Path != "" {
		t.Fatalf("keyless open: %v; unsealed %v, sha256 %q, source path %q", err, m != nil && m.Unsealed(), m.Header.SHA256, m.Header.Source.Path)
	}
	if _, _, err := OpenImageKeyed(context.Background(), st, nil, nil, true); KindOf(err) != KindBadInput {
		t.Fatalf("open that needs the key, without it: %v, want bad input", err)
	}
	m, _, err = OpenImageKeyed(context.Background(), st, nil, []age.Identity{key.id}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(data); m.Header.SHA256 != fmt.Sprintf("%x", want) || m.Header.Source.Path != srcPath || m.Hasher() == nil || !m.Hasher().Keyed() {
		t.Fatalf("keyed open: sha256 %q, source path %q", m.Header.SHA256, m.Header.Source.Path)
	}
}

// TestEncryptedPartialRestoreStaged: restore --partial with a stage reads
// an encrypted image through the stage with the key it was opened with:
// a data segment the image lacks is rebuilt from parity, and the target
// completes and verifies.
func TestEncryptedPartialRestoreStaged(t *testing.T) {
	encStateHome(t)
	key := newTestKey(t)
	o := encOpts("", key.r)
	o.Parity = &format.Geometry{K: 2, M: 1}
	srcPath := mixedSource(t, 4<<20+99)
	d, st, _ := encCapture(t, srcPath, o)
	if err := os.Remove(filepath.Join(d, filepath.FromSlash(format.DataID(1).Key()))); err != nil {
		t.Fatal(err)
	}
	stage, err := dir.New(filepath.Join(t.TempDir(), "stage"))
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "partial.img")
	res, err := RestorePartial(context.Background(), st, target, PartialOptions{Identities: []age.Identity{key.id}, Stage: stage, State: target + ".state", Workers: 2})
	if err != nil {
		t.Fatalf("staged partial restore: %v", err)
	}
	if !res.Complete || len(res.Rebuilt) == 0 {
		t.Fatalf("staged partial restore: complete %v, rebuilt %v; want complete with chunks rebuilt from parity", res.Complete, res.Rebuilt)
	}
	sameFile(t, srcPath, target)
}
