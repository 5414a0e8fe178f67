package seed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// ErrNoImage means the location holds no manifest: it is not a seedship
// image, or its capture never finished.
var ErrNoImage = errors.New("no seedship image here (no manifest.ssm: not an image, or its capture did not finish)")

// Damage is one piece of damage found in an image.
type Damage struct {
	Key     string // the image file involved (segment, parity segment, manifest)
	Rows    []int  // for a parity segment: the damaged rows; nil means all
	Chunk   uint64 // chunk index; meaningful when IsChunk
	IsChunk bool   // the damage is to one chunk's data
	Offset  int64  // first source byte affected (chunks only)
	Length  int64  // source bytes affected (chunks only)
	Segment uint32 // the data segment involved, if any
	// FrameOffset and FrameLength locate a damaged chunk's frame in its
	// data segment (Key): the stored bytes concerned (chunks only; zero
	// when the damage did not come from Image.Read).
	FrameOffset int64
	FrameLength int64
	Err         error // a *format.ChunkError or *format.SegmentError, or manifest damage
}

func (d Damage) String() string {
	if d.IsChunk {
		where := fmt.Sprintf("segment %d", d.Segment)
		if d.FrameLength > 0 {
			where += fmt.Sprintf(", stored bytes %d-%d", d.FrameOffset, d.FrameOffset+d.FrameLength-1)
		}
		return fmt.Sprintf("chunk %d: source bytes %d-%d (%s): %v", d.Chunk, d.Offset, d.Offset+d.Length-1, where, errors.Unwrap(d.Err))
	}
	return d.Err.Error()
}

// locate adds to chunk damage where its frame lies in its segment.
func (im *Image) locate(d Damage) Damage {
	if d.IsChunk && d.Chunk < uint64(len(im.m.Chunks)) {
		if c := im.m.Chunks[d.Chunk]; c.Kind == format.KindStored {
			d.FrameOffset, d.FrameLength = c.Offset, c.FrameLen()
		}
	}
	return d
}

// SegmentID returns the segment the damage is in; ok is false for damage
// to a manifest file.
func (d Damage) SegmentID() (id format.SegmentID, ok bool) { return format.ParseKey(d.Key) }

// damageOf turns a damage error into a Damage: a *format.ChunkError
// becomes chunk damage, a *format.SegmentError segment damage (with its
// rows), anything else damage of key.
func damageOf(key string, err error) Damage {
	var ce *format.ChunkError
	if errors.As(err, &ce) {
		return Damage{Key: format.DataID(ce.Segment).Key(), Chunk: ce.Index, IsChunk: true, Offset: ce.Offset,
			Length: ce.Length, Segment: ce.Segment, Err: err}
	}
	d := Damage{Key: key, Err: err}
	var se *format.SegmentError
	if errors.As(err, &se) {
		d.Key, d.Rows = se.ID.Key(), se.Rows
		if se.ID.Kind == format.SegmentData {
			d.Segment = se.ID.Number
		}
	}
	return d
}

// segmentErr wraps a damage cause in a *format.SegmentError for id.
func segmentErr(id format.SegmentID, rows []int, err error) error {
	return &format.SegmentError{ID: id, Rows: rows, Err: err}
}

// objectErr classifies the error of reading one image object from a store:
// a missing, non-regular or short object is damage of that object (wrapped
// in format.ErrMissing); anything else is an operational failure and
// returned as it is. damage reports which.
func objectErr(st store.Store, key string, err error) (wrapped error, damage bool) {
	switch {
	case err == nil:
		return nil, false
	case errors.Is(err, store.ErrNotExist):
		return fmt.Errorf("%w: %s is missing from %s", format.ErrMissing, key, st), true
	case errors.Is(err, store.ErrNotRegular):
		return fmt.Errorf("%w: %s of %s is not a regular file: %v", format.ErrMissing, key, st, err), true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: %s of %s is shorter than the manifest says", format.ErrMissing, key, st), true
	case format.IsDamage(err):
		return err, true
	}
	return fmt.Errorf("read %s of %s: %w", key, st, err), false
}

// objectErr is objectErr for an object of this image: a short read of an
// object that is in fact complete was cut in transit (a dropped
// connection), which is an operational failure, not damage.
func (im *Image) objectErr(ctx context.Context, key string, err error) (wrapped error, damage bool) {
	wrapped, damage = objectErr(im.st, key, err)
	if damage {
		wrapped = im.cutInTransit(ctx, key, wrapped)
		damage = format.IsDamage(wrapped)
	}
	return wrapped, damage
}

// cutInTransit checks a truncation (format.ErrMissing) of the image's
// object key against the store: if the object is there at its full
// recorded size, the read that ended early was cut in transit, and the
// returned error says so without being damage; otherwise err stands.
func (im *Image) cutInTransit(ctx context.Context, key string, err error) error {
	if !errors.Is(err, format.ErrMissing) {
		return err
	}
	id, ok := format.ParseKey(key)
	if !ok {
		return err
	}
	sum, ok := im.m.Summary(id)
	if !ok {
		return err
	}
	info, serr := im.st.Stat(ctx, key)
	switch {
	case serr == nil && info.Size >= sum.Size:
		return fmt.Errorf("read %s of %s: the read ended early although the object is complete (%d bytes): a failure in transit, not damage (%v)",
			key, im.st, info.Size, err)
	case serr == nil, errors.Is(serr, store.ErrNotExist), errors.Is(serr, store.ErrNotRegular):
		return err
	}
	return fmt.Errorf("stat %s of %s after a short read: %w", key, im.st, serr)
}

// SortDamage orders damage: chunk damage by chunk index, then the rest in
// the order found.
func SortDamage(ds []Damage) {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.IsChunk != b.IsChunk {
			return a.IsChunk
		}
		return a.Chunk < b.Chunk
	})
}
