package engine

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// uploader streams segments into a store with up to jobs uploads in
// flight: closing a segment does not wait for its upload to finish, so the
// pipeline starts the next segment while the last parts of the previous
// ones are still being sent (on a WAN link the round trips would otherwise
// stall capture). Work that must follow a segment's arrival, the resume
// checkpoint, runs in order once that segment and all before it are
// stored. A capture that grows a group of segments together (a parity
// stripe, or a width) keeps all of them open at once, so it runs at least
// as many uploads as the group has segments, plus the store's connections
// for the previous group's tails: with fewer, creating a group's last
// segment would wait for an upload that ends only when the group closes.
// Memory: jobs uploads, each bounded by the store.
type uploader struct {
	ctx  context.Context
	dst  store.Store
	slot chan struct{}   // uploads in flight
	todo chan commitItem // closed uploads and follow-up work, in order
	done chan struct{}   // closed when the committer has drained todo

	mu    sync.Mutex
	err   error // first failure; sticky
	close sync.Once
}

// commitItem is an upload to wait for, or work to run after the uploads
// before it.
type commitItem struct {
	key   string
	pw    *store.PipeWriter // ended; Wait gives the upload's result
	after func() error
}

func newUploader(ctx context.Context, dst store.Store, jobs int) *uploader {
	jobs = max(jobs, 1)
	u := &uploader{ctx: ctx, dst: dst, slot: make(chan struct{}, jobs),
		todo: make(chan commitItem, 2*jobs+2), done: make(chan struct{})}
	go u.commit()
	return u
}

// create is the format.SegmentCreator: it waits for an upload slot, then
// streams the segment into dst.Put through a pipe.
func (u *uploader) create(key string) (io.WriteCloser, error) {
	if err := u.failed(); err != nil {
		return nil, err
	}
	select {
	case u.slot <- struct{}{}:
	case <-u.ctx.Done():
		return nil, u.ctx.Err()
	}
	return &segmentWriter{u: u, key: key, pw: store.PutPipe(u.ctx, u.dst, key, -1)}, nil
}

// afterStored runs fn once every segment closed so far is stored.
func (u *uploader) afterStored(fn func() error) { u.todo <- commitItem{after: fn} }

func (u *uploader) failed() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

func (u *uploader) fail(err error) {
	u.mu.Lock()
	if u.err == nil {
		u.err = err
	}
	u.mu.Unlock()
}

// commit waits for uploads in order and runs the work that follows them.
func (u *uploader) commit() {
	defer close(u.done)
	for it := range u.todo {
		if it.pw != nil {
			err := it.pw.Wait()
			<-u.slot
			if err != nil {
				u.fail(fmt.Errorf("store %s: %w", it.key, err))
			}
			continue
		}
		if u.failed() == nil {
			if err := it.after(); err != nil {
				u.fail(err)
			}
		}
	}
}

// wait waits for every upload and the work that follows it, and returns
// the first failure. The uploader cannot be used afterwards; calling wait
// again returns the same result.
func (u *uploader) wait() error {
	u.close.Do(func() { close(u.todo) })
	<-u.done
	return u.failed()
}

// segmentWriter is one segment's pipe into its upload.
type segmentWriter struct {
	u   *uploader
	key string
	pw  *store.PipeWriter
}

func (w *segmentWriter) Write(b []byte) (int, error) { return w.pw.Write(b) }

// Close ends the segment's bytes and queues its upload for committing; it
// does not wait for the upload. It reports an earlier upload's failure,
// so that the pipeline stops at the next segment boundary.
func (w *segmentWriter) Close() error {
	w.pw.End()
	w.u.todo <- commitItem{key: w.key, pw: w.pw}
	return w.u.failed()
}

// CloseWithError abandons the segment: its upload fails and stores
// nothing.
func (w *segmentWriter) CloseWithError(err error) error {
	w.pw.CloseWithError(err)
	<-w.u.slot
	return nil
}

var _ format.SegmentCreator = (*uploader)(nil).create
