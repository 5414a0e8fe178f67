package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/verify"
)

// repairImage rewrites, atomically, what rep found damaged in im: whole
// segments rebuilt from parity; then, with a fallback, what parity could
// not rebuild (checking again first when parity rewrote something); then
// the image's manifest files that are missing, damaged or hold another
// manifest, with the image's own manifest bytes (a copy of another image
// lying beside them is never adopted nor written over them). It returns
// the keys it rewrote.
func repairImage(ctx context.Context, im, fb *seed.Image, rep *verify.Report, check func() (*verify.Report, error)) ([]string, error) {
	st := im.Store()
	statuses, err := im.RebuildSegments(ctx, rep.Findings, func(id format.SegmentID, size int64) seed.SegmentSink {
		return store.PutPipe(ctx, st, id.Key(), size)
	})
	if err != nil {
		return nil, fmt.Errorf("repair %s: %w", st, err)
	}
	var rewritten []string
	for _, s := range statuses {
		if s.Repairable {
			rewritten = append(rewritten, s.Damaged...)
		}
	}
	if fb != nil {
		mid := rep
		if len(rewritten) > 0 {
			if mid, err = check(); err != nil {
				return rewritten, err
			}
		}
		keys, err := patchFromFallback(ctx, im, fb, mid.Findings)
		rewritten = append(rewritten, keys...)
		if err != nil {
			return rewritten, err
		}
	}
	chk, err := im.CheckManifests(ctx)
	if err != nil {
		return rewritten, fmt.Errorf("check the manifests of %s: %w", st, err)
	}
	mb := im.ManifestBytes()
	for _, k := range chk.Bad {
		if err := st.Put(ctx, k, bytes.NewReader(mb), int64(len(mb))); err != nil {
			return rewritten, fmt.Errorf("rewrite %s of %s: %w", k, st, err)
		}
		rewritten = append(rewritten, k)
	}
	return rewritten, nil
}

// patchFromFallback repairs the segments that damage names, from the
// fallback copy: a data segment that is present and has only damaged
// chunks is rewritten with just those frames taken from the fallback;
// any other damaged segment is copied whole. Everything written is
// checked as it streams. It returns the keys rewritten; segments the
// fallback holds damaged too are left as they are.
func patchFromFallback(ctx context.Context, im, fb *seed.Image, damage []seed.Damage) ([]string, error) {
	chunkOnly := map[format.SegmentID][]uint64{}
	whole := map[format.SegmentID]bool{}
	for _, d := range damage {
		id, ok := d.SegmentID()
		switch {
		case !ok:
			// a manifest file: rewritten from the image's manifest
		case d.IsChunk && !errors.Is(d.Err, format.ErrMissing):
			chunkOnly[id] = append(chunkOnly[id], d.Chunk)
		default:
			whole[id] = true
		}
	}
	ids := make([]format.SegmentID, 0, len(chunkOnly)+len(whole))
	for id := range chunkOnly {
		if !whole[id] {
			ids = append(ids, id)
		}
	}
	for id := range whole {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b format.SegmentID) int { return strings.Compare(a.Key(), b.Key()) })
	var done []string
	for _, id := range ids {
		err := patchSegment(ctx, im, fb, id, chunkOnly[id], whole[id])
		if format.IsDamage(err) {
			continue // the fallback's copy is damaged too: leave it
		}
		if err != nil {
			return done, fmt.Errorf("repair %s from %s: %w", id.Key(), fb, err)
		}
		done = append(done, id.Key())
	}
	return done, nil
}

// patchSegment rewrites segment id of im, atomically, from the fallback:
// whole, or with only the frames of chunks taken from it and every other
// byte from the segment as it is.
func patchSegment(ctx context.Context, im, fb *seed.Image, id format.SegmentID, chunks []uint64, whole bool) error {
	sum, ok := im.Manifest().Summary(id)
	if !ok {
		return nil // not a segment of the image
	}
	st := im.Store()
	pw := store.PutPipe(ctx, st, id.Key(), sum.Size)
	var err error
	if whole || id.Kind != format.SegmentData {
		err = fb.CopySegment(ctx, id, pw)
	} else {
		r, closeAll, serr := splice(ctx, st, fb.Store(), im.Manifest(), id, sum.Size, chunks)
		if serr != nil {
			pw.CloseWithError(serr)
			return serr
		}
		err = im.CheckStream(ctx, id, r, pw)
		closeAll()
	}
	if err != nil {
		pw.CloseWithError(err)
		return err
	}
	return pw.Close()
}

// splice reads segment id of size bytes with the frames of chunks (sorted
// here) from the fallback store and every other byte from st. The caller
// checks what it reads.
func splice(ctx context.Context, st, fb store.Store, m *format.Manifest, id format.SegmentID, size int64, chunks []uint64) (io.Reader, func(), error) {
	slices.Sort(chunks)
	var readers []io.Reader
	var closers []io.Closer
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	add := func(s store.Store, off, n int64) error {
		if n <= 0 {
			return nil
		}
		rc, err := s.Get(ctx, id.Key(), off, n)
		if err != nil {
			return err
		}
		closers = append(closers, rc)
		readers = append(readers, rc)
		return nil
	}
	pos := int64(0)
	for _, i := range chunks {
		c := m.Chunks[i]
		if err := add(st, pos, c.Offset-pos); err != nil {
			closeAll()
			return nil, nil, err
		}
		if err := add(fb, c.Offset, c.FrameLen()); err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("%w: fallback: %v", format.ErrMissing, err)
		}
		pos = c.Offset + c.FrameLen()
	}
	if err := add(st, pos, size-pos); err != nil {
		closeAll()
		return nil, nil, err
	}
	return io.MultiReader(readers...), closeAll, nil
}
