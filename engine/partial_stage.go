package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// A lost courier volume is rebuilt from parity, which needs K shards of
// each of its stripes at once; one bay gives one volume at a time. With
// --stage, each partial run copies the shards (data and parity segments)
// of the stripes the target does not hold whole yet into a local
// directory, and reads the image from the volume and that directory
// together, so that once enough of a stripe has been seen its missing
// segments are rebuilt. A stripe's staged shards are removed as soon as
// all of its data is on the target.

// errStageReadOnly is returned by writes to the combined view.
var errStageReadOnly = errors.New("the volume and the stage are read here, not written")

// stagedStore is the image as a partial run with --stage reads it: the
// volume(s) given, and the shards staged from earlier volumes.
type stagedStore struct {
	vol, stage store.Store
}

func (s *stagedStore) Put(context.Context, string, io.Reader, int64) error { return errStageReadOnly }
func (s *stagedStore) Delete(context.Context, string) error                { return errStageReadOnly }

func (s *stagedStore) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	r, err := s.vol.Get(ctx, key, off, length)
	if errors.Is(err, store.ErrNotExist) {
		return s.stage.Get(ctx, key, off, length)
	}
	return r, err
}

func (s *stagedStore) Stat(ctx context.Context, key string) (store.Info, error) {
	i, err := s.vol.Stat(ctx, key)
	if errors.Is(err, store.ErrNotExist) {
		return s.stage.Stat(ctx, key)
	}
	return i, err
}

// List reports the union of both, in lexical order; a key in both as the
// volume has it. The keys are an image's files: thousands, not millions.
func (s *stagedStore) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	seen := map[string]store.Info{}
	for _, st := range []store.Store{s.stage, s.vol} {
		if err := st.List(ctx, prefix, func(i store.Info) error {
			seen[i.Key] = i
			return nil
		}); err != nil {
			return err
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn(seen[k]); err != nil {
			return err
		}
	}
	return nil
}

func (s *stagedStore) String() string { return s.vol.String() + " with the stage " + s.stage.String() }

// Connections is the volume's: the stage is a local directory.
func (s *stagedStore) Connections() int { return store.ConnectionsOf(s.vol, 1) }

// Path names a local file of key, so restore can refuse a target that is
// one of them.
func (s *stagedStore) Path(key string) (string, error) {
	for _, st := range []store.Store{s.vol, s.stage} {
		if lp, ok := localPathsOf(st); ok {
			if _, err := st.Stat(context.Background(), key); err == nil {
				return lp.Path(key)
			}
		}
	}
	return "", fmt.Errorf("%s: %w", key, store.ErrNotExist)
}

// stripesDone reports, for each stripe, whether the target holds all of
// its data (every stored chunk of its data segments).
func stripesDone(m *format.Manifest, done chunkSet) map[uint32]bool {
	g, _ := m.Geometry()
	whole := map[uint32]bool{}
	for i, c := range m.Chunks {
		if c.Kind != format.KindStored {
			continue
		}
		st, _ := g.Stripe(format.DataID(c.Segment))
		if _, ok := whole[st]; !ok {
			whole[st] = true
		}
		if !done.has(uint64(i)) {
			whole[st] = false
		}
	}
	return whole
}

// stageShards copies into stage every segment vol holds of a stripe the
// target does not hold whole yet, and that stage lacks at its size. It
// returns how many files and bytes it copied.
func stageShards(ctx context.Context, m *format.Manifest, vol, stage store.Store, done chunkSet) (files int, bytes int64, err error) {
	g, _ := m.Geometry()
	whole := stripesDone(m, done)
	var want []store.Info
	err = vol.List(ctx, "", func(i store.Info) error {
		id, ok := format.ParseKey(i.Key)
		if !ok {
			return nil
		}
		if st, _ := g.Stripe(id); !whole[st] {
			want = append(want, i)
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("list %s: %w", vol, err)
	}
	for _, i := range want {
		if si, err := stage.Stat(ctx, i.Key); err == nil && si.Size == i.Size {
			continue
		}
		r, err := vol.Get(ctx, i.Key, 0, -1)
		if err != nil {
			return files, bytes, fmt.Errorf("stage %s from %s: %w", i.Key, vol, err)
		}
		err = stage.Put(ctx, i.Key, store.ContextReader(ctx, r), i.Size)
		r.Close()
		if err != nil {
			return files, bytes, fmt.Errorf("stage %s into %s: %w", i.Key, stage, err)
		}
		files++
		bytes += i.Size
	}
	return files, bytes, nil
}

// pruneStage removes from stage the segments of stripes whose data the
// target now holds whole; it returns how many files remain staged.
func pruneStage(ctx context.Context, m *format.Manifest, stage store.Store, done chunkSet) (left int, err error) {
	g, _ := m.Geometry()
	whole := stripesDone(m, done)
	var drop []string
	err = stage.List(ctx, "", func(i store.Info) error {
		id, ok := format.ParseKey(i.Key)
		if !ok {
			return nil
		}
		if st, _ := g.Stripe(id); whole[st] {
			drop = append(drop, i.Key)
		} else {
			left++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list %s: %w", stage, err)
	}
	for _, k := range drop {
		if err := stage.Delete(ctx, k); err != nil {
			return left, fmt.Errorf("remove %s from %s: %w", k, stage, err)
		}
	}
	return left, nil
}
