package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store"
)

// DeltaApply describes what applying a delta image did (RestoreResult.Delta).
type DeltaApply struct {
	BaseManifestSHA256 string // the base the target was checked against
	BaseImageID        string
	// Checked is the number of the delta's chunks whose ranges were
	// checked on the target before anything was written (every chunk the
	// delta writes); AlreadyApplied of them already held the delta's
	// bytes and were left alone; Written were written, then read back
	// and checked against their chunk hashes (VerifiedBytes).
	Checked        int
	AlreadyApplied int
	Written        int
	VerifiedBytes  int64
}

// ErrNotBaseState is wrapped (with ErrBadInput) by the refusal to apply a
// delta onto a target that holds neither its base's bytes nor the
// delta's somewhere the delta writes.
var ErrNotBaseState = errors.New("target is not in the delta's base state")

// restoreDelta applies the delta image im onto target: it checks, before
// writing anything, that every range the delta writes holds the base's
// bytes (by the base-digest table) or already the delta's; writes the
// chunks that need it (never the chunks of kind base); and reads back
// what it wrote, checking each chunk's hash. Applying a delta twice, or
// again after an interruption, writes only what is not yet there.
func restoreDelta(ctx context.Context, im *seed.Image, img store.Store, target string, opts RestoreOptions, start time.Time) (*RestoreResult, error) {
	m := im.Manifest()
	b := m.Header.Base
	if b.DigestsSHA256 == "" {
		return nil, fmt.Errorf("%w: delta %s has no base-digest table (base.digests_sha256), so the target cannot be checked against its base: compute the delta again with this seedship", ErrBadInput, img)
	}
	var fb *seed.Image
	var err error
	if opts.Fallback != nil {
		if fb, err = openFallback(ctx, opts.Fallback, im); err != nil {
			return nil, err
		}
	}
	t, err := checkRestoreTarget(ctx, target, m, img, opts.Fallback)
	if err != nil {
		return nil, err
	}
	if t.created {
		return nil, fmt.Errorf("%w: target %s does not exist: delta %s applies onto a target that holds its base image (manifest sha256 %s); restore the base first",
			ErrBadInput, target, img, b.ManifestSHA256)
	}
	plan := newPlan(m, fb != nil)
	if err := planImage(ctx, plan, im, fb, opts.AllowDamaged, target); err != nil {
		return nil, err
	}
	if err := t.openExisting(); err != nil {
		return nil, err
	}
	res := &RestoreResult{Manifest: m, Delta: &DeltaApply{BaseManifestSHA256: b.ManifestSHA256, BaseImageID: b.ImageID}}
	applied, checked, err := checkDeltaTarget(ctx, im, t, opts.Workers)
	if err != nil {
		t.f.Close()
		return res, err
	}
	res.Delta.Checked = checked
	for _, i := range applied {
		plan.set(i, onTarget)
	}
	res.Delta.AlreadyApplied = len(applied)
	if err := t.grow(); err != nil {
		return res, t.abandon(err, opts.AllowDamaged)
	}
	x := newExecutor(plan, t, im, fb, opts)
	x.zeroed = false // a zero chunk of a delta replaces base bytes, never known zeros
	err = x.run(ctx)
	x.result(res, err == nil)
	if err == nil {
		err = beyondRepair(m, res, opts.AllowDamaged)
	}
	var written []uint64
	for _, o := range []origin{fromImage, fromParity, fromFallback, fromZero} {
		written = append(written, plan.chunks(o)...)
	}
	if err == nil {
		res.Delta.Written = len(written)
		res.Delta.VerifiedBytes, err = verifyWritten(ctx, m, t, written, opts.Workers)
	}
	return finishRestore(res, t, target, start, opts.AllowDamaged, err)
}

// deltaCheck is one chunk of the delta to check on the target: the
// base's digests of its blocks (from the base-digest table) and the
// delta's (from its segment index, or a zero chunk's).
type deltaCheck struct {
	chunk uint64
	base  []format.BlockDigest
	delta []format.BlockDigest
}

// checkDeltaTarget checks every range the delta writes on the target,
// reading only those ranges: each 64 KiB block must hold the base's bytes
// or the delta's. It returns the chunks that already hold the delta's
// bytes (chunk hash checked), and how many chunks it checked. A target
// not in the base state is refused (ErrBadInput and ErrNotBaseState,
// naming the first offending range); a base-digest table that is damaged
// or does not fit the manifest is an integrity failure of the delta.
func checkDeltaTarget(ctx context.Context, im *seed.Image, t *restoreTarget, workers int) (applied []uint64, checked int, err error) {
	m := im.Manifest()
	rc, err := im.Store().Get(ctx, format.BaseDigestsKey, 0, -1)
	if err != nil {
		if errors.Is(err, store.ErrNotExist) {
			return nil, 0, fmt.Errorf("%w: delta %s lacks its %s: fetch a complete copy of the delta", ErrIntegrity, im, format.BaseDigestsKey)
		}
		return nil, 0, fmt.Errorf("read %s of %s: %w", format.BaseDigestsKey, im, err)
	}
	defer rc.Close()
	br, err := format.NewBaseDigestsReader(bufio.NewReaderSize(rc, 256<<10))
	if err != nil {
		return nil, 0, digestsErr(im, err)
	}
	geo := br.Header()
	db := &imageBlocks{im: im, m: m, size: m.Header.Size, zero: zeroBlock}
	if m.Encrypted() {
		// Restore unlocked it (keyRequired): its zero chunks' digests are
		// keyed and bound to their place.
		if db.keyed, err = imageHasher(im); err != nil {
			return nil, 0, err
		}
	}
	defer db.close()
	where := baseWhere{chunkSize: int64(br.BaseChunkSize())}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// Each worker holds one chunk of the target: half the budget at most.
	workers = max(1, min(workers, MaxWorkers, int(memoryBudget/2/int64(m.Header.ChunkSize))))

	var mu sync.Mutex
	bad, firstBad := 0, uint64(0)
	work := make(chan deltaCheck, workers)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(work)
		err := format.WalkBaseDigests(br, m, func(e format.BaseDigestsEntry) error {
			c := deltaCheck{chunk: e.Chunk, base: append([]format.BlockDigest(nil), e.Blocks...)}
			off, length := m.ChunkRange(e.Chunk)
			var err error
			if c.delta, err = db.blocks(gctx, off/blockSize, int64(format.NumBlocks(int(length))), nil); err != nil {
				return err
			}
			select {
			case work <- c:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
		if err != nil && KindOf(err) != KindIntegrity && (format.IsDamage(err) || errors.Is(err, format.ErrFormat) || errors.Is(err, format.ErrVersion)) {
			return digestsErr(im, err) // the table's own damage
		}
		return err
	})
	for range workers {
		g.Go(func() error {
			buf := make([]byte, m.Header.ChunkSize)
			blocks := make([]format.BlockDigest, format.NumBlocks(m.Header.ChunkSize))
			for c := range work {
				state, err := checkChunkOnTarget(m, geo, where, t, c, buf, blocks)
				if err != nil {
					return err
				}
				mu.Lock()
				checked++
				switch state {
				case chunkApplied:
					applied = append(applied, c.chunk)
				case chunkForeign:
					if bad == 0 || c.chunk < firstBad {
						firstBad = c.chunk
					}
					bad++
				}
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, checked, err
	}
	if bad > 0 {
		off, length := m.ChunkRange(firstBad)
		more := ""
		if bad > 1 {
			more = fmt.Sprintf(" (and %d more of the delta's %d-byte chunks)", bad-1, m.Header.ChunkSize)
		}
		return nil, checked, fmt.Errorf("%w: %w: %s bytes %d-%d%s hold neither the bytes of base image %s (manifest sha256 %s) nor the delta's; nothing was written: apply the delta only to a target restored from that base (seedship restore BASE TARGET)",
			ErrBadInput, ErrNotBaseState, t.path, off, off+length-1, more, m.Header.Base.ImageID, m.Header.Base.ManifestSHA256)
	}
	return applied, checked, nil
}

// digestsErr reports a base-digest table that is damaged or does not fit
// the delta: an integrity failure of the delta (nothing was written).
func digestsErr(im *seed.Image, err error) error {
	if format.IsDamage(err) || errors.Is(err, format.ErrFormat) || errors.Is(err, format.ErrVersion) {
		return fmt.Errorf("%w: %s of delta %s: %w; nothing was written (fetch a fresh copy of the delta)", ErrIntegrity, format.BaseDigestsKey, im, err)
	}
	return fmt.Errorf("read %s of delta %s: %w", format.BaseDigestsKey, im, err)
}

// chunkState is what a delta chunk's range holds on the target.
type chunkState int

const (
	chunkBase    chunkState = iota // every block the base's or the delta's: write it
	chunkApplied                   // the delta's bytes already (chunk hash checked): leave it
	chunkForeign                   // some block neither: refuse the target
)

// baseWhere says how the base's digests in a delta's base-digest table
// are computed: plain ones (chunkSize 0) depend only on the bytes; an
// encrypted delta's are keyed and bound to the block's place in the
// base's chunks of chunkSize bytes (spec §11.4, §12).
type baseWhere struct{ chunkSize int64 }

// digest returns the base's kind of digest of block b, which begins at
// byte off.
func (w baseWhere) digest(h *format.Hasher, off int64, b []byte) format.BlockDigest {
	if w.chunkSize == 0 {
		return blockDigest(b)
	}
	return h.Block(uint64(off/w.chunkSize), int(off%w.chunkSize/blockSize), b)
}

// checkChunkOnTarget reads chunk c's range of the target and classifies
// it. Bytes past the end of a file target (a grown source's delta, before
// the file is extended) read as zeros, as they will after extending.
func checkChunkOnTarget(m *format.Manifest, geo format.BaseDigestsHeader, where baseWhere, t *restoreTarget, c deltaCheck, buf []byte, blocks []format.BlockDigest) (chunkState, error) {
	off, length := m.ChunkRange(c.chunk)
	data := buf[:length]
	if err := readTarget(t, data, off); err != nil {
		return 0, err
	}
	h := m.Hasher().Chunk(c.chunk, data, blocks)
	nb := format.NumBlocks(len(data))
	allDelta := true
	for k := range nb {
		isDelta := blocks[k] == c.delta[k]
		allDelta = allDelta && isDelta
		isBase := true // past the base's end anything may be there
		if k < len(c.base) {
			bs := off + int64(k)*blockSize
			bl := min(blockSize, geo.BaseSize-bs) // the base's short last block, in a grown source
			if bl < int64(min(blockSize, len(data)-k*blockSize)) || where.chunkSize != 0 {
				isBase = where.digest(m.Hasher(), bs, data[k*blockSize:k*blockSize+int(bl)]) == c.base[k]
			} else {
				isBase = blocks[k] == c.base[k]
			}
		}
		if !isDelta && !isBase {
			return chunkForeign, nil
		}
	}
	if allDelta && h == chunkHashOf(m, c.chunk) {
		return chunkApplied, nil
	}
	return chunkBase, nil
}

// readTarget reads len(b) bytes of the target at off; what lies past the
// end of a file reads as zeros.
func readTarget(t *restoreTarget, b []byte, off int64) error {
	n, err := t.f.ReadAt(b, off)
	if errors.Is(err, io.EOF) && t.regular {
		clear(b[n:])
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s at byte %d: %w", t.path, off+int64(n), err)
	}
	return nil
}

// verifyWritten reads back, after an fsync and with the target's cached
// pages of those ranges dropped (where the system allows), every chunk
// the delta wrote and checks it against its chunk hash. It returns the
// bytes checked.
func verifyWritten(ctx context.Context, m *format.Manifest, t *restoreTarget, chunks []uint64, workers int) (int64, error) {
	if len(chunks) == 0 {
		return 0, nil
	}
	if err := t.f.Sync(); err != nil {
		return 0, Resumable(fmt.Errorf("fsync %s: %w", t.path, err))
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, MaxWorkers, int(memoryBudget/2/int64(m.Header.ChunkSize))))
	var total int64
	var mu sync.Mutex
	work := make(chan uint64)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(work)
		for _, i := range chunks {
			select {
			case work <- i:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			buf := make([]byte, m.Header.ChunkSize)
			for i := range work {
				off, length := m.ChunkRange(i)
				dropCached(t.f, off, length)
				data := buf[:length]
				if err := readTarget(t, data, off); err != nil {
					return Resumable(err)
				}
				if m.Hasher().Chunk(i, data, nil) != chunkHashOf(m, i) {
					return fmt.Errorf("%w: %s does not read back what was written at bytes %d-%d (chunk %d of the delta): the device may be failing; check it, then apply the delta again",
						ErrIntegrity, t.path, off, off+length-1, i)
				}
				mu.Lock()
				total += length
				mu.Unlock()
			}
			return nil
		})
	}
	return total, g.Wait()
}

// chunkHashOf returns the chunk hash the bytes of chunk i of the delta m
// must have: its table's H, or for a zero chunk of an encrypted delta
// (whose table H is 32 zero bytes, spec §11.4) the keyed digest of its
// zeros at its place.
func chunkHashOf(m *format.Manifest, i uint64) format.Hash {
	if m.Chunks[i].Kind == format.KindZero && m.Encrypted() {
		_, n := m.ChunkRange(i)
		return m.Hasher().Zero(i, int(n), nil)
	}
	return m.Chunks[i].Hash
}
