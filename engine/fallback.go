package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/verify"
)

// openFallback checks that fb holds the same image as m (the same
// manifest hash): only then are its bytes interchangeable with ours.
func openFallback(ctx context.Context, fb store.Store, m *format.Manifest) error {
	fm, err := verify.LoadManifest(ctx, fb)
	if err != nil {
		return fmt.Errorf("%w: fallback %s: %w", ErrBadInput, fb, err)
	}
	if fm.Hash != m.Hash {
		return fmt.Errorf("%w: fallback %s holds another image (manifest %x, want %x): give a copy of the same image",
			ErrBadInput, fb, fm.Hash[:8], m.Hash[:8])
	}
	return nil
}

// fetchChunks reads the given stored chunks from the fallback image,
// verifies each against its hash and hands it to fn. It returns the chunks
// the fallback could not supply either.
func fetchChunks(ctx context.Context, fb store.Store, m *format.Manifest, chunks []uint64, fn func(uint64, []byte) error) ([]uint64, error) {
	codec, err := format.NewChunkCodec(0, 1, format.MaxChunkSize)
	if err != nil {
		return nil, err
	}
	defer codec.Close()
	var missing []uint64
	for _, i := range chunks {
		c := m.Chunks[i]
		f, err := format.ReadFrame(store.ReaderAt(ctx, fb, format.SegmentKey(c.Segment)), m, i)
		var raw []byte
		if err == nil {
			_, length := m.ChunkRange(i)
			raw, err = codec.Decode(f.Codec, f.Payload, int(length), c.Hash, nil, nil)
		}
		if err != nil {
			if ctx.Err() != nil {
				return missing, ctx.Err()
			}
			if !damageLike(err) {
				return missing, fmt.Errorf("fallback %s: chunk %d: %w", fb, i, err)
			}
			missing = append(missing, i)
			continue
		}
		if err := fn(i, raw); err != nil {
			return missing, err
		}
	}
	return missing, nil
}

// damageLike reports whether err means "this copy is damaged or lacks the
// data" rather than an operational failure.
func damageLike(err error) bool {
	return errors.Is(err, store.ErrNotExist) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, format.ErrCorrupt) || errors.Is(err, format.ErrChecksum) || errors.Is(err, format.ErrTooLarge)
}

// patchFromFallback repairs the segments that findings name, using the
// fallback copy: a data segment that is present at full size and has only
// damaged chunks is rewritten with just those frames taken from the
// fallback; any other damaged segment is copied whole, verified. It
// returns the keys rewritten.
func patchFromFallback(ctx context.Context, st, fb store.Store, m *format.Manifest, findings []verify.Finding) ([]string, error) {
	chunkOnly := map[string][]uint64{}
	whole := map[string]bool{}
	for _, f := range findings {
		switch {
		case f.Key == "" || f.Key == format.ManifestKey || strings.HasPrefix(f.Key, format.ManifestKey+"."):
		case f.IsChunk && !errors.Is(f.Err, format.ErrMissing):
			chunkOnly[f.Key] = append(chunkOnly[f.Key], f.Chunk)
		default:
			whole[f.Key] = true
		}
	}
	var keys []string
	for k := range chunkOnly {
		if !whole[k] {
			keys = append(keys, k)
		}
	}
	for k := range whole {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	meter := NewMeter(0, nil)
	var done []string
	for _, key := range keys {
		sum, parity, ok := summaryOf(m, key)
		if !ok {
			continue
		}
		var err error
		if whole[key] || parity {
			err = copySegment(ctx, fb, st, m, key, sum, parity, meter)
		} else {
			err = patchFrames(ctx, st, fb, m, key, sum, chunkOnly[key])
		}
		if err != nil {
			if errors.Is(err, errSegmentDamaged) {
				continue // the fallback's copy is damaged too: leave it
			}
			return done, fmt.Errorf("repair %s from %s: %w", key, fb, err)
		}
		done = append(done, key)
	}
	return done, nil
}

func summaryOf(m *format.Manifest, key string) (format.SegmentSummary, bool, bool) {
	for _, s := range m.Segments {
		if format.SegmentKey(s.Number) == key {
			return s, false, true
		}
	}
	for _, s := range m.Parity {
		if format.ParityKey(s.Number) == key {
			return s, true, true
		}
	}
	return format.SegmentSummary{}, false, false
}

// patchFrames rewrites a data segment, atomically, with the frames of the
// given chunks taken from the fallback and every other byte from the
// segment as it is; the result is verified as it streams.
func patchFrames(ctx context.Context, st, fb store.Store, m *format.Manifest, key string, sum format.SegmentSummary, chunks []uint64) error {
	sort.Slice(chunks, func(i, j int) bool { return chunks[i] < chunks[j] })
	var readers []io.Reader
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	pos := int64(0)
	add := func(s store.Store, off, n int64) error {
		if n <= 0 {
			return nil
		}
		rc, err := s.Get(ctx, key, off, n)
		if err != nil {
			return err
		}
		closers = append(closers, rc)
		readers = append(readers, rc)
		return nil
	}
	for _, i := range chunks {
		c := m.Chunks[i]
		if err := add(st, pos, c.Offset-pos); err != nil {
			return err
		}
		if err := add(fb, c.Offset, c.FrameLen()); err != nil {
			return fmt.Errorf("%w: %v", errSegmentDamaged, err)
		}
		pos = c.Offset + c.FrameLen()
	}
	if err := add(st, pos, sum.Size-pos); err != nil {
		return err
	}
	pw := store.PutPipe(ctx, st, key, sum.Size)
	if err := verifyDataStream(io.TeeReader(io.MultiReader(readers...), pw), m, sum); err != nil {
		pw.CloseWithError(err)
		return fmt.Errorf("%w: %v", errSegmentDamaged, err)
	}
	return pw.Close()
}
