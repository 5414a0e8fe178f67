package verify

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
)

// Finding is one piece of damage: a [seed.Damage].
type Finding = seed.Damage

// StripeStatus says what is damaged in one parity stripe and whether
// parity can rebuild it: a [seed.StripeStatus].
type StripeStatus = seed.StripeStatus

// CheckKind names one kind of check a report's checker made, for the CLI to
// print and put in --json.
type CheckKind string

// The checks a report can list.
const (
	// CheckChunkHashes: every stored chunk opened (decrypted, decoded)
	// and matched its hash: a deep check only (or, for a device, every
	// chunk of the device matched its hash).
	CheckChunkHashes CheckKind = "chunk-hashes"
	// CheckBlockDigests: every stored chunk's 64 KiB block digests
	// matched its segment index (a deep check, or a device's blocks).
	CheckBlockDigests CheckKind = "block-digests"
	// CheckSegments: every segment header, index and footer matched the
	// manifest, and every segment its recorded size.
	CheckSegments CheckKind = "segment-structure"
	// CheckParityRows: every parity segment row, and every data segment
	// row, matched its CRC-32C, and every parity segment's rows matched
	// the rows digest of its index (parity images).
	CheckParityRows CheckKind = "parity-rows"
	// CheckStoredDigests: every stored frame's bytes (header and payload,
	// as stored: compressed, and sealed in an encrypted image) matched
	// the stored digest of its segment index (spec §11.7). It is all a
	// transport check says about the chunks; a deep check makes it on
	// the way to opening them.
	CheckStoredDigests CheckKind = "stored-digests"
	// CheckManifests: manifest.ssm and each of its copies is the
	// image's manifest (copies of another image are named, ignored).
	CheckManifests CheckKind = "manifest-copies"
	// CheckDigestEntries: every chunk of a digest-only image has a frame
	// header and a segment index entry (chunk hash, block digests) that
	// match the manifest; there is no data to check them against.
	CheckDigestEntries CheckKind = "digest-entries"
	// CheckSourceSHA256: the whole-source SHA-256 of the manifest was
	// recomputed from the device's bytes and matched.
	CheckSourceSHA256 CheckKind = "source-sha256"
	// CheckBaseDigests: a delta image's base-digest table (spec §12)
	// was read whole and matched its manifest and base.digests_sha256.
	CheckBaseDigests CheckKind = "base-digests"
)

// Depth says how far a check of an image went into its chunks.
type Depth string

// The depths of a check.
const (
	// DepthDeep: every stored chunk was opened (decrypted in an
	// encrypted image, decompressed) and checked against its chunk hash
	// and block digests (which proves its stored bytes too).
	DepthDeep Depth = "deep"
	// DepthTransport: only the stored bytes were checked, against their
	// stored digests, with every structure, parity row and manifest copy;
	// no chunk was opened, so nothing says the stored bytes decode to
	// the source (the writer could have stored the wrong ones).
	DepthTransport Depth = "transport"
)

// TransportOnlyNote is what a report of a transport check says, whenever
// chunks were not opened (spec §11.7).
const TransportOnlyNote = "transport integrity only: the chunks were not decrypted and checked against their source digests"

// Sentinel errors.
var (
	// ErrNoImage means the location holds no manifest: it is not a
	// seedship image, or its capture never finished. It is seed.ErrNoImage.
	ErrNoImage = seed.ErrNoImage
	// ErrDamaged means the image or device failed a check; the Report
	// says where.
	ErrDamaged = errors.New("verify: damage found")
)

// Report collects the outcome of a check. Its methods are safe for
// concurrent use while a check runs.
type Report struct {
	mu           sync.Mutex
	Findings     []Finding
	ChunksOK     uint64 // stored chunks that passed every check (of the kind Depth says)
	ZeroChunks   uint64 // zero chunks (checked against the manifest only, or on the device)
	BytesChecked int64  // raw bytes verified
	// Depth is how deep [Check] or [Scan] went: DepthDeep when every
	// chunk was opened, DepthTransport when only stored bytes were
	// checked. Empty for [Device], which compares a device's bytes with
	// the chunk hashes and reads no stored chunk.
	Depth Depth
	// StoredChecked counts the stored frames whose stored digest was
	// checked and matched, and StoredBytes their stored bytes (frame
	// headers and payloads), in either depth.
	StoredChecked uint64
	StoredBytes   int64
	// Stripes says, for parity images, what each damaged stripe needs
	// and whether it can be rebuilt.
	Stripes []StripeStatus
	// Checked lists what was checked, in the order the checks ran. A
	// check is listed only if it ran over everything it covers.
	Checked []CheckKind
	// SourceSHA256 is the whole-source SHA-256 recomputed from a device
	// (hex), when CheckSourceSHA256 ran.
	SourceSHA256 string
	// Changed lists, for [Device], the ranges of the device that differ
	// from the image, by chunk (unordered while the check runs; sorted
	// by Sort).
	Changed []ChangedRange
	// DigestOnly says the image holds digests only (capture
	// --digest-only): [Check] checked its structure and every chunk's
	// digest entry, but there is no chunk data to check them against;
	// [Device] with the image's store does that against a device.
	DigestOnly bool
	// Digests counts the chunks of a digest-only image whose index entry
	// and frame header passed every check.
	Digests uint64
	// Ignored names files that look like part of the image but are not,
	// and were left alone: manifest copies of another image (or beyond
	// the image's copy count). They are not damage of this image.
	Ignored []Finding
	// Unchecked names parts of the image that a device check could not
	// use (a segment index missing or damaged): the device was still
	// compared with every chunk hash, which decides whether it matches,
	// but the block digests of those segments' chunks were not compared
	// (so CheckBlockDigests is not listed). They are damage of the image,
	// not of the device: 'verify IMAGE' reports and repairs them.
	Unchecked []Finding
}

func (r *Report) add(f Finding) {
	r.mu.Lock()
	r.Findings = append(r.Findings, f)
	r.mu.Unlock()
}

func (r *Report) addDamage(d seed.Damage) error {
	r.add(d)
	return nil
}

func (r *Report) checked(c ...CheckKind) {
	r.mu.Lock()
	r.Checked = append(r.Checked, c...)
	r.mu.Unlock()
}

func (r *Report) ok(n int64) {
	r.mu.Lock()
	r.ChunksOK++
	r.BytesChecked += n
	r.mu.Unlock()
}

// TransportOnly reports whether the check of an image checked stored
// bytes only (Depth is DepthTransport): its text must then say
// [TransportOnlyNote].
func (r *Report) TransportOnly() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Depth == DepthTransport
}

// Note is the sentence a report of this depth must carry:
// [TransportOnlyNote] for a transport check, "" otherwise.
func (r *Report) Note() string {
	if r.TransportOnly() {
		return TransportOnlyNote
	}
	return ""
}

// OK reports whether the check found nothing wrong.
func (r *Report) OK() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.Findings) == 0
}

// Sort orders findings: chunk findings by index, then the rest.
func (r *Report) Sort() {
	r.mu.Lock()
	defer r.mu.Unlock()
	seed.SortDamage(r.Findings)
	sort.Slice(r.Changed, func(i, j int) bool { return r.Changed[i].Offset < r.Changed[j].Offset })
}

// BadChunks returns the sorted, de-duplicated indices of damaged chunks.
func (r *Report) BadChunks() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[uint64]bool{}
	var out []uint64
	for _, f := range r.Findings {
		if f.IsChunk && !seen[f.Chunk] {
			seen[f.Chunk] = true
			out = append(out, f.Chunk)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Err returns nil when the report is clean, else an error wrapping
// ErrDamaged that counts the findings.
func (r *Report) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.Findings) == 0 {
		return nil
	}
	f := r.Findings[0]
	if f.IsChunk {
		return fmt.Errorf("%w: %d finding(s), first: chunk %d: source bytes %d-%d: %w", ErrDamaged, len(r.Findings), f.Chunk, f.Offset, f.Offset+f.Length-1, f.Err)
	}
	return fmt.Errorf("%w: %d finding(s), first: %w", ErrDamaged, len(r.Findings), f.Err)
}

// chunkFinding makes the finding of a chunk that differs on a device.
func chunkFinding(key string, i uint64, off, length int64, seg uint32, err error) Finding {
	return Finding{Key: key, Chunk: i, IsChunk: true, Offset: off, Length: length, Segment: seg,
		Err: &format.ChunkError{Index: i, Offset: off, Length: length, Segment: seg, Err: err}}
}
