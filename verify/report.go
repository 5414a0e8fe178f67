package verify

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/seedship/seedship/format"
)

// Finding is one piece of damage.
type Finding struct {
	Key     string // the image file involved (segment, parity segment, manifest)
	Rows    []int  // for a parity segment: the damaged rows; nil means all
	Chunk   uint64 // chunk index; meaningful when IsChunk
	IsChunk bool   // the finding is about one chunk's data
	Offset  int64  // first source byte affected (chunks only)
	Length  int64  // source bytes affected (chunks only)
	Segment uint32 // the data segment involved, if any
	Err     error
}

func (f Finding) String() string {
	if f.IsChunk {
		return fmt.Sprintf("chunk %d: source bytes %d-%d (segment %d): %v", f.Chunk, f.Offset, f.Offset+f.Length-1, f.Segment, errors.Unwrap(f.Err))
	}
	return f.Err.Error()
}

// Report collects the outcome of a check. Its methods are safe for
// concurrent use while a scan runs.
type Report struct {
	mu           sync.Mutex
	Findings     []Finding
	ChunksOK     uint64 // stored chunks whose hash matched
	ZeroChunks   uint64 // zero chunks (checked against the manifest only, or on the device)
	BytesChecked int64  // raw bytes verified
	// Stripes says, for parity images, what each damaged stripe needs
	// and whether it can be rebuilt.
	Stripes []StripeStatus
}

func (r *Report) add(f Finding) {
	r.mu.Lock()
	r.Findings = append(r.Findings, f)
	r.mu.Unlock()
}

// addErr records damage to key; a *format.ChunkError becomes a chunk
// finding.
func (r *Report) addErr(key string, err error) {
	var ce *format.ChunkError
	if errors.As(err, &ce) {
		r.add(Finding{Key: key, Chunk: ce.Index, IsChunk: true, Offset: ce.Offset, Length: ce.Length, Segment: ce.Segment, Err: err})
		return
	}
	r.add(Finding{Key: key, Err: err})
}

func (r *Report) ok(n int64) {
	r.mu.Lock()
	r.ChunksOK++
	r.BytesChecked += n
	r.mu.Unlock()
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
	sort.SliceStable(r.Findings, func(i, j int) bool {
		a, b := r.Findings[i], r.Findings[j]
		if a.IsChunk != b.IsChunk {
			return a.IsChunk
		}
		return a.Chunk < b.Chunk
	})
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
	return fmt.Errorf("%w: %d finding(s), first: %v", ErrDamaged, len(r.Findings), r.Findings[0])
}
