package verify

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// CheckParity reads every parity segment of the image once and adds a
// finding for each one that is missing, of the wrong size, has a damaged
// header or index, or has rows failing their CRC-32C (the finding lists
// those rows). It returns an intact parity index of each stripe that has
// one.
func CheckParity(ctx context.Context, st store.Store, m *format.Manifest, rep *Report) (map[uint32]*format.ParityIndex, error) {
	g, ok := m.Geometry()
	if !ok {
		return nil, nil
	}
	indexes := map[uint32]*format.ParityIndex{}
	for _, sum := range m.Parity {
		if err := ctx.Err(); err != nil {
			return indexes, err
		}
		key := format.ParityKey(sum.Number)
		stripe, j := sum.Number/uint32(g.M), int(sum.Number%uint32(g.M))
		if info, err := st.Stat(ctx, key); err == nil && info.Size != sum.Size {
			// Bytes past the recorded end are not covered by any check
			// below: the size itself is the check.
			rep.add(Finding{Key: key, Rows: []int{}, Err: fmt.Errorf("parity segment %s is %d bytes, the manifest says %d", key, info.Size, sum.Size)})
		}
		idx, err := format.ReadParityIndex(storeReaderAtOf(ctx, st, key), sum.Size, sum.IndexHash)
		if err == nil && (idx.Stripe != stripe || idx.J != j) {
			err = fmt.Errorf("%w: index names stripe %d shard %d", format.ErrCorrupt, idx.Stripe, idx.J)
		}
		if err != nil {
			if !recoverable(err) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return indexes, fmt.Errorf("read %s: %w", key, err)
			}
			rep.add(Finding{Key: key, Err: fmt.Errorf("parity segment %s: %w", key, err)})
			continue
		}
		if indexes[stripe] == nil {
			indexes[stripe] = idx
		}
		bad, err := checkParityRows(ctx, st, m, key, sum, idx, g, stripe)
		if err != nil {
			return indexes, err
		}
		if bad != nil {
			rep.add(Finding{Key: key, Rows: bad.rows, Err: fmt.Errorf("parity segment %s: %v", key, bad.err)})
		}
	}
	return indexes, nil
}

type rowDamage struct {
	rows []int // nil: all rows
	err  error
}

// checkParityRows streams a parity segment's header and rows.
func checkParityRows(ctx context.Context, st store.Store, m *format.Manifest, key string, sum format.SegmentSummary, idx *format.ParityIndex, g format.Geometry, stripe uint32) (*rowDamage, error) {
	rc, err := st.Get(ctx, key, 0, format.SegmentHeaderSize+int64(idx.Rows)*int64(idx.RowSize))
	if err != nil {
		if errors.Is(err, store.ErrNotExist) {
			return &rowDamage{err: err}, nil
		}
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	r := bufio.NewReaderSize(rc, 1<<20)
	hb := make([]byte, format.SegmentHeaderSize)
	if _, err := io.ReadFull(r, hb); err != nil {
		return &rowDamage{err: fmt.Errorf("header: %w", err)}, nil
	}
	h, err := format.ParseSegmentHeader(hb)
	id, _ := m.ImageID()
	if err == nil && (h.Kind != format.SegmentParity || h.Number != sum.Number || h.ImageID != id) {
		err = fmt.Errorf("names segment %d (kind %d) of image %x", h.Number, h.Kind, h.ImageID)
	}
	if err != nil {
		// The header is not part of the shard: a rewrite from the
		// index fixes it, no row is affected.
		return &rowDamage{rows: []int{}, err: fmt.Errorf("header damaged: %v", err)}, nil
	}
	row := make([]byte, idx.RowSize)
	var bad []int
	for ri := range idx.Rows {
		if _, err := io.ReadFull(r, row); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				for ; ri < idx.Rows; ri++ {
					bad = append(bad, ri)
				}
				break
			}
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		if format.RowCRC(row) != idx.CRC[g.K+idx.J][ri] {
			bad = append(bad, ri)
		}
	}
	if len(bad) == 0 {
		return nil, nil
	}
	return &rowDamage{rows: bad, err: fmt.Errorf("%d row(s) fail their CRC-32C", len(bad))}, nil
}

// StripeStatus says what is damaged in one parity stripe and whether
// parity can rebuild it.
type StripeStatus struct {
	Stripe     uint32
	Damaged    []string // keys of damaged segments
	Rows       int      // rows that needed rebuilding
	LostRows   []int    // rows beyond repair
	Repairable bool
	LostChunks []uint64 // chunks beyond repair
	Err        error    // why the stripe cannot be examined (no intact parity index)
}

// shardDamage maps a stripe's shard position to the rows to rebuild (nil:
// all rows).
type shardDamage map[int][]int

// plan groups findings by stripe and shard. whole marks every row of a
// damaged shard for rebuilding (a rewrite needs the whole segment);
// otherwise only the rows that damaged chunk frames touch.
func plan(m *format.Manifest, g format.Geometry, findings []Finding, whole bool) map[uint32]shardDamage {
	out := map[uint32]shardDamage{}
	mark := func(stripe uint32, shard int, rows []int) {
		sd := out[stripe]
		if sd == nil {
			sd = shardDamage{}
			out[stripe] = sd
		}
		cur, seen := sd[shard]
		switch {
		case seen && cur == nil: // already all rows
		case rows == nil || whole:
			sd[shard] = nil
		default:
			// Non-nil even when empty: a damaged header needs a
			// rewrite but no row rebuilt.
			sd[shard] = append(append([]int{}, cur...), rows...)
		}
	}
	for _, f := range findings {
		switch {
		case f.IsChunk:
			c := m.Chunks[f.Chunk]
			stripe, pos := g.Stripe(c.Segment)
			mark(stripe, pos, RowsOf(c.Offset, c.FrameLen(), g.RowSize))
		case len(f.Key) > 5 && f.Key[:5] == "data/":
			for _, s := range m.Segments {
				if format.SegmentKey(s.Number) == f.Key {
					stripe, pos := g.Stripe(s.Number)
					mark(stripe, pos, nil)
				}
			}
		case len(f.Key) > 7 && f.Key[:7] == "parity/":
			for _, s := range m.Parity {
				if format.ParityKey(s.Number) == f.Key {
					mark(s.Number/uint32(g.M), g.K+int(s.Number%uint32(g.M)), f.Rows)
				}
			}
		}
	}
	return out
}

func allRows(n int) []int {
	rows := make([]int, n)
	for i := range rows {
		rows[i] = i
	}
	return rows
}

// rowsFor returns the sorted union of the rows to rebuild in a stripe.
func rowsFor(sd shardDamage, idx *format.ParityIndex) []int {
	set := map[int]bool{}
	for _, rows := range sd {
		if rows == nil {
			return allRows(idx.Rows)
		}
		for _, r := range rows {
			if r < idx.Rows {
				set[r] = true
			}
		}
	}
	out := make([]int, 0, len(set))
	for r := range set {
		out = append(out, r)
	}
	sort.Ints(out)
	return out
}

func shardKeyOf(m *format.Manifest, g format.Geometry, stripe uint32, shard int) string {
	if shard < g.K {
		return format.SegmentKey(stripe*uint32(g.K) + uint32(shard))
	}
	return format.ParityKey(g.ParityNumber(stripe, shard-g.K))
}

// lostChunks lists the damaged chunks (bad, from the findings) of a
// stripe whose frames touch a lost row: an intact chunk in a lost row is
// not lost, it can be read as it is.
func lostChunks(m *format.Manifest, g format.Geometry, stripe uint32, sd shardDamage, lost []int, bad map[uint64]bool) []uint64 {
	if len(lost) == 0 {
		return nil
	}
	var out []uint64
	for i, c := range m.Chunks {
		if c.Kind != format.KindStored || !bad[uint64(i)] {
			continue
		}
		s, pos := g.Stripe(c.Segment)
		if _, damaged := sd[pos]; s != stripe || !damaged {
			continue
		}
		for _, r := range RowsOf(c.Offset, c.FrameLen(), g.RowSize) {
			if slices.Contains(lost, r) {
				out = append(out, uint64(i))
				break
			}
		}
	}
	return out
}

// Stripes examines every stripe with damage in findings and reports
// whether parity can rebuild it, reading only the damaged rows of the
// stripe's other shards. It changes nothing.
func Stripes(ctx context.Context, st store.Store, m *format.Manifest, findings []Finding) ([]StripeStatus, error) {
	return walkStripes(ctx, st, m, findings, false, nil, nil)
}

// stripeSink receives each rebuilt row of a stripe.
type stripeSink func(stripe uint32, idx *format.ParityIndex, sd shardDamage, row int, shards [][]byte, rebuilt []bool) error

// stripeDone is called after a stripe's rows were walked.
type stripeDone func(ss *StripeStatus, idx *format.ParityIndex) error

// stripeRegen receives freshly computed parity segments of a stripe whose
// parity alone was damaged and whose every parity index was lost.
type stripeRegen func(ss *StripeStatus, segs []format.ParitySegment, sd shardDamage) error

func walkStripes(ctx context.Context, st store.Store, m *format.Manifest, findings []Finding, whole bool, sink stripeSink, done stripeDone) ([]StripeStatus, error) {
	return walkStripesRegen(ctx, st, m, findings, whole, sink, done, nil)
}

func walkStripesRegen(ctx context.Context, st store.Store, m *format.Manifest, findings []Finding, whole bool, sink stripeSink, done stripeDone, regen stripeRegen) ([]StripeStatus, error) {
	g, ok := m.Geometry()
	if !ok {
		return nil, nil
	}
	p := plan(m, g, findings, whole)
	bad := map[uint64]bool{}
	for _, f := range findings {
		if f.IsChunk {
			bad[f.Chunk] = true
		}
	}
	stripes := make([]uint32, 0, len(p))
	for s := range p {
		stripes = append(stripes, s)
	}
	slices.Sort(stripes)
	var out []StripeStatus
	for _, s := range stripes {
		sd := p[s]
		ss := StripeStatus{Stripe: s}
		for shard := range sd {
			ss.Damaged = append(ss.Damaged, shardKeyOf(m, g, s, shard))
		}
		sort.Strings(ss.Damaged)
		idx, err := StripeIndex(ctx, st, m, s)
		if err != nil && onlyParity(sd, g) {
			// Every parity index is gone but the data is intact:
			// compute the stripe's parity again from its data.
			segs, rerr := Reencode(ctx, st, m, s)
			if rerr == nil {
				ss.Rows, ss.Repairable = segs[0].Index.Rows, true
				if regen != nil {
					if err := regen(&ss, segs, sd); err != nil {
						return out, err
					}
				}
				out = append(out, ss)
				continue
			}
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			err = fmt.Errorf("%v; recomputing parity from the data failed: %v", err, rerr)
		}
		if err != nil {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			ss.Err = err
			ss.LostChunks = lostChunks(m, g, s, sd, allRows(maxRows(m, g, s)), bad)
			out = append(out, ss)
			continue
		}
		rows := rowsFor(sd, idx)
		ss.Rows = len(rows)
		lost, err := RepairRows(ctx, st, m, idx, rows, func(r int, shards [][]byte, rebuilt []bool) error {
			if sink == nil {
				return nil
			}
			return sink(s, idx, sd, r, shards, rebuilt)
		})
		if err != nil {
			return out, err
		}
		ss.LostRows = lost
		ss.Repairable = len(lost) == 0
		ss.LostChunks = lostChunks(m, g, s, sd, lost, bad)
		if done != nil {
			if err := done(&ss, idx); err != nil {
				return out, err
			}
		}
		out = append(out, ss)
	}
	return out, nil
}

// maxRows bounds a stripe's rows from the manifest, for reporting when no
// parity index survives.
func maxRows(m *format.Manifest, g format.Geometry, s uint32) int {
	var size int64
	for _, seg := range m.Segments {
		if st, _ := g.Stripe(seg.Number); st == s {
			size = max(size, seg.Size)
		}
	}
	return int((size + int64(g.RowSize) - 1) / int64(g.RowSize))
}

// RebuildChunks rebuilds, from parity, the stored chunks that findings
// report damaged, without modifying the image, and hands each one's
// verified raw bytes to fn. It reads only the rows those chunks touch. It
// returns the stripe statuses; chunks in LostChunks were not rebuilt.
func RebuildChunks(ctx context.Context, st store.Store, m *format.Manifest, findings []Finding, fn func(index uint64, raw []byte) error) ([]StripeStatus, error) {
	g, ok := m.Geometry()
	if !ok {
		return nil, nil
	}
	want := map[uint64]bool{}
	for _, f := range findings {
		if f.IsChunk {
			want[f.Chunk] = true
		}
	}
	// Collected rows of damaged data shards: stripe → shard → row → bytes.
	got := map[uint32]map[int]map[int][]byte{}
	statuses, err := walkStripes(ctx, st, m, findings, false, func(s uint32, idx *format.ParityIndex, sd shardDamage, r int, shards [][]byte, _ []bool) error {
		for shard := range sd {
			if shard >= g.K {
				continue
			}
			if got[s] == nil {
				got[s] = map[int]map[int][]byte{}
			}
			if got[s][shard] == nil {
				got[s][shard] = map[int][]byte{}
			}
			got[s][shard][r] = slices.Clone(shards[shard])
		}
		return nil
	}, nil)
	if err != nil {
		return statuses, err
	}
	codec, err := format.NewChunkCodec(0, 1, format.MaxChunkSize)
	if err != nil {
		return statuses, err
	}
	defer codec.Close()
	R := int64(g.RowSize)
	idxs := make([]uint64, 0, len(want))
	for i := range want {
		idxs = append(idxs, i)
	}
	slices.Sort(idxs)
	for _, i := range idxs {
		c := m.Chunks[i]
		s, pos := g.Stripe(c.Segment)
		rows := got[s][pos]
		frame := make([]byte, c.FrameLen())
		complete := rows != nil
		for o := int64(0); complete && o < int64(len(frame)); {
			abs := c.Offset + o
			row, ok := rows[int(abs/R)]
			if !ok {
				complete = false
				break
			}
			o += int64(copy(frame[o:], row[abs%R:]))
		}
		if !complete {
			continue // in a lost row: reported in LostChunks
		}
		f, err := format.ReadFrame(bytesReaderAt(frame, c.Offset), m, i)
		if err != nil {
			return statuses, fmt.Errorf("chunk %d rebuilt from parity is still damaged: %w", i, err)
		}
		_, length := m.ChunkRange(i)
		raw, err := codec.Decode(f.Codec, f.Payload, int(length), c.Hash, nil, nil)
		if err != nil {
			return statuses, fmt.Errorf("chunk %d rebuilt from parity fails its hash: %w", i, err)
		}
		if err := fn(i, raw); err != nil {
			return statuses, err
		}
	}
	return statuses, nil
}

// bytesReaderAt serves b as if it started at offset base.
type offsetReaderAt struct {
	b    []byte
	base int64
}

func bytesReaderAt(b []byte, base int64) io.ReaderAt { return offsetReaderAt{b, base} }

func (r offsetReaderAt) ReadAt(p []byte, off int64) (int, error) {
	off -= r.base
	if off < 0 || off > int64(len(r.b)) {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, r.b[off:])
	if n < len(p) {
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}

// onlyParity reports whether only parity shards of a stripe are damaged.
func onlyParity(sd shardDamage, g format.Geometry) bool {
	for shard := range sd {
		if shard < g.K {
			return false
		}
	}
	return true
}

// Reencode computes the parity segments of stripe s again from its data
// segments, which must be intact (each is checked against its index hash
// in the manifest as it streams). It holds M shards in memory.
func Reencode(ctx context.Context, st store.Store, m *format.Manifest, s uint32) ([]format.ParitySegment, error) {
	g, _ := m.Geometry()
	id, err := m.ImageID()
	if err != nil {
		return nil, err
	}
	enc, err := format.NewStripeEncoder(g)
	if err != nil {
		return nil, err
	}
	chunks := m.SegmentChunks()
	for p := range g.K {
		n := s*uint32(g.K) + uint32(p)
		sum, ok := m.Segment(n)
		if !ok {
			break // a short stripe
		}
		key := format.SegmentKey(n)
		rc, err := st.Get(ctx, key, 0, -1)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		enc.BeginShard(p, n)
		// The scanner checks the segment against the manifest as the
		// encoder consumes it.
		sc, err := format.NewSegmentScanner(io.TeeReader(rc, enc), m, n, chunks[n])
		if err == nil {
			err = sc.HeaderErr()
		}
		for err == nil {
			_, _, err = sc.Next(nil)
		}
		if err == io.EOF {
			err = sc.Finish()
		}
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		enc.EndShard()
		if enc.ShardSize(p) != sum.Size {
			return nil, fmt.Errorf("%s: %d bytes, the manifest says %d", key, enc.ShardSize(p), sum.Size)
		}
	}
	segs := enc.Finish(s, id)
	for j := range segs {
		if want, ok := m.ParitySegment(segs[j].Number); !ok || want.IndexHash != segs[j].Summary().IndexHash {
			return nil, fmt.Errorf("recomputed parity of stripe %d does not match the manifest", s)
		}
	}
	return segs, nil
}
