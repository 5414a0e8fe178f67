package verify

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/seedship/seedship/format"
)

// A restore receipt is the evidence that a target device was read back
// in full and matched an image: the image's manifest hash, the target's
// identity, the result with what was checked, the tool and the time. The
// CLI writes it (verify --device DEV --receipt FILE) and extend requires
// a passing one for the same image and target before it lets a
// replication product skip its full resync.
//
// A receipt is signed, when verify is given --sign-key, by a detached SSH
// signature of its exact bytes in the file beside it
// ([ReceiptSignatureFile]), made for the namespace "seedship-receipt"
// (sign.ReceiptNamespace), never for a manifest's: the receipt itself
// has no signature field, and the bytes checked are the bytes read. This
// package decodes receipts strictly and refuses any field it does not
// know, so a receipt never carries a claim, such as an inline signature,
// that nothing checks.

// Receipt constants.
const (
	// ReceiptFormat is the value of a receipt's "format" field.
	ReceiptFormat = "seedship-restore-receipt"
	// ReceiptVersion is the version of the receipt layout this package
	// writes and reads.
	ReceiptVersion = 1
	// MaxReceiptSize bounds what [ParseReceipt] accepts: a receipt is a
	// few KiB.
	MaxReceiptSize = 1 << 20
	// maxReceiptFindings bounds the findings a receipt lists; the count
	// is always complete.
	maxReceiptFindings = 20
)

// ReceiptSignatureFile is the path of the signature of the receipt at
// path: path + ".sig", so that ssh-keygen -Y verify -n seedship-receipt
// -s FILE.sig < FILE checks it with OpenSSH alone.
func ReceiptSignatureFile(path string) string { return path + ".sig" }

// Receipt statuses.
const (
	// StatusPass: every chunk and the whole-source SHA-256 of the target
	// matched the image.
	StatusPass = "pass"
	// StatusFail: the target differs from the image, or the read-back
	// did not finish (Result.Reason says which).
	StatusFail = "fail"
)

// ErrBadReceipt is returned (wrapped, naming what is wrong) by
// [ParseReceipt] for anything that is not a well-formed receipt.
var ErrBadReceipt = errors.New("verify: not a valid restore receipt")

// Receipt is a restore receipt; see [NewReceipt] and [ParseReceipt].
type Receipt struct {
	Format   string        `json:"format"`  // ReceiptFormat
	Version  int           `json:"version"` // ReceiptVersion
	Image    ReceiptImage  `json:"image"`
	Target   Target        `json:"target"`
	Result   ReceiptResult `json:"result"`
	Tool     string        `json:"tool"`           // e.g. "seedship 0.1.0"
	Host     string        `json:"host,omitempty"` // the system that read the target back
	Started  time.Time     `json:"started"`        // UTC, when the read-back started
	Finished time.Time     `json:"finished"`       // UTC, when it ended and the target was described again
}

// ReceiptImage names the image a receipt checked the target against.
type ReceiptImage struct {
	// Location is where the image was read from, as the operator named
	// it: for the record only (copies of an image are the same image).
	Location string `json:"location"`
	// ID is the image id (format.Header.ImageID).
	ID string `json:"id"`
	// ManifestSHA256 is the SHA-256 of the manifest's bytes (the
	// manifest trailer hash): it binds every chunk hash and the whole
	// header, seed token included.
	ManifestSHA256 string `json:"manifest_sha256"`
	Size           int64  `json:"size"`          // source bytes
	Chunks         uint64 `json:"chunks"`        // chunks in the image
	SourceSHA256   string `json:"source_sha256"` // the manifest's whole-source SHA-256
}

// Target is the identity of a restore target: a block device or a regular
// file. Block devices are identified by device number, size and what
// sysfs and udev tell (serial, WWN, /dev/disk/by-id); regular files by
// device and inode, size and times. BootID and Writes let a later check
// tell whether the target was written since: see [Target.WrittenSince].
type Target struct {
	Path     string `json:"path"`     // as the operator named it
	Resolved string `json:"resolved"` // with symbolic links resolved
	Kind     string `json:"kind"`     // "block" or "file"
	Size     int64  `json:"size"`     // bytes

	// Block devices.
	Major       uint32   `json:"major,omitempty"`
	Minor       uint32   `json:"minor,omitempty"`
	Name        string   `json:"name,omitempty"` // kernel name, e.g. "sdc1"
	Serial      string   `json:"serial,omitempty"`
	WWN         string   `json:"wwn,omitempty"`
	Model       string   `json:"model,omitempty"`
	ByID        []string `json:"by_id,omitempty"`
	BackingFile string   `json:"backing_file,omitempty"` // a loop device's file
	// Writes is the kernel's count of sectors written and discarded
	// (fields 7 and 14 of /sys/dev/block/MAJ:MIN/stat), read after
	// flushing the page cache: it moves with every write, and is only
	// comparable within one boot (BootID).
	Writes string `json:"writes,omitempty"`

	// Regular files.
	FileDev   uint64 `json:"file_dev,omitempty"`
	FileInode uint64 `json:"file_inode,omitempty"`
	MTimeNS   int64  `json:"mtime_ns,omitempty"`
	CTimeNS   int64  `json:"ctime_ns,omitempty"`

	// BootID is the kernel's boot id (/proc/sys/kernel/random/boot_id)
	// when the target was described.
	BootID string `json:"boot_id,omitempty"`
}

// Target kinds.
const (
	KindBlock = "block"
	KindFile  = "file"
)

// ReceiptResult is the outcome of the read-back.
type ReceiptResult struct {
	Status string `json:"status"`           // StatusPass or StatusFail
	Reason string `json:"reason,omitempty"` // why it failed, one line
	// Differs says the failure is a difference between the target and
	// the image (an integrity finding), not a read-back that did not
	// finish.
	Differs         bool        `json:"differs,omitempty"`
	ChunksOK        uint64      `json:"chunks_ok"`
	ZeroChunks      uint64      `json:"zero_chunks"`
	ChunksDiffering uint64      `json:"chunks_differing"`
	BytesChecked    int64       `json:"bytes_checked"`
	Checked         []CheckKind `json:"checked"`
	// SourceSHA256 is the whole-source SHA-256 recomputed from the
	// target's bytes (hex), when CheckSourceSHA256 ran.
	SourceSHA256 string `json:"source_sha256,omitempty"`
	// Findings are the first findings, one line each.
	Findings []string `json:"findings,omitempty"`
}

// ReceiptInput is what [NewReceipt] binds together.
type ReceiptInput struct {
	Manifest *format.Manifest
	Location string  // the image location, as named
	Before   Target  // the target described before the read-back
	After    *Target // and after it; nil when it could not be described
	Report   *Report // from [Device]; nil when it returned no report
	Err      error   // the error [Device] returned, if any
	Tool     string
	Host     string
	Started  time.Time
	Finished time.Time
}

// NewReceipt builds the receipt of one read-back of a target. The result
// is a pass only when Device returned no error, its report has no
// findings, every chunk was checked (stored or zero), the chunk hashes and
// the whole-source SHA-256 checks both ran over everything, the SHA-256
// it recomputed equals the manifest's, and the target described after the
// read-back is the target described before it, unwritten. Anything else is
// a fail with a reason. The receipt's Target is the description after the
// read-back (before it, when that failed).
func NewReceipt(in ReceiptInput) *Receipt {
	r := &Receipt{
		Format: ReceiptFormat, Version: ReceiptVersion,
		Image:  ImageOf(in.Manifest, in.Location),
		Target: in.Before, Tool: in.Tool, Host: in.Host,
		Started: in.Started.UTC(), Finished: in.Finished.UTC(),
		Result: ReceiptResult{Checked: []CheckKind{}},
	}
	if in.After != nil {
		r.Target = *in.After
	}
	res := &r.Result
	if rep := in.Report; rep != nil {
		rep.mu.Lock()
		res.ChunksOK, res.ZeroChunks, res.BytesChecked = rep.ChunksOK, rep.ZeroChunks, rep.BytesChecked
		res.Checked = append(res.Checked, rep.Checked...)
		res.SourceSHA256 = rep.SourceSHA256
		for _, f := range rep.Findings {
			if len(res.Findings) < maxReceiptFindings {
				res.Findings = append(res.Findings, oneLine(f.String()))
			}
		}
		rep.mu.Unlock()
		res.ChunksDiffering = uint64(len(rep.BadChunks()))
	}
	res.Status, res.Reason, res.Differs = judge(in, res)
	return r
}

// judge decides a receipt's status from the read-back's outcome.
func judge(in ReceiptInput, res *ReceiptResult) (status, reason string, differs bool) {
	m := in.Manifest
	fail := func(why string) (string, string, bool) { return StatusFail, oneLine(why), false }
	switch {
	case errors.Is(in.Err, ErrDeviceTooSmall):
		return StatusFail, oneLine(in.Err.Error()), true
	case in.Err != nil:
		return fail("the read-back did not finish: " + in.Err.Error())
	case in.Report == nil:
		return fail("the read-back returned no report")
	case len(res.Findings) > 0:
		return StatusFail, fmt.Sprintf("%d chunk(s) of the target differ from the image; first: %s", res.ChunksDiffering, res.Findings[0]), true
	case !slices.Contains(res.Checked, CheckChunkHashes) || !slices.Contains(res.Checked, CheckSourceSHA256):
		return fail(fmt.Sprintf("the read-back did not check both the chunk hashes and the whole-source SHA-256 (checked: %v)", res.Checked))
	case res.ChunksOK+res.ZeroChunks != m.Header.Chunks:
		return fail(fmt.Sprintf("the read-back checked %d of %d chunks", res.ChunksOK+res.ZeroChunks, m.Header.Chunks))
	case res.SourceSHA256 != m.Header.SHA256:
		return StatusFail, fmt.Sprintf("the target's whole-source SHA-256 is %s, the image's %s", res.SourceSHA256, m.Header.SHA256), true
	case in.After == nil:
		return fail("the target could not be described again after the read-back, so it cannot be shown unwritten")
	}
	if why := in.Before.Differs(*in.After); why != "" {
		return fail("the target changed during the read-back: " + why)
	}
	if why := in.Before.WrittenSince(*in.After); why != "" {
		return fail("the target changed during the read-back: " + why)
	}
	return StatusPass, "", false
}

// ImageOf is the receipt's description of the image of manifest m, read
// from location.
func ImageOf(m *format.Manifest, location string) ReceiptImage {
	return ReceiptImage{Location: location, ID: m.Header.ImageID, ManifestSHA256: hex.EncodeToString(m.Hash[:]),
		Size: m.Header.Size, Chunks: m.Header.Chunks, SourceSHA256: m.Header.SHA256}
}

// Passed reports whether the receipt's result is a pass.
func (r *Receipt) Passed() bool { return r.Result.Status == StatusPass }

// Marshal encodes the receipt as indented JSON with a final newline.
func (r *Receipt) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("verify: encoding receipt: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseReceipt decodes a receipt strictly: one JSON object of at most
// MaxReceiptSize bytes, with no unknown fields, the known format and
// version, and fields that are well formed (hex hashes of the right
// length, a known status and kind, times set, counts that add up for a
// pass). It does not say whether the receipt fits an image or a target:
// that is the caller's check. Errors are one line and wrap
// [ErrBadReceipt].
func ParseReceipt(data []byte) (*Receipt, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadReceipt, fmt.Sprintf(format, args...))
	}
	if len(data) > MaxReceiptSize {
		return nil, bad("%d bytes, more than a receipt's %d", len(data), MaxReceiptSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var r Receipt
	if err := dec.Decode(&r); err != nil {
		return nil, bad("%s", oneLine(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, bad("data after the receipt's JSON object")
	}
	if r.Format != ReceiptFormat {
		return nil, bad("format is %q, want %q", r.Format, ReceiptFormat)
	}
	if r.Version != ReceiptVersion {
		return nil, bad("version %d: this seedship reads version %d (use the seedship that wrote it, or verify again)", r.Version, ReceiptVersion)
	}
	if err := r.validate(); err != nil {
		return nil, bad("%v", err)
	}
	return &r, nil
}

// validate checks the fields of a decoded receipt.
func (r *Receipt) validate() error {
	if err := checkHex("image.manifest_sha256", r.Image.ManifestSHA256, 32); err != nil {
		return err
	}
	if err := checkHex("image.id", r.Image.ID, 16); err != nil {
		return err
	}
	if err := checkHex("image.source_sha256", r.Image.SourceSHA256, 32); err != nil {
		return err
	}
	if r.Image.Size < 0 {
		return fmt.Errorf("image.size %d is negative", r.Image.Size)
	}
	t := r.Target
	switch {
	case t.Path == "":
		return errors.New("target.path is missing")
	case t.Kind != KindBlock && t.Kind != KindFile:
		return fmt.Errorf("target.kind is %q, want %q or %q", t.Kind, KindBlock, KindFile)
	case t.Size < 0:
		return fmt.Errorf("target.size %d is negative", t.Size)
	case r.Started.IsZero() || r.Finished.IsZero():
		return errors.New("started or finished time is missing")
	case r.Finished.Before(r.Started):
		return fmt.Errorf("finished %s is before started %s", r.Finished.Format(time.RFC3339), r.Started.Format(time.RFC3339))
	}
	res := r.Result
	switch res.Status {
	case StatusFail:
		return nil
	case StatusPass:
	default:
		return fmt.Errorf("result.status is %q, want %q or %q", res.Status, StatusPass, StatusFail)
	}
	// A pass must say that it checked everything, in numbers that add up.
	switch {
	case res.Reason != "" || res.Differs || res.ChunksDiffering != 0 || len(res.Findings) != 0:
		return errors.New("result is a pass that lists a failure")
	case !slices.Contains(res.Checked, CheckChunkHashes) || !slices.Contains(res.Checked, CheckSourceSHA256):
		return fmt.Errorf("result is a pass without both the chunk-hash and the source-sha256 checks (checked: %v)", res.Checked)
	case res.ChunksOK+res.ZeroChunks != r.Image.Chunks:
		return fmt.Errorf("result is a pass over %d of the image's %d chunks", res.ChunksOK+res.ZeroChunks, r.Image.Chunks)
	case res.BytesChecked != r.Image.Size:
		return fmt.Errorf("result is a pass over %d of the image's %d bytes", res.BytesChecked, r.Image.Size)
	case res.SourceSHA256 != r.Image.SourceSHA256:
		return fmt.Errorf("result is a pass whose recomputed SHA-256 %q is not the image's %s", res.SourceSHA256, r.Image.SourceSHA256)
	case t.Size < r.Image.Size:
		return fmt.Errorf("result is a pass on a %d-byte target for a %d-byte image", t.Size, r.Image.Size)
	}
	return nil
}

// checkHex checks that s is n bytes in lowercase hex.
func checkHex(field, s string, n int) error {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n || strings.ToLower(s) != s {
		return fmt.Errorf("%s %q is not %d lowercase hex digits", field, s, 2*n)
	}
	return nil
}

// Differs says how other is not the same target as t: "" when it is the
// same path (resolved), kind, size, device (number and identity) or file
// (device and inode). It does not look at writes: see
// [Target.WrittenSince].
func (t Target) Differs(other Target) string {
	switch {
	case t.Kind != other.Kind:
		return fmt.Sprintf("it is a %s, the receipt's target %s is a %s", other.Kind, t.Path, t.Kind)
	case t.Resolved != other.Resolved:
		return fmt.Sprintf("it is %s, the receipt names %s", other.Resolved, t.Resolved)
	case t.Size != other.Size:
		return fmt.Sprintf("it is %d bytes, the receipt's target was %d", other.Size, t.Size)
	case t.Kind == KindFile:
		if t.FileDev != other.FileDev || t.FileInode != other.FileInode {
			return fmt.Sprintf("%s is another file than the receipt's (inode %d:%d, the receipt's %d:%d)",
				other.Path, other.FileDev, other.FileInode, t.FileDev, t.FileInode)
		}
		return ""
	case t.Major != other.Major || t.Minor != other.Minor:
		return fmt.Sprintf("it is device %d:%d, the receipt's target was %d:%d", other.Major, other.Minor, t.Major, t.Minor)
	case t.Serial != other.Serial:
		return fmt.Sprintf("its serial is %q, the receipt's target's %q", other.Serial, t.Serial)
	case t.WWN != other.WWN:
		return fmt.Sprintf("its WWN is %q, the receipt's target's %q", other.WWN, t.WWN)
	case t.BackingFile != other.BackingFile:
		return fmt.Sprintf("it is a loop device over %q, the receipt's over %q", other.BackingFile, t.BackingFile)
	case len(t.ByID) > 0 && len(other.ByID) > 0 && !slices.ContainsFunc(t.ByID, func(l string) bool { return slices.Contains(other.ByID, l) }):
		return fmt.Sprintf("its /dev/disk/by-id names %v share none with the receipt's %v", other.ByID, t.ByID)
	}
	return ""
}

// WrittenSince says how now (the same target, described later) shows
// that the target may have been written since t was described: "" when
// it cannot have been, as far as the kernel tells. For a block device that
// is the same boot and unchanged write counters; for a regular file an
// unchanged mtime and ctime. A description from another boot, or without
// the counters, cannot show that nothing was written, and is reported as
// such.
func (t Target) WrittenSince(now Target) string {
	if t.Kind == KindFile {
		if t.MTimeNS != now.MTimeNS || t.CTimeNS != now.CTimeNS {
			return fmt.Sprintf("%s was modified (its mtime or ctime changed)", now.Path)
		}
		return ""
	}
	switch {
	case t.BootID == "" || now.BootID == "":
		return "the kernel's boot id is unknown, so its write counters cannot be compared"
	case t.BootID != now.BootID:
		return "the system was restarted since (another boot id), so writes in between cannot be ruled out"
	case t.Writes == "" || now.Writes == "":
		return "the kernel's write counters of " + now.Path + " are unknown"
	case t.Writes != now.Writes:
		return fmt.Sprintf("%s was written (the kernel's sectors-written/discarded counters moved from %s to %s)", now.Path, t.Writes, now.Writes)
	}
	return ""
}

// oneLine joins the lines of s with "; ".
func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }
