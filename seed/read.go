package seed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// ReadOptions tunes [Image.Read]. Zero values mean the defaults.
type ReadOptions struct {
	// Workers decode and hash chunks in parallel; default GOMAXPROCS.
	Workers int
	// Readers stream segments in parallel; default the store's
	// connection count, or 2.
	Readers int
	// Segments restricts the read to these data segments (nil: all).
	Segments []uint32
	// OnChunk, if set, receives every stored chunk's raw bytes once they
	// are verified, from worker goroutines concurrently. raw is valid
	// only during the call. An error from OnChunk ends the read.
	OnChunk func(index uint64, raw []byte) error
	// Chunks, if set, restricts the read to these stored chunks (within
	// Segments, if that is set too): only their frames are read, by
	// ranged reads of each run of consecutive wanted frames, and each is
	// checked (frame header, bounded decode, chunk hash, block digests
	// from the segment's index); the segments' other bytes are not read
	// or checked.
	Chunks []uint64
	// OnDigest, if set, receives each stored chunk of a digest-only
	// image (feature "digest-only": its frames hold no payload, so there
	// is nothing to decode) with its segment index entry: the chunk hash
	// and block digests, checked against the manifest, and the frame
	// header read from the segment checked against both. It is called
	// from worker goroutines concurrently. An error from it ends the
	// read.
	OnDigest func(index uint64, e format.IndexEntry) error
	// OnDamage, if set, receives each piece of damage found, from any
	// goroutine (calls are serialised). An error from it ends the read.
	OnDamage func(Damage) error
	// StopOnDamage ends the read at the first damage, with an error that
	// format.IsDamage recognises.
	StopOnDamage bool
	// OnProgress, if set, is called with the raw bytes of each chunk done.
	OnProgress func(n int64)
	// Transport checks the stored bytes only: every frame's stored
	// digest (BLAKE3 of its header and payload) against its segment
	// index's entry, the index being authenticated by the manifest's
	// segment table, with every structure and, with Parity, every row
	// CRC checked as in a deep read; no chunk is decompressed or
	// decrypted, so it needs no key and runs near the speed of reading.
	// A chunk whose segment index is damaged cannot be checked this way
	// and is reported as damage. OnChunk must be nil. Read also checks
	// this way, without being asked, an encrypted image that was not
	// unlocked when neither OnChunk nor Deep is set. [ReadStats.Transport]
	// says which check was made.
	Transport bool
	// Deep asks for every chunk to be opened (decrypted, decompressed and
	// checked against its chunk hash and block digests, after its stored
	// digest): on an encrypted image that was not unlocked Read then
	// fails at once with an error wrapping format.ErrNoKey instead of
	// checking transport integrity only. Setting OnChunk implies it.
	Deep bool
	// Parity, if set, maps each stripe to an intact parity index of it
	// (from [Image.CheckParity]); each data segment's bytes are then also
	// checked against their rows' CRC-32C, so that a changed byte that
	// still decodes to the right chunk (an unused bit of a zstd header)
	// is found before it counts as an erasure in a repair.
	Parity map[uint32]*format.ParityIndex
}

// ReadStats counts what [Image.Read] verified.
type ReadStats struct {
	// Transport is true when only stored bytes were checked (against
	// their stored digests, ReadOptions.Transport): no chunk was opened
	// and checked against its chunk hash, which a report must say
	// ("transport integrity only"). False when every chunk was opened.
	Transport    bool
	ChunksOK     uint64 // stored chunks that passed every check (of the kind Transport says)
	ZeroChunks   uint64 // zero chunks of the image (nothing to read)
	BytesChecked int64  // raw (source) bytes of the chunks that passed
	// StoredChecked counts the frames whose stored digest was checked
	// against their segment index and matched, in either kind of read
	// (a deep read checks them too, before decoding).
	StoredChecked uint64
	// StoredBytes counts the stored bytes (frame headers and payloads)
	// of those frames.
	StoredBytes int64
	// Digests counts the stored chunks of a digest-only image whose
	// frame header and index entry passed every check (they have no
	// data to check: ChunksOK and BytesChecked do not count them).
	Digests uint64
}

// frameWork is one frame handed from a segment reader to a worker.
type frameWork struct {
	frame format.Frame
	buf   []byte
	entry *format.IndexEntry // the segment index's entry; nil when the index is unreadable
}

// reader is the state of one Read.
type reader struct {
	im    *Image
	opts  ReadOptions
	mu    sync.Mutex
	stats ReadStats
	pool  chan []byte
	work  chan frameWork
	codec *format.ChunkCodec  // nil in a transport read
	want  map[uint32][]uint64 // with opts.Chunks: the wanted chunks of each segment
}

// Read streams the chosen data segments (all by default), each once front
// to back, and checks every byte: segment header, every frame header,
// every frame's stored digest against the segment's index, every chunk
// (in a deep read: opened, which in an encrypted image authenticates and
// decrypts it, decoded within its length, then its chunk hash and the
// block digests of the segment's index), the index and footer against the
// manifest, the segment's size and, with opts.Parity, its row CRCs. A
// transport read (opts.Transport, or an encrypted image not unlocked)
// opens no chunk; ReadStats.Transport says which was made.
// Verified chunks go to opts.OnChunk; the chunks of a digest-only image,
// which hold no data, go to opts.OnDigest with their index entries once
// the segment's structure around them checks out; damage goes to opts.OnDamage and
// does not stop the read (unless opts.StopOnDamage). The error is for
// failures that stop it: operational read errors, cancellation, OnChunk
// errors, or damage with StopOnDamage. Memory is bounded by a fixed set of
// frame buffers, a few per worker and reader, and by ReadMemory: with
// large chunks Read runs fewer workers and readers than asked.
func (im *Image) Read(ctx context.Context, opts ReadOptions) (ReadStats, error) {
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.Readers <= 0 {
		opts.Readers = store.ConnectionsOf(im.st, 2)
	}
	opts.Workers, opts.Readers = fitRead(im.m.Header.ChunkSize, opts.Workers, opts.Readers)
	transport, err := im.readMode(opts)
	if err != nil {
		return ReadStats{}, err
	}
	r := &reader{im: im, opts: opts, work: make(chan frameWork, opts.Workers)}
	r.stats.Transport = transport
	if !transport {
		if r.codec, err = im.newCodec(opts.Workers); err != nil {
			return ReadStats{}, err
		}
		defer r.codec.Close()
	}
	for _, c := range im.m.Chunks {
		if c.Kind == format.KindZero {
			r.stats.ZeroChunks++
		}
	}
	nbuf := opts.Workers*2 + opts.Readers
	r.pool = make(chan []byte, nbuf)
	for range nbuf {
		r.pool <- make([]byte, 0, format.FrameHeaderSize+im.m.Header.ChunkSize)
	}
	err = r.run(ctx, r.segments())
	return r.stats, err
}

// readMode checks the options against the image and reports whether
// the read checks stored bytes only.
func (im *Image) readMode(opts ReadOptions) (transport bool, err error) {
	deep := opts.Deep || opts.OnChunk != nil
	switch {
	case opts.Transport && opts.Deep:
		return false, fmt.Errorf("seed: a read is either a transport check or a deep one, not both")
	case opts.Transport && opts.OnChunk != nil:
		return false, fmt.Errorf("seed: a transport check opens no chunk, so it has none to hand to OnChunk")
	case im.Locked() && deep:
		return false, im.errLocked("opening its chunks")
	}
	return opts.Transport || im.Locked(), nil
}

// ReadMemory bounds the buffers one [Image.Read] holds: its frame
// buffers, each worker's decode buffer and each reader's stream buffer.
// Read runs fewer workers and readers than asked when that many would not
// fit (with 64 MiB chunks: one worker and up to two readers), so that
// restore and verify of an image of any chunk size stay under 512 MiB of
// RSS with the Go runtime, the manifest and the 400 MiB soft memory limit
// the CLI sets.
const ReadMemory = 352 << 20

// streamBuffer is the buffer each reader streams a segment through.
const streamBuffer = 1 << 20

// readCost is what a Read with these workers and readers holds for chunks
// of chunkSize bytes: two frame buffers per worker and one per reader (a
// frame is at most a header and a chunk), a decode buffer per worker and
// a stream buffer per reader.
func readCost(chunkSize, workers, readers int) int64 {
	frame := int64(format.FrameHeaderSize + chunkSize)
	return int64(2*workers+readers)*frame + int64(workers)*int64(chunkSize) + int64(readers)*streamBuffer
}

// fitRead lowers workers, then readers, keeping at least one of each,
// until a Read of chunks of chunkSize bytes fits ReadMemory.
func fitRead(chunkSize, workers, readers int) (int, int) {
	for readCost(chunkSize, workers, readers) > ReadMemory {
		switch {
		case workers > 1 && workers >= readers:
			workers--
		case readers > 1:
			readers--
		case workers > 1:
			workers--
		default:
			return workers, readers
		}
	}
	return workers, readers
}

// segments returns the data segments to read, and sets r.want when only
// some chunks are wanted.
func (r *reader) segments() []uint32 {
	segs := slices.Clone(r.opts.Segments)
	if segs == nil {
		for _, s := range r.im.m.Segments {
			segs = append(segs, s.Number)
		}
	}
	slices.Sort(segs)
	segs = slices.Compact(segs)
	if r.opts.Chunks == nil {
		return segs
	}
	r.want = map[uint32][]uint64{}
	for _, i := range r.opts.Chunks {
		if i < uint64(len(r.im.m.Chunks)) && r.im.m.Chunks[i].Kind == format.KindStored {
			n := r.im.m.Chunks[i].Segment
			if _, ok := slices.BinarySearch(segs, n); ok {
				r.want[n] = append(r.want[n], i)
			}
		}
	}
	out := segs[:0]
	for _, n := range segs {
		if w := r.want[n]; len(w) > 0 {
			slices.Sort(w)
			r.want[n] = slices.Compact(w)
			out = append(out, n)
		}
	}
	return out
}

// run feeds segments to the readers and frames to the workers.
func (r *reader) run(ctx context.Context, segs []uint32) error {
	g, ctx := errgroup.WithContext(ctx)
	jobs := make(chan uint32)
	g.Go(func() error {
		defer close(jobs)
		for _, s := range segs {
			select {
			case jobs <- s:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	readers, rctx := errgroup.WithContext(ctx)
	for range r.opts.Readers {
		readers.Go(func() error {
			for seg := range jobs {
				if err := r.segment(rctx, seg); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		err := readers.Wait()
		close(r.work)
		return err
	})
	for range r.opts.Workers {
		g.Go(r.worker)
	}
	return g.Wait()
}

// damage records d; with StopOnDamage it returns the error that ends the
// read.
func (r *reader) damage(d Damage) error {
	d = r.im.locate(d)
	if r.opts.OnDamage != nil {
		r.mu.Lock()
		err := r.opts.OnDamage(d)
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if r.opts.StopOnDamage {
		return fmt.Errorf("seed: stopped at damage in %s: %w", d.Key, d.Err)
	}
	return nil
}

// worker decodes and verifies frames.
func (r *reader) worker() error {
	m := r.im.m
	out := make([]byte, 0, m.Header.ChunkSize)
	blocks := make([]format.BlockDigest, format.NumBlocks(m.Header.ChunkSize))
	for w := range r.work {
		err := r.verify(w, out, blocks)
		r.pool <- w.buf[:0]
		if err != nil {
			return err
		}
	}
	return nil
}

// verify checks one frame: its stored digest against the segment index
// first (when the index is intact), then, in a deep read, its chunk
// opened, decoded and checked against its chunk hash and block digests.
func (r *reader) verify(w frameWork, out []byte, blocks []format.BlockDigest) error {
	m := r.im.m
	i := w.frame.Index
	off, length := m.ChunkRange(i)
	c := m.Chunks[i]
	chunkErr := func(err error) error {
		return r.damage(damageOf("", &format.ChunkError{Index: i, Offset: off, Length: length, Segment: c.Segment, Err: err}))
	}
	if w.entry != nil && !r.opensChunks() {
		if err := checkStored(w); err != nil {
			return chunkErr(err)
		}
		r.mu.Lock()
		r.stats.StoredChecked++
		r.stats.StoredBytes += int64(len(w.buf))
		r.mu.Unlock()
	}
	if w.frame.Codec == format.CodecDigestOnly {
		return r.digest(w)
	}
	var raw []byte
	if r.codec == nil {
		if w.entry == nil {
			return chunkErr(fmt.Errorf("%w: its stored bytes cannot be checked without a key: the segment index that holds their digest is damaged", format.ErrCorrupt))
		}
	} else {
		blocks = blocks[:format.NumBlocks(int(length))]
		var err error
		raw, err = r.codec.DecodeAt(i, w.frame.Codec, w.frame.Payload, int(length), c.Hash, out, blocks)
		if err == nil && w.entry != nil {
			err = format.CheckBlocks(blocks, w.entry.Blocks)
		}
		if err != nil {
			return chunkErr(err)
		}
	}
	r.mu.Lock()
	r.stats.ChunksOK++
	r.stats.BytesChecked += length
	r.mu.Unlock()
	var err error
	if r.opts.OnChunk != nil && raw != nil {
		err = r.opts.OnChunk(i, raw)
	}
	if r.opts.OnProgress != nil {
		r.opts.OnProgress(length)
	}
	return err
}

// checkStored checks a frame's stored bytes against its index entry's
// stored digest. The segment scanner computed the digest as the frame
// streamed past; a frame read by a ranged read is hashed here, by the
// worker.
func checkStored(w frameWork) error {
	d := w.frame.Stored
	if d == (format.Hash{}) {
		return w.entry.CheckStored(w.buf)
	}
	return w.entry.CheckStoredDigest(d)
}

// digest reports a chunk of a digest-only image: its frame header was
// checked against the manifest on the way; its hash and block digests are
// the index entry's, checked against the manifest when the index was
// read. Without a readable index the chunk's digests are lost: damage.
func (r *reader) digest(w frameWork) error {
	i := w.frame.Index
	if w.entry == nil {
		off, length := r.im.m.ChunkRange(i)
		c := r.im.m.Chunks[i]
		return r.damage(damageOf("", &format.ChunkError{Index: i, Offset: off, Length: length, Segment: c.Segment,
			Err: fmt.Errorf("%w: the segment index that holds its digests is damaged", format.ErrCorrupt)}))
	}
	r.mu.Lock()
	r.stats.Digests++
	r.mu.Unlock()
	if r.opts.OnDigest != nil {
		return r.opts.OnDigest(i, *w.entry)
	}
	return nil
}

// segment streams one data segment and sends its frames to the workers.
func (r *reader) segment(ctx context.Context, n uint32) error {
	id := format.DataID(n)
	key := id.Key()
	entries, ierr := r.im.readIndex(ctx, n)
	if ierr != nil && !format.IsDamage(ierr) {
		return ierr
	}
	if r.want != nil {
		return r.partial(ctx, n, entries, ierr)
	}
	rc, err := r.im.st.Get(ctx, key, 0, -1)
	if err != nil {
		werr, damage := r.im.objectErr(ctx, key, err)
		if !damage {
			return werr
		}
		// One finding for the segment, then one per chunk it held (the
		// scanner reports each frame missing), so a rebuild knows them.
		if err := r.damage(damageOf(key, segmentErr(id, nil, werr))); err != nil {
			return err
		}
		sc, _ := format.NewSegmentScanner(eofReader{}, r.im.m, n, r.im.chunks[n])
		return r.frames(ctx, sc, key, nil)
	}
	defer rc.Close()
	var body io.Reader = rc
	var crc *rowCRC
	if idx, pos := r.parityIndex(n); idx != nil {
		crc = &rowCRC{size: idx.RowSize, want: idx.CRC[pos]}
		body = io.TeeReader(rc, crc)
	}
	sc, err := format.NewSegmentScanner(bufio.NewReaderSize(body, streamBuffer), r.im.m, n, r.im.chunks[n])
	if err != nil {
		return err
	}
	if r.opensChunks() {
		sc.SkipStoredDigests()
	}
	if herr := sc.HeaderErr(); herr != nil {
		if err := r.damage(damageOf(key, segmentErr(id, nil, fmt.Errorf("header: %w", herr)))); err != nil {
			return err
		}
	}
	if err := r.frames(ctx, sc, key, entries); err != nil {
		return err
	}
	return r.finish(ctx, sc, id, ierr, crc)
}

// parityIndex returns the intact parity index of data segment n's stripe,
// if the caller gave one, and the segment's shard position in it.
func (r *reader) parityIndex(n uint32) (*format.ParityIndex, int) {
	g, ok := r.im.m.Geometry()
	if !ok || r.opts.Parity == nil {
		return nil, 0
	}
	s, pos := g.Stripe(format.DataID(n))
	return r.opts.Parity[s], pos
}

// frames hands every frame of a segment to the workers.
func (r *reader) frames(ctx context.Context, sc *format.SegmentScanner, key string, entries []format.IndexEntry) error {
	checked := false // whether a truncation was checked with the store
	for k := 0; ; k++ {
		var buf []byte
		select {
		case buf = <-r.pool:
		case <-ctx.Done():
			return ctx.Err()
		}
		f, buf, err := sc.Next(buf)
		if errors.Is(err, io.EOF) {
			r.pool <- buf[:0]
			return nil
		}
		if err != nil {
			r.pool <- buf[:0]
			if ioErr := sc.IOErr(); ioErr != nil {
				return fmt.Errorf("read %s of %s: %w", key, r.im.st, ioErr)
			}
			if !checked && errors.Is(err, format.ErrMissing) {
				// The stream ended early: a short object, or a read
				// cut in transit? Ask the store once.
				checked = true
				if cut := r.im.cutInTransit(ctx, key, err); !format.IsDamage(cut) {
					return cut
				}
			}
			if err := r.damage(damageOf(key, err)); err != nil {
				return err
			}
			continue
		}
		w := frameWork{frame: f, buf: buf}
		if entries != nil {
			w.entry = &entries[k]
		}
		select {
		case r.work <- w:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// finish checks a segment's index, footer, end and row CRCs once its
// frames were read.
func (r *reader) finish(ctx context.Context, sc *format.SegmentScanner, id format.SegmentID, indexErr error, crc *rowCRC) error {
	_, err := sc.Finish()
	if ioErr := sc.IOErr(); ioErr != nil {
		return fmt.Errorf("read %s of %s: %w", id.Key(), r.im.st, ioErr)
	}
	if err != nil && errors.Is(err, format.ErrMissing) {
		if cut := r.im.cutInTransit(ctx, id.Key(), err); !format.IsDamage(cut) {
			return cut
		}
	}
	if err != nil {
		// A truncated segment was already reported chunk by chunk when
		// its frames were lost; this reports the index and footer.
		return r.damage(damageOf(id.Key(), segmentErr(id, nil, fmt.Errorf("index/footer: %w", err))))
	}
	if indexErr != nil {
		return r.damage(damageOf(id.Key(), indexErr))
	}
	if crc != nil {
		if bad := crc.finish(); len(bad) > 0 {
			return r.damage(damageOf(id.Key(), segmentErr(id, bad, fmt.Errorf("%w: %d row(s) fail their parity CRC-32C though every chunk %s: %v", format.ErrCorrupt, len(bad), r.checkedAs(), bad))))
		}
	}
	return nil
}

// rowCRC computes the CRC-32C of each parity row of a streamed segment.
type rowCRC struct {
	size int
	want []uint32
	got  []uint32
	cur  uint32
	off  int
}

func (c *rowCRC) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), c.size-c.off)
		c.cur = format.RowCRC(c.cur, p[:k])
		c.off += k
		p = p[k:]
		if c.off == c.size {
			c.got = append(c.got, c.cur)
			c.cur, c.off = 0, 0
		}
	}
	return n, nil
}

// finish pads the last row with zeros and returns the rows that differ.
func (c *rowCRC) finish() []int {
	if c.off > 0 {
		c.cur = format.RowCRC(c.cur, make([]byte, c.size-c.off))
		c.got = append(c.got, c.cur)
	}
	var bad []int
	for r, g := range c.got {
		if r >= len(c.want) || g != c.want[r] {
			bad = append(bad, r)
		}
	}
	return bad
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// checkedAs says how the chunks were found sound, for messages: decoded
// (a deep read) or matching their stored digests (a transport read).
func (r *reader) checkedAs() string {
	if r.stats.Transport {
		return "matches its stored digest"
	}
	return "decodes"
}

// opensChunks reports whether the read opens every chunk and checks it
// against its chunk hash and block digests (a deep read of an image with
// data): then a frame that decodes to its chunk hash is right, and its
// stored digest, which transport reads, copy and repair check, is not
// computed again. A digest-only image's frames hold no data to open:
// their stored digests are checked.
func (r *reader) opensChunks() bool {
	return r.codec != nil && !r.im.m.Header.RequiresFeature(format.FeatureDigestOnly)
}
