package main

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/verify"
)

// These tests run verify on encrypted images (spec §11) made by capture
// --recipient: without the key a check is transport-only and says so;
// with it, or on a plain image, it is deep; damage is named by chunk and
// byte ranges either way, and repaired without the key.

// transportNote is what every transport check must say (spec §11.7).
const transportNote = "transport integrity only: the chunks were not decrypted and checked against their source digests"

// newKeyFile writes a new age identity file (as age-keygen does) under d
// and returns its path and its recipient.
func newKeyFile(t *testing.T, d, name string) (path, recipient string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	path = writeFile(t, filepath.Join(d, name), []byte("# seedship test identity\n# public key: "+id.Recipient().String()+"\n"+id.String()+"\n"))
	return path, id.Recipient().String()
}

// encImage is an encrypted test image with parity and the identity file
// that opens it.
type encImage struct {
	image
	key string // identity file of its recipient
}

// newEncryptedImage captures about 3 MiB (random data, text and four
// zero chunks) in 64 KiB chunks and 256 KiB segments, with parity 2+1,
// encrypted for a new identity.
func newEncryptedImage(t *testing.T) encImage {
	t.Helper()
	d := t.TempDir()
	data := randBytes(41, 3*mib+4321)
	copy(data[mib:], textBytes(mib/2))
	clear(data[2*mib : 2*mib+4*64*kib])
	src := writeFile(t, filepath.Join(d, "source.img"), data)
	key, r := newKeyFile(t, d, "key.txt")
	img := captureImage(t, src, "--chunk-size", "64KiB", "--segment-size", "256KiB", "--parity", "2+1", "--recipient", r)
	m := loadManifest(t, img)
	if !m.Encrypted() || m.Header.ZeroChunks != 4 {
		t.Fatalf("test image: encrypted %v, %d zero chunks; want encrypted with 4", m.Encrypted(), m.Header.ZeroChunks)
	}
	return encImage{image{src: src, data: data, img: img, m: m}, key}
}

// verifyEncOut is the part of verify --json these tests pin down.
type verifyEncOut struct {
	OK        bool     `json:"ok"`
	Depth     string   `json:"depth"`
	Note      string   `json:"note"`
	Encrypted bool     `json:"encrypted"`
	ChunksOK  uint64   `json:"chunks_ok"`
	Checked   []string `json:"checked"`
	Repaired  []string `json:"repaired"`
	Source    string   `json:"source_sha256"`
	Receipt   string   `json:"receipt"`
	Findings  []struct {
		Chunk        *uint64 `json:"chunk"`
		Offset       int64   `json:"offset"`
		Length       int64   `json:"length"`
		Segment      uint32  `json:"segment"`
		StoredOffset int64   `json:"stored_offset"`
		StoredLength int64   `json:"stored_length"`
		Error        string  `json:"error"`
	} `json:"findings"`
}

// storedCount counts the stored chunks of m.
func storedCount(m *format.Manifest) (n uint64) {
	for _, c := range m.Chunks {
		if c.Kind == format.KindStored {
			n++
		}
	}
	return n
}

// TestVerifyDepth: verify of an encrypted image without its key is a
// transport check that says so; with the key, or of a plain image, it is
// deep; --transport asks for the transport check on any image; --deep
// without the key, --deep with --transport and a key that does not open
// the image are bad input (exit 2, one line).
func TestVerifyDepth(t *testing.T) {
	t.Parallel()
	enc := newEncryptedImage(t)
	plain := newImage(t)
	other, _ := newKeyFile(t, t.TempDir(), "other.txt")
	deepChecks := []string{"chunk-hashes", "block-digests", "segment-structure", "manifest-copies"}
	transportChecks := []string{"stored-digests", "segment-structure", "manifest-copies"}
	for _, tc := range []struct {
		name  string
		img   string
		args  []string
		code  int
		depth string
		names []string // what a refusal names
	}{
		{"encrypted", enc.img, nil, exitOK, "transport", nil},
		{"encrypted --transport", enc.img, []string{"--transport"}, exitOK, "transport", nil},
		{"encrypted --identity", enc.img, []string{"--identity", enc.key}, exitOK, "deep", nil},
		{"encrypted --identity --deep", enc.img, []string{"--identity", enc.key, "--deep"}, exitOK, "deep", nil},
		{"encrypted --identity --transport", enc.img, []string{"--identity", enc.key, "--transport"}, exitOK, "transport", nil},
		{"encrypted --deep without key", enc.img, []string{"--deep"}, exitUsage, "", []string{"--deep", "encrypted", "--identity", "--passphrase-file"}},
		{"encrypted, another identity", enc.img, []string{"--identity", other}, exitUsage, "", []string{"identity"}},
		{"--deep --transport", enc.img, []string{"--deep", "--transport", "--identity", enc.key}, exitUsage, "", []string{"--deep", "--transport"}},
		{"plain", plain.img, nil, exitOK, "deep", nil},
		{"plain --deep", plain.img, []string{"--deep"}, exitOK, "deep", nil},
		{"plain --transport", plain.img, []string{"--transport"}, exitOK, "transport", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{"verify"}, tc.args...), tc.img)
			human := expect(t, tc.code, args...)
			if tc.code != exitOK {
				oneLineError(t, human, tc.names...)
				return
			}
			if got := strings.Contains(human.stdout, transportNote); got != (tc.depth == "transport") {
				t.Errorf("the summary says %q: %v, want %v: %s", transportNote, got, tc.depth == "transport", human)
			}
			if !strings.Contains(human.stdout, tc.depth+" check") {
				t.Errorf("the summary does not say %q: %s", tc.depth+" check", human)
			}
			var out verifyEncOut
			decodeJSON(t, must(t, append([]string{"verify", "--json"}, args[1:]...)...), &out)
			m := loadManifest(t, tc.img)
			want := deepChecks
			if tc.depth == "transport" {
				want = transportChecks
			}
			if !out.OK || out.Depth != tc.depth || out.Encrypted != m.Encrypted() || out.ChunksOK != storedCount(m) {
				t.Errorf("verify --json: ok %v depth %q encrypted %v chunks %d; want ok %q %v %d", out.OK, out.Depth, out.Encrypted, out.ChunksOK, tc.depth, m.Encrypted(), storedCount(m))
			}
			if (out.Note == transportNote) != (tc.depth == "transport") {
				t.Errorf("verify --json note %q for a %s check", out.Note, tc.depth)
			}
			for _, k := range want {
				if !slices.Contains(out.Checked, k) {
					t.Errorf("verify --json checked %q, want it to list %q", out.Checked, k)
				}
			}
			if tc.depth == "transport" && (slices.Contains(out.Checked, "chunk-hashes") || slices.Contains(out.Checked, "block-digests")) {
				t.Errorf("a transport check claims to have checked the chunks against their digests: %q", out.Checked)
			}
		})
	}
}

// flipCiphertext flips a bit in the middle of the sealed payload of a
// stored chunk in the second half of the image, and returns the chunk.
func flipCiphertext(t *testing.T, img string, m *format.Manifest) uint64 {
	t.Helper()
	for i := len(m.Chunks) / 2; i < len(m.Chunks); i++ {
		c := m.Chunks[i]
		if c.Kind != format.KindStored {
			continue
		}
		if !c.Codec.Sealed() {
			t.Fatalf("chunk %d has codec %#x, want a sealed one", i, byte(c.Codec))
		}
		p := segPath(img, c.Segment)
		b := readFile(t, p)
		b[c.Offset+format.FrameHeaderSize+12+int64(c.PayloadLen-28)/2] ^= 0x04
		writeFile(t, p, b)
		return uint64(i)
	}
	t.Fatal("no stored chunk in the second half of the image")
	return 0
}

// TestVerifyEncryptedFlippedBit: a bit flipped in a ciphertext byte is
// located to its chunk (index, source bytes, stored bytes) by verify
// with and without the key (exit 3); verify --repair without the key
// rebuilds it from parity, after which a deep verify with the key passes.
func TestVerifyEncryptedFlippedBit(t *testing.T) {
	t.Parallel()
	enc := newEncryptedImage(t)
	img := copyImage(t, enc.img)
	i := flipCiphertext(t, img, enc.m)
	c := enc.m.Chunks[i]
	off, length := enc.m.ChunkRange(i)
	where := []string{
		"source bytes " + strconv.FormatInt(off, 10) + "-" + strconv.FormatInt(off+length-1, 10),
		"stored bytes " + strconv.FormatInt(c.Offset, 10) + "-" + strconv.FormatInt(c.Offset+c.FrameLen()-1, 10),
	}
	for _, args := range [][]string{{"verify", img}, {"verify", "--identity", enc.key, img}} {
		r := expect(t, exitIntegrity, args...)
		if got := badChunkLines(r.stderr); !slices.Equal(got, []uint64{i}) {
			t.Fatalf("%v: BAD chunks %v, want [%d]: %s", args, got, i, r)
		}
		for _, w := range where {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%v does not name %q: %s", args, w, r)
			}
		}
		if keyless := len(args) == 2; strings.Contains(r.stderr, transportNote) != keyless {
			t.Errorf("%v: says %q: %v, want %v: %s", args, transportNote, !keyless, keyless, r)
		}
		var out verifyEncOut
		jr := expect(t, exitIntegrity, append([]string{"verify", "--json"}, args[1:]...)...)
		decodeJSON(t, jr, &out)
		if out.OK || len(out.Findings) == 0 {
			t.Fatalf("%v --json: ok %v, no findings", args, out.OK)
		}
		if f := out.Findings[0]; f.Chunk == nil || *f.Chunk != i || f.Offset != off || f.Length != length ||
			f.Segment != c.Segment || f.StoredOffset != c.Offset || f.StoredLength != c.FrameLen() {
			t.Errorf("%v --json: first finding %+v, want chunk %d at source %d+%d, segment %d, stored %d+%d",
				args, f, i, off, length, c.Segment, c.Offset, c.FrameLen())
		}
	}
	r := must(t, "verify", "--repair", img)
	if !strings.Contains(r.stdout, "repaired "+format.DataID(c.Segment).Key()) || !strings.Contains(r.stdout, transportNote) {
		t.Errorf("verify --repair without the key does not say what it repaired and how it checked: %s", r)
	}
	var out verifyEncOut
	decodeJSON(t, must(t, "verify", "--json", "--deep", "--identity", enc.key, img), &out)
	if !out.OK || out.Depth != "deep" || !slices.Contains(out.Checked, "chunk-hashes") {
		t.Errorf("deep verify after the repair: ok %v depth %q checked %q", out.OK, out.Depth, out.Checked)
	}
	if !mapsEqual(treeOf(t, img), treeOf(t, enc.img)) {
		t.Error("the repaired image differs from the image captured")
	}
}

// TestVerifyDeviceEncrypted: verify --device of an encrypted image needs
// its key (exit 2, one line, no receipt written); with it the device is
// compared through the keyed chunk hashes and block digests, the
// whole-source SHA-256 recomputed matches the sealed one, and the receipt
// passes; a changed byte is found.
func TestVerifyDeviceEncrypted(t *testing.T) {
	t.Parallel()
	enc := newEncryptedImage(t)
	d := t.TempDir()
	receipt := filepath.Join(d, "r.json")
	r := expect(t, exitUsage, "verify", "--device", enc.src, "--receipt", receipt, enc.img)
	oneLineError(t, r, "--device", "encrypted", "--identity")
	absent(t, receipt, "verify --device refused for want of a key must not write a receipt")
	oneLineError(t, expect(t, exitUsage, "verify", "--transport", "--device", enc.src, enc.img), "--transport", "--device")

	var out verifyEncOut
	decodeJSON(t, must(t, "verify", "--json", "--identity", enc.key, "--device", enc.src, "--receipt", receipt, enc.img), &out)
	if !out.OK || out.Source != shaHex(enc.data) || !slices.Contains(out.Checked, "block-digests") || !slices.Contains(out.Checked, "source-sha256") {
		t.Errorf("verify --device with the key: ok %v source %q checked %q; want ok, %s, block digests and source sha256", out.OK, out.Source, out.Checked, shaHex(enc.data))
	}
	rc, err := verify.ParseReceipt(readFile(t, receipt))
	if err != nil || !rc.Passed() || rc.Image.SourceSHA256 != shaHex(enc.data) {
		t.Fatalf("receipt: %v, %+v", err, rc)
	}

	changed := append([]byte(nil), enc.data...)
	k := int64(len(changed)) - 1000 // in the last chunk
	changed[k] ^= 0x01
	dev := writeFile(t, filepath.Join(d, "dev.img"), changed)
	r = expect(t, exitIntegrity, "verify", "--identity", enc.key, "--device", dev, enc.img)
	last := uint64(len(enc.m.Chunks) - 1)
	if got := badChunkLines(r.stderr); !slices.Equal(got, []uint64{last}) {
		t.Errorf("changed device: BAD chunks %v, want [%d]: %s", got, last, r)
	}
}
