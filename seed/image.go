package seed

import (
	"context"
	"errors"
	"fmt"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// Image is an image in a store whose manifest was read and checked. Its
// methods are safe for concurrent use.
type Image struct {
	st     store.Store
	m      *format.Manifest
	mb     []byte   // the manifest's encoded bytes
	from   string   // the key the manifest was read from
	strays []Damage // manifest copies of another image seen while opening
	id     [16]byte
	chunks map[uint32][]uint64 // stored chunks of each data segment
	idx    *indexCache
}

// Open reads and checks the manifest of the image in st. If manifest.ssm
// is missing or damaged it adopts a redundant copy manifest.ssm.N, but
// only a copy of this image: one whose image ID is the one the data
// segments carry, at a key the copy itself lists; copies of another image
// are ignored. A missing manifest wraps ErrNoImage (so do copies beside a
// capture checkpoint: that capture did not finish); one that is not a
// seedship file (or not a regular file) wraps format.ErrFormat; another
// version format.ErrVersion; a damaged one with no usable copy is damage
// ([format.IsDamage]).
func Open(ctx context.Context, st store.Store) (*Image, error) {
	m, b, err := readManifest(ctx, st, format.ManifestKey)
	if err == nil {
		err = sameImage(ctx, st, m)
	}
	if err == nil {
		return newImage(st, m, b, format.ManifestKey), nil
	}
	if !worthCopies(err) {
		return nil, err
	}
	if errors.Is(err, store.ErrNotExist) {
		// Capture writes the manifest copies, then manifest.ssm, then
		// removes its checkpoint: copies beside a checkpoint and no
		// manifest.ssm are a capture that did not finish, not an image
		// that lost its manifest.
		if _, serr := st.Stat(ctx, format.CheckpointKey); serr == nil {
			return nil, unfinishedError(fmt.Sprintf("%s: its capture did not finish (%s is here, %s is not): continue it with capture --resume",
				st, format.CheckpointKey, format.ManifestKey))
		}
	}
	im, cerr := openCopy(ctx, st)
	switch {
	case cerr == nil:
		return im, nil
	case !errors.Is(cerr, errNoCopy):
		return nil, cerr
	case errors.Is(err, store.ErrNotExist):
		return nil, fmt.Errorf("%s: %w", st, ErrNoImage)
	case errors.Is(err, store.ErrNotRegular):
		return nil, fmt.Errorf("%s: %s is not a regular file (%v): %w; give the directory or prefix of an image", st, format.ManifestKey, err, format.ErrFormat)
	}
	return nil, err
}

// sameImage checks that the manifest describes the data segments beside
// it: a manifest.ssm of another image put in place of this one's must not
// be believed (and, by a repair, copied over this image's good copies).
// It reads the header of data segment 0; when that is unreadable the
// segments' own checks will tell.
func sameImage(ctx context.Context, st store.Store, m *format.Manifest) error {
	if len(m.Segments) == 0 {
		return nil
	}
	id, known, err := segmentImageID(ctx, st)
	if err != nil || !known {
		return err
	}
	if mid, _ := m.ImageID(); mid != id {
		return fmt.Errorf("%s of %s: %w: it describes image %x, but the data segments belong to image %x",
			format.ManifestKey, st, format.ErrCorrupt, mid, id)
	}
	return nil
}

// New returns the image with manifest m (encoded as mb) in st, for a
// caller that already holds a checked manifest: a copy of the same image
// in another place, or an image just written.
func New(st store.Store, m *format.Manifest, mb []byte) *Image {
	return newImage(st, m, mb, format.ManifestKey)
}

func newImage(st store.Store, m *format.Manifest, mb []byte, from string) *Image {
	id, _ := m.ImageID() // checked when the manifest was decoded
	// Chunk order visits a group's segments in turn (spec §5.5): the
	// cache holds two groups' indexes, which together hold at most
	// 2 × 4,096 entries, as 8 indexes of single segments may.
	return &Image{st: st, m: m, mb: mb, from: from, id: id, chunks: m.SegmentChunks(), idx: newIndexCache(max(8, 2*m.GroupWidth()))}
}

// In returns the same image read from another store: a copy elsewhere (a
// fallback image, a copy's destination). Nothing is read: the caller
// knows st holds this image, or checks it segment by segment.
func (im *Image) In(st store.Store) *Image {
	out := newImage(st, im.m, im.mb, im.from)
	out.chunks = im.chunks
	return out
}

// Manifest returns the image's manifest. Callers must not modify it.
func (im *Image) Manifest() *format.Manifest { return im.m }

// ManifestBytes returns the manifest's encoded bytes, for writing intact
// copies. Callers must not modify them.
func (im *Image) ManifestBytes() []byte { return im.mb }

// ManifestKey returns the key the manifest was read from: manifest.ssm,
// or the copy adopted because it was damaged.
func (im *Image) ManifestKey() string { return im.from }

// Store returns the store the image is read from.
func (im *Image) Store() store.Store { return im.st }

// String names the image's location.
func (im *Image) String() string { return im.st.String() }

// Keys returns every key of the image: manifest.ssm, its redundant copies
// and every segment, whether or not they are present.
func (im *Image) Keys() []string {
	keys := append([]string{format.ManifestKey}, im.m.CopyKeys()...)
	for _, id := range im.m.SegmentIDs() {
		keys = append(keys, id.Key())
	}
	return keys
}

// SegmentChunks returns the stored chunks of data segment n, in order.
func (im *Image) SegmentChunks(n uint32) []uint64 { return im.chunks[n] }

// worthCopies reports whether the manifest's failure leaves hope in a
// copy: any damage, absence, wrong kind of file, or an apparent version
// or magic change (a flipped bit there looks like one); not an
// operational failure.
func worthCopies(err error) bool {
	return format.IsDamage(err) || errors.Is(err, store.ErrNotExist) || errors.Is(err, store.ErrNotRegular) ||
		errors.Is(err, format.ErrFormat) || errors.Is(err, format.ErrVersion)
}

// readManifest reads and decodes one manifest file. Its size is checked
// (Stat) before it is read, and format.ReadManifestBytes reads no further than
// the manifest's own counts allow.
func readManifest(ctx context.Context, st store.Store, key string) (*format.Manifest, []byte, error) {
	info, err := st.Stat(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("%s of %s: %w", key, st, err)
	}
	if info.Size > format.MaxManifestSize {
		return nil, nil, fmt.Errorf("%s of %s: %w: %d bytes, a manifest is at most %d", key, st, format.ErrTooLarge, info.Size, format.MaxManifestSize)
	}
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, nil, fmt.Errorf("%s of %s: %w", key, st, err)
	}
	defer rc.Close()
	m, b, err := format.ReadManifestBytes(rc)
	if err != nil {
		return nil, nil, fmt.Errorf("%s of %s: %w", key, st, err)
	}
	return m, b, nil
}

// unfinishedError is the ErrNoImage of a capture that did not finish,
// with a message of its own (ErrNoImage's would say it twice).
type unfinishedError string

func (e unfinishedError) Error() string { return string(e) }

// Is makes errors.Is(err, ErrNoImage) true.
func (e unfinishedError) Is(target error) bool { return target == ErrNoImage }
