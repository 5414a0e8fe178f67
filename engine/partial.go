package engine

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/seedship/seedship/device"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/sign"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/verify"
)

// PartialStateDir is where the state of a partial restore onto a block
// device is kept by default: a device has no directory "beside" it, and
// the state must survive the reboots between drives.
var PartialStateDir = "/var/lib/seedship/partial"

// PartialOptions tunes [RestorePartial]. Zero values mean the defaults.
type PartialOptions struct {
	// State is the state file; "" means [DefaultPartialState].
	State string
	// Volumes are the numbers of the courier volumes img holds, of Count
	// (the set's volume count). A plain image (Count 0) is one volume of
	// one.
	Volumes []int
	Count   int
	// Name names the volumes given in messages.
	Name string
	// Trust, if set, refuses (exit 3, nothing written) an image whose
	// manifest is not signed by one of its keys.
	Trust *sign.Trust
	// Identities open an encrypted image (spec §11), as for [Restore]:
	// an encrypted image none of them opens is refused (ErrBadInput)
	// before anything is written.
	Identities []age.Identity
	// Stage, if set, is a local directory store where each run keeps
	// copies of the shards of stripes the target does not hold whole
	// yet, and reads them with the volume: a lost volume's segments are
	// then rebuilt from parity once enough of each stripe was seen, one
	// bay at a time. Only for images with parity.
	Stage store.Store
	// TargetZeroed says the target already reads as zeros.
	TargetZeroed bool
	Workers      int
	Progress     func(Progress)
	// CheckpointEvery is how often a long run records its progress
	// (fsync the target, then the state); default 30 seconds.
	CheckpointEvery time.Duration
}

// PartialResult is what one run of [RestorePartial] did and what is still
// missing.
type PartialResult struct {
	Manifest     *format.Manifest
	State        string   // the state file
	Written      int      // chunks written and verified in this run (zero chunks included)
	WrittenBytes int64    // their raw bytes
	Rebuilt      []uint64 // of them, chunks rebuilt from parity
	// Damaged are chunks of segments the given volumes hold that could
	// not be read or rebuilt: still missing.
	Damaged []uint64
	Seen    []int // volumes seen so far, this run's included
	Unseen  []int // volumes not seen yet
	Count   int   // the set's volume count
	// Missing* describe what the target still lacks.
	MissingChunks   int
	MissingBytes    int64
	MissingSegments []uint32
	// StagedFiles and StagedBytes are what this run copied into the
	// stage; StageLeft is how many files the stage holds after it.
	StagedFiles int
	StagedBytes int64
	StageLeft   int
	// Complete says every chunk is on the target and the whole-image
	// verification passed; Report is that verification.
	Complete bool
	Report   *verify.Report
	Elapsed  time.Duration
}

// DefaultPartialState is the default state file of a partial restore
// onto target: beside a file (TARGET.seedship-partial), and for a block
// device in [PartialStateDir], named by the device's first
// /dev/disk/by-id name (stable across reboots) or else its kernel name.
func DefaultPartialState(target string) (string, error) {
	fi, err := os.Stat(target)
	if errors.Is(err, os.ErrNotExist) || (err == nil && fi.Mode().IsRegular()) {
		return target + ".seedship-partial", nil
	}
	if err != nil {
		return "", fmt.Errorf("%w: target %s: %w", ErrBadInput, target, err)
	}
	info, err := device.Stat(target)
	if err != nil {
		return "", fmt.Errorf("%w: target %s: %w", ErrBadInput, target, err)
	}
	name := info.Name
	if len(info.ByID) > 0 {
		name = filepath.Base(info.ByID[0])
	}
	if name == "" {
		name = filepath.Base(target)
	}
	return filepath.Join(PartialStateDir, name+".json"), nil
}

// RestorePartial writes onto target what the volumes in img hold of their
// image, one bay at a time (restore --partial): the chunks of the data
// segments img holds, verified before they are written; zero chunks; and
// chunks parity rebuilds from img alone. A state file records, bound to
// the image (manifest hash) and to the target (identity), which chunks
// are on the target and which volumes were seen, so that the next volume
// continues. It is written only after the target is fsynced, so it never
// claims more than the target holds. The run that completes the target
// verifies the whole of it against the image (every chunk hash and the
// whole-source SHA-256, as verify --device) and removes the state.
//
// Refused with ErrBadInput before anything is written: an image other
// than the state's, a target other than the state's, a state file that
// is damaged, a delta or digest-only image.
func RestorePartial(ctx context.Context, img store.Store, target string, opts PartialOptions) (*PartialResult, error) {
	start := time.Now()
	// Each run checks the signature of the manifest of the volume it is
	// given, as restore does: the state binds the runs to one manifest.
	im, _, err := openKeyed(ctx, img, opts.Trust, opts.Identities, keyRequired)
	if err != nil {
		return nil, err
	}
	m := im.Manifest()
	switch {
	case m.Header.RequiresFeature(format.FeatureDigestOnly):
		return nil, fmt.Errorf("%w: %s", ErrBadInput, digestOnlyRefusal("restore", img.String()))
	case m.Header.RequiresFeature(format.FeatureDelta):
		return nil, fmt.Errorf("%w: %s is a delta image: restore --partial writes full images only; apply a delta with seedship restore IMAGE TARGET", ErrBadInput, img)
	}
	count, here := opts.Count, slices.Clone(opts.Volumes)
	if count == 0 {
		count, here = 1, []int{1}
	}
	slices.Sort(here)
	statePath := opts.State
	if statePath == "" {
		if statePath, err = DefaultPartialState(target); err != nil {
			return nil, err
		}
	}
	if _, parity := m.Geometry(); opts.Stage != nil && !parity {
		return nil, fmt.Errorf("%w: --stage keeps shards for parity to rebuild a lost volume, but %s has no parity: leave --stage out", ErrBadInput, img)
	}
	t, err := checkRestoreTarget(ctx, target, m, img, opts.Stage)
	if err != nil {
		return nil, err
	}
	st, done, err := readPartialState(statePath)
	if err != nil {
		return nil, err
	}
	if st != nil && opts.Count == 0 {
		// A plain image of the same manifest (the volumes gathered by
		// seedship copy) holds what every volume holds.
		count, here = st.Volumes, nil
		for v := 1; v <= count; v++ {
			here = append(here, v)
		}
	}
	hash := hex.EncodeToString(m.Hash[:])
	var ident *partialTarget
	if !t.created {
		if ident, err = identifyTarget(target); err != nil {
			return nil, err
		}
	}
	if st != nil {
		name := opts.Name
		if name == "" {
			name = img.String()
		}
		if err := st.matches(statePath, name, target, m, hash, count, ident); err != nil {
			return nil, err
		}
	} else {
		st = &partialState{Format: partialFormat, Version: partialVersion, ImageID: m.Header.ImageID, ManifestSHA256: hash,
			Chunks: uint64(len(m.Chunks)), Volumes: count, Seen: []int{}}
		done = make([]byte, (len(m.Chunks)+7)/8)
	}
	prior := chunkSet(bitmapWords(done, len(m.Chunks)))
	if t.regular && !t.created && t.before < m.Header.Size && slices.ContainsFunc(done, func(b byte) bool { return b != 0 }) {
		return nil, fmt.Errorf("%w: %w: %s records chunks on %s, but the file is now %d bytes, shorter than the image's %d: it was cut since; remove %s to start over",
			ErrBadInput, ErrPartialState, statePath, target, t.before, m.Header.Size, statePath)
	}

	res := &PartialResult{Manifest: m, State: statePath, Count: count}
	if opts.Stage != nil {
		if res.StagedFiles, res.StagedBytes, err = stageShards(ctx, m, img, opts.Stage, prior); err != nil {
			return res, Resumable(err)
		}
		staged, err := openImage(ctx, &stagedStore{vol: img, stage: opts.Stage})
		if err != nil {
			return res, err
		}
		if m.Encrypted() {
			// The same manifest bytes: read through the stage with the
			// manifest unlocked above rather than unwrap the key again.
			staged = im.In(staged.Store())
		}
		im = staged
	}
	plan := newPlan(m, false)
	notHere, err := planPartial(ctx, plan, im, prior)
	if err != nil {
		return nil, err
	}
	if err := t.open(); err != nil {
		return nil, err
	}
	if ident == nil {
		if ident, err = identifyOpen(target, t.f); err != nil {
			t.f.Close()
			return nil, err
		}
	}
	st.Target = *ident
	if opts.Name == "" {
		opts.Name = img.String()
	}
	// The state exists (bound to this image and target) before the
	// first chunk is written: a crash leaves it, underestimating.
	if err := initialPartialState(statePath, opts.State == "", st, done); err != nil {
		t.f.Close()
		if t.created {
			os.Remove(target)
		}
		return nil, fmt.Errorf("%w: %w: give a writable --state FILE", ErrBadInput, err)
	}

	rec := &partialRecorder{done: slices.Clone(done)}
	x := newExecutor(plan, t, im, nil, RestoreOptions{AllowDamaged: true, Workers: opts.Workers})
	x.zeroed = t.fresh || opts.TargetZeroed
	x.meter = NewMeter(m.Header.Size-plan.bytes(unavailable), opts.Progress)
	for _, o := range []origin{fromImage, fromParity} {
		x.suppliers[o] = &recordingSupplier{inner: x.suppliers[o], o: o, plan: plan, rec: rec}
	}
	stopCheckpoints := startCheckpoints(ctx, opts.CheckpointEvery, t, statePath, st, rec)
	runErr := x.run(ctx)
	stopCheckpoints()
	if runErr == nil {
		for _, i := range plan.chunks(fromZero) {
			rec.add(i)
		}
	}
	// Record only what is durable: the target first, then the state.
	if err := t.f.Sync(); err != nil {
		t.f.Close()
		return res, Resumable(errors.Join(runErr, fmt.Errorf("fsync %s: %w; this run's progress is not recorded in %s", target, err, statePath)))
	}
	if runErr == nil {
		st.Seen = mergeSeen(st.Seen, here)
	}
	final := rec.snapshot()
	if err := writePartialState(statePath, st, final); err != nil {
		t.f.Close()
		return res, Resumable(errors.Join(runErr, err))
	}
	res.summarise(plan, x, rec, notHere, st)
	if opts.Stage != nil && runErr == nil {
		if res.StageLeft, err = pruneStage(ctx, m, opts.Stage, bitmapWords(final, len(m.Chunks))); err != nil {
			t.f.Close()
			return res, Resumable(err)
		}
	}
	if runErr != nil {
		t.f.Close()
		if KindOf(runErr) == KindInterrupted {
			return res, fmt.Errorf("restore --partial interrupted: %w; %s records what is on %s: run the same command to continue", runErr, statePath, target)
		}
		return res, Resumable(fmt.Errorf("%w; %s records what is on %s", runErr, statePath, target))
	}
	if res.MissingChunks > 0 {
		err := t.f.Close()
		res.Elapsed = time.Since(start)
		if err != nil {
			return res, Resumable(fmt.Errorf("close %s: %w", target, err))
		}
		if len(res.Damaged) > 0 {
			return res, fmt.Errorf("%w: %d chunk(s) of %s are damaged beyond what parity on the volume(s) given repairs (%s): they were not written and stay missing; everything else is written and recorded in %s",
				ErrIntegrity, len(res.Damaged), opts.Name, describeChunks(m, res.Damaged), statePath)
		}
		return res, nil
	}
	return res, finishPartial(ctx, res, t, st, final, opts, start)
}

// initialPartialState writes the state before the run writes anything,
// making the default directory for block devices if needed.
func initialPartialState(path string, isDefault bool, st *partialState, done []byte) error {
	if isDefault && filepath.Dir(path) == filepath.Clean(PartialStateDir) {
		if err := os.MkdirAll(PartialStateDir, 0o700); err != nil {
			return fmt.Errorf("make %s for the state file: %w", PartialStateDir, err)
		}
	}
	return writePartialState(path, st, done)
}

// finishPartial ends the run that completed the target: the target is
// cut to size and fsynced, then read back whole against the image; the
// state is removed when it matches, and otherwise forgets the chunks that
// differ, so that the volumes holding them can be given again.
func finishPartial(ctx context.Context, res *PartialResult, t *restoreTarget, st *partialState, done []byte, opts PartialOptions, start time.Time) error {
	m := res.Manifest
	if err := t.finish(); err != nil {
		return Resumable(err)
	}
	meter := NewMeter(m.Header.Size, opts.Progress)
	rep, err := verify.Device(ctx, m, t.path, verify.DeviceOptions{Workers: opts.Workers, OnProgress: meter.Add})
	res.Report = rep
	if err != nil {
		if KindOf(err) == KindInterrupted {
			return fmt.Errorf("the final verification of %s was interrupted: %w; run the same command to verify again", t.path, err)
		}
		return Resumable(fmt.Errorf("verify %s: %w", t.path, err))
	}
	res.Elapsed = time.Since(start)
	if !rep.OK() {
		bad := rep.BadChunks()
		for _, i := range bad {
			done[i/8] &^= 1 << (i % 8)
		}
		if werr := writePartialState(res.State, st, done); werr != nil {
			return errors.Join(fmt.Errorf("%w: %s differs from the image after every chunk was written", ErrIntegrity, t.path), werr)
		}
		res.MissingChunks = len(bad)
		res.MissingSegments = segmentsHolding(m, bad)
		what := fmt.Sprintf("%d chunk(s) differ (%s)", len(bad), describeChunks(m, bad))
		if len(bad) == 0 {
			what = "its whole-source SHA-256 differs"
		}
		return fmt.Errorf("%w: %s does not match the image after every chunk was written: %s; %s now lists them as missing: give the volumes holding data segments %s again with restore --partial",
			ErrIntegrity, t.path, what, res.State, joinSegments(res.MissingSegments))
	}
	res.Complete = true
	return removePartialState(res.State)
}

// matches checks a state read from path against the image and target of
// this run, refusing (bad input, nothing written) another image, another
// target or another volume count.
func (s *partialState) matches(path, img, target string, m *format.Manifest, hash string, count int, ident *partialTarget) error {
	if s.ManifestSHA256 != hash || s.ImageID != m.Header.ImageID || s.Chunks != uint64(len(m.Chunks)) {
		return fmt.Errorf("%w: %w: %s is a volume of another image (%s, manifest sha256 %.16s…; a stale volume of an earlier capture is one too), but %s records a partial restore of image %s (manifest sha256 %.16s…) onto %s: give a volume of image %s, or remove %s to start over with this image",
			ErrBadInput, ErrPartialState, img, m.Header.ImageID, hash, path, s.ImageID, s.ManifestSHA256, s.Target.Path, s.ImageID, path)
	}
	if s.Volumes != count {
		return fmt.Errorf("%w: %w: %s belongs to a set of %d volumes, but %s records %d: it is a volume of another capture; remove %s to start over",
			ErrBadInput, ErrPartialState, img, count, path, s.Volumes, path)
	}
	if ident == nil {
		return fmt.Errorf("%w: %w: %s records a partial restore onto %s, but %s does not exist: give that target, or remove %s to start over",
			ErrBadInput, ErrPartialState, path, s.Target.Path, target, path)
	}
	if ok, why := s.Target.same(*ident); !ok {
		return fmt.Errorf("%w: %w: %s records a partial restore onto %s, but %s is another target (%s): give that target, or another --state",
			ErrBadInput, ErrPartialState, path, s.Target.Path, target, why)
	}
	return nil
}

// identifyTarget describes an existing target for the state file.
func identifyTarget(path string) (*partialTarget, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: target %s: %w", ErrBadInput, path, err)
	}
	if fi.Mode().IsRegular() {
		dev, ino, _ := fileIdentity(fi)
		return &partialTarget{Path: absPath(path), Kind: "file", Dev: dev, Ino: ino}, nil
	}
	info, err := device.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("%w: target %s: %w", ErrBadInput, path, err)
	}
	return &partialTarget{Path: absPath(path), Kind: "block", Size: info.Size, Rdev: fmt.Sprintf("%d:%d", info.Major, info.Minor), ByID: info.ByID}, nil
}

// identifyOpen describes the file this run created, as opened.
func identifyOpen(path string, f *os.File) (*partialTarget, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	dev, ino, _ := fileIdentity(fi)
	return &partialTarget{Path: absPath(path), Kind: "file", Dev: dev, Ino: ino}, nil
}

// absPath makes a target's path absolute for the state, which may be
// read from another directory; as given when that fails.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// planPartial plans one partial run: chunks already on the target stay
// there; chunks of data segments the volumes lack are not this run's
// (unavailable, and returned as notHere) unless parity rebuilds them from
// what the volumes hold; the rest come from the volumes.
func planPartial(ctx context.Context, plan *restorePlan, im *seed.Image, prior chunkSet) (notHere chunkSet, err error) {
	m := plan.m
	notHere = newChunkSet(len(m.Chunks))
	sv, err := im.Survey(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", im, err)
	}
	beyondParity := map[format.SegmentID]bool{}
	for _, id := range sv.Lost {
		beyondParity[id] = true
	}
	for _, d := range sv.Damage {
		id, ok := d.SegmentID()
		if !ok || id.Kind != format.SegmentData || !errors.Is(d.Err, format.ErrMissing) {
			continue // a segment at another size is read: its good chunks are good
		}
		o := fromParity
		if !plan.parity || beyondParity[id] {
			o = unavailable
		}
		for _, i := range im.SegmentChunks(id.Number) {
			plan.set(i, o)
			if o == unavailable {
				notHere.add(i)
			}
		}
	}
	for i := range m.Chunks {
		if prior.has(uint64(i)) {
			plan.set(uint64(i), onTarget)
		}
	}
	return notHere, nil
}

// summarise fills in what the run wrote and what is still missing.
func (r *PartialResult) summarise(plan *restorePlan, x *executor, rec *partialRecorder, notHere chunkSet, st *partialState) {
	m := plan.m
	r.Rebuilt = x.writtenFrom(fromParity)
	r.Written = rec.added
	r.WrittenBytes = rec.bytes(m)
	for _, i := range plan.chunks(unavailable) {
		if !notHere.has(i) {
			r.Damaged = append(r.Damaged, i)
		}
	}
	r.Seen = slices.Clone(st.Seen)
	for v := 1; v <= r.Count; v++ {
		if !slices.Contains(st.Seen, v) {
			r.Unseen = append(r.Unseen, v)
		}
	}
	var missing []uint64
	done := rec.snapshot()
	for i := range m.Chunks {
		if done[i/8]&(1<<(i%8)) == 0 {
			missing = append(missing, uint64(i))
			_, l := m.ChunkRange(uint64(i))
			r.MissingBytes += l
		}
	}
	r.MissingChunks = len(missing)
	r.MissingSegments = segmentsHolding(m, missing)
}

// segmentsHolding lists, sorted and once each, the data segments that
// hold the stored chunks of idx (a stripe's segments grow together, so
// chunk order is not segment order).
func segmentsHolding(m *format.Manifest, idx []uint64) []uint32 {
	var out []uint32
	for _, i := range idx {
		if m.Chunks[i].Kind == format.KindStored {
			out = append(out, m.Chunks[i].Segment)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// joinSegments lists segment numbers briefly.
func joinSegments(segs []uint32) string {
	var parts []string
	for n, s := range segs {
		if n == 12 {
			parts = append(parts, fmt.Sprintf("and %d more", len(segs)-n))
			break
		}
		parts = append(parts, format.DataID(s).Key())
	}
	return strings.Join(parts, ", ")
}

// mergeSeen adds the volumes of this run to those seen, sorted, once each.
func mergeSeen(seen, here []int) []int {
	out := slices.Clone(seen)
	for _, v := range here {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// bitmapWords converts the state's byte bitmap into a chunkSet.
func bitmapWords(b []byte, n int) []uint64 {
	s := newChunkSet(n)
	for i := range n {
		if b[i/8]&(1<<(i%8)) != 0 {
			s.add(uint64(i))
		}
	}
	return s
}

// partialRecorder collects the chunks written in this run onto the
// bitmap of those on the target before it.
type partialRecorder struct {
	mu    sync.Mutex
	done  []byte
	added int
	list  []uint64
}

func (r *partialRecorder) add(i uint64) {
	r.mu.Lock()
	if r.done[i/8]&(1<<(i%8)) == 0 {
		r.done[i/8] |= 1 << (i % 8)
		r.added++
		r.list = append(r.list, i)
	}
	r.mu.Unlock()
}

// snapshot copies the bitmap as it is now.
func (r *partialRecorder) snapshot() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.done)
}

// bytes sums the raw bytes of the chunks added.
func (r *partialRecorder) bytes(m *format.Manifest) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, i := range r.list {
		_, l := m.ChunkRange(i)
		n += l
	}
	return n
}

// recordingSupplier is a supplier whose chunks, once written for origin
// o, are recorded: the executor's put returns only after the write.
type recordingSupplier struct {
	inner supplier
	o     origin
	plan  *restorePlan
	rec   *partialRecorder
}

func (s *recordingSupplier) supply(ctx context.Context, chunks []uint64, put func(uint64, []byte) error, missing func(uint64, error) error) error {
	return s.inner.supply(ctx, chunks, func(i uint64, raw []byte) error {
		wanted := s.plan.of(i) == s.o
		if err := put(i, raw); err != nil {
			return err
		}
		if wanted {
			s.rec.add(i)
		}
		return nil
	}, missing)
}

// startCheckpoints records progress every interval while a run goes on:
// a snapshot of the chunks written, then an fsync of the target, then the
// state (so it never claims a chunk that is not durable). The returned
// function stops it and waits.
func startCheckpoints(ctx context.Context, every time.Duration, t *restoreTarget, path string, st *partialState, rec *partialRecorder) func() {
	if every <= 0 {
		every = 30 * time.Second
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			snap := rec.snapshot()
			if t.f.Sync() != nil {
				continue // the final record reports it
			}
			// A failed checkpoint only loses progress; the final
			// record after the run reports any lasting failure.
			_ = writePartialState(path, st, snap)
		}
	}()
	return func() {
		close(stop)
		wg.Wait()
	}
}
