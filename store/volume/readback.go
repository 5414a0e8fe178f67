package volume

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"
)

// Check is the read-back of one volume.
type Check struct {
	Volume, Volumes int
	Loc             string
	Files           int   // files read back
	Bytes           int64 // bytes read back
	Elapsed         time.Duration
	// CacheDropped says the volume was synced and every file dropped from
	// the page cache before it was read, so the bytes came from the drive.
	CacheDropped bool
	// Failures names each file that did not read back as written, and how.
	Failures []string
}

// OK reports whether every file read back as it was written.
func (c Check) OK() bool { return len(c.Failures) == 0 }

// maxFailures bounds the failures one check lists.
const maxFailures = 20

// readBuf is the read-back's read size: large reads keep a drive
// streaming.
const readBuf = 1 << 20

// ReadBack syncs every volume, drops its files from the page cache and
// reads every byte back against the SHA-256 its label recorded while
// writing, volumes in parallel (they are separate drives). It also
// checks that each label reads back as written. It returns one Check per
// volume, in volume order; a cancelled ctx ends it early, with ctx's error.
func (s *Set) ReadBack(ctx context.Context) ([]Check, error) {
	out := make([]Check, len(s.vols))
	var wg sync.WaitGroup
	for i, v := range s.vols {
		v.mu.Lock()
		lab, written := v.label, v.written
		lab.Files = append([]File(nil), v.label.Files...)
		v.mu.Unlock()
		wg.Go(func() { out[i] = checkVolume(ctx, v.m, &lab, written) })
	}
	wg.Wait()
	return out, ctx.Err()
}

// CheckVolume reads one volume back against its own label, as ReadBack
// does at the end of a capture: for a drive checked again later, alone.
func CheckVolume(ctx context.Context, m Member) (Check, *Label, error) {
	lab, _, err := ReadLabel(ctx, m.Store)
	if err != nil {
		return Check{}, nil, fmt.Errorf("%s: %w", m.Loc, err)
	}
	if lab == nil {
		return Check{}, nil, refuse(ErrNoLabel, "%s holds no volume label (%s): it is not a volume of a seedship volume set", m.Loc, LabelKey)
	}
	c := checkVolume(ctx, m, lab, nil)
	return c, lab, ctx.Err()
}

// CheckVolumes is CheckVolume for several volumes, in parallel (they are
// separate drives), in the order given.
func CheckVolumes(ctx context.Context, members []Member) ([]Check, []*Label, error) {
	checks := make([]Check, len(members))
	labels := make([]*Label, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() { checks[i], labels[i], errs[i] = CheckVolume(ctx, m) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, nil, err
		}
	}
	return checks, labels, nil
}

// checkVolume reads back every file lab lists on m; written, if not nil,
// is what the label itself must read back as.
func checkVolume(ctx context.Context, m Member, lab *Label, written []byte) Check {
	start := time.Now()
	c := Check{Volume: lab.Volume, Volumes: lab.Volumes, Loc: m.Loc}
	fail := func(format string, args ...any) {
		if len(c.Failures) < maxFailures {
			c.Failures = append(c.Failures, fmt.Sprintf(format, args...))
		} else if len(c.Failures) == maxFailures {
			c.Failures = append(c.Failures, "and more")
		}
	}
	c.CacheDropped = m.Dir != "" && syncFS(m.Dir) == nil
	drop := func(key string) {
		if c.CacheDropped && dropCache(filepath.Join(m.Dir, filepath.FromSlash(key))) != nil {
			c.CacheDropped = false
		}
	}
	if m.Dir != "" {
		drop(LabelKey)
	}
	if _, b, err := ReadLabel(ctx, m.Store); err != nil {
		fail("%s: %v", LabelKey, err)
	} else if written != nil && !bytes.Equal(b, written) {
		fail("%s: reads back other bytes than were written", LabelKey)
	}
	buf := make([]byte, readBuf)
	for _, f := range lab.Files {
		if ctx.Err() != nil {
			break
		}
		if m.Dir != "" {
			drop(f.Key)
		}
		n, sum, err := readAll(ctx, m, f.Key, buf)
		switch {
		case err != nil:
			fail("%s: read error after %d of %d bytes: %v", f.Key, n, f.Size, err)
		case n != f.Size:
			fail("%s: %d bytes, but %d were written", f.Key, n, f.Size)
		case sum != f.SHA256:
			fail("%s: SHA-256 %s, but %s was written: the drive returns other bytes than it was given", f.Key, sum[:16], f.SHA256[:16])
		}
		c.Files++
		c.Bytes += n
	}
	c.Elapsed = time.Since(start)
	return c
}

// readAll reads key from m and returns its length and SHA-256. One
// goroutine reads while this one hashes (two buffers of len(buf) bytes
// take turns), so the drive streams without waiting for the hash.
func readAll(ctx context.Context, m Member, key string, buf []byte) (int64, string, error) {
	rc, err := m.Store.Get(ctx, key, 0, -1)
	if err != nil {
		return 0, "", err
	}
	defer rc.Close()
	type block struct {
		b   []byte
		err error
	}
	full := make(chan block, 1)
	free := make(chan []byte, 2)
	free <- buf
	free <- make([]byte, len(buf))
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			var b []byte
			select {
			case b = <-free:
			case <-done:
				return
			}
			n, err := io.ReadFull(rc, b)
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				err = io.EOF
			}
			select {
			case full <- block{b[:n], err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	h := sha256.New()
	var n int64
	for blk := range full {
		h.Write(blk.b)
		n += int64(len(blk.b))
		if errors.Is(blk.err, io.EOF) {
			break
		}
		if blk.err != nil {
			return n, "", blk.err
		}
		free <- blk.b[:cap(blk.b)]
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
