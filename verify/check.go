package verify

import (
	"context"
	"errors"

	"fmt"
	"io"
	"slices"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store"
)

// ScanOptions tunes [Check] and [Scan]. Zero values mean the defaults.
type ScanOptions struct {
	// Workers decode and hash chunks in parallel; default GOMAXPROCS.
	Workers int
	// Readers stream segments in parallel; default the store's
	// connection count, or 2.
	Readers int
	// OnChunk, if set, receives every stored chunk's raw bytes after they
	// passed their checks, from worker goroutines concurrently. raw is
	// valid only during the call. An error from OnChunk ends the scan.
	OnChunk func(index uint64, raw []byte) error
	// OnProgress, if set, is called with the raw bytes of each chunk done.
	OnProgress func(n int64)
	// StopOnDamage ends the scan at the first finding.
	StopOnDamage bool
	// Segments restricts the scan to these data segments (nil: all).
	Segments []uint32
	// Transport checks stored bytes only, on any image: every frame
	// against its stored digest, with every structure, parity row and
	// manifest copy, opening no chunk (seed.ReadOptions.Transport). It
	// is what a check of an encrypted image that was not unlocked does
	// without being asked. Report.Depth says which check was made.
	Transport bool
	// Deep requires every chunk to be opened and checked against its
	// chunk hash and block digests (what a check of a plain or unlocked
	// image does without being asked): on an encrypted image that was
	// not unlocked the check then fails at once, before reading anything,
	// with an error wrapping format.ErrNoKey instead of checking
	// transport integrity only.
	Deep bool
}

// ErrDepth means a check was asked to be both a transport check and a
// deep one.
var ErrDepth = errors.New("verify: a check is either transport-only or deep, not both")

// CheckOptions tunes [Check].
type CheckOptions struct {
	ScanOptions
}

// Scan reads every stored chunk of the chosen segments of the image in st
// described by m and checks it ([seed.Image.Read]); damage is collected in
// the returned Report. The error is for failures that stop the scan; with
// StopOnDamage, damage stops it with an error wrapping ErrDamaged.
func Scan(ctx context.Context, st store.Store, m *format.Manifest, opts ScanOptions) (*Report, error) {
	im := seed.New(st, m, nil)
	if err := checkDepth(im, opts); err != nil {
		return nil, err
	}
	rep := &Report{}
	err := scan(ctx, im, opts, nil, rep)
	rep.Sort()
	return rep, err
}

// checkDepth refuses, before anything is read, a check asked to be both
// transport-only and deep, and a deep check of an encrypted image that
// was not unlocked.
func checkDepth(im *seed.Image, opts ScanOptions) error {
	switch {
	case opts.Transport && (opts.Deep || opts.OnChunk != nil):
		return ErrDepth
	case im.Locked() && (opts.Deep || opts.OnChunk != nil):
		return fmt.Errorf("%s is encrypted and a deep check opens every chunk, which needs its key: give an identity that opens it, or check transport integrity only: %w", im, format.ErrNoKey)
	}
	return nil
}

func scan(ctx context.Context, im *seed.Image, opts ScanOptions, parity map[uint32]*format.ParityIndex, rep *Report) error {
	stats, err := im.Read(ctx, seed.ReadOptions{Workers: opts.Workers, Readers: opts.Readers, Segments: opts.Segments,
		OnChunk: opts.OnChunk, OnProgress: opts.OnProgress, StopOnDamage: opts.StopOnDamage,
		OnDamage: rep.addDamage, Parity: parity, Transport: opts.Transport, Deep: opts.Deep})
	rep.mu.Lock()
	rep.ChunksOK, rep.ZeroChunks, rep.BytesChecked = stats.ChunksOK, stats.ZeroChunks, stats.BytesChecked
	rep.StoredChecked, rep.StoredBytes = stats.StoredChecked, stats.StoredBytes
	rep.Digests = stats.Digests
	rep.DigestOnly = im.Manifest().Header.RequiresFeature(format.FeatureDigestOnly)
	rep.Depth = DepthDeep
	if stats.Transport {
		rep.Depth = DepthTransport
	}
	rep.mu.Unlock()
	if err != nil && opts.StopOnDamage && format.IsDamage(err) {
		err = fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	return err
}

// storedDigestsCovered reports whether the stored digest of every stored
// chunk of the scanned segments was checked: it matched, or the chunk is
// a finding. A chunk whose segment index was damaged has no stored digest
// to check it against; in a deep check it is still checked against its
// chunk hash, but this check did not cover it.
func (r *Report) storedDigestsCovered(m *format.Manifest, segments []uint32) bool {
	var want map[uint32]bool
	if segments != nil {
		want = map[uint32]bool{}
		for _, n := range segments {
			want[n] = true
		}
	}
	bad := map[uint64]bool{}
	for _, i := range r.BadChunks() {
		bad[i] = true
	}
	var need uint64 // stored chunks that must have had their digest checked
	for i, c := range m.Chunks {
		if c.Kind == format.KindStored && (want == nil || want[c.Segment]) && !bad[uint64(i)] {
			need++
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.StoredChecked >= need
}

// Check examines a whole image: every stored frame against its stored
// digest and, in a deep check, every chunk opened and checked (hash and
// block digests), every segment's structure, every parity segment and
// row, the manifest and its copies, and, for each damaged parity stripe,
// whether parity can rebuild it. It reads each segment once, plus the
// damaged rows of damaged stripes. It writes nothing.
//
// The check is deep on a plain image and on an encrypted one that was
// unlocked (seed.Image.Unlock); it checks transport integrity only (no
// chunk opened, Report.Depth DepthTransport) on an encrypted image that
// was not, and on any image with opts.Transport. opts.Deep refuses the
// transport-only case instead.
func Check(ctx context.Context, st store.Store, m *format.Manifest, opts CheckOptions) (*Report, error) {
	return CheckImage(ctx, seed.New(st, m, nil), opts)
}

// CheckImage is [Check] of an opened image.
func CheckImage(ctx context.Context, im *seed.Image, opts CheckOptions) (*Report, error) {
	so := opts.ScanOptions
	so.StopOnDamage = false
	if err := checkDepth(im, so); err != nil {
		return nil, err
	}
	rep := &Report{}
	for _, d := range im.Strays() {
		rep.ignore(d)
	}
	indexes, err := im.CheckParity(ctx, func(d seed.Damage) { rep.add(d) })
	if err != nil {
		return rep, err
	}
	if err := scan(ctx, im, so, indexes, rep); err != nil {
		return rep, err
	}
	switch {
	case rep.DigestOnly:
		// No chunk data: every frame header, index entry (chunk hash and
		// block digests) and footer was checked against the manifest;
		// the digests themselves are checked against a device by Device.
		rep.checked(CheckDigestEntries)
	case rep.TransportOnly():
		// No chunk was opened: their hashes and block digests were not
		// compared with anything.
	default:
		rep.checked(CheckChunkHashes, CheckBlockDigests)
	}
	// A deep check of chunks with data checks each chunk against its
	// chunk hash, which proves its stored bytes too: the stored digests
	// are the transport check's (and a digest-only image's).
	if (rep.TransportOnly() || rep.DigestOnly) && rep.storedDigestsCovered(im.Manifest(), so.Segments) {
		rep.checked(CheckStoredDigests)
	}
	rep.checked(CheckSegments)
	if m := im.Manifest(); m.Stripes() > 0 && len(indexes) == m.Stripes() {
		// Every stripe had an intact parity index, so every row of
		// every parity and data segment was compared with its CRC.
		rep.checked(CheckParityRows)
	}
	mc, err := im.CheckManifests(ctx)
	if err != nil {
		return rep, err
	}
	for _, d := range mc.Damage {
		if slices.Contains(mc.Strays, d.Key) {
			rep.ignore(d)
		} else {
			rep.add(d)
		}
	}
	rep.checked(CheckManifests)
	if err := checkBaseDigests(ctx, im, rep); err != nil {
		return rep, err
	}
	if len(rep.Findings) > 0 {
		rep.Stripes, err = im.Stripes(ctx, rep.Findings)
	}
	rep.Sort()
	return rep, err
}

// Repairable reports whether every finding can be repaired: each damaged
// segment lies in a stripe parity can rebuild, and an intact manifest copy
// exists (the manifest was loaded, so one does). Copies of another image
// need no repair: they are not part of this image.
func (r *Report) Repairable(m *format.Manifest) bool {
	if len(r.Findings) == 0 {
		return true
	}
	if _, ok := m.Geometry(); !ok {
		return false
	}
	inStripe := map[string]bool{}
	for _, s := range r.Stripes {
		if !s.Repairable {
			return false
		}
		for _, k := range s.Damaged {
			inStripe[k] = true
		}
	}
	for _, f := range r.Findings {
		if _, isSeg := f.SegmentID(); !isSeg {
			continue // a manifest file: rewritten from the intact manifest
		}
		if !inStripe[f.Key] {
			return false
		}
	}
	return true
}

// LostChunks lists the chunks beyond repair: all damaged chunks without
// parity, those in unrepairable rows with it.
func (r *Report) LostChunks(m *format.Manifest) []uint64 {
	if _, ok := m.Geometry(); !ok {
		return r.BadChunks()
	}
	seen := map[uint64]bool{}
	var out []uint64
	for _, s := range r.Stripes {
		for _, c := range s.LostChunks {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// ignore names a file left alone, once.
func (r *Report) ignore(d seed.Damage) {
	if !slices.ContainsFunc(r.Ignored, func(f Finding) bool { return f.Key == d.Key }) {
		r.Ignored = append(r.Ignored, d)
	}
}

// checkBaseDigests reads a delta image's base-digest table (spec §12)
// whole and checks it against the manifest and base.digests_sha256: a
// missing or damaged table is damage of the image (restore of the delta
// would refuse it); an image that is not a delta has none.
func checkBaseDigests(ctx context.Context, im *seed.Image, rep *Report) error {
	m := im.Manifest()
	if !m.Header.RequiresFeature(format.FeatureDelta) {
		return nil
	}
	damage := func(err error) {
		rep.add(Finding{Key: format.BaseDigestsKey, Err: fmt.Errorf("%s of %s: %w", format.BaseDigestsKey, im, err)})
	}
	rc, err := im.Store().Get(ctx, format.BaseDigestsKey, 0, -1)
	if errors.Is(err, store.ErrNotExist) || errors.Is(err, store.ErrNotRegular) {
		damage(fmt.Errorf("%w: %w", format.ErrMissing, err))
		return nil
	}
	if err == nil {
		err = format.CheckBaseDigests(store.ContextReader(ctx, rc), m)
		rc.Close()
		// The manifest says the table is there: whatever it holds that
		// is not the table is damage, a wrong magic or version included.
		if format.IsDamage(err) || errors.Is(err, format.ErrFormat) || errors.Is(err, format.ErrVersion) || errors.Is(err, io.ErrUnexpectedEOF) {
			damage(err)
			return nil
		}
	}
	if err == nil {
		rep.checked(CheckBaseDigests)
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("read %s of %s: %w", format.BaseDigestsKey, im, err)
}
