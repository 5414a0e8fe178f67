package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// infoEncOut is the part of info --json the encryption tests pin down.
type infoEncOut struct {
	ImageID      string     `json:"image_id"`
	Size         int64      `json:"size"`
	Chunks       uint64     `json:"chunks"`
	ZeroChunks   uint64     `json:"zero_chunks"`
	Segments     int        `json:"segments"`
	SHA256       string     `json:"sha256"`
	CaptureStart *time.Time `json:"capture_start"`
	Source       struct {
		Path string `json:"path"`
		Kind string `json:"kind"`
		Size int64  `json:"size"`
		Host string `json:"host"`
	} `json:"source"`
	Encryption *struct {
		AEAD        string   `json:"aead"`
		Recipients  []string `json:"recipients"`
		Passphrase  bool     `json:"passphrase"`
		WrappedKeys int      `json:"wrapped_keys"`
		Opened      bool     `json:"opened"`
	} `json:"encryption"`
	Sealed  []string `json:"sealed"`
	Checked []string `json:"checked"`
}

// TestInfoEncrypted: info of an encrypted image without its key shows
// what stays readable (sizes, counts, image id, for whom it is encrypted)
// and none of what is sealed (the source's path and host, its SHA-256,
// the capture times); with an identity, or the passphrase, of one of its
// recipients it shows everything and says it checked the manifest's MAC;
// an identity that opens nothing is bad input (exit 2, one line).
func TestInfoEncrypted(t *testing.T) {
	t.Parallel()
	d := t.TempDir()
	data := randBytes(43, mib+777)
	src := writeFile(t, filepath.Join(d, "secret-source-name.img"), data)
	key1, r1 := newKeyFile(t, d, "key1.txt")
	key2, r2 := newKeyFile(t, d, "key2.txt")
	other, _ := newKeyFile(t, d, "other.txt")
	pass := writeFile(t, filepath.Join(d, "pass.txt"), []byte("correct horse battery staple\n"))
	img := captureImage(t, src, "--chunk-size", "64KiB", "--recipient", r1, "--recipient", r2, "--passphrase-file", pass)

	var locked infoEncOut
	decodeJSON(t, must(t, "info", "--json", img), &locked)
	e := locked.Encryption
	switch {
	case e == nil:
		t.Fatal("info --json of an encrypted image has no encryption object")
	case e.AEAD != "aes-256-gcm" || !slices.Equal(e.Recipients, []string{r1, r2}) || !e.Passphrase || e.WrappedKeys != 2 || e.Opened:
		t.Errorf("encryption %+v, want aes-256-gcm for %s and %s and a passphrase, 2 wrapped keys, not opened", *e, r1, r2)
	}
	if locked.Size != int64(len(data)) || locked.Chunks != 17 || locked.Segments == 0 || len(locked.ImageID) != 32 || locked.Source.Kind != "file" || locked.Source.Size != int64(len(data)) {
		t.Errorf("info --json without the key hides what stays readable: %+v", locked)
	}
	if locked.SHA256 != "" || locked.Source.Path != "" || locked.Source.Host != "" || locked.CaptureStart != nil || !slices.Contains(locked.Sealed, "sha256") {
		t.Errorf("info --json without the key shows sealed fields: sha256 %q path %q host %q capture_start %v sealed %q",
			locked.SHA256, locked.Source.Path, locked.Source.Host, locked.CaptureStart, locked.Sealed)
	}
	human := must(t, "info", img)
	for _, want := range []string{"encrypted (aes-256-gcm, for 2 age recipient(s) and a passphrase)", r1, r2, "sha256:          sealed", "captured:        sealed"} {
		if !strings.Contains(human.stdout, want) {
			t.Errorf("info without the key does not say %q: %s", want, human)
		}
	}
	// (The host name is checked in --json only: a short one may occur
	// in a recipient or an id by chance.)
	for _, secret := range []string{shaHex(data), shaHex(data)[:16], "secret-source-name"} {
		if strings.Contains(human.stdout, secret) {
			t.Errorf("info without the key shows %q, which the image seals: %s", secret, human)
		}
	}

	for _, args := range [][]string{{"--identity", key2}, {"--identity", other, "--identity", key1}, {"--passphrase-file", pass}} {
		var open infoEncOut
		decodeJSON(t, must(t, append(append([]string{"info", "--json"}, args...), img)...), &open)
		if open.SHA256 != shaHex(data) || open.Source.Path != src || open.CaptureStart == nil || len(open.Sealed) != 0 ||
			open.Encryption == nil || !open.Encryption.Opened || !slices.Contains(open.Checked, "manifest-mac") {
			t.Errorf("info %v: sha256 %q path %q capture_start %v sealed %q encryption %+v checked %q; want everything shown, opened, its MAC checked",
				args, open.SHA256, open.Source.Path, open.CaptureStart, open.Sealed, open.Encryption, open.Checked)
		}
	}
	if r := must(t, "info", "--identity", key1, img); !strings.Contains(r.stdout, shaHex(data)) || !strings.Contains(r.stdout, src) {
		t.Errorf("info with the key does not show the source and its sha256: %s", r)
	}
	oneLineError(t, expect(t, exitUsage, "info", "--identity", other, img), "identity")

	var plain infoEncOut
	decodeJSON(t, must(t, "info", "--json", captureImage(t, src, "--chunk-size", "64KiB")), &plain)
	if plain.Encryption != nil || plain.SHA256 != shaHex(data) || plain.Source.Path != src || len(plain.Sealed) != 0 || !slices.Equal(plain.Checked, []string{"manifest-checksum"}) {
		t.Errorf("info --json of a plain image: %+v", plain)
	}
}
