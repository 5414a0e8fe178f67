package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/store/dir"
)

// These tests drive encrypted seeds (spec §11) through the CLI: capture
// with recipients or a passphrase, restore, copy, diff and resume with
// identities, and what an encrypted image's files reveal. verify and info
// of encrypted images are verify_encrypted_test.go's.

// ageKey makes an age X25519 identity with the real age-keygen, as the
// README tells operators to, and returns the identity file and its
// recipient (age1…).
func ageKey(t *testing.T, dir, name string) (identity, recipient string) {
	t.Helper()
	identity = filepath.Join(dir, name)
	if out, err := exec.Command("age-keygen", "-o", identity).CombinedOutput(); err != nil {
		t.Fatalf("age-keygen (Debian package age; scripts/test-deps.sh installs it): %v: %s", err, out)
	}
	out, err := exec.Command("age-keygen", "-y", identity).Output()
	if err != nil {
		t.Fatalf("age-keygen -y %s: %v", identity, err)
	}
	return identity, strings.TrimSpace(string(out))
}

// resumeKeysIn keeps the resume keys of encrypted captures (spec §11.5)
// in a directory of the test's, which it returns, instead of the user's
// ~/.local/state. t.Setenv: the test must not be parallel.
func resumeKeysIn(t *testing.T) string {
	t.Helper()
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	return filepath.Join(state, "seedship", "resume")
}

// resumeKeys lists the resume keys kept in dir.
func resumeKeys(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// refusedKeyless checks that an encrypted image without a key that opens
// it is refused by restore (plain and --partial) and diff with exit 2 on
// one line, creating no target and leaving an existing one as it was.
func refusedKeyless(t *testing.T, img, src string, idArgs []string, names ...string) {
	t.Helper()
	for _, partial := range [][]string{nil, {"--partial"}} {
		args := append(append([]string{"restore"}, partial...), idArgs...)
		fresh := filepath.Join(t.TempDir(), "new.img")
		oneLineError(t, expect(t, exitUsage, append(args, img, fresh)...), names...)
		absent(t, fresh, "a refused restore must not create its target")
		absent(t, fresh+".seedship-partial", "a refused restore must not write a state file")
		existing := writeFile(t, filepath.Join(t.TempDir(), "existing.img"), []byte("precious"))
		expect(t, exitUsage, append(args, img, existing)...)
		if got := string(readFile(t, existing)); got != "precious" {
			t.Errorf("restore %v changed its target to %d bytes", partial, len(got))
		}
	}
	oneLineError(t, expect(t, exitUsage, append(append([]string{"diff"}, idArgs...), img, src)...), names...)
}

// TestEncryptedRoundTrip: an image captured for one recipient, two, or a
// passphrase restores the source with any of its identities (or the
// passphrase), and only with them: a wrong or missing identity is one line
// and exit 2 with no target created or changed. copy works without a key,
// and the copy restores with one; diff compares under the key.
func TestEncryptedRoundTrip(t *testing.T) {
	keysDir := resumeKeysIn(t)
	d := t.TempDir()
	id1, r1 := ageKey(t, d, "id1.txt")
	id2, r2 := ageKey(t, d, "id2.txt")
	stranger, _ := ageKey(t, d, "stranger.txt")
	recipients := writeFile(t, filepath.Join(d, "recipients.txt"), []byte("# ops\n"+r1+"\n\n# dr site\n"+r2+"\n"))
	pass := writeFile(t, filepath.Join(d, "pass.txt"), []byte("correct horse battery staple\n"))
	wrongPass := writeFile(t, filepath.Join(d, "wrong-pass.txt"), []byte("incorrect horse\n"))
	// Text (compressed), zeros (not stored) and random data (stored raw).
	data := append(append(textBytes(300*kib), make([]byte, 200*kib)...), randBytes(41, 300*kib+123)...)
	src := writeFile(t, filepath.Join(d, "source.img"), data)

	for _, tc := range []struct {
		name    string
		capture []string
		said    string
		opens   [][]string // identity flags that restore it
		wrong   []string   // identity flags that do not open it
		missing string     // the refusal without identity flags names this
		// recipients and passphrase: for whom --json says it is
		recipients []string
		passphrase bool
	}{
		{"one recipient", []string{"--recipient", r1}, "encrypted for 1 recipient(s)",
			[][]string{{"--identity", id1}}, []string{"--identity", id2}, "1 age X25519 recipient(s)", []string{r1}, false},
		{"two recipients", []string{"--recipients-file", recipients}, "encrypted for 2 recipient(s)",
			[][]string{{"--identity", id1}, {"--identity", id2}, {"--identity", stranger, "--identity", id2}},
			[]string{"--identity", stranger}, "2 age X25519 recipient(s)", []string{r1, r2}, false},
		{"passphrase", []string{"--passphrase-file", pass}, "encrypted for a passphrase",
			[][]string{{"--passphrase-file", pass}}, []string{"--passphrase-file", wrongPass}, "passphrase", []string{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "seed")
			r := must(t, append(append([]string{"capture", "--chunk-size", "64KiB"}, tc.capture...), src, img)...)
			if !strings.Contains(r.stdout, tc.said) {
				t.Errorf("capture does not say %q: %s", tc.said, r)
			}
			if k := resumeKeys(t, keysDir); len(k) != 0 {
				t.Errorf("the finished capture left its resume key(s) %v", k)
			}
			if !loadManifest(t, img).Encrypted() {
				t.Fatal("the image is not encrypted")
			}
			r = must(t, append(append([]string{"capture", "--json", "--chunk-size", "64KiB"}, tc.capture...), src, filepath.Join(t.TempDir(), "seed"))...)
			var out captureJSON
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Encrypted == nil {
				t.Fatalf("capture --json does not say for whom the image is encrypted (%v): %s", err, r)
			}
			if want := (encryptedJSON{Recipients: tc.recipients, Passphrase: tc.passphrase}); !slices.Equal(out.Encrypted.Recipients, want.Recipients) || out.Encrypted.Passphrase != want.Passphrase {
				t.Errorf("capture --json says encrypted for %+v, want %+v", *out.Encrypted, want)
			}
			for _, ids := range tc.opens {
				target := filepath.Join(t.TempDir(), "restored.img")
				must(t, append(append([]string{"restore", "--quiet"}, ids...), img, target)...)
				if !bytes.Equal(readFile(t, target), data) {
					t.Errorf("restore %v: the restored bytes differ from the source", ids)
				}
			}
			must(t, append(append([]string{"diff", "--quiet"}, tc.opens[0]...), img, src)...)
			partial := filepath.Join(t.TempDir(), "partial.img")
			if r := must(t, append(append([]string{"restore", "--partial"}, tc.opens[0]...), img, partial)...); !strings.Contains(r.stdout, "restore complete") {
				t.Errorf("restore --partial of the whole image did not complete: %s", r)
			}
			if !bytes.Equal(readFile(t, partial), data) {
				t.Error("restore --partial: the restored bytes differ from the source")
			}
			refusedKeyless(t, img, src, tc.wrong, "no identity given opens this image's key", tc.missing)
			refusedKeyless(t, img, src, nil, "no identity given opens this image's key", tc.missing)

			// copy needs no key, and a copy is the same image.
			copied := filepath.Join(t.TempDir(), "copied")
			r = must(t, "copy", img, copied)
			if !strings.Contains(r.stdout, "transport integrity only") {
				t.Errorf("a keyless copy does not say it checked transport integrity only: %s", r)
			}
			if !bytes.Equal(readFile(t, filepath.Join(copied, format.ManifestKey)), readFile(t, filepath.Join(img, format.ManifestKey))) {
				t.Error("the copy's manifest differs")
			}
			if r := must(t, append(append([]string{"copy"}, tc.opens[0]...), img, filepath.Join(t.TempDir(), "copied-keyed"))...); !strings.Contains(r.stdout, "decrypted and checked") {
				t.Errorf("a keyed copy does not say it decrypted the chunks: %s", r)
			}
			dst := filepath.Join(t.TempDir(), "refused-copy")
			oneLineError(t, expect(t, exitUsage, append(append([]string{"copy"}, tc.wrong...), img, dst)...), "no identity given opens this image's key")
			if _, err := os.Stat(filepath.Join(dst, format.ManifestKey)); err == nil {
				t.Error("a copy refused for its key wrote a manifest")
			}
			target := filepath.Join(t.TempDir(), "from-copy.img")
			must(t, append(append([]string{"restore", "--quiet"}, tc.opens[0]...), copied, target)...)
			if !bytes.Equal(readFile(t, target), data) {
				t.Error("the keyless copy does not restore the source")
			}
		})
	}
}

// TestEncryptedBadKeys: a key file or flag that cannot be used is bad
// input (exit 2) on one line naming the file and line, read before
// anything is created, and a private key given as a recipient is never
// quoted back.
func TestEncryptedBadKeys(t *testing.T) {
	resumeKeysIn(t)
	d := t.TempDir()
	id1, r1 := ageKey(t, d, "id1.txt")
	_, sshPub := sshKey(t, d, "id_ed25519")
	secret := strings.TrimSpace(strings.Split(string(readFile(t, id1)), "\n")[2])
	if !strings.HasPrefix(secret, "AGE-SECRET-KEY-1") {
		t.Fatalf("age-keygen wrote no secret key on line 3 of %s", id1)
	}
	badRecipients := writeFile(t, filepath.Join(d, "bad-recipients.txt"), []byte("# ops\n"+r1+"\nage1notarecipient\n"))
	sshRecipients := writeFile(t, filepath.Join(d, "ssh-recipients.txt"), []byte(sshPub+"\n"))
	emptyRecipients := writeFile(t, filepath.Join(d, "empty-recipients.txt"), []byte("# nobody yet\n"))
	emptyPass := writeFile(t, filepath.Join(d, "empty-pass.txt"), []byte("\n"))
	notIdentity := writeFile(t, filepath.Join(d, "not-identity.txt"), []byte("# a recipient, not an identity\n"+r1+"\n"))
	src := writeFile(t, filepath.Join(d, "source.img"), randBytes(43, 300*kib))
	missing := filepath.Join(d, "missing.txt")

	for _, tc := range []struct {
		name  string
		args  []string
		names []string
	}{
		{"bad recipient", []string{"--recipient", "age1bad"}, []string{"--recipient"}},
		{"recipients file: bad line", []string{"--recipients-file", badRecipients}, []string{badRecipients, "line 3"}},
		{"recipients file: ssh key", []string{"--recipients-file", sshRecipients}, []string{sshRecipients, "line 1"}},
		{"recipients file: none", []string{"--recipients-file", emptyRecipients}, []string{emptyRecipients}},
		{"recipients file: private key", []string{"--recipients-file", id1}, []string{id1, "line"}},
		{"recipients file: missing", []string{"--recipients-file", missing}, []string{missing}},
		{"recipients file: a directory", []string{"--recipients-file", d}, []string{d, "not a regular file"}},
		{"passphrase file: empty", []string{"--passphrase-file", emptyPass}, []string{emptyPass}},
		{"passphrase file: missing", []string{"--passphrase-file", missing}, []string{missing}},
		{"digest-only", []string{"--digest-only", "--recipient", r1}, []string{"--digest-only"}},
		{"identity without resume", []string{"--identity", id1}, []string{"--identity", "--resume"}},
	} {
		t.Run("capture "+tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			r := expect(t, exitUsage, append(append([]string{"capture"}, tc.args...), src, dst)...)
			oneLineError(t, r, tc.names...)
			if strings.Contains(r.stderr, secret) || strings.Contains(r.stderr, secret[len("AGE-SECRET-KEY-1"):]) {
				t.Errorf("the error quotes a private key: %s", r)
			}
			absent(t, dst, "a refused capture must not create its destination")
		})
	}

	img := captureImage(t, src, "--chunk-size", "64KiB", "--recipient", r1)
	for _, tc := range []struct {
		name  string
		args  []string
		names []string
	}{
		{"identity file: a recipient", []string{"--identity", notIdentity}, []string{notIdentity, "line 2"}},
		{"identity file: missing", []string{"--identity", missing}, []string{missing}},
		{"passphrase file: empty", []string{"--passphrase-file", emptyPass}, []string{emptyPass}},
	} {
		t.Run("restore "+tc.name, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "target.img")
			r := expect(t, exitUsage, append(append([]string{"restore"}, tc.args...), img, target)...)
			oneLineError(t, r, tc.names...)
			absent(t, target, "a refused restore must not create its target")
			dst := filepath.Join(t.TempDir(), "dst")
			oneLineError(t, expect(t, exitUsage, append(append([]string{"copy"}, tc.args...), img, dst)...), tc.names...)
			absent(t, dst, "a copy refused for its key file must not create its destination")
		})
	}
	// A delta of an encrypted image needs a key that opens it, and a
	// key file it can read; each refusal comes before DEST is created.
	for _, tc := range []struct {
		name  string
		args  []string
		names []string
	}{
		{"no identity", nil, []string{"no identity given opens this image's key"}},
		{"identity file: a recipient", []string{"--identity", notIdentity}, []string{notIdentity, "line 2"}},
		{"identity file: missing", []string{"--identity", missing}, []string{missing}},
		{"passphrase file: empty", []string{"--passphrase-file", emptyPass}, []string{emptyPass}},
	} {
		t.Run("delta "+tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "delta")
			oneLineError(t, expect(t, exitUsage, append(append([]string{"delta"}, tc.args...), img, src, dst)...), tc.names...)
			if files := treeOf(t, dst); len(files) != 0 {
				t.Errorf("a refused delta wrote %v", keys(files))
			}
		})
	}
}

// interruptedEncryptedCapture leaves an encrypted capture of srcPath for
// recipient, interrupted once half the source is through, in a new
// directory, and returns it.
func interruptedEncryptedCapture(t *testing.T, srcPath, recipient string) string {
	t.Helper()
	r, err := seal.ParseRecipient("recipient", recipient)
	if err != nil {
		t.Fatal(err)
	}
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
	_, err = engine.Capture(ctx, src, st, engine.CaptureOptions{
		ChunkSize: 64 * kib, SegmentSize: 256 * kib, Workers: 1,
		Encrypt: &engine.EncryptOptions{Recipients: []seal.Recipient{r}},
		Progress: func(p engine.Progress) {
			if p.Done >= p.Total/2 {
				cancel()
			}
		},
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("capture to interrupt: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dest, format.CheckpointKey)); err != nil {
		t.Fatalf("the interrupted capture left no checkpoint: %v", err)
	}
	return dest
}

// TestEncryptedCaptureResume: an interrupted encrypted capture resumes on
// the host that began it (its resume key, removed once the capture
// finishes); elsewhere it is refused with exit 2 and one line, changing
// nothing, unless --identity of a recipient is given. New recipients are
// refused on resume.
func TestEncryptedCaptureResume(t *testing.T) {
	keysDir := resumeKeysIn(t)
	d := t.TempDir()
	id1, r1 := ageKey(t, d, "id1.txt")
	stranger, r2 := ageKey(t, d, "stranger.txt")
	data := append(randBytes(44, 2*mib), textBytes(2*mib)...)
	src := writeFile(t, filepath.Join(d, "source.img"), data)
	restored := func(img string) {
		t.Helper()
		target := filepath.Join(t.TempDir(), "restored.img")
		must(t, "restore", "--quiet", "--identity", id1, img, target)
		if !bytes.Equal(readFile(t, target), data) {
			t.Error("the resumed image does not restore the source")
		}
	}

	t.Run("same host", func(t *testing.T) {
		img := interruptedEncryptedCapture(t, src, r1)
		if k := resumeKeys(t, keysDir); len(k) != 1 {
			t.Fatalf("want the interrupted capture's resume key in %s, got %v", keysDir, k)
		}
		before := treeOf(t, img)
		oneLineError(t, expect(t, exitUsage, "capture", "--resume", "--recipient", r2, src, img), "--recipient")
		if !mapsEqual(before, treeOf(t, img)) {
			t.Error("a resume refused for its recipients changed the destination")
		}
		// The command an interrupted capture prints to continue it
		// (continueCommand) must work: without the recipients, which the
		// resumed capture keeps.
		next := continueCommand([]string{"seedship", "capture", "--recipient", r1, "--chunk-size", "64KiB", src, img},
			canContinue(fmt.Errorf("capture: %w", context.Canceled), true))
		if want := "seedship capture --resume --chunk-size 64KiB " + src + " " + img; next != want {
			t.Errorf("an interrupted encrypted capture says to continue with %q, want %q", next, want)
		}
		r := must(t, strings.Fields(next)[1:]...)
		if !strings.Contains(r.stdout, "encrypted for 1 recipient(s)") {
			t.Errorf("the resumed capture does not say for whom it is encrypted (the resumed manifest lost its recipients?): %s", r)
		}
		if k := resumeKeys(t, keysDir); len(k) != 0 {
			t.Errorf("the finished capture left its resume key(s) %v", k)
		}
		restored(img)
	})
	t.Run("other host", func(t *testing.T) {
		img := interruptedEncryptedCapture(t, src, r1)
		// Another host: a state directory without the resume key.
		t.Setenv("XDG_STATE_HOME", t.TempDir())
		before := treeOf(t, img)
		for _, ids := range [][]string{nil, {"--identity", stranger}} {
			r := expect(t, exitUsage, append(append([]string{"capture", "--resume"}, ids...), src, img)...)
			oneLineError(t, r, "resumed only on the host that began it", "--identity")
			if !mapsEqual(before, treeOf(t, img)) {
				t.Errorf("a refused resume %v changed the destination", ids)
			}
		}
		must(t, "capture", "--resume", "--quiet", "--identity", id1, src, img)
		restored(img)
	})
}

// frameOf returns the index entry of chunk i in image img, the key of its
// segment, and where in the segment's index the entry lies.
func frameOf(t *testing.T, img string, i uint64) (e format.IndexEntry, key string, entryAt int64) {
	t.Helper()
	m := loadManifest(t, img)
	ce := m.Chunks[i]
	if ce.Kind != format.KindStored {
		t.Fatalf("chunk %d is not stored", i)
	}
	id := format.DataID(ce.Segment)
	key = id.Key()
	b := readFile(t, imgPath(img, key))
	imageID, err := m.ImageID()
	if err != nil {
		t.Fatal(err)
	}
	_, entries, err := format.ReadSummary(bytes.NewReader(b), int64(len(b)), id, imageID)
	if err != nil {
		t.Fatal(err)
	}
	at := int64(binary.LittleEndian.Uint64(b[len(b)-64:]))
	for _, e := range entries {
		if e.Index == i {
			return e, key, at
		}
		at += 92 + 8*int64(len(e.Blocks))
	}
	t.Fatalf("chunk %d is not in %s", i, key)
	return
}

// payloadOf returns a copy of the stored payload of chunk i.
func payloadOf(t *testing.T, img string, i uint64) []byte {
	t.Helper()
	e, key, _ := frameOf(t, img, i)
	b := readFile(t, imgPath(img, key))
	return append([]byte(nil), b[e.Offset+format.FrameHeaderSize:e.Offset+format.FrameHeaderSize+int64(e.PayloadLen)]...)
}

// putPayload writes p as chunk i's stored payload. With forge, it also
// does what an attacker without the key can: it recomputes the frame's
// stored digest in the index, the index hash in the footer and in the
// manifest's segment table, and the manifest hash, so that every check
// without the key passes and only the manifest's MAC (or a signature)
// can tell.
func putPayload(t *testing.T, img string, i uint64, p []byte, forge bool) {
	t.Helper()
	e, key, entryAt := frameOf(t, img, i)
	if len(p) != int(e.PayloadLen) {
		t.Fatalf("chunk %d holds %d payload bytes, not %d", i, e.PayloadLen, len(p))
	}
	path := imgPath(img, key)
	b := readFile(t, path)
	frame := b[e.Offset : e.Offset+format.FrameHeaderSize+int64(len(p))]
	copy(frame[format.FrameHeaderSize:], p)
	if forge {
		stored := format.FrameDigest(frame[:format.FrameHeaderSize], frame[format.FrameHeaderSize:])
		copy(b[entryAt+60:], stored[:])
		footer := b[len(b)-64:]
		idxOff, idxLen := binary.LittleEndian.Uint64(footer), binary.LittleEndian.Uint64(footer[8:])
		old := append([]byte(nil), footer[24:56]...)
		sum := sha256.Sum256(b[idxOff : idxOff+idxLen])
		copy(footer[24:56], sum[:])
		mpath := filepath.Join(img, format.ManifestKey)
		mb := readFile(t, mpath)
		if bytes.Count(mb, old) != 1 {
			t.Fatalf("the manifest holds %s's index hash %d times", key, bytes.Count(mb, old))
		}
		mb = bytes.Replace(mb, old, sum[:], 1)
		msum := sha256.Sum256(mb[:len(mb)-72])
		copy(mb[len(mb)-72:], msum[:])
		writeFile(t, mpath, mb)
	}
	writeFile(t, path, b)
}

// restoreStopsAtDamage restores img (exit 3) onto a target full of 0xEE bytes
// and checks that nothing but verified chunks was written: every chunk's
// range holds either the source's bytes or the target's old ones, and
// chunk bad its old ones.
func restoreStopsAtDamage(t *testing.T, img string, data []byte, chunk int, bad uint64, idArgs ...string) cliResult {
	t.Helper()
	before := bytes.Repeat([]byte{0xEE}, len(data))
	target := writeFile(t, filepath.Join(t.TempDir(), "target.img"), before)
	r := expect(t, exitIntegrity, append(append([]string{"restore"}, idArgs...), img, target)...)
	got := readFile(t, target)
	if len(got) != len(before) {
		t.Fatalf("the refused restore made the target %d bytes, not %d", len(got), len(before))
	}
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		i := uint64(off / chunk)
		old := bytes.Equal(got[off:end], before[off:end])
		if !old && (i == bad || !bytes.Equal(got[off:end], data[off:end])) {
			t.Errorf("the refused restore wrote chunk %d with bytes that are not the source's", i)
		}
	}
	return r
}

// endsWithError checks that stderr's last line is the error, naming each
// of names (damage is listed on the lines before it).
func endsWithError(t *testing.T, r cliResult, names ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "seedship: ") {
		t.Errorf("stderr does not end with the error: %s", r)
		return
	}
	for _, n := range names {
		if !strings.Contains(last, n) {
			t.Errorf("error %q does not name %q", last, n)
		}
	}
}

// TestEncryptedTampering: a flipped ciphertext bit, two chunks' payloads
// swapped, and the same swap with every keyless digest recomputed (what
// anyone who can write to the drive can do) are all refused by restore
// with exit 3, naming the chunk, writing nothing of it; a keyless copy
// refuses the first two. With parity, restore rebuilds the flipped chunk.
func TestEncryptedTampering(t *testing.T) {
	resumeKeysIn(t)
	d := t.TempDir()
	id1, r1 := ageKey(t, d, "id1.txt")
	const chunk = 64 * kib
	// Random data: every chunk is stored raw, so every payload has the
	// same length and two can be swapped in place.
	data := randBytes(45, 40*chunk)
	src := writeFile(t, filepath.Join(d, "source.img"), data)
	img := captureImage(t, src, "--chunk-size", "64KiB", "--recipient", r1)
	keyed := []string{"--identity", id1}

	t.Run("flipped bit", func(t *testing.T) {
		bad := copyImage(t, img)
		p := payloadOf(t, bad, 7)
		p[len(p)/2] ^= 0x10
		putPayload(t, bad, 7, p, false)
		endsWithError(t, restoreStopsAtDamage(t, bad, data, chunk, 7, keyed...), "chunk 7")
		dst := filepath.Join(t.TempDir(), "dst")
		r := expect(t, exitIntegrity, "copy", bad, dst)
		if !strings.Contains(r.stderr, "chunk 7") {
			t.Errorf("the keyless copy does not name chunk 7: %s", r)
		}
		if _, err := os.Stat(filepath.Join(dst, format.ManifestKey)); err == nil {
			t.Error("a copy of a damaged image wrote a manifest")
		}
	})
	for _, forge := range []bool{false, true} {
		t.Run(fmt.Sprintf("swapped payloads, digests recomputed %v", forge), func(t *testing.T) {
			bad := copyImage(t, img)
			p3, p9 := payloadOf(t, bad, 3), payloadOf(t, bad, 9)
			putPayload(t, bad, 3, p9, forge)
			putPayload(t, bad, 9, p3, forge)
			r := restoreStopsAtDamage(t, bad, data, chunk, 3, keyed...)
			if forge {
				// Every keyless check passes; the MAC does not.
				oneLineError(t, r, "manifest MAC fails authentication")
				must(t, "copy", "--quiet", bad, filepath.Join(t.TempDir(), "dst"))
				return
			}
			endsWithError(t, r, "chunk 3")
			expect(t, exitIntegrity, "copy", bad, filepath.Join(t.TempDir(), "dst"))
		})
	}
	t.Run("flipped bit with parity", func(t *testing.T) {
		pimg := captureImage(t, src, "--chunk-size", "64KiB", "--segment-size", "512KiB", "--parity", "2+1", "--recipient", r1)
		p := payloadOf(t, pimg, 11)
		p[5] ^= 0x01
		putPayload(t, pimg, 11, p, false)
		target := filepath.Join(t.TempDir(), "restored.img")
		r := must(t, "restore", "--identity", id1, pimg, target)
		if !strings.Contains(r.stderr, "rebuilt 1 chunk(s) from parity: [11]") {
			t.Errorf("restore does not say it rebuilt chunk 11: %s", r)
		}
		if !bytes.Equal(readFile(t, target), data) {
			t.Error("the restore with a chunk rebuilt from parity differs from the source")
		}
	})
}

// TestEncryptedSigned: an encrypted, signed image restores under --trust
// with its key; OpenSSH accepts its signature without either; a manifest
// altered with its hash recomputed, and a wrong signer, are refused under
// --trust with exit 3 and nothing written, and OpenSSH rejects the
// altered manifest.
func TestEncryptedSigned(t *testing.T) {
	resumeKeysIn(t)
	d := t.TempDir()
	id1, r1 := ageKey(t, d, "id1.txt")
	key, pub := sshKey(t, d, "id_ed25519")
	_, otherPub := sshKey(t, d, "other")
	allowed := writeFile(t, filepath.Join(d, "allowed_signers"), []byte("ops@example.com namespaces=\"seedship\" "+pub+"\n"))
	otherAllowed := writeFile(t, filepath.Join(d, "other_signers"), []byte("someone "+otherPub+"\n"))
	data := append(textBytes(500*kib), randBytes(46, 300*kib)...)
	src := writeFile(t, filepath.Join(d, "source.img"), data)
	img := captureImage(t, src, "--chunk-size", "64KiB", "--recipient", r1, "--sign-key", key)
	if !opensshAccepts(t, allowed, filepath.Join(img, format.ManifestKey)) {
		t.Error("ssh-keygen -Y verify refused the encrypted image's signature")
	}
	target := filepath.Join(t.TempDir(), "restored.img")
	if r := must(t, "restore", "--trust", allowed, "--identity", id1, img, target); !strings.Contains(r.stdout, "signed by ops@example.com") {
		t.Errorf("restore does not say who signed: %s", r)
	}
	if !bytes.Equal(readFile(t, target), data) {
		t.Error("the restored bytes differ from the source")
	}
	must(t, "copy", "--quiet", "--trust", allowed, img, filepath.Join(t.TempDir(), "copied"))

	// Altered: one byte of the plaintext header ("tool"), the manifest
	// hash recomputed (the MAC cannot be).
	forged := copyImage(t, img)
	mpath := filepath.Join(forged, format.ManifestKey)
	mb := readFile(t, mpath)
	at := bytes.Index(mb, []byte(`"tool":"`)) + len(`"tool":"`)
	mb[at] ^= 0x01
	sum := sha256.Sum256(mb[:len(mb)-72])
	copy(mb[len(mb)-72:], sum[:])
	writeFile(t, mpath, mb)
	if opensshAccepts(t, allowed, mpath) {
		t.Error("ssh-keygen -Y verify accepted the altered manifest")
	}
	for _, tc := range []struct {
		img, trust string
		names      []string
	}{
		{forged, allowed, []string{"manifest.ssm.sig", "does not match the manifest"}},
		{img, otherAllowed, []string{"manifest.ssm.sig", "signed by an untrusted key"}},
	} {
		fresh := filepath.Join(t.TempDir(), "new.img")
		oneLineError(t, expect(t, exitIntegrity, "restore", "--trust", tc.trust, "--identity", id1, tc.img, fresh), tc.names...)
		absent(t, fresh, "a refused restore must not create its target")
		dst := filepath.Join(t.TempDir(), "dst")
		oneLineError(t, expect(t, exitIntegrity, "copy", "--trust", tc.trust, tc.img, dst), tc.names...)
		if _, err := os.Stat(filepath.Join(dst, format.ManifestKey)); err == nil {
			t.Error("a refused copy wrote a manifest")
		}
	}
	// Without --trust the key's MAC still refuses the altered manifest.
	fresh := filepath.Join(t.TempDir(), "new.img")
	oneLineError(t, expect(t, exitIntegrity, "restore", "--identity", id1, forged, fresh), "manifest MAC fails authentication")
	absent(t, fresh, "a refused restore must not create its target")
}

// secretsOf lists what an encrypted image of data, read from path, must
// not reveal, each with a name for the failure message: the marker, the
// source's SHA-256 (hex either case, binary, base64), its path, the
// host's name, and the plaintext chunk hash and 8-byte block digests
// (spec §3: format.PlainHasher) of every chunk and block that is not all
// zero (hex too).
func secretsOf(t *testing.T, data []byte, chunk int, path, marker string) map[string][]byte {
	t.Helper()
	sum := sha256.Sum256(data)
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{
		"the marker":             []byte(marker),
		"the sha256 (hex)":       []byte(hex.EncodeToString(sum[:])),
		"the sha256 (HEX)":       []byte(strings.ToUpper(hex.EncodeToString(sum[:]))),
		"the sha256 (binary)":    sum[:],
		"the sha256 (base64)":    []byte(base64.StdEncoding.EncodeToString(sum[:])),
		"the source's path":      []byte(abs),
		"the source's file name": []byte(filepath.Base(path)),
		"the source's directory": []byte(filepath.Base(filepath.Dir(abs))),
	}
	if host, err := os.Hostname(); err == nil && len(host) >= 6 {
		out["the host name"] = []byte(host)
	}
	h := format.PlainHasher()
	for off := 0; off < len(data); off += chunk {
		raw := data[off:min(off+chunk, len(data))]
		if isZero(raw) {
			continue
		}
		i := uint64(off / chunk)
		blocks := make([]format.BlockDigest, format.NumBlocks(len(raw)))
		ch := h.Chunk(i, raw, blocks)
		out[fmt.Sprintf("chunk %d's plaintext hash", i)] = ch[:]
		out[fmt.Sprintf("chunk %d's plaintext hash (hex)", i)] = []byte(hex.EncodeToString(ch[:]))
		for k, bd := range blocks {
			if isZero(raw[k*seal.BlockSize : min((k+1)*seal.BlockSize, len(raw))]) {
				continue
			}
			out[fmt.Sprintf("chunk %d block %d's plaintext digest", i, k)] = bd[:]
			out[fmt.Sprintf("chunk %d block %d's plaintext digest (hex)", i, k)] = []byte(hex.EncodeToString(bd[:]))
		}
	}
	return out
}

// leaks searches every file under each root for each secret and returns
// "secret in file" for each one found, and the number of files searched.
func leaks(t *testing.T, secrets map[string][]byte, roots ...string) (found []string, files int) {
	t.Helper()
	for _, root := range roots {
		for name, content := range treeOf(t, root) {
			files++
			for what, s := range secrets {
				if bytes.Contains([]byte(content), s) {
					found = append(found, fmt.Sprintf("%s in %s", what, filepath.Join(root, name)))
				}
			}
		}
	}
	return found, files
}

// TestEncryptedImageHidesTheSource: a marker is placed in the source;
// nothing an encrypted capture writes (segments, parity, manifest and its
// copies, signatures, courier volume labels, the checkpoint of an
// interrupted capture) holds the marker, the source's SHA-256, its path,
// or any plaintext chunk hash or block digest. The same search over a
// plaintext capture finds them, so the search can fail.
func TestEncryptedImageHidesTheSource(t *testing.T) {
	keysDir := resumeKeysIn(t)
	d := t.TempDir()
	id1, r1 := ageKey(t, d, "id1.txt")
	_, r2 := ageKey(t, d, "id2.txt")
	recipients := writeFile(t, filepath.Join(d, "recipients.txt"), []byte(r1+"\n"+r2+"\n"))
	key, _ := sshKey(t, d, "id_ed25519")
	const chunk = 64 * kib
	const marker = "SEEDSHIP-TEST-MARKER-5b1f0c9e: customer ledger, do not leak"
	var data []byte
	for i := 0; i < 6; i++ {
		// A text chunk with the marker in it, one of zeros, one random
		// with the marker at a block boundary, and one of text whose
		// first block is zero.
		text := textBytes(chunk)
		copy(text[1000:], marker)
		rnd := randBytes(byte(50+i), chunk)
		copy(rnd[seal.BlockSize-10:], marker)
		half := textBytes(chunk)
		clear(half[:seal.BlockSize/2])
		data = append(append(append(append(data, text...), make([]byte, chunk)...), rnd...), half...)
	}
	data = append(data, []byte(marker)...) // a short last chunk
	srcDir := filepath.Join(d, "src-of-host-db7-volume-3")
	src := writeFile(t, filepath.Join(srcDir, "ledger-disk-9c41.img"), data)
	secrets := secretsOf(t, data, chunk, src, marker)
	flags := []string{"--chunk-size", "64KiB", "--segment-size", "256KiB", "--parity", "2+1", "--sign-key", key}

	// The control: a plaintext capture holds them.
	plain := captureImage(t, src, flags...)
	found, _ := leaks(t, secrets, plain)
	for _, want := range []string{"the marker", "the sha256 (hex)", "the source's path", "chunk 0's plaintext hash", "chunk 0 block 0's plaintext digest"} {
		if !strings.Contains(strings.Join(found, "\n"), want+" in ") {
			t.Errorf("the search does not find %s in a plaintext image: it cannot tell a leak", want)
		}
	}

	enc := filepath.Join(t.TempDir(), "seed")
	must(t, append(append([]string{"capture", "--quiet", "--recipients-file", recipients}, flags...), src, enc)...)
	vols := []string{filepath.Join(t.TempDir(), "d1"), filepath.Join(t.TempDir(), "d2"), filepath.Join(t.TempDir(), "d3")}
	must(t, append(append(append([]string{"capture", "--quiet", "--recipients-file", recipients}, flags...), src), vols...)...)
	if _, err := os.Stat(filepath.Join(vols[0], "volume.json")); err != nil {
		t.Errorf("the volume capture wrote no label: %v", err)
	}
	// The sealed header fields, which only the key shows (spec §11.5).
	m := loadManifest(t, enc)
	ids, err := seal.ParseIdentitiesFile(id1, bytes.NewReader(readFile(t, id1)))
	if err != nil {
		t.Fatal(err)
	}
	k, err := format.OpenKeys(&m.Header, ids)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unseal(k); err != nil {
		t.Fatal(err)
	}
	if m.Header.SHA256 != shaHex(data) || m.Header.Source.Path == "" {
		t.Fatalf("the unsealed manifest says sha256 %q, source %+v", m.Header.SHA256, m.Header.Source)
	}
	for what, tm := range map[string]time.Time{"the capture start": m.Header.CaptureStart, "the capture end": m.Header.CaptureEnd} {
		b, err := tm.MarshalJSON()
		if err != nil || tm.IsZero() {
			t.Fatalf("%s: %v %v", what, tm, err)
		}
		secrets[what] = bytes.Trim(b, `"`)
	}

	interrupted := interruptedEncryptedCapture(t, src, r1)
	found, files := leaks(t, secrets, append([]string{enc, interrupted}, vols...)...)
	for _, f := range found {
		t.Errorf("an encrypted capture leaks %s", f)
	}
	if files < 15 {
		t.Errorf("searched only %d files", files)
	}
	// The resume key stays on this host, outside the image.
	if k := resumeKeys(t, keysDir); len(k) != 1 {
		t.Errorf("want the interrupted capture's resume key in %s, got %v", keysDir, k)
	}

	// And the encrypted images hold the source.
	target := filepath.Join(t.TempDir(), "restored.img")
	must(t, append(append([]string{"restore", "--quiet", "--identity", id1}, vols...), target)...)
	if !bytes.Equal(readFile(t, target), data) {
		t.Error("the encrypted volume set does not restore the source")
	}
}

// TestEncryptedS3: an encrypted capture streams to a bucket (a real S3
// server); a keyless copy brings it to a directory, where a flipped
// ciphertext bit is rebuilt from parity by restore; the bucket's image
// restores with the key, and without it restore is refused (exit 2).
func TestEncryptedS3(t *testing.T) {
	resumeKeysIn(t)
	e := newS3Env(t)
	d := t.TempDir()
	id1, r1 := ageKey(t, d, "id1.txt")
	stranger, _ := ageKey(t, d, "stranger.txt")
	src, data := s3Source(t, 7, 14, 999)
	url := e.url("seeds/encrypted")
	must(t, append(append([]string{"capture", "--quiet", "--recipient", r1, "--parity", "2+1"}, s3ImgFlags...), src, url)...)
	if m := s3Manifest(t, e, "seeds/encrypted"); !m.Encrypted() {
		t.Fatal("the bucket's image is not encrypted")
	}
	s3Restore(t, url, src, "--identity", id1)
	// Checked where it lies without the key: every stored byte.
	if r := must(t, "verify", url); !strings.Contains(r.stdout+r.stderr, "transport integrity only") {
		t.Errorf("keyless verify of the bucket's image does not say it checked transport integrity only: %s", r)
	}
	fresh := filepath.Join(t.TempDir(), "new.img")
	oneLineError(t, expect(t, exitUsage, "restore", "--identity", stranger, url, fresh), "no identity given opens this image's key")
	absent(t, fresh, "a refused restore must not create its target")

	local := filepath.Join(t.TempDir(), "seed")
	must(t, "copy", "--quiet", url, local)
	m := loadManifest(t, local)
	bad := s3StoredChunks(m, 1)[0]
	s3FlipChunk(t, local, m, bad)
	target := filepath.Join(t.TempDir(), "restored.img")
	r := must(t, "restore", "--identity", id1, local, target)
	if !strings.Contains(r.stderr, fmt.Sprintf("rebuilt 1 chunk(s) from parity: [%d]", bad)) {
		t.Errorf("restore does not say it rebuilt chunk %d: %s", bad, r)
	}
	if !bytes.Equal(readFile(t, target), data) {
		t.Error("the restore of the copy differs from the source")
	}
}
