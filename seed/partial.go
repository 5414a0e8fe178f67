package seed

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/seedship/seedship/format"
)

// partial reads only the wanted chunks of data segment n, one ranged read
// per run of consecutive wanted frames.
func (r *reader) partial(ctx context.Context, n uint32, entries []format.IndexEntry, indexErr error) error {
	if indexErr != nil {
		// The chunks are still checked against their hashes.
		if err := r.damage(damageOf(format.DataID(n).Key(), indexErr)); err != nil {
			return err
		}
	}
	pos := map[uint64]int{} // chunk → position in the segment
	for k, i := range r.im.chunks[n] {
		pos[i] = k
	}
	want := r.want[n]
	for start := 0; start < len(want); {
		end := start + 1
		for end < len(want) && pos[want[end]] == pos[want[end-1]]+1 {
			end++
		}
		if err := r.run1(ctx, n, want[start:end], entries, pos); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// run1 reads one run of consecutive frames and hands them to the workers.
func (r *reader) run1(ctx context.Context, n uint32, run []uint64, entries []format.IndexEntry, pos map[uint64]int) error {
	m := r.im.m
	key := format.DataID(n).Key()
	first, last := m.Chunks[run[0]], m.Chunks[run[len(run)-1]]
	length := last.Offset + last.FrameLen() - first.Offset
	rc, err := r.im.st.Get(ctx, key, first.Offset, length)
	var body io.Reader = eofReader{}
	if err != nil {
		if _, damage := r.im.objectErr(ctx, key, err); !damage {
			return fmt.Errorf("read %s of %s: %w", key, r.im.st, err)
		}
	} else {
		defer rc.Close()
		body = rc
	}
	checked := false
	for _, i := range run {
		var buf []byte
		select {
		case buf = <-r.pool:
		case <-ctx.Done():
			return ctx.Err()
		}
		w, err := r.readFrame(body, i, buf)
		if err != nil && !checked && errors.Is(err, format.ErrMissing) {
			checked = true // once per run: a short object, or a read cut in transit?
			if cut := r.im.cutInTransit(ctx, key, err); !format.IsDamage(cut) {
				err = cut
			}
		}
		if err != nil {
			r.pool <- buf[:0]
			if !format.IsDamage(err) {
				return err
			}
			if err := r.damage(damageOf(key, err)); err != nil {
				return err
			}
			continue
		}
		if entries != nil {
			w.entry = &entries[pos[i]]
		}
		select {
		case r.work <- w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// readFrame reads the frame of chunk i from body into buf and checks its
// header; a short body is damage of the chunk.
func (r *reader) readFrame(body io.Reader, i uint64, buf []byte) (frameWork, error) {
	m := r.im.m
	c := m.Chunks[i]
	off, length := m.ChunkRange(i)
	chunkErr := func(err error) error {
		return &format.ChunkError{Index: i, Offset: off, Length: length, Segment: c.Segment, Err: err}
	}
	n := int(c.FrameLen())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(body, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return frameWork{buf: buf}, chunkErr(fmt.Errorf("%w: segment %d is missing or ends before chunk %d", format.ErrMissing, c.Segment, i))
		}
		return frameWork{buf: buf}, fmt.Errorf("read %s of %s: %w", format.DataID(c.Segment).Key(), r.im.st, err)
	}
	f, err := m.ParseFrame(i, buf)
	if err != nil {
		return frameWork{buf: buf}, chunkErr(err)
	}
	return frameWork{frame: f, buf: buf}, nil
}
