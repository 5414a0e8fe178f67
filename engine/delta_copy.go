package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/store"
)

// copyDeltaDigests copies the base-digest table of the delta image im
// (format.BaseDigestsKey: not a segment, so not among the image's
// segment keys) to dst, reading it once and checking it on the way: its
// structure against the manifest's geometry and its SHA-256 against
// base.digests_sha256. A damaged table is not stored (ErrIntegrity).
// Copy calls it before it writes the manifest; for an image that is not a
// delta it does nothing.
func copyDeltaDigests(ctx context.Context, im *seed.Image, dst store.Store) error {
	m := im.Manifest()
	if !m.Header.RequiresFeature(format.FeatureDelta) {
		return nil
	}
	rc, err := im.Store().Get(ctx, format.BaseDigestsKey, 0, -1)
	if errors.Is(err, store.ErrNotExist) {
		return fmt.Errorf("%w: delta %s lacks its %s: copy it from a complete copy of the delta", ErrIntegrity, im, format.BaseDigestsKey)
	}
	if err != nil {
		return fmt.Errorf("read %s of %s: %w", format.BaseDigestsKey, im, err)
	}
	defer rc.Close()
	pw := store.PutPipe(ctx, dst, format.BaseDigestsKey, -1)
	bw := bufio.NewWriterSize(pw, 256<<10)
	err = format.CheckBaseDigests(io.TeeReader(rc, bw), m)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		pw.CloseWithError(err)
		if KindOf(err) == KindIntegrity {
			return err
		}
		return digestsErr(im, err)
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("write %s to %s: %w", format.BaseDigestsKey, dst, err)
	}
	return nil
}
