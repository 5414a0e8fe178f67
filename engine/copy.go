package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"filippo.io/age"
	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/sign"
	"github.com/seedship/seedship/store"
)

// CopyOptions tunes [Copy].
type CopyOptions struct {
	Jobs     int // segments copied in parallel; default the slower store's connections
	Progress func(Progress)
	// Trust, if set, refuses (exit 3, nothing written) a source whose
	// manifest is not signed by one of its keys. With or without it, an
	// intact signature of the source is copied beside every manifest.
	Trust *sign.Trust
	// Identities, if given, open an encrypted image (spec §11), so that
	// every chunk is decrypted and checked against its keyed chunk hash
	// as it streams; they must open it (else ErrBadInput, nothing
	// written). Without them an encrypted image is copied by its stored
	// bytes, each frame checked against its stored digest: no key needed.
	Identities []age.Identity
}

// CopyResult describes a finished copy.
type CopyResult struct {
	Manifest *format.Manifest
	Copied   []string // keys written this time
	Skipped  []string // keys already present at the destination, read back and verified intact
	Bytes    int64    // bytes transferred
	Damaged  []string // source segments that failed verification and were not copied
	// Signer is who signed the image: checked against CopyOptions.Trust
	// when given, else only the key of the intact signature that was
	// copied; nil for an unsigned image.
	Signer *sign.Signatory
}

// Copy copies the image in src to dst, verifying every segment while it
// streams (chunk hashes for data segments, row CRCs for parity), and writes
// the manifest last, so dst becomes a complete image only when everything
// arrived intact. It holds dst's writer lock throughout. It resumes: a
// segment already at dst is read back and verified, and kept only if
// intact (a damaged one is copied again). A damaged source segment is not
// copied; the copy then ends with an error wrapping ErrIntegrity, after
// copying the rest, and without a manifest at dst (repair the source, or
// let 'verify --repair' rebuild the missing segment at dst from parity,
// then copy again).
func Copy(ctx context.Context, src, dst store.Store, opts CopyOptions) (*CopyResult, error) {
	im, err := openImage(ctx, src)
	if err != nil {
		return nil, err
	}
	m := im.Manifest()
	if m.Header.RequiresFeature(format.FeatureDigestOnly) {
		return nil, fmt.Errorf("%w: %s", ErrBadInput, digestOnlyRefusal("copy", src.String()))
	}
	// Checked (or, without a trust set, read) before anything is written:
	// the signature travels with the image.
	signer, err := checkSigned(ctx, im, opts.Trust)
	if err == nil && signer == nil {
		signer, err = sign.InspectStored(ctx, src, manifestKeys(im), im.ManifestBytes())
		if errors.Is(err, sign.ErrUnsigned) {
			signer, err = nil, nil
		}
	}
	if err != nil {
		return nil, err
	}
	if err := unlock(im, opts.Identities, keyIfGiven); err != nil {
		return nil, err
	}
	unlockDst, err := lockImage(ctx, dst, "copy")
	if err != nil {
		return nil, err
	}
	defer unlockDst()
	if err := sameImageOrNone(ctx, dst, m); err != nil {
		return nil, err
	}
	if opts.Jobs <= 0 {
		opts.Jobs = min(store.ConnectionsOf(src, 2), store.ConnectionsOf(dst, 2))
	}
	// Each segment copy holds a frame and a decoded chunk, a stream
	// buffer and an S3 part: no more of them than fit the memory budget.
	perJob := 3*int64(m.Header.ChunkSize) + 17<<20
	opts.Jobs = max(1, min(opts.Jobs, int(memoryBudget/perJob)))
	res, err := copySegments(ctx, im, dst, opts)
	if err != nil {
		return res, err
	}
	if len(res.Damaged) > 0 {
		return res, fmt.Errorf("%w: %d segment(s) of %s are damaged and were not copied: %v; dst has no manifest yet (repair the source with 'seedship verify --repair', or fetch them from another copy, then copy again)",
			ErrIntegrity, len(res.Damaged), src, res.Damaged)
	}
	// A delta's base-digest table is no segment: copied (and checked)
	// before the manifest that authenticates it.
	if err := copyDeltaDigests(ctx, im, dst); err != nil {
		return res, Resumable(err)
	}
	res.Signer = signer
	if signer != nil {
		if err := putSignature(ctx, dst, m, signer.Signature); err != nil {
			return res, Resumable(err)
		}
	}
	mb := im.ManifestBytes()
	for _, k := range append(m.CopyKeys(), format.ManifestKey) {
		if err := dst.Put(ctx, k, bytes.NewReader(mb), int64(len(mb))); err != nil {
			return res, Resumable(fmt.Errorf("write %s to %s: %w", k, dst, err))
		}
		res.Copied = append(res.Copied, k)
	}
	return res, nil
}

// sameImageOrNone refuses a destination that holds another image.
func sameImageOrNone(ctx context.Context, dst store.Store, m *format.Manifest) error {
	dm, err := seed.Open(ctx, dst)
	switch {
	case err == nil && dm.Manifest().Hash != m.Hash:
		return fmt.Errorf("%w: destination %s holds another image (manifest %x): choose an empty destination", ErrBadInput, dst, dm.Manifest().Hash[:8])
	case err == nil, errors.Is(err, seed.ErrNoImage):
		return nil
	}
	return fmt.Errorf("destination %s: %w", dst, err)
}

// copySegments copies every segment of im to dst, opts.Jobs at a time:
// those dst holds intact are kept, the rest are copied, verified as they
// stream. Damage in the source is collected in Damaged; any other failure
// stops the copy (resumable: what was copied stays).
func copySegments(ctx context.Context, im *seed.Image, dst store.Store, opts CopyOptions) (*CopyResult, error) {
	m := im.Manifest()
	ids := m.SegmentIDs()
	var total int64
	for _, id := range ids {
		sum, _ := m.Summary(id)
		total += sum.Size
	}
	meter := NewMeter(total, opts.Progress)
	res := &CopyResult{Manifest: m}
	at := im.In(dst)
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Jobs)
	for _, id := range ids {
		g.Go(func() error {
			sum, _ := m.Summary(id)
			kept, err := keep(gctx, at, id)
			if err != nil {
				return fmt.Errorf("read back %s at %s: %w", id.Key(), dst, err)
			}
			if kept {
				meter.Add(sum.Size)
				mu.Lock()
				res.Skipped = append(res.Skipped, id.Key())
				mu.Unlock()
				return nil
			}
			err = copySegment(gctx, im, dst, id, sum.Size, meter)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				res.Copied = append(res.Copied, id.Key())
				res.Bytes += sum.Size
			case format.IsDamage(err) && gctx.Err() == nil:
				res.Damaged = append(res.Damaged, fmt.Sprintf("%s (%v)", id.Key(), err))
			default:
				return fmt.Errorf("copy %s: %w", id.Key(), err)
			}
			return nil
		})
	}
	return res, Resumable(g.Wait())
}

// keep reports whether the destination already holds segment id intact:
// present and every byte of it verified, as a copy would verify it.
func keep(ctx context.Context, at *seed.Image, id format.SegmentID) (bool, error) {
	sum, _ := at.Manifest().Summary(id)
	info, err := at.Store().Stat(ctx, id.Key())
	if errors.Is(err, store.ErrNotExist) || errors.Is(err, store.ErrNotRegular) || (err == nil && info.Size != sum.Size) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = at.CopySegment(ctx, id, nil)
	if format.IsDamage(err) {
		return false, nil
	}
	return err == nil, err
}

// copySegment streams one segment from the image to dst, verifying it on
// the way; the destination object is discarded unless every check passed.
func copySegment(ctx context.Context, im *seed.Image, dst store.Store, id format.SegmentID, size int64, meter *Meter) error {
	pw := store.PutPipe(ctx, dst, id.Key(), size)
	if err := im.CopySegment(ctx, id, &meterWriter{w: pw, meter: meter}); err != nil {
		pw.CloseWithError(err)
		return err
	}
	return pw.Close()
}

// meterWriter counts the bytes written through it.
type meterWriter struct {
	w     io.Writer
	meter *Meter
}

func (m *meterWriter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	m.meter.Add(int64(n))
	return n, err
}
