package verify

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// shardWriter streams one rebuilt segment into the store.
type shardWriter struct {
	key  string
	pw   *store.PipeWriter
	size int64 // bytes of shard to write (data: segment size; parity: rows)
	off  int64
}

func startShard(ctx context.Context, st store.Store, key string, size, total int64) *shardWriter {
	return &shardWriter{key: key, pw: store.PutPipe(ctx, st, key, total), size: size}
}

func (w *shardWriter) row(b []byte) error {
	n := min(int64(len(b)), w.size-w.off)
	if n <= 0 {
		return nil
	}
	_, err := w.pw.Write(b[:n])
	w.off += n
	return err
}

func (w *shardWriter) finish(tail []byte) error {
	if _, err := w.pw.Write(tail); err != nil {
		w.pw.CloseWithError(err)
		return err
	}
	return w.pw.Close()
}

func (w *shardWriter) abort(err error) { w.pw.CloseWithError(err) }

// Repair rewrites, atomically, every segment that findings report damaged
// or missing, rebuilding it from its stripe's parity: each surviving
// segment of an affected stripe is read once. Segments of stripes beyond
// repair are left untouched. The returned statuses say what was rebuilt;
// the caller re-verifies.
func Repair(ctx context.Context, st store.Store, m *format.Manifest, findings []Finding) ([]StripeStatus, error) {
	g, ok := m.Geometry()
	if !ok {
		return nil, nil
	}
	id, err := m.ImageID()
	if err != nil {
		return nil, err
	}
	writers := map[int]*shardWriter{}
	abortAll := func(err error) {
		for k, w := range writers {
			w.abort(err)
			delete(writers, k)
		}
	}
	sink := func(s uint32, idx *format.ParityIndex, sd shardDamage, r int, shards [][]byte, _ []bool) error {
		for shard := range sd {
			w := writers[shard]
			if w == nil {
				if r != 0 {
					continue // an earlier row was lost: this shard cannot be rewritten
				}
				key := shardKeyOf(m, g, s, shard)
				if shard < g.K {
					size := idx.Data[shard].Size
					w = startShard(ctx, st, key, size, size)
				} else {
					rows := int64(idx.Rows) * int64(idx.RowSize)
					trailer := format.ParityTrailer(idx, shard-g.K)
					w = startShard(ctx, st, key, rows, format.SegmentHeaderSize+rows+int64(len(trailer)))
					hdr := format.SegmentHeader{Version: format.Version, Kind: format.SegmentParity,
						Number: g.ParityNumber(s, shard-g.K), ImageID: id}.Marshal()
					if _, err := w.pw.Write(hdr); err != nil {
						return err
					}
				}
				writers[shard] = w
			}
			if err := w.row(shards[shard]); err != nil {
				return fmt.Errorf("rewrite %s: %w", w.key, err)
			}
		}
		return nil
	}
	done := func(ss *StripeStatus, idx *format.ParityIndex) error {
		if !ss.Repairable {
			abortAll(fmt.Errorf("stripe %d is beyond repair", ss.Stripe))
			return nil
		}
		for shard, w := range writers {
			var tail []byte
			if shard >= g.K {
				tail = format.ParityTrailer(idx, shard-g.K)
			}
			if err := w.finish(tail); err != nil {
				abortAll(err)
				return fmt.Errorf("rewrite %s: %w", w.key, err)
			}
			delete(writers, shard)
		}
		return nil
	}
	regen := func(ss *StripeStatus, segs []format.ParitySegment, sd shardDamage) error {
		for shard := range sd {
			ps := segs[shard-g.K]
			r := io.MultiReader(bytes.NewReader(ps.Header), bytes.NewReader(ps.Rows), bytes.NewReader(ps.Trailer))
			if err := st.Put(ctx, format.ParityKey(ps.Number), r, ps.Size()); err != nil {
				return fmt.Errorf("rewrite %s: %w", format.ParityKey(ps.Number), err)
			}
		}
		return nil
	}
	statuses, err := walkStripesRegen(ctx, st, m, findings, true, sink, done, regen)
	if err != nil {
		abortAll(err)
	}
	return statuses, err
}

// RepairManifests rewrites the manifest files in keys with b, the bytes
// of an intact copy (see LoadManifestBytes).
func RepairManifests(ctx context.Context, st store.Store, b []byte, keys []string) error {
	for _, k := range keys {
		if err := st.Put(ctx, k, bytes.NewReader(b), int64(len(b))); err != nil {
			return fmt.Errorf("rewrite %s: %w", k, err)
		}
	}
	return nil
}
