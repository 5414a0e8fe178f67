package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

func captureCommand() *cli.Command {
	source, dest := deviceOperand("SOURCE", "source"), imageOperand("DEST", "destination")
	return variadicCommand(command{
		name:      "capture",
		usage:     "capture a block device or image file into a seed image",
		operands:  []operand{source, dest},
		linuxOnly: true,
		help: `
Reads SOURCE (a block device such as /dev/sdb1, or a regular file) once, front to back, and
writes a seed image into DEST, a directory that must be absent or empty. Every 64 KiB block is
hashed, all-zero chunks are recorded but not stored, and the rest is zstd-compressed. The
manifest is written last: an interrupted capture never looks like a complete image.

Take the source out of service (or snapshot it) first, so it does not change while it is read:
a block device that is mounted or in use is refused unless --allow-in-use is given.

Courier drives: with several destinations DEST1 DEST2 ... (mount points of removable drives;
s3:// may be mixed in), the image is spread over them as a volume set, written in parallel. Each
volume gets a label (volume.json; print it with 'seedship label VOL'), the manifest and its
copies; with --parity K+M the shards of each stripe go to distinct volumes, so with at least K+M
volumes any M whole volumes may be lost. Each volume is capped at --volume-size (default: its
free space less 1% and 32 MiB); when all are full the capture stops (exit 1, nothing lost) and
says how to continue onto another drive. Before it reports success, every volume is synced,
dropped from the page cache and read back against the SHA-256 of every file written
(--no-readback skips that, and says so). One destination with --volume-size is a set of one
volume, which --resume can continue onto more drives.

Digest-only: with --digest-only, the image records every chunk's hash and 64 KiB block digests but
no data (about 145 MiB per TiB of non-zero data, 56 bytes per all-zero 8 MiB chunk; under 1 MiB
for a 4 GiB disk), for a disk that is shipped whole: on arrival, 'seedship verify --device DISK
DEST' proves it matches block for block, and 'seedship diff DEST DISK' names what changed. Such an
image cannot be restored or copied by seedship (copy its files with any tool).

Encryption: --recipient age1... (repeatable), --recipients-file FILE or --passphrase-file FILE
seal every stored chunk with a new key wrapped for them (age; keys made with age-keygen). The
image then holds no plaintext, no plaintext digest, no whole-source SHA-256 and no source
identity; restore, verify --deep and info's details need an --identity (or the passphrase file),
while 'seedship verify DEST' without a key still checks every stored byte and parity. An
interrupted encrypted capture resumes on this host (it keeps a resume key under
$XDG_STATE_HOME/seedship/resume until the capture finishes), or elsewhere with --identity.

Examples:
   seedship capture /dev/sdb1 /mnt/courier/seed
   seedship capture --digest-only /dev/sdb /root/sdb-digests
   seedship capture --recipients-file ops-recipients.txt /dev/sdb1 /mnt/courier/seed
   seedship capture --parity 3+1 /dev/sdb1 /mnt/d1/seed /mnt/d2/seed /mnt/d3/seed /mnt/d4/seed`,
		flags: append([]cli.Flag{
			&cli.StringFlag{Name: "chunk-size", Value: "8MiB", Usage: "chunk size, a power of two from 64KiB to 64MiB"},
			&cli.IntFlag{Name: "level", Value: engine.DefaultLevel, Usage: "zstd level, 1 fastest … 22 smallest, mapped onto klauspost/compress's four strategies (1-2 fastest, 3-5 default, 6-9 better, 10+ best); -1 stores chunks uncompressed"},
			&cli.StringFlag{Name: "segment-size", Value: "1GiB", Usage: "close a segment file after this many bytes, 64KiB to 16GiB (with several volumes the default is at most 1/16 of the smallest volume)"},
			&cli.StringFlag{Name: "parity", Usage: "Reed-Solomon parity K+M, e.g. 10+2: any M lost or damaged segments of each stripe of K can be rebuilt (segment size then defaults to 64MiB)"},
			&cli.BoolFlag{Name: "digest-only", Usage: "record the hashes and 64 KiB block digests of every chunk but no data: to check a disk shipped whole (verify --device, diff); cannot be restored"},
			&cli.BoolFlag{Name: "allow-in-use", Usage: "capture a block device even though it is mounted or in use (the image may then be inconsistent)"},
			&cli.BoolFlag{Name: "resume", Usage: "continue an interrupted capture into DEST: keeps what is stored and valid, reads the source only from where it stopped; with volumes whose drives are full, give only the new empty drive (what the full ones hold is kept on this host), or every volume of the capture plus new empty drives"},
			&cli.StringFlag{Name: "volume-size", Usage: "cap what each destination volume holds, e.g. 500GiB (at least 1MiB; never more than its free space less a margin)", DefaultText: "free space less 1% and 32 MiB"},
			&cli.BoolFlag{Name: "no-readback", Usage: "with volumes: skip reading every volume back from the drive after the capture"},
			signKeyFlag(), signPassphraseFlag(),
			workersFlag("hash/compress", " (fewer run when large chunks would not fit in memory)"),
		}, append(append(recipientFlags(), resumeIdentityFlag()), adapterFlags("capture")...)...),
		run: runCapture,
	}, []operand{source}, dest, nil)
}

// captureJSON is capture's --json output.
type captureJSON struct {
	Source    string `json:"source"`
	Dest      string `json:"dest"`
	Size      int64  `json:"size"`
	ChunkSize int    `json:"chunk_size"`
	storedJSON
	SHA256         string  `json:"sha256"`
	ManifestSHA256 string  `json:"manifest_sha256"`
	ResumedAt      int64   `json:"resumed_at,omitempty"`
	SourceRead     int64   `json:"source_bytes_read"`
	Seconds        float64 `json:"seconds"`
	BytesPerSecond float64 `json:"bytes_per_second"`
	// DigestOnly: the image records hashes and block digests, no data.
	DigestOnly bool `json:"digest_only,omitempty"`
	// Encrypted says for whom an encrypted image is (its plaintext
	// header's informative list); absent for a plaintext image.
	Encrypted *encryptedJSON `json:"encrypted,omitempty"`
	// Volumes lists each volume of a volume set with its read-back.
	Volumes []volumeJSON `json:"volumes,omitempty"`
	// VolumesMayBeLost is how many whole volumes may be lost.
	VolumesMayBeLost *int `json:"volumes_may_be_lost,omitempty"`
}

func runCapture(c *cli.Context, args []string) error {
	resume := c.Bool("resume")
	// With --resume, options not given are taken from the interrupted
	// capture; defaults apply only to fresh captures. Given values were
	// checked by checkFlags.
	given := func(name string) bool { return c.IsSet(name) || !resume }
	var chunk, seg int64
	var err error
	if given("chunk-size") {
		if chunk, err = parseSize(c.String("chunk-size")); err != nil {
			return err
		}
	}
	if c.IsSet("segment-size") || (!resume && c.String("parity") == "") {
		if seg, err = parseSize(c.String("segment-size")); err != nil {
			return err
		}
	}
	geo, err := parseParity(c.String("parity"))
	if err != nil {
		return err
	}
	level := 0
	if given("level") {
		level = c.Int("level")
	}
	digestOnly := c.Bool("digest-only")
	if digestOnly && c.IsSet("level") {
		return usagef("capture: --digest-only stores no data, so there is nothing to compress: drop --level")
	}
	// Key files are read before anything is opened: a bad one leaves
	// nothing behind.
	encrypt, ids, err := captureKeysOf(c, resume)
	if err != nil {
		return err
	}
	if digestOnly && (encrypt != nil || len(ids) > 0) {
		return usagef("capture: --digest-only images cannot be encrypted in this version: drop --digest-only, or --recipient, --recipients-file and --passphrase-file")
	}
	p := newPrinter(c, "capture")
	ac, done, err := prepareAdapterCapture(c, args)
	if done || err != nil {
		return err
	}
	opts := engine.CaptureOptions{
		ChunkSize:   int(chunk),
		Level:       level,
		SegmentSize: seg,
		Parity:      geo,
		DigestOnly:  digestOnly,
		Resume:      resume,
		Workers:     c.Int("workers"),
		Tool:        "seedship " + version,
		Progress:    p.progress,
		Encrypt:     encrypt,
		Identities:  ids,
	}
	// A wrong key path or passphrase is refused before the source is read.
	signer, err := loadSigner(c)
	if err != nil {
		return err
	}
	if signer != nil {
		opts.SignManifest = signer.Sign
	}
	// Several destinations (or one given --volume-size, or a volume to
	// continue) are a set of courier volumes; one is an image as always.
	if len(args) > 2 || c.IsSet("volume-size") || (resume && continuesVolumes(args[0], args[1])) {
		return captureVolumes(c, p, args[0], args[1:], opts)
	}
	if c.Bool("no-readback") {
		return usagef("capture: --no-readback is for courier volumes (several destinations, or --volume-size): a single destination is not read back")
	}
	// Everything is checked before DEST is created.
	if !resume {
		if err := opts.Validate(); err != nil {
			return err
		}
	}
	// Without an adapter the source is opened before DEST is created, so
	// a bad source leaves nothing behind. With one it is opened after the
	// mark: until then it may be in use (an md member, a mirror in
	// service) or not exist yet (a snapshot made at the mark).
	openSource := func() (*engine.Source, error) { return engine.OpenSourceWith(args[0], c.Bool("allow-in-use")) }
	var src *engine.Source
	if ac == nil {
		if src, err = openSource(); err != nil {
			return err
		}
		defer src.Close()
	}
	var dst store.Store
	if resume {
		dst, err = openStore(c, args[1])
	} else {
		dst, err = createStore(c, args[1])
	}
	if err != nil {
		return err
	}
	var res *engine.CaptureResult
	err = ac.run(c.Context, &opts, func(ctx context.Context) error {
		if src == nil {
			marked, err := openSource()
			if err != nil {
				return err
			}
			defer marked.Close()
			src = marked
		}
		var err error
		res, err = engine.Capture(ctx, src, dst, opts)
		return err
	})
	p.endProgress()
	if err != nil && ac != nil {
		return err
	}
	if err != nil {
		return canContinue(err, resume || holdsCheckpoint(c, dst))
	}
	h := res.Manifest.Header
	secs := max(res.Elapsed.Seconds(), 1e-9)
	if err := p.emitJSON(captureJSON{Source: args[0], Dest: dst.String(), Size: h.Size, ChunkSize: h.ChunkSize,
		storedJSON: storedOf(res.Manifest),
		SHA256:     h.SHA256, ManifestSHA256: hex.EncodeToString(res.Manifest.Hash[:]), ResumedAt: res.ResumedAt, SourceRead: res.ReadBytes,
		Seconds: secs, BytesPerSecond: float64(h.Size) / secs, DigestOnly: h.RequiresFeature(format.FeatureDigestOnly),
		Encrypted: encryptedOf(h.Encryption)}); err != nil {
		return err
	}
	par := ""
	if h.Parity != nil {
		par = fmt.Sprintf(" + %s parity %s in %d segment(s)", parityString(res.Manifest), human(h.ParityBytes), len(res.Manifest.Parity))
	}
	if res.ResumedAt > 0 {
		p.summary("resumed at byte %d: read %s of the source this time", res.ResumedAt, human(res.ReadBytes))
	}
	if h.RequiresFeature(format.FeatureDigestOnly) {
		p.summary("captured the digests of %s (%d bytes) from %s into %s: %s of hashes and block digests in %d segment(s), no data; %d of %d chunks zero, %s at %s\nsha256 %s\ncheck the disk on arrival with: seedship verify --device DISK %s",
			human(h.Size), h.Size, args[0], dst, human(h.StoredBytes), len(res.Manifest.Segments), h.ZeroChunks, h.Chunks,
			res.Elapsed.Round(time.Millisecond), rate(h.Size, res.Elapsed), h.SHA256, args[1])
		return nil
	}
	p.summary("captured %s (%d bytes) from %s into %s: stored %s in %d segment(s)%s, %d of %d chunks zero, %s at %s\nsha256 %s",
		human(h.Size), h.Size, args[0], dst, human(h.StoredBytes), len(res.Manifest.Segments), par, h.ZeroChunks, h.Chunks,
		res.Elapsed.Round(time.Millisecond), rate(h.Size, res.Elapsed), h.SHA256)
	encryptionSummary(p, h)
	if signer != nil {
		p.summary("signed with %s (%s.sig beside each manifest file)", signer, format.ManifestKey)
	}
	return nil
}

// encryptionSummary says, after a capture's summary, for whom an
// encrypted image is and that the sha256 printed above is not in it.
func encryptionSummary(p *printer, h format.Header) {
	if h.Encryption != nil {
		p.summary("encrypted for %s: the image holds no plaintext, no plaintext digest and neither this sha256 nor the source's identity; restore needs --identity (or --passphrase-file)",
			encryptedFor(h.Encryption))
	}
}

// holdsCheckpoint reports whether dst holds the checkpoint of an
// interrupted capture, which --resume continues; without one (nothing was
// stored yet) the same capture starts afresh. When dst cannot be asked,
// it assumes a checkpoint.
func holdsCheckpoint(c *cli.Context, dst store.Store) bool {
	ctx, cancel := hintContext(c)
	defer cancel()
	_, err := dst.Stat(ctx, format.CheckpointKey)
	return !errors.Is(err, store.ErrNotExist)
}

// parseParity parses "K+M" (empty: no parity).
func parseParity(s string) (*format.Geometry, error) {
	if s == "" {
		return nil, nil
	}
	ks, ms, ok := strings.Cut(s, "+")
	k, err1 := strconv.Atoi(ks)
	m, err2 := strconv.Atoi(ms)
	if !ok || err1 != nil || err2 != nil {
		return nil, usagef("bad --parity %q: use K+M, e.g. 10+2 (K data and M parity segments per stripe)", s)
	}
	g := &format.Geometry{K: k, M: m}
	if err := (format.Geometry{K: k, M: m, RowSize: format.DefaultRowSize}).Validate(); err != nil {
		return nil, usagef("bad --parity %q: %v", s, err)
	}
	return g, nil
}

// storedJSON is what an image stores, in the --json output of capture and
// info alike.
type storedJSON struct {
	Chunks      uint64 `json:"chunks"`
	ZeroChunks  uint64 `json:"zero_chunks"`
	StoredBytes int64  `json:"stored_bytes"`
	Segments    int    `json:"segments"`
	Parity      string `json:"parity,omitempty"`
	ParityBytes int64  `json:"parity_bytes,omitempty"`
}

// storedOf is what the image of m stores.
func storedOf(m *format.Manifest) storedJSON {
	h := m.Header
	return storedJSON{Chunks: h.Chunks, ZeroChunks: h.ZeroChunks, StoredBytes: h.StoredBytes, Segments: len(m.Segments),
		Parity: parityString(m), ParityBytes: h.ParityBytes}
}

// parityString renders an image's parity scheme, "" without parity.
func parityString(m *format.Manifest) string {
	g, ok := m.Geometry()
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d+%d", g.K, g.M)
}
