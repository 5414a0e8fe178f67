package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// CheckpointKey is where a running capture records how far it got, after
// every stored data segment, so that --resume can continue from there.
// Readers ignore it (spec §2: unknown keys); a finished capture deletes it.
const CheckpointKey = "capture.ckpt"

// checkpoint is the JSON content of CheckpointKey.
type checkpoint struct {
	Format       string           `json:"format"` // "seedship-checkpoint"
	Version      int              `json:"version"`
	ImageID      string           `json:"image_id"`
	Source       format.Source    `json:"source"`
	ChunkSize    int              `json:"chunk_size"`
	Level        int              `json:"level"`
	SegmentSize  int64            `json:"segment_size"`
	Parity       *format.Geometry `json:"parity,omitempty"`
	CaptureStart time.Time        `json:"capture_start"`
	// Segments data segments 0 … Segments-1 are stored; Chunks chunks are
	// recorded (the last one in segment Segments-1).
	Segments uint32 `json:"segments"`
	Chunks   uint64 `json:"chunks"`
	// SHA256State is the whole-source SHA-256 state after Chunks chunks
	// (Go's crypto/sha256 binary marshalling).
	SHA256State []byte `json:"sha256_state"`
}

func readCheckpoint(ctx context.Context, st store.Store) (*checkpoint, error) {
	rc, err := st.Get(ctx, CheckpointKey, 0, -1)
	if errors.Is(err, store.ErrNotExist) {
		if _, merr := st.Stat(ctx, format.ManifestKey); merr == nil {
			return nil, fmt.Errorf("%w: %s is a complete image: nothing to resume", ErrBadInput, st)
		}
		return nil, fmt.Errorf("%w: %s has no capture checkpoint (%s): nothing to resume; capture into an empty destination instead", ErrBadInput, st, CheckpointKey)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", CheckpointKey, err)
	}
	defer rc.Close()
	var ck checkpoint
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&ck); err != nil || ck.Format != "seedship-checkpoint" || ck.Version != 1 {
		return nil, fmt.Errorf("%w: %s in %s is damaged or from another version (%v): capture again into an empty destination", ErrBadInput, CheckpointKey, st, err)
	}
	return &ck, nil
}

func writeCheckpoint(ctx context.Context, st store.Store, ck *checkpoint) error {
	b, err := json.Marshal(ck)
	if err != nil {
		return err
	}
	return st.Put(ctx, CheckpointKey, bytes.NewReader(b), int64(len(b)))
}

// adopt takes the checkpoint's options where opts leaves them zero and
// refuses ones that contradict it.
func (o *CaptureOptions) adopt(ck *checkpoint) error {
	mismatch := func(name string, got, want any) error {
		return fmt.Errorf("%w: --resume with %s %v, but the interrupted capture used %v: drop the flag or give the same value", ErrBadInput, name, got, want)
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = ck.ChunkSize
	} else if o.ChunkSize != ck.ChunkSize {
		return mismatch("--chunk-size", o.ChunkSize, ck.ChunkSize)
	}
	if o.Level == 0 {
		o.Level = ck.Level
	} else if o.Level != ck.Level {
		return mismatch("--level", o.Level, ck.Level)
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = ck.SegmentSize
	} else if o.SegmentSize != ck.SegmentSize {
		return mismatch("--segment-size", o.SegmentSize, ck.SegmentSize)
	}
	switch {
	case o.Parity == nil:
		o.Parity = ck.Parity
	case ck.Parity == nil || o.Parity.K != ck.Parity.K || o.Parity.M != ck.Parity.M:
		return mismatch("--parity", o.Parity, ck.Parity)
	default:
		o.Parity = ck.Parity
	}
	return nil
}

// checkSource refuses to resume from a different source.
func (ck *checkpoint) checkSource(path string, s format.Source) error {
	c := ck.Source
	if c.Size != s.Size || c.Kind != s.Kind || c.Serial != s.Serial || c.WWN != s.WWN {
		return fmt.Errorf("%w: source %s (%d bytes) is not the one the interrupted capture read (%s, %d bytes): resume with the same source",
			ErrBadInput, path, s.Size, c.Path, c.Size)
	}
	return nil
}

// resumeState rebuilds, from the stored segments, the chunk table and
// segment tables of the first ck.Segments data segments and of the parity
// of the stripes they complete. Each segment's index is read (two small
// ranged reads), not its data.
func resumeState(ctx context.Context, st store.Store, ck *checkpoint, imageID [16]byte) (format.ResumeState, error) {
	var rs format.ResumeState
	bad := func(key string, err error) error {
		return fmt.Errorf("%w: cannot resume: %s: %w; capture again into an empty destination", ErrBadInput, key, err)
	}
	zeroHash := map[int64]format.Hash{}
	addZeros := func(upto uint64) {
		for i := uint64(len(rs.Chunks)); i < upto; i++ {
			off := int64(i) * int64(ck.ChunkSize)
			n := min(int64(ck.ChunkSize), ck.Source.Size-off)
			h, ok := zeroHash[n]
			if !ok {
				h = format.ZeroChunkHash(int(n))
				zeroHash[n] = h
			}
			rs.Chunks = append(rs.Chunks, format.ChunkEntry{Hash: h, Kind: format.KindZero})
		}
	}
	for n := range ck.Segments {
		key := format.SegmentKey(n)
		info, err := st.Stat(ctx, key)
		if err != nil {
			return rs, bad(key, err)
		}
		r := store.ReaderAt(ctx, st, key)
		hb := make([]byte, format.SegmentHeaderSize)
		if _, err := r.ReadAt(hb, 0); err != nil {
			return rs, bad(key, err)
		}
		h, err := format.ParseSegmentHeader(hb)
		if err == nil && (h.ImageID != imageID || h.Number != n || h.Kind != format.SegmentData) {
			err = fmt.Errorf("segment header does not belong to this capture")
		}
		if err != nil {
			return rs, bad(key, err)
		}
		footer, entries, err := format.ReadSegmentIndex(r, info.Size)
		if err != nil {
			return rs, bad(key, err)
		}
		for _, e := range entries {
			if e.Index < uint64(len(rs.Chunks)) {
				return rs, bad(key, fmt.Errorf("chunk %d out of order", e.Index))
			}
			addZeros(e.Index)
			rs.Chunks = append(rs.Chunks, format.ChunkEntry{Hash: e.Hash, Offset: e.Offset, Segment: n,
				PayloadLen: e.PayloadLen, Kind: format.KindStored, Codec: e.Codec})
		}
		rs.Segments = append(rs.Segments, format.SegmentSummary{Number: n, Kind: format.SegmentData, Size: info.Size,
			Frames: footer.Frames, IndexHash: footer.IndexHash})
	}
	if uint64(len(rs.Chunks)) > ck.Chunks {
		return rs, bad(format.SegmentKey(ck.Segments-1), fmt.Errorf("holds chunks past the checkpoint"))
	}
	addZeros(ck.Chunks)
	if g := ck.Parity; g != nil {
		for s := range ck.Segments / uint32(g.K) {
			for j := range g.M {
				n := g.ParityNumber(s, j)
				key := format.ParityKey(n)
				info, err := st.Stat(ctx, key)
				if err != nil {
					return rs, bad(key, err)
				}
				sum, _, err := format.ReadParitySummary(store.ReaderAt(ctx, st, key), info.Size, n)
				if err != nil {
					return rs, bad(key, err)
				}
				rs.Parity = append(rs.Parity, sum)
			}
		}
	}
	return rs, nil
}

// restoreHash rebuilds the whole-source SHA-256 from a checkpoint.
func restoreHash(state []byte) (hash.Hash, error) {
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, fmt.Errorf("%w: checkpoint hash state: %w", ErrBadInput, err)
	}
	return h, nil
}

func hashState(h hash.Hash) ([]byte, error) {
	return h.(encoding.BinaryMarshaler).MarshalBinary()
}

func decodeID(s string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("%w: checkpoint image id %q", ErrBadInput, s)
	}
	copy(id[:], b)
	return id, nil
}
