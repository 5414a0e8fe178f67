package engine

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/sign"
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
	// Trust, if set, refuses (exit 3, nothing written) an image whose
	// manifest is not signed by one of its keys, before any chunk is read.
	Trust *sign.Trust
	// Identities open an encrypted image (spec §11): age identities of
	// one of its recipients, or its passphrase (seal.PassphraseIdentity).
	// An encrypted image none of them opens is refused (ErrBadInput)
	// before anything is written. The fallback opens with them too.
	Identities []age.Identity
	// Resume continues an interrupted restore: the target is compared
	// with the image first (locally, by hash), and only the chunks that
	// differ are fetched (their frames alone, by ranged reads, unless
	// all of a segment is needed) and written.
	Resume bool
	// Workers decode and verify (default GOMAXPROCS), Readers stream
	// segments (default the store's connections); fewer of both run when
	// the image's chunks are large (see seed.ReadMemory).
	Workers  int
	Readers  int
	Progress func(Progress)
}

// RestoreResult describes a finished restore.
type RestoreResult struct {
	Manifest     *format.Manifest
	Report       *verify.Report // what reading the image found (chunks read and verified, damage)
	Elapsed      time.Duration
	ZeroedBytes  int64                 // bytes of zero chunks written or punched
	SkippedZeros bool                  // zero chunks were skipped (target known zeroed)
	Rebuilt      []uint64              // chunks rebuilt from parity
	Fetched      []uint64              // chunks fetched from the fallback
	Skipped      int                   // segments none of whose chunks was fetched (Resume)
	InPlace      int                   // chunks already correct on the target (Resume), not fetched
	Lost         []uint64              // chunks beyond repair, not written
	Stripes      []verify.StripeStatus // damaged parity stripes
	// Delta, for a delta image, says what applying it checked and did.
	Delta *DeltaApply
	// Signer is who signed the image, checked against RestoreOptions.Trust
	// (nil without one).
	Signer *sign.Signatory
}

// OpenImage loads and checks the manifest of the image in st, mapping
// failures to ErrBadInput (not an image, or another version) or
// ErrIntegrity (damaged manifest).
func OpenImage(ctx context.Context, st store.Store) (*format.Manifest, error) {
	im, err := openImage(ctx, st)
	if err != nil {
		return nil, err
	}
	return im.Manifest(), nil
}

// openImage opens the image in st through the image reader, classifying
// its failures as OpenImage documents.
func openImage(ctx context.Context, st store.Store) (*seed.Image, error) {
	im, err := seed.Open(ctx, st)
	switch {
	case err == nil:
		return im, nil
	case errors.Is(err, seed.ErrNoImage), errors.Is(err, format.ErrVersion), errors.Is(err, format.ErrFormat):
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	case format.IsDamage(err):
		return nil, fmt.Errorf("%w: %w (the manifest is damaged: fetch a fresh copy of the image)", ErrIntegrity, err)
	}
	return nil, err
}

// CheckSegments compares the data segments in st with the manifest: every
// one present with its recorded size. It lists only, reading no data.
func CheckSegments(ctx context.Context, st store.Store, m *format.Manifest) []error {
	sv, err := seed.New(st, m, nil).Survey(ctx)
	if err != nil {
		return []error{fmt.Errorf("list %s: %w", st, err)}
	}
	var errs []error
	for _, d := range sv.Damage {
		if id, ok := d.SegmentID(); ok && id.Kind == format.SegmentData {
			errs = append(errs, d.Err)
		}
	}
	return errs
}

// Restore writes the image in img onto target, a block device or a regular
// file (created, or made the source's size), as a plan carried out by one
// executor (see restorePlan): every chunk has one origin (already on the
// target with Resume, zero, the image, its parity, the fallback). Nothing
// is written before the manifest is validated, every chunk has an origin
// that holds it (segments present at their size, stripes parity can
// rebuild, or the fallback) and the target has passed its safety checks;
// every chunk is verified against its hash before it is written; a longer
// file is cut to size only at the end, and the target is fsynced before
// Restore returns success.
//
// A delta image (spec §12) is applied instead (see restoreDelta): the
// target must exist and hold, wherever the delta writes, its base's bytes
// or already the delta's, which is checked before anything is written;
// what is written is read back and checked. A digest-only image holds no
// data and is refused (ErrBadInput) before anything is opened.
func Restore(ctx context.Context, img store.Store, target string, opts RestoreOptions) (*RestoreResult, error) {
	start := time.Now()
	im, signer, err := openKeyed(ctx, img, opts.Trust, opts.Identities, keyRequired)
	if err != nil {
		return nil, err
	}
	m := im.Manifest()
	switch {
	case m.Header.RequiresFeature(format.FeatureDigestOnly):
		return nil, fmt.Errorf("%w: %s", ErrBadInput, digestOnlyRefusal("restore", img.String()))
	case m.Header.RequiresFeature(format.FeatureDelta):
		res, err := restoreDelta(ctx, im, img, target, opts, start)
		if res != nil {
			res.Signer = signer
		}
		return res, err
	}
	var fb *seed.Image
	if opts.Fallback != nil {
		if fb, err = openFallback(ctx, opts.Fallback, im); err != nil {
			return nil, err
		}
	}
	t, err := checkRestoreTarget(ctx, target, m, img, opts.Fallback)
	if err != nil {
		return nil, err
	}
	plan := newPlan(m, fb != nil)
	if err := planImage(ctx, plan, im, fb, opts.AllowDamaged, target); err != nil {
		return nil, err
	}
	if err := t.open(); err != nil {
		return nil, err
	}
	res := &RestoreResult{Manifest: m, Signer: signer}
	if opts.Resume && !t.created {
		if err := plan.planResume(ctx, t, opts.Workers); err != nil {
			return res, t.abandon(err, opts.AllowDamaged)
		}
	}
	x := newExecutor(plan, t, im, fb, opts)
	err = x.run(ctx)
	x.result(res, err == nil)
	if err == nil {
		err = beyondRepair(m, res, opts.AllowDamaged)
	}
	return finishRestore(res, t, target, start, opts.AllowDamaged, err)
}

// beyondRepair is the error of a restore that met chunks it could not
// rebuild, unless --allow-damaged lets it write around them.
func beyondRepair(m *format.Manifest, res *RestoreResult, allowDamaged bool) error {
	if len(res.Lost) == 0 || allowDamaged {
		return nil
	}
	return fmt.Errorf("%w: %d chunk(s) beyond repair (%s)", ErrIntegrity, len(res.Lost), describeChunks(m, res.Lost))
}

// finishRestore ends a restore that got as far as writing: on err the
// target is abandoned (kept, for --resume); otherwise it is fsynced and
// the result is final, an integrity error naming the chunks left
// untouched if --allow-damaged wrote around any.
func finishRestore(res *RestoreResult, t *restoreTarget, target string, start time.Time, allowDamaged bool, err error) (*RestoreResult, error) {
	if err != nil {
		return res, t.abandon(err, allowDamaged)
	}
	if err := t.finish(); err != nil {
		return res, Resumable(err)
	}
	res.Elapsed = time.Since(start)
	if len(res.Lost) > 0 {
		return res, fmt.Errorf("%w: %s written except %d damaged chunk(s) left untouched: %s; let the replication product resync those ranges",
			ErrIntegrity, target, len(res.Lost), describeChunks(res.Manifest, res.Lost))
	}
	return res, nil
}

// planImage plans the chunks of segments the image lacks (or holds at
// another size) from parity or the fallback, and refuses, before anything
// is written, a restore that could not complete: a chunk no origin holds,
// unless the operator accepts a partial restore.
func planImage(ctx context.Context, plan *restorePlan, im, fb *seed.Image, allowDamaged bool, target string) error {
	lost, err := plan.planSegments(ctx, im, fb)
	if err != nil {
		return err
	}
	if len(lost) > 0 && !allowDamaged {
		what := "chunks beyond repair"
		if chunks := plan.chunks(unavailable); len(chunks) > 0 {
			what = fmt.Sprintf("%d chunk(s) beyond repair (%s)", len(chunks), describeChunks(plan.m, chunks))
		}
		return fmt.Errorf("%w: %s: %w; %s; nothing was written to %s (--allow-damaged restores the rest)",
			ErrIntegrity, what, errors.Join(lost...), whyLost(plan.parity, fb != nil), target)
	}
	return nil
}

// whyLost says why segments that are missing cannot be made up for.
func whyLost(parity, fallback bool) string {
	switch {
	case parity && fallback:
		return "parity cannot rebuild them (too many segments of their stripe are missing) and the fallback lacks them too"
	case parity:
		return "parity cannot rebuild them (too many segments of their stripe are missing)"
	case fallback:
		return "the image has no parity and the fallback lacks them too"
	}
	return "the image has no parity to rebuild them (a --fallback copy of the image could supply them)"
}

// newExecutor sets up the executor of plan onto t.
func newExecutor(plan *restorePlan, t *restoreTarget, im, fb *seed.Image, opts RestoreOptions) *executor {
	x := &executor{
		plan:       plan,
		target:     t,
		meter:      NewMeter(plan.m.Header.Size, opts.Progress),
		stopOnLoss: !opts.AllowDamaged,
		zeroed:     t.fresh || opts.TargetZeroed,
		suppliers: map[origin]supplier{
			fromImage: &imageSupplier{im: im, workers: opts.Workers, readers: opts.Readers,
				stopOnDamage: !opts.AllowDamaged && !plan.parity && !plan.fallback},
			fromParity: &paritySupplier{im: im},
		},
	}
	if fb != nil {
		x.suppliers[fromFallback] = &fallbackSupplier{fb: fb}
	}
	return x
}

// result records in res what the executor did; complete says that it
// ran to the end.
func (x *executor) result(res *RestoreResult, complete bool) {
	m := x.plan.m
	res.Rebuilt = x.writtenFrom(fromParity)
	res.Stripes = x.suppliers[fromParity].(*paritySupplier).statuses
	res.Fetched = x.writtenFrom(fromFallback)
	res.Lost = x.plan.chunks(unavailable)
	res.ZeroedBytes = x.zeroes
	res.SkippedZeros = x.zeroed
	res.InPlace = len(x.plan.chunks(onTarget))
	is := x.suppliers[fromImage].(*imageSupplier)
	res.Report = &verify.Report{Findings: is.found, ChunksOK: uint64(x.fromImg), BytesChecked: is.stats.BytesChecked}
	seed.SortDamage(res.Report.Findings)
	if complete {
		res.Report.Checked = x.checked(len(res.Rebuilt) > 0)
	}
	for _, c := range m.Chunks {
		if c.Kind == format.KindZero {
			res.Report.ZeroChunks++
		}
	}
	fetched := map[uint32]bool{}
	for _, o := range []origin{fromImage, fromParity, fromFallback, unavailable} {
		for _, s := range segmentsOf(m, x.plan.chunks(o)) {
			fetched[s] = true
		}
	}
	if res.InPlace > 0 {
		res.Skipped = len(m.Segments) - len(fetched)
	}
}

// checked lists what a restore that ran to the end checked of every chunk
// it wrote: each chunk's hash (the executor writes only verified chunks);
// the block digests of the segment indexes, unless an index was missing
// or damaged (then some chunks had only their hash checked); and the
// parity rows' CRC-32C when chunks were rebuilt from parity.
func (x *executor) checked(rebuilt bool) []verify.CheckKind {
	kinds := []verify.CheckKind{verify.CheckChunkHashes}
	indexes := x.plan.damagedSegments == 0
	for _, d := range x.suppliers[fromImage].(*imageSupplier).found {
		if !d.IsChunk {
			indexes = false
		}
	}
	if indexes {
		kinds = append(kinds, verify.CheckBlockDigests)
	}
	if rebuilt {
		kinds = append(kinds, verify.CheckParityRows)
	}
	return kinds
}

// chunksThatDiffer compares the target with the image's chunk hashes and
// returns the chunks that differ. It reads the target (sequentially, with
// workers hashing in parallel), never the image, and streams each answer
// into the set: its memory is the pipeline's fixed set of chunk buffers,
// half the budget (they are garbage, not yet collected, when the restore's
// reader allocates its own), however many chunks differ.
func chunksThatDiffer(ctx context.Context, m *format.Manifest, t *restoreTarget, workers int) (chunkSet, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	differ := newChunkSet(len(m.Chunks))
	p := &chunkPipeline{
		src: t.f, name: t.path, target: true, size: m.Header.Size, chunkSize: m.Header.ChunkSize,
		first: 0, last: uint64(len(m.Chunks)), hasher: m.Hasher(),
		shape:   shapeFor(m.Header.ChunkSize, min(workers, MaxWorkers), false, memoryBudget/2),
		process: hashChunk,
		sink: func(j *chunkJob) error {
			if j.ec.Hash != m.Chunks[j.index].Hash {
				differ.add(j.index)
			}
			return nil
		},
	}
	if len(m.Chunks) == 0 {
		return differ, nil
	}
	if err := p.run(ctx); err != nil {
		return nil, err
	}
	return differ, nil
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
