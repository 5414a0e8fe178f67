package main

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/volume"
)

func infoCommand() *cli.Command {
	image := imageOperand("IMAGE", "image")
	return variadicCommand(command{
		name:     "info",
		usage:    "show what a seed image holds",
		operands: []operand{image},
		help: `
Reads and checks the manifest of IMAGE and prints what an operator needs: the source, its size
and SHA-256 (compare with 'sha256sum /dev/X' on either side), chunking, compression, segments
and capture times. It reads no chunk data; use 'seedship verify' for that.

An encrypted image (capture --recipient, --passphrase-file) shows without its key only what stays
readable: image id, sizes and counts, segments, parity, volumes, for whom it is encrypted (age
recipients, whether a passphrase opens it) and who signed it; its source's identity, its SHA-256
and the capture times are sealed. With --identity FILE or --passphrase-file FILE info opens them
(and checks the manifest's MAC) and shows everything.

Courier volumes: give any of the volumes of an image (one identifies the whole shipment); info
says which are present, which are missing and how many may be lost; --volumes also prints each
present volume's label (as 'seedship label' does).`,
		flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "volumes", Usage: "also print the label of each volume given"},
			trustFlag(),
		}, identityFlags()...),
		run: runInfo,
	}, nil, image, nil)
}

// infoJSON is info's --json output.
type infoJSON struct {
	Image         string `json:"image"`
	FormatVersion int    `json:"format_version"`
	ImageID       string `json:"image_id"`
	Tool          string `json:"tool"`
	Size          int64  `json:"size"`
	ChunkSize     int    `json:"chunk_size"`
	BlockSize     int    `json:"block_size"`
	storedJSON
	ParitySegments int     `json:"parity_segments,omitempty"`
	ParityOverhead float64 `json:"parity_overhead,omitempty"`
	// SHA256, the source's identity beyond kind, size and sector size,
	// and the capture times are absent for an encrypted image opened
	// without its key (Sealed lists them).
	SHA256         string        `json:"sha256,omitempty"`
	ManifestSHA256 string        `json:"manifest_sha256"`
	Compression    any           `json:"compression"`
	Source         format.Source `json:"source"`
	CaptureStart   time.Time     `json:"capture_start,omitzero"`
	CaptureEnd     time.Time     `json:"capture_end,omitzero"`
	// Encryption says how and for whom an encrypted image is encrypted
	// (spec §11); absent for a plain image.
	Encryption *infoEncryptionJSON `json:"encryption,omitempty"`
	// Sealed names the header fields an encrypted image keeps sealed
	// and info did not show, because no key was given.
	Sealed []string `json:"sealed,omitempty"`
	// Checked is what info checked: the manifest's own checksum, and
	// for an encrypted image opened with its key its MAC (it reads no
	// chunk data; verify does).
	Checked []string `json:"checked"`
	// Signer is who signed the manifest: checked against --trust, or
	// without it only the key the signature names; empty when unsigned.
	Signer string `json:"signer,omitempty"`
	// Volumes lists the volumes given, for a volume set; with --volumes
	// Labels holds their labels.
	Volumes          []volumeJSON   `json:"volumes,omitempty"`
	VolumeCount      int            `json:"volume_count,omitempty"`
	VolumesMissing   []int          `json:"volumes_missing,omitempty"`
	VolumesMayBeLost *int           `json:"volumes_may_be_lost,omitempty"`
	Labels           []volume.Label `json:"labels,omitempty"`
}

// infoEncryptionJSON is an encrypted image's encryption in info's --json.
type infoEncryptionJSON struct {
	Scheme string `json:"scheme"`
	AEAD   string `json:"aead"`
	// Recipients and Passphrase are the header's informative list of
	// for whom the image is encrypted (spec §11.1: readers do not trust
	// it; the wrapped keys decide).
	Recipients  []string `json:"recipients"`
	Passphrase  bool     `json:"passphrase"`
	WrappedKeys int      `json:"wrapped_keys"`
	// Opened says the key was given and opened the image, whose MAC
	// then matched.
	Opened bool `json:"opened"`
}

// sealedFields are the header fields an encrypted image seals (spec
// §11.5): what info cannot show without the key.
var sealedFields = []string{"sha256", "source", "capture_start", "capture_end", "resync"}

// infoChecked is what info checks of a manifest, for --json and the
// human output: its checksum, and the MAC of an encrypted one it opened.
func infoChecked(m *format.Manifest) []string {
	if m.Unsealed() {
		return []string{"manifest-checksum", "manifest-mac"}
	}
	return []string{"manifest-checksum"}
}

// encryptionText says how and for whom an image is encrypted, from its
// plaintext header: "encrypted (aes-256-gcm, for 2 age recipient(s) and
// a passphrase)".
func encryptionText(e *format.Encryption) string {
	var parts []string
	if n := len(e.Recipients); n > 0 {
		parts = append(parts, fmt.Sprintf("%d age recipient(s)", n))
	}
	if e.Passphrase {
		parts = append(parts, "a passphrase")
	}
	whom := strings.Join(parts, " and ")
	if whom == "" {
		whom = "the holders of its wrapped keys"
	}
	return fmt.Sprintf("encrypted (%s, for %s)", e.AEAD, whom)
}

func runInfo(c *cli.Context, args []string) error {
	st, set, err := openImageStore(c, args)
	if err != nil {
		return err
	}
	if set == nil && c.Bool("volumes") {
		return usagef("info: --volumes: %s is not a courier volume (it holds no %s)", args[0], volume.LabelKey)
	}
	trust, err := loadTrust(c)
	if err != nil {
		return err
	}
	ids, err := identitiesOf(c)
	if err != nil {
		return err
	}
	// One read: what info shows is the manifest whose signature it names
	// (and, with a key, whose MAC it checked).
	m, who, err := engine.OpenImageKeyed(c.Context, st, trust, ids, false)
	if err != nil {
		return err
	}
	h := m.Header
	sealed := m.Encrypted() && !m.Unsealed()
	p := newPrinter(c, "info")
	if p.json {
		out := infoJSON{Image: st.String(), FormatVersion: h.Version, ImageID: h.ImageID, Tool: h.Tool,
			Size: h.Size, ChunkSize: h.ChunkSize, BlockSize: h.BlockSize, storedJSON: storedOf(m), SHA256: h.SHA256,
			ParitySegments: len(m.Parity), ParityOverhead: overhead(h),
			ManifestSHA256: hex.EncodeToString(m.Hash[:]), Compression: h.Compression, Source: h.Source,
			CaptureStart: h.CaptureStart, CaptureEnd: h.CaptureEnd, Checked: infoChecked(m), Signer: signerText(who, trust != nil)}
		if e := h.Encryption; e != nil {
			out.Encryption = &infoEncryptionJSON{Scheme: e.Scheme, AEAD: e.AEAD, Recipients: append([]string{}, e.Recipients...),
				Passphrase: e.Passphrase, WrappedKeys: len(e.WrappedKeys), Opened: m.Unsealed()}
		}
		if sealed {
			out.Sealed = sealedFields
		}
		if set != nil {
			out.Volumes, out.VolumeCount, out.VolumesMissing = volumesJSON(set, nil, false), set.Count(), set.Missing()
			if vs := set.Volumes(); len(vs) > 0 {
				out.VolumesMayBeLost = vs[0].Label.MayLose
			}
			if c.Bool("volumes") {
				for _, v := range set.Volumes() {
					out.Labels = append(out.Labels, v.Label)
				}
			}
		}
		return p.emitJSON(out)
	}
	var b strings.Builder
	row := func(k, f string, a ...any) { fmt.Fprintf(&b, "%-16s %s\n", k+":", fmt.Sprintf(f, a...)) }
	row("image", "%s", st)
	if who != nil {
		row("signed by", "%s", signerText(who, trust != nil))
	} else {
		row("signed by", "nobody (no %s.sig)", format.ManifestKey)
	}
	row("format", "seedship v%d, image id %s, written by %s", h.Version, h.ImageID, h.Tool)
	if e := h.Encryption; e != nil {
		row("encryption", "%s", encryptionText(e))
		for _, r := range e.Recipients {
			row("  recipient", "%s", r)
		}
		if sealed {
			row("  key", "not given: the source's identity, its sha256 and the capture times are sealed (give --identity FILE or --passphrase-file FILE to show them)")
		} else {
			row("  key", "opened with the identity given; the manifest's MAC matches")
		}
	}
	if sealed {
		kind := "a file"
		if h.Source.Kind == "block" {
			kind = "a block device"
		}
		row("source", "%s of %s (its path, host, serial and model are sealed)", kind, human(h.Source.Size))
	} else {
		src := h.Source.Path + " (" + h.Source.Kind
		if h.Source.Host != "" {
			src += " on " + h.Source.Host
		}
		src += ")"
		row("source", "%s", src)
		for _, kv := range [][2]string{{"serial", h.Source.Serial}, {"wwn", h.Source.WWN}, {"model", h.Source.Model}} {
			if kv[1] != "" {
				row("  "+kv[0], "%s", kv[1])
			}
		}
		for _, id := range h.Source.ByID {
			row("  by-id", "%s", id)
		}
	}
	row("size", "%s (%d bytes)", human(h.Size), h.Size)
	if sealed {
		row("sha256", "sealed")
	} else {
		row("sha256", "%s", h.SHA256)
	}
	row("chunks", "%d × %s, %d zero (%s not stored), block digests every %s", h.Chunks, human(int64(h.ChunkSize)),
		h.ZeroChunks, human(int64(h.ZeroChunks)*int64(h.ChunkSize)), human(int64(h.BlockSize)))
	ratio := 0.0
	if h.Size > 0 {
		ratio = 100 * float64(h.StoredBytes) / float64(h.Size)
	}
	row("stored", "%s in %d segment(s), %.1f%% of the source", human(h.StoredBytes), len(m.Segments), ratio)
	if g, ok := m.Geometry(); ok {
		row("parity", "Reed-Solomon %d+%d: %s in %d segment(s), %.1f%% overhead; any %d damaged or lost segment(s) of each stripe of %d can be rebuilt",
			g.K, g.M, human(h.ParityBytes), len(m.Parity), 100*overhead(h), g.M, g.K)
		row("  copies", "manifest.ssm plus %d copies", len(m.CopyKeys()))
	} else {
		row("parity", "none (damage is detected but cannot be repaired)")
	}
	if h.Compression.Codec == "zstd" {
		row("compression", "zstd level %d (%s)", h.Compression.Level, h.Compression.Encoder)
	} else {
		row("compression", "none")
	}
	if sealed {
		row("captured", "sealed")
	} else {
		row("captured", "%s to %s (%s)", h.CaptureStart.Format(time.RFC3339), h.CaptureEnd.Format(time.RFC3339),
			h.CaptureEnd.Sub(h.CaptureStart).Round(time.Millisecond))
	}
	row("manifest sha256", "%s", hex.EncodeToString(m.Hash[:]))
	if set != nil {
		row("volumes", "%s", volumesLine(set))
		for _, v := range set.Volumes() {
			row("  volume", "%d of %d: %s, %d file(s), %s", v.Volume, set.Count(), v.Loc, v.Files, human(v.Bytes))
		}
	}
	if m.Unsealed() {
		row("checked", "the manifest's checksum and MAC only; no chunk data was read (run 'seedship verify' for that)")
	} else {
		row("checked", "the manifest's checksum only; no chunk data was read (run 'seedship verify' for that)")
	}
	if set != nil && c.Bool("volumes") {
		for _, v := range set.Volumes() {
			b.WriteString("\n" + labelText(&v.Label))
		}
	}
	if !p.quiet {
		fmt.Fprint(p.out, b.String())
	}
	return nil
}

// overhead is parity bytes per stored data byte.
func overhead(h format.Header) float64 {
	if h.StoredBytes == 0 {
		return 0
	}
	return float64(h.ParityBytes) / float64(h.StoredBytes)
}
