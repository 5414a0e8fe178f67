package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/seedship/seedship/device"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/verify"
)

// RestoreOptions tunes [Restore]. Zero values mean the defaults.
type RestoreOptions struct {
	// TargetZeroed says the target already reads as zeros (a new thin
	// volume, or one the operator discarded), so zero chunks are skipped.
	TargetZeroed bool
	// AllowDamaged writes everything that can be written when some chunks
	// are beyond repair, leaving their ranges untouched (the error still
	// lists them), so a replication resync can fix just those.
	AllowDamaged bool
	// Fallback, if set, is a second copy of the same image (another
	// drive, or the bucket): chunks damaged in img that parity cannot
	// rebuild are fetched from it, and nothing else.
	Fallback store.Store
	// Resume continues an interrupted restore: the target is compared
	// with the image first (locally, by hash), and only the segments
	// holding chunks that differ are fetched and written.
	Resume   bool
	Workers  int // decode/verify workers, default GOMAXPROCS
	Readers  int // parallel segment streams, default the store's
	Progress func(Progress)
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	Manifest     *format.Manifest
	Report       *verify.Report
	Elapsed      time.Duration
	ZeroedBytes  int64                 // bytes of zero chunks written or punched
	SkippedZeros bool                  // zero chunks were skipped (target known zeroed)
	Rebuilt      []uint64              // chunks rebuilt from parity
	Fetched      []uint64              // chunks fetched from the fallback
	Skipped      int                   // segments already on the target (Resume)
	Lost         []uint64              // chunks beyond repair, not written
	Stripes      []verify.StripeStatus // damaged parity stripes
}

// OpenImage loads and checks the manifest of the image in st, mapping
// failures to ErrBadInput (not an image, or another version) or
// ErrIntegrity (damaged manifest).
func OpenImage(ctx context.Context, st store.Store) (*format.Manifest, error) {
	return mapManifestErr(verify.LoadManifest(ctx, st))
}

func mapManifestErr(m *format.Manifest, err error) (*format.Manifest, error) {
	switch {
	case err == nil:
		return m, nil
	case errors.Is(err, verify.ErrNoImage):
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	case errors.Is(err, format.ErrVersion), errors.Is(err, format.ErrFormat):
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	case errors.Is(err, format.ErrCorrupt), errors.Is(err, format.ErrTooLarge):
		return nil, fmt.Errorf("%w: %w (the manifest is damaged: fetch a fresh copy of the image)", ErrIntegrity, err)
	}
	return nil, err
}

// CheckSegments compares the data segments in st with the manifest: every
// one present with its recorded size. It lists only, reading no data.
func CheckSegments(ctx context.Context, st store.Store, m *format.Manifest) []error {
	have := map[string]int64{}
	err := st.List(ctx, "data/", func(i store.Info) error { have[i.Key] = i.Size; return nil })
	if err != nil {
		return []error{fmt.Errorf("list %s: %w", st, err)}
	}
	var errs []error
	for _, s := range m.Segments {
		key := format.SegmentKey(s.Number)
		size, ok := have[key]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("segment %s is missing from %s", key, st))
		case size != s.Size:
			errs = append(errs, fmt.Errorf("segment %s is %d bytes, the manifest says %d (truncated or replaced)", key, size, s.Size))
		}
	}
	return errs
}

// Restore writes the image in img onto target, a block device or a regular
// file (created, or resized to the source size). Nothing is written before
// the manifest is validated, every segment is present and the target has
// passed its safety checks; every chunk is verified against its hash before
// it is written; the target is fsynced before Restore returns success.
func Restore(ctx context.Context, img store.Store, target string, opts RestoreOptions) (*RestoreResult, error) {
	start := time.Now()
	m, err := OpenImage(ctx, img)
	if err != nil {
		return nil, err
	}
	_, hasParity := m.Geometry()
	if opts.Fallback != nil {
		if err := openFallback(ctx, opts.Fallback, m); err != nil {
			return nil, err
		}
	}
	canMend := hasParity || opts.Fallback != nil
	// Without parity or a fallback a missing segment means lost data:
	// refuse before writing, unless the operator accepts a partial
	// restore.
	if errs := CheckSegments(ctx, img, m); len(errs) > 0 && !canMend && !opts.AllowDamaged {
		return nil, fmt.Errorf("%w: %w; nothing was written to %s (--allow-damaged restores the rest)", ErrIntegrity, errors.Join(errs...), target)
	}
	if err := notInImage(target, img, m); err != nil {
		return nil, err
	}
	f, fresh, created, err := openTarget(target, m)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &RestoreResult{Manifest: m}
	// A file this restore created and could not finish must not pass for
	// a restored disk (with --allow-damaged the operator asked for it).
	fail := func(err error) (*RestoreResult, error) {
		if errors.Is(err, context.Canceled) {
			// Interrupted: keep what was written for --resume.
			return res, fmt.Errorf("%w; %s is incomplete: run the same restore with --resume to continue", err, target)
		}
		if created && !opts.AllowDamaged {
			f.Close()
			os.Remove(target)
		}
		return res, err
	}

	writeChunk := func(i uint64, raw []byte) error {
		off, _ := m.ChunkRange(i)
		if _, err := f.WriteAt(raw, off); err != nil {
			return fmt.Errorf("write %s at byte %d: %w", target, off, err)
		}
		return nil
	}
	meter := NewMeter(m.Header.Size, opts.Progress)
	var segments []uint32 // nil: all
	if opts.Resume && !created {
		if segments, err = segmentsToRedo(ctx, m, target, opts.Workers); err != nil {
			return fail(err)
		}
		res.Skipped = len(m.Segments) - len(segments)
		done := map[uint32]bool{}
		for _, s := range segments {
			done[s] = true
		}
		for i, c := range m.Chunks {
			if c.Kind == format.KindStored && !done[c.Segment] {
				_, n := m.ChunkRange(uint64(i))
				meter.Add(n)
			}
		}
	}
	rep, err := verify.Scan(ctx, img, m, verify.ScanOptions{
		Segments:     segments,
		Workers:      opts.Workers,
		Readers:      opts.Readers,
		StopOnDamage: !canMend && !opts.AllowDamaged,
		OnChunk:      writeChunk,
		OnProgress:   meter.Add,
	})
	res.Report = rep
	if err != nil {
		if errors.Is(err, verify.ErrDamaged) {
			return fail(fmt.Errorf("%w: %w; the restore stopped and %s is incomplete", ErrIntegrity, err, target))
		}
		return fail(err)
	}
	if !rep.OK() {
		lost := rep.BadChunks()
		if hasParity {
			// Rebuild from parity what the scan found damaged,
			// without touching the image.
			res.Stripes, err = verify.RebuildChunks(ctx, img, m, rep.Findings, func(i uint64, raw []byte) error {
				res.Rebuilt = append(res.Rebuilt, i)
				meter.Add(int64(len(raw)))
				return writeChunk(i, raw)
			})
			if err != nil {
				return fail(err)
			}
			lost = lost[:0]
			for _, s := range res.Stripes {
				lost = append(lost, s.LostChunks...)
			}
			slices.Sort(lost)
			lost = slices.Compact(lost)
		}
		if len(lost) > 0 && opts.Fallback != nil {
			// Only what parity could not rebuild comes from the fallback.
			still, err := fetchChunks(ctx, opts.Fallback, m, lost, func(i uint64, raw []byte) error {
				res.Fetched = append(res.Fetched, i)
				meter.Add(int64(len(raw)))
				return writeChunk(i, raw)
			})
			if err != nil {
				return fail(err)
			}
			lost = still
		}
		res.Lost = lost
		if len(lost) > 0 && !opts.AllowDamaged {
			return fail(fmt.Errorf("%w: %d chunk(s) beyond repair (%s); %s is incomplete (--allow-damaged writes the rest)",
				ErrIntegrity, len(lost), describeChunks(m, lost), target))
		}
	}
	res.SkippedZeros = fresh || opts.TargetZeroed
	if !res.SkippedZeros {
		if res.ZeroedBytes, err = zeroChunks(ctx, f, m, meter); err != nil {
			return fail(fmt.Errorf("zero ranges of %s: %w", target, err))
		}
	} else {
		meter.Add(int64(rep.ZeroChunks) * int64(m.Header.ChunkSize))
	}
	if err := f.Sync(); err != nil {
		return fail(fmt.Errorf("fsync %s: %w", target, err))
	}
	if err := f.Close(); err != nil {
		return fail(fmt.Errorf("close %s: %w", target, err))
	}
	res.Elapsed = time.Since(start)
	if len(res.Lost) > 0 {
		return res, fmt.Errorf("%w: %s written except %d damaged chunk(s) left untouched: %s; let the replication product resync those ranges",
			ErrIntegrity, target, len(res.Lost), describeChunks(m, res.Lost))
	}
	return res, nil
}

// segmentsToRedo compares the target with the image's hashes and returns
// the data segments holding a stored chunk that differs. It reads the
// target, never the image: on resume, local reads are cheap and WAN
// fetches are not.
func segmentsToRedo(ctx context.Context, m *format.Manifest, target string, workers int) ([]uint32, error) {
	rep, err := verify.Device(ctx, m, target, verify.DeviceOptions{Workers: workers})
	if err != nil {
		return nil, fmt.Errorf("compare %s with the image for --resume: %w", target, err)
	}
	redo := map[uint32]bool{}
	for _, f := range rep.Findings {
		if c := m.Chunks[f.Chunk]; f.IsChunk && c.Kind == format.KindStored {
			redo[c.Segment] = true
		}
	}
	out := make([]uint32, 0, len(redo))
	for s := range redo {
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// describeChunks lists chunks with their source byte ranges, briefly.
func describeChunks(m *format.Manifest, idx []uint64) string {
	var b strings.Builder
	for n, i := range idx {
		if n == 8 {
			fmt.Fprintf(&b, ", and %d more", len(idx)-n)
			break
		}
		if n > 0 {
			b.WriteString(", ")
		}
		off, length := m.ChunkRange(i)
		fmt.Fprintf(&b, "chunk %d bytes %d-%d", i, off, off+length-1)
	}
	return b.String()
}

// zeroChunks makes every zero chunk of the target read as zeros, one
// ZeroRange call per run of consecutive zero chunks.
func zeroChunks(ctx context.Context, f *os.File, m *format.Manifest, meter *Meter) (int64, error) {
	var total int64
	runStart, runLen := int64(-1), int64(0)
	flush := func() error {
		if runLen == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := device.ZeroRange(f, runStart, runLen); err != nil {
			return err
		}
		meter.Add(runLen)
		total += runLen
		runStart, runLen = -1, 0
		return nil
	}
	for i, c := range m.Chunks {
		off, length := m.ChunkRange(uint64(i))
		if c.Kind != format.KindZero {
			if err := flush(); err != nil {
				return total, err
			}
			continue
		}
		if runLen == 0 {
			runStart = off
		}
		runLen += length
	}
	return total, flush()
}

// openTarget applies every safety check and opens target for writing. It
// reports whether the target is known to read as zeros (a file it created
// or that was empty), in which case zero chunks need no writing, and
// whether it created the file.
func openTarget(target string, m *format.Manifest) (f *os.File, fresh, created bool, err error) {
	size := m.Header.Size
	fi, err := os.Stat(target)
	switch {
	case errors.Is(err, os.ErrNotExist):
		fresh, created = true, true
	case err != nil:
		return nil, false, false, fmt.Errorf("%w: target %s: %w", ErrBadInput, target, err)
	default:
		info, err := device.Stat(target)
		if err != nil {
			return nil, false, false, fmt.Errorf("%w: target %s: %w", ErrBadInput, target, err)
		}
		if err := notTheSource(target, info, m.Header.Source); err != nil {
			return nil, false, false, err
		}
		fresh = fi.Mode().IsRegular() && fi.Size() == 0
	}
	// OpenTarget checks mounts, holders and swap, compares sizes, and
	// claims a block device with O_EXCL until we close it.
	f, err = device.OpenTarget(target, size, true)
	if err != nil {
		if errors.Is(err, device.ErrTooSmall) {
			return nil, false, false, fmt.Errorf("%w: %w: choose a device of at least %d bytes", ErrBadInput, err, size)
		}
		return nil, false, false, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	// A regular file becomes exactly the source's size (OpenTarget only
	// grows files), so that sha256sum of it equals the source's.
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, false, false, fmt.Errorf("%w: resize target %s to %d bytes: %w", ErrBadInput, target, size, err)
		}
	}
	return f, fresh, created, nil
}

// notTheSource refuses to restore onto the device the image was captured
// from: the same file or device on the capture host, or a disk with the
// /dev/disk/by-id identity anywhere.
func notTheSource(target string, info device.Info, src format.Source) error {
	refuse := func(why string) error {
		return fmt.Errorf("%w: target %s is the capture source of this image (%s): restoring onto it would destroy the original; choose the replication target's device",
			ErrBadInput, target, why)
	}
	if host, _ := os.Hostname(); src.Path != "" && (src.Host == "" || src.Host == host) {
		same, err := device.SameDevice(target, src.Path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: cannot tell whether target %s is this image's capture source %s: %w", ErrBadInput, target, src.Path, err)
		}
		if same {
			return refuse("same device as " + src.Path)
		}
	}
	// /dev/disk/by-id names carry the disk's serial or WWN and, for a
	// partition, its number, so a shared name means the same partition
	// even on another host (shared SAN storage).
	for _, a := range info.ByID {
		if slices.Contains(src.ByID, a) {
			return refuse("same disk identity " + a)
		}
	}
	return nil
}

// localPaths is the optional ability of a store to name its keys' files.
type localPaths interface {
	Path(key string) (string, error)
}

// notInImage refuses a target that is one of the image's own files.
func notInImage(target string, img store.Store, m *format.Manifest) error {
	lp, ok := img.(localPaths)
	if !ok {
		return nil
	}
	if _, err := os.Stat(target); err != nil {
		return nil // a new file cannot be part of the image
	}
	keys := []string{format.ManifestKey}
	for _, s := range m.Segments {
		keys = append(keys, format.SegmentKey(s.Number))
	}
	for _, s := range m.Parity {
		keys = append(keys, format.ParityKey(s.Number))
	}
	for _, k := range keys {
		p, err := lp.Path(k)
		if err != nil {
			continue
		}
		if same, err := device.SameDevice(target, p); err == nil && same {
			return fmt.Errorf("%w: target %s is the image's own file %s: restore onto the replication target's device instead", ErrBadInput, target, k)
		}
	}
	return nil
}
