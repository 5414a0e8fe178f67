package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/device"
	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/sign"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/verify"
)

func verifyCommand() *cli.Command {
	image := imageOperand("IMAGE", "image")
	return variadicCommand(command{
		name:     "verify",
		usage:    "check a seed image, or a device against it",
		operands: []operand{image},
		help: `
Without --device: checks every stored byte of IMAGE, in parallel, in one of two depths.
  deep       every chunk is opened (decrypted, decompressed) and checked against its hash in the
             manifest and its block digests, which proves its stored bytes too; with every
             segment's header, index and footer, every parity row and every manifest copy.
             Only a deep check shows that the image restores its source.
  transport  every stored byte against its stored digest (kept in the segment indexes, which the
             manifest authenticates), every structure, parity row and manifest copy; no chunk is
             opened, so it needs no key. It says "transport integrity only: the chunks were not
             decrypted and checked against their source digests".
The default is deep on a plain image and on an encrypted one given its key (--identity FILE or
--passphrase-file FILE), and transport-only on an encrypted image without its key. --transport
asks for transport-only on any image; --deep insists on the deep check (exit 2 if the image is
encrypted and no key is given). Each bad chunk is listed with its index, its source byte range and
its stored byte range in its segment.

With --device DEV: checks that DEV (a block device or file) matches the image block for block,
using the manifest's hashes and the segment indexes' block digests only, and recomputes the
whole-source SHA-256. An encrypted image needs its key for this (its chunk hashes are keyed and its
source SHA-256 sealed): without --identity or --passphrase-file it is refused (exit 2).

With --receipt FILE (needs --device): writes a restore receipt to FILE, atomically, whatever the
result: JSON binding the image (its manifest SHA-256 and id), the target's identity (path, size,
device number, serial, WWN, /dev/disk/by-id, or a file's inode; the kernel's write counters and
boot id), the result (pass or fail, the chunks checked, the whole-source SHA-256 recomputed from
the target), the seedship version and the time. seedship extend takes it as the evidence that the
target holds the image, so the replication product may skip its full resync.
With --sign-key KEY (an OpenSSH private key) the receipt is also signed, pass or fail: a detached
SSH signature of its exact bytes, in namespace seedship-receipt, written atomically beside it as
FILE.sig (an unsigned receipt replaces an older FILE.sig by removing it). extend --trust requires
it; anyone can check it with OpenSSH alone:
   ssh-keygen -Y verify -f allowed_signers -I ops@example.com -n seedship-receipt -s FILE.sig < FILE

A digest-only image (capture --digest-only) holds no chunk data: without --device, verify checks
every structure it holds (manifest and copies, segment headers, frame headers, indexes with their
chunk hashes and block digests, footers) and says it holds digests only; with --device DEV it
proves DEV matches it (every chunk hash, every 64 KiB block digest, the whole-source SHA-256) or
names each changed chunk and its changed 64 KiB blocks (seedship diff lists them as ranges).

For an image with parity (capture --parity), each damaged stripe is reported with whether it can be
rebuilt; --repair rewrites the damaged segments in place, atomically, and verifies the result.
--repair needs no key: a rebuilt frame is accepted when it matches its stored digest.
Exit 0 when everything is (now) intact, 3 when anything is damaged or beyond repair.

Courier volumes (capture SOURCE DEST1 DEST2 ...): give the volumes at hand in any order. A volume
of another image, the same volume twice or a stale volume of an earlier capture is refused (exit
2); a missing volume shows as missing segments, with whether parity rebuilds them. --repair does
not write to volumes; restore rebuilds what parity can on the fly.

Examples:
   seedship verify /mnt/courier/seed
   seedship verify --identity /root/seed-key.txt /mnt/courier/seed
   seedship verify --transport s3://bucket/seed
   seedship verify --device /dev/sdc1 /mnt/courier/seed
   seedship verify --device /dev/sdc1 --receipt /root/sdc1.receipt /mnt/courier/seed
   seedship verify --device /dev/sdc1 --receipt /root/sdc1.receipt --sign-key /root/.ssh/id_ed25519 /mnt/courier/seed
   seedship verify --device /dev/sdb /root/sdb-digests`,
		flags: append([]cli.Flag{
			&cli.StringFlag{Name: "device", Usage: "check this device or file against the image"},
			&cli.BoolFlag{Name: "deep", Usage: "open every chunk (decrypt, decompress) and check it against its source digests: the default on a plain image and with a key; an encrypted image needs --identity or --passphrase-file"},
			&cli.BoolFlag{Name: "transport", Usage: "check transport integrity only: every stored byte against its stored digest, structures, parity and manifest copies, opening no chunk (needs no key; the default on an encrypted image without one)"},
			&cli.StringFlag{Name: "receipt", Usage: "with --device: write a restore receipt (JSON) to this file, pass or fail, for seedship extend"},
			receiptSignKeyFlag(), signPassphraseFlag(),
			&cli.BoolFlag{Name: "repair", Usage: "rewrite damaged or missing segments and manifest copies from parity (atomically), then verify again"},
			&cli.StringFlag{Name: "fallback", Usage: "with --repair: a second copy of the same image (directory or s3://) to fetch what parity cannot rebuild from"},
			workersFlag("parallel", ""),
			trustFlag(),
		}, identityFlags()...),
		run: runVerify,
	}, nil, image, nil)
}

// findingJSON is one finding in --json output.
type findingJSON struct {
	Chunk   *uint64 `json:"chunk,omitempty"`
	Offset  int64   `json:"offset,omitempty"`
	Length  int64   `json:"length,omitempty"`
	Segment uint32  `json:"segment"`
	// StoredOffset and StoredLength locate a damaged chunk's frame in
	// its data segment: the stored bytes concerned.
	StoredOffset int64  `json:"stored_offset,omitempty"`
	StoredLength int64  `json:"stored_length,omitempty"`
	Error        string `json:"error"`
}

// stripeJSON is one damaged stripe in --json output.
type stripeJSON struct {
	Stripe     uint32   `json:"stripe"`
	Damaged    []string `json:"damaged"`
	Rows       int      `json:"rows"`
	LostRows   []int    `json:"lost_rows,omitempty"`
	Repairable bool     `json:"repairable"`
	LostChunks []uint64 `json:"lost_chunks,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// verifyJSON is verify's --json output.
type verifyJSON struct {
	Image   string `json:"image"`
	Device  string `json:"device,omitempty"`
	Receipt string `json:"receipt,omitempty"` // the restore receipt written (verify --device --receipt)
	// ReceiptSignature is the receipt's signature file written (--sign-key).
	ReceiptSignature string `json:"receipt_signature,omitempty"`
	OK               bool   `json:"ok"`
	// Depth is how deep the check of an image went: "deep" (every
	// chunk opened and checked against its source digests) or
	// "transport" (stored bytes only); absent for --device.
	Depth string `json:"depth,omitempty"`
	// Note is the transport check's "transport integrity only: …".
	Note string `json:"note,omitempty"`
	// Encrypted: the image is encrypted (spec §11).
	Encrypted    bool         `json:"encrypted,omitempty"`
	Repairable   bool         `json:"repairable"`
	Repaired     []string     `json:"repaired,omitempty"`
	Lost         []lostJSON   `json:"lost,omitempty"`
	Stripes      []stripeJSON `json:"stripes,omitempty"`
	FoundBefore  int          `json:"found_before_repair,omitempty"`
	ChunksOK     uint64       `json:"chunks_ok"`
	ZeroChunks   uint64       `json:"zero_chunks"`
	BytesChecked int64        `json:"bytes_checked"`
	// StoredChecked and StoredBytes count the frames, and their stored
	// bytes, that matched their stored digests (a check of an image).
	StoredChecked uint64        `json:"stored_checked,omitempty"`
	StoredBytes   int64         `json:"stored_bytes_checked,omitempty"`
	Checked       []string      `json:"checked"`                 // the checks that ran over everything they cover
	SourceSHA256  string        `json:"source_sha256,omitempty"` // recomputed from the device (verify --device)
	Findings      []findingJSON `json:"findings"`
	Seconds       float64       `json:"seconds"`
	Signer        string        `json:"signer,omitempty"` // who signed, checked against --trust

	// DigestOnly: the image holds hashes and block digests, no data;
	// Digests counts the chunks whose digest entries were checked.
	DigestOnly bool          `json:"digest_only,omitempty"`
	Digests    uint64        `json:"digests,omitempty"`
	Changed    []changedJSON `json:"changed,omitempty"` // verify --device: the changed ranges of each differing chunk
}

// changedJSON is one changed range of a device in --json output.
type changedJSON struct {
	Chunk   uint64 `json:"chunk"`
	Offset  int64  `json:"offset"`
	Length  int64  `json:"length"`
	Located bool   `json:"located"` // false: the whole chunk (its blocks could not be compared)
}

func changedOf(rep *verify.Report) []changedJSON {
	var out []changedJSON
	for _, r := range rep.Changed {
		out = append(out, changedJSON{Chunk: r.Chunk, Offset: r.Offset, Length: r.Length, Located: r.Located})
	}
	return out
}

func findingsJSON(rep *verify.Report) []findingJSON {
	out := []findingJSON{}
	for _, f := range rep.Findings {
		j := findingJSON{Segment: f.Segment, Error: f.String()}
		if f.IsChunk {
			idx := f.Chunk
			j.Chunk, j.Offset, j.Length = &idx, f.Offset, f.Length
			j.StoredOffset, j.StoredLength = f.FrameOffset, f.FrameLength
		}
		out = append(out, j)
	}
	return out
}

func stripesJSON(rep *verify.Report) []stripeJSON {
	var out []stripeJSON
	for _, s := range rep.Stripes {
		j := stripeJSON{Stripe: s.Stripe, Damaged: s.Damaged, Rows: s.Rows, LostRows: s.LostRows, Repairable: s.Repairable, LostChunks: s.LostChunks}
		if s.Err != nil {
			j.Error = strings.ReplaceAll(s.Err.Error(), "\n", "; ")
		}
		out = append(out, j)
	}
	return out
}

func runVerify(c *cli.Context, args []string) error {
	dev := c.String("device")
	if c.String("receipt") != "" && dev == "" {
		return usagef("verify: --receipt records a read-back of a device: add --device DEV")
	}
	if c.IsSet("sign-key") && c.String("receipt") == "" {
		return usagef("verify: --sign-key signs the restore receipt: add --device DEV --receipt FILE (an image is signed by capture --sign-key)")
	}
	// Before anything is read: a wrong key or passphrase is refused now,
	// not after an hour of reading the device back.
	receiptSigner, err := loadSigner(c)
	if err != nil {
		return err
	}
	if dev != "" {
		if err := needsLinux(runtime.GOOS, "seedship verify --device"); err != nil {
			return err
		}
		if err := checkDeviceLocation("device", dev); err != nil {
			return err
		}
	}
	if err := checkFallback(c); err != nil {
		return err
	}
	if c.Bool("deep") && c.Bool("transport") {
		return usagef("verify: --deep and --transport ask for opposite checks: give one")
	}
	if dev != "" && c.Bool("transport") {
		return usagef("verify: --transport checks an image's stored bytes, --device compares a device with the image: drop one")
	}
	trust, err := loadTrust(c)
	if err != nil {
		return err
	}
	ids, err := identitiesOf(c)
	if err != nil {
		return err
	}
	st, set, err := openImageStore(c, args)
	if err != nil {
		return err
	}
	if set != nil && c.Bool("repair") {
		return usagef("verify: --repair rewrites an image in place and does not write to courier volumes: restore rebuilds from parity on the fly")
	}
	p := newPrinter(c, "verify")
	if dev != "" {
		if c.Bool("repair") {
			return usagef("verify: --repair repairs an image, not a device: drop --device, or restore again")
		}
		// One read of the manifest, whose signature (--trust) is checked
		// before the device is read: a forged image's hashes are not
		// worth comparing with, and the device is compared with the very
		// manifest that was checked.
		m, who, err := engine.OpenImageKeyed(c.Context, st, trust, ids, false)
		if err != nil {
			return err
		}
		if m.Encrypted() && !m.Unsealed() {
			// Before the receipt is claimed or the device read.
			return usagef("verify --device: %s is encrypted: a device is compared with its keyed chunk hashes and sealed source SHA-256, which need its key: give --identity FILE (an age identity of one of its recipients) or --passphrase-file FILE", st)
		}
		if trust != nil {
			p.summary("signed by %s", signerText(who, true))
		}
		return verifyDevice(c, p, st, m, dev, receiptSigner)
	}
	if trust != nil {
		// Before the image is read or repaired (the check itself runs
		// again inside Check, on the manifest it reads).
		who, err := engine.Signature(c.Context, st, trust)
		if err != nil {
			return err
		}
		p.summary("signed by %s", signerText(who, true))
	}
	if c.String("fallback") != "" && !c.Bool("repair") {
		return usagef("verify: --fallback is for --repair: add --repair")
	}
	fb, err := openFallback(c)
	if err != nil {
		return err
	}
	start := time.Now()
	res, err := engine.CheckImage(c.Context, st, engine.CheckOptions{
		Fallback:   fb,
		Repair:     c.Bool("repair"),
		Trust:      trust,
		Identities: ids,
		Deep:       c.Bool("deep"),
		Transport:  c.Bool("transport"),
		Workers:    c.Int("workers"),
		Progress:   p.progress,
		OnRepaired: func(keys []string) {
			p.endProgress()
			for _, k := range keys {
				p.summary("repaired %s", k)
			}
		},
	})
	p.endProgress()
	if c.Bool("deep") && len(ids) == 0 && errors.Is(err, format.ErrNoKey) {
		// Refused before anything was read: say what to do in verify's terms.
		return usagef("verify --deep: %s is encrypted: a deep check opens every chunk, which needs its key: give --identity FILE (an age identity of one of its recipients) or --passphrase-file FILE, or drop --deep to check transport integrity only", st)
	}
	if c.Bool("repair") {
		// Each repaired file is replaced atomically: running the same
		// repair again continues an interrupted one.
		err = canContinue(err, false)
	}
	if res == nil {
		return err
	}
	rep := res.Final()
	m := res.Manifest
	el := time.Since(start)
	out := verifyJSON{Image: st.String(), OK: rep.OK(), Depth: string(rep.Depth), Note: rep.Note(), Encrypted: m.Encrypted(),
		Repairable: rep.Repairable(m), Repaired: res.Rewritten,
		Stripes: stripesJSON(rep), ChunksOK: rep.ChunksOK, ZeroChunks: rep.ZeroChunks, BytesChecked: rep.BytesChecked,
		StoredChecked: rep.StoredChecked, StoredBytes: rep.StoredBytes,
		Checked: checkedJSON(rep), Findings: findingsJSON(rep), Seconds: el.Seconds(), DigestOnly: rep.DigestOnly, Digests: rep.Digests}
	out.Signer = signerText(res.Signer, true)
	if res.After != nil {
		out.FoundBefore = len(res.Before.Findings)
	}
	if !rep.OK() {
		out.Lost = lostRanges(m, rep.LostChunks(m))
	}
	if jerr := p.emitJSON(out); jerr != nil {
		return jerr
	}
	if !p.json {
		for _, f := range rep.Findings {
			fmt.Fprintf(p.errw, "BAD %s\n", f)
		}
		for _, s := range rep.Stripes {
			state := "repairable from parity"
			if !s.Repairable {
				state = fmt.Sprintf("BEYOND REPAIR (%d row(s) lost; chunks %v)", len(s.LostRows), s.LostChunks)
				if s.Err != nil {
					state = fmt.Sprintf("BEYOND REPAIR: %s; chunks %v", strings.ReplaceAll(s.Err.Error(), "\n", "; "), s.LostChunks)
				}
			}
			fmt.Fprintf(p.errw, "STRIPE %d: %s damaged, %d row(s) to rebuild: %s\n", s.Stripe, strings.Join(s.Damaged, ", "), s.Rows, state)
		}
	}
	if err != nil {
		if note := rep.Note(); note != "" && !p.json && engine.KindOf(err) == engine.KindIntegrity {
			// The damage was found by a transport check: say so, as
			// for a clean one.
			fmt.Fprintf(p.errw, "NOTE %s\n", note)
		}
		return err
	}
	if rep.DigestOnly {
		p.summary("verified %s: a digest-only image (hashes and block digests, no data): %d chunk digests and every structure intact, %d zero chunks, in %s%s%s\nit proves nothing about data by itself: check the disk with 'seedship verify --device DISK %s'",
			st, rep.Digests, rep.ZeroChunks, el.Round(time.Millisecond), noteLine(rep), checkedLine(rep), shellJoin(args))
		return nil
	}
	repaired := ""
	if res.After != nil {
		repaired = fmt.Sprintf(" after repairing %d file(s) (%d problem(s) found)", len(res.Rewritten), len(res.Before.Findings))
	}
	if rep.TransportOnly() {
		p.summary("verified %s%s: transport check: %d stored chunks ok (%s of stored bytes matched their stored digests), %d zero chunks, %s of source in %s (%s)%s%s",
			st, repaired, rep.ChunksOK, human(rep.StoredBytes), rep.ZeroChunks, human(m.Header.Size), el.Round(time.Millisecond), rate(m.Header.Size, el), noteLine(rep), checkedLine(rep))
		return nil
	}
	p.summary("verified %s%s: deep check: %d stored chunks ok, %d zero chunks, %s checked in %s (%s)%s",
		st, repaired, rep.ChunksOK, rep.ZeroChunks, human(m.Header.Size), el.Round(time.Millisecond), rate(m.Header.Size, el), checkedLine(rep))
	return nil
}

// noteLine is the report's note (the transport check's "transport
// integrity only: …") on a line of its own, "" when it has none.
func noteLine(rep *verify.Report) string {
	if n := rep.Note(); n != "" {
		return "\n" + n
	}
	return ""
}

// verifyDevice checks a device or file against the image's hashes and,
// with --receipt, writes the restore receipt of that read-back.
func verifyDevice(c *cli.Context, p *printer, st store.Store, m *format.Manifest, dev string, signer *sign.Signer) error {
	var rf *receiptFile
	var err error
	if path := c.String("receipt"); path != "" {
		// Claimed before the read-back, so a receipt that cannot be
		// written is refused before an hour of reading, not after.
		if rf, err = createReceiptFile(path, dev, signer); err != nil {
			return err
		}
		defer rf.abandon()
	}
	meter := engine.NewMeter(m.Header.Size, p.progress)
	start := time.Now()
	rep, err := readBack(c.Context, m, st.String(), dev, rf, verify.DeviceOptions{Workers: c.Int("workers"), OnProgress: meter.Add, Store: st})
	p.endProgress()
	if err != nil {
		return err
	}
	el := time.Since(start)
	out := verifyJSON{Image: st.String(), Device: dev, OK: rep.OK(), Encrypted: m.Encrypted(), ChunksOK: rep.ChunksOK,
		ZeroChunks: rep.ZeroChunks, BytesChecked: rep.BytesChecked, Checked: checkedJSON(rep), SourceSHA256: rep.SourceSHA256,
		Findings: findingsJSON(rep), Seconds: el.Seconds(), Changed: changedOf(rep), DigestOnly: m.Header.RequiresFeature(format.FeatureDigestOnly)}
	if rf != nil {
		out.Receipt = rf.path
		if rf.signer != nil {
			out.ReceiptSignature = rf.sigPath()
		}
	}
	if err := p.emitJSON(out); err != nil {
		return err
	}
	what := dev + " against " + st.String()
	if !p.json {
		for _, f := range rep.Unchecked {
			fmt.Fprintf(p.errw, "NOTE the image is damaged: %s (its chunks were checked against their chunk hashes, not their block digests; run 'seedship verify' on the image)\n", f)
		}
	}
	if !rep.OK() {
		if !p.json {
			for _, f := range rep.Findings {
				fmt.Fprintf(p.errw, "BAD %s\n", f)
			}
		}
		return fmt.Errorf("%w: %s: %d chunk(s) differ (%d chunks ok)%s", engine.ErrIntegrity, what, len(rep.Findings), rep.ChunksOK, rf.wrote("; "))
	}
	sum := ""
	if rep.SourceSHA256 != "" {
		sum = "\nsource sha256 " + rep.SourceSHA256 + ", recomputed from " + dev + ", matches the image's"
	}
	p.summary("verified %s: %d stored chunks ok, %d zero chunks, %s checked in %s (%s)%s%s%s",
		what, rep.ChunksOK, rep.ZeroChunks, human(m.Header.Size), el.Round(time.Millisecond), rate(m.Header.Size, el), checkedLine(rep), sum,
		rf.wrote("\n"))
	return nil
}

// readBack reads dev back against m (verify.Device) and, when rf is not
// nil, writes the receipt of that read-back, pass or fail: also when the
// read-back did not finish, so that an older passing receipt at the same
// path never outlives a newer failed check. The error is the read-back's
// (an interrupt stays an interrupt), or the receipt's when only writing
// it failed; a device too small is an integrity failure.
func readBack(ctx context.Context, m *format.Manifest, location, dev string, rf *receiptFile, opts verify.DeviceOptions) (*verify.Report, error) {
	if rf == nil {
		rep, err := verify.Device(ctx, m, dev, opts)
		if errors.Is(err, verify.ErrDeviceTooSmall) {
			err = fmt.Errorf("%w: %w", engine.ErrIntegrity, err)
		}
		return rep, err
	}
	rep, r, err := receiptReadBack(ctx, m, location, dev, opts)
	if r == nil {
		return rep, err
	}
	if werr := rf.commit(r); werr != nil {
		return rep, errors.Join(err, werr)
	}
	if err != nil {
		return rep, fmt.Errorf("%w (receipt %s records the failure)", err, rf.path)
	}
	if !r.Passed() && rep.OK() {
		// Every chunk matched but the receipt is no pass (the target
		// changed during the read-back): the evidence is not there.
		err = fmt.Errorf("%w: %s: %s (receipt %s records the failure)", engine.ErrIntegrity, dev, r.Result.Reason, rf.path)
	}
	return rep, err
}

// receiptReadBack reads dev back against m, describing the target before
// and after, and returns the report, the receipt of the read-back (nil
// when the target could not be described first, and nothing was read) and
// the read-back's error, a device too small being an integrity failure.
func receiptReadBack(ctx context.Context, m *format.Manifest, location, dev string, opts verify.DeviceOptions) (*verify.Report, *verify.Receipt, error) {
	before, err := verify.DescribeTarget(dev)
	if err != nil {
		return nil, nil, targetError(dev, err)
	}
	started := time.Now()
	rep, err := verify.Device(ctx, m, dev, opts)
	if errors.Is(err, verify.ErrDeviceTooSmall) {
		err = fmt.Errorf("%w: %w", engine.ErrIntegrity, err)
	}
	in := verify.ReceiptInput{Manifest: m, Location: location, Before: before, Report: rep, Err: err,
		Tool: "seedship " + version, Started: started}
	if after, aerr := verify.DescribeTarget(dev); aerr == nil {
		in.After = &after
	}
	in.Host, _ = os.Hostname()
	in.Finished = time.Now()
	return rep, verify.NewReceipt(in), err
}

// targetError classifies the failure to describe a target: a path that
// is missing or of the wrong kind is bad input.
func targetError(dev string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, device.ErrNotBlockOrFile) {
		return fmt.Errorf("%w: target %s: %w", engine.ErrBadInput, dev, err)
	}
	return fmt.Errorf("target %s: %w", dev, err)
}

// receiptFile is a receipt being written: a temporary file next to its
// path, renamed over it once the receipt is complete and synced; with a
// signer, also the receipt's signature (path.sig), renamed into place
// just before the receipt.
type receiptFile struct {
	path   string
	tmp    *os.File
	signer *sign.Signer // nil: the receipt is not signed
	sigTmp *os.File     // the signature's temporary file, with a signer
	done   bool
}

// createReceiptFile checks the receipt path (and, with a signer, its
// signature's path) and creates the temporary files. The path must not
// name the target, nor anything but a regular file, and its directory
// must exist: each is bad input.
func createReceiptFile(path, dev string, signer *sign.Signer) (*receiptFile, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: receipt %s: %s", engine.ErrBadInput, path, fmt.Sprintf(format, args...))
	}
	for _, p := range []string{path, verify.ReceiptSignatureFile(path)} {
		if fi, err := os.Stat(p); err == nil {
			if !fi.Mode().IsRegular() {
				return nil, bad("%s exists and is not a regular file (%s): name a new file, or an old receipt to replace", p, fi.Mode().Type())
			}
			if di, err := os.Stat(dev); err == nil && os.SameFile(fi, di) {
				return nil, bad("%s is the device being checked: name another file", p)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, bad("%v", err)
		}
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-receipt-*")
	if err != nil {
		return nil, bad("cannot create a file in %s (%v): create the directory, or name a writable one", dir, err)
	}
	rf := &receiptFile{path: path, tmp: tmp, signer: signer}
	if signer != nil {
		if rf.sigTmp, err = os.CreateTemp(dir, ".tmp-receipt-sig-*"); err != nil {
			rf.abandon()
			return nil, bad("cannot create a file in %s (%v): create the directory, or name a writable one", dir, err)
		}
	}
	return rf, nil
}

// sigPath is the path of the receipt's signature.
func (rf *receiptFile) sigPath() string { return verify.ReceiptSignatureFile(rf.path) }

// commit writes r to the temporary file, syncs it, renames it over the
// receipt path and syncs the directory. With a signer it first signs the
// receipt's exact bytes and renames the signature into place: a crash
// between the two renames leaves a receipt and a signature that do not
// match, which extend --trust refuses, never an older receipt passing
// for a newer one. Without one it removes a signature left by an earlier
// signed receipt at the same path, which would no longer match.
func (rf *receiptFile) commit(r *verify.Receipt) error {
	b, err := r.Marshal()
	if err != nil {
		return err
	}
	if rf.signer != nil {
		sig, err := rf.signer.SignNamespace(b, sign.ReceiptNamespace)
		if err != nil {
			return fmt.Errorf("sign receipt %s: %w", rf.path, err)
		}
		if err := writeSynced(rf.sigTmp, sig); err != nil {
			return fmt.Errorf("write the signature of receipt %s: %w", rf.path, err)
		}
	}
	if err := writeSynced(rf.tmp, b); err != nil {
		return fmt.Errorf("write receipt %s: %w", rf.path, err)
	}
	if rf.signer != nil {
		if err := os.Rename(rf.sigTmp.Name(), rf.sigPath()); err != nil {
			return fmt.Errorf("write the signature of receipt %s: %w", rf.path, err)
		}
	} else if err := os.Remove(rf.sigPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the old signature %s of receipt %s: %w", rf.sigPath(), rf.path, err)
	}
	if err := os.Rename(rf.tmp.Name(), rf.path); err != nil {
		return fmt.Errorf("write receipt %s: %w", rf.path, err)
	}
	rf.done = true
	if d, err := os.Open(filepath.Dir(rf.path)); err == nil {
		defer d.Close()
		if err := d.Sync(); err != nil {
			return fmt.Errorf("sync the directory of receipt %s: %w", rf.path, err)
		}
	}
	return nil
}

// writeSynced writes b to f, syncs and closes it.
func writeSynced(f *os.File, b []byte) error {
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// abandon removes the temporary files of a receipt that was not
// committed (after a commit, none is left).
func (rf *receiptFile) abandon() {
	if rf == nil || rf.done {
		return
	}
	for _, f := range []*os.File{rf.tmp, rf.sigTmp} {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
}

// wrote is sep followed by "receipt PATH written" (and its signature)
// once the receipt is, "" otherwise (also for a nil receiptFile).
func (rf *receiptFile) wrote(sep string) string {
	if rf == nil || !rf.done {
		return ""
	}
	if rf.signer != nil {
		return sep + "receipt " + rf.path + " written, signed by " + rf.signer.String() + " in " + rf.sigPath()
	}
	return sep + "receipt " + rf.path + " written"
}

// checkedJSON lists the checks a report says ran, for --json ([] when
// none is reported).
func checkedJSON(rep *verify.Report) []string {
	out := []string{}
	for _, k := range rep.Checked {
		out = append(out, string(k))
	}
	return out
}

// checkedLine is the human line naming the checks that ran, "" when the
// report names none.
func checkedLine(rep *verify.Report) string {
	if len(rep.Checked) == 0 {
		return ""
	}
	words := make([]string, len(rep.Checked))
	for i, k := range rep.Checked {
		words[i] = strings.ReplaceAll(string(k), "-", " ")
	}
	return "\nchecked: " + strings.Join(words, ", ")
}
