package engine

import (
	"context"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/format"
)

// chunkJob is one chunk travelling through a [chunkPipeline].
type chunkJob struct {
	index  uint64
	raw    []byte
	out    []byte // compressed payload buffer (capture only)
	blocks []format.BlockDigest
	ec     format.EncodedChunk
	done   chan struct{} // receives once the worker has processed the job (reused: no allocation per chunk)
	// hasher is the image's (its pipeline's): hashChunk hashes with it.
	hasher *format.Hasher
}

// chunkPipeline reads chunks first … last−1 of a source, in order, once;
// workers process them in parallel; sink receives them in order. A fixed
// set of jobs bounds memory. Capture (hash and compress, then write) and
// the re-hash of a resumed capture's prefix (hash, then compare) are both
// such pipelines, and so is a resumed restore's comparison of its target
// with the image.
type chunkPipeline struct {
	src         io.ReaderAt
	name        string // the source, for messages
	target      bool   // src is a restore target, not a source (messages)
	size        int64  // source size
	chunkSize   int
	first, last uint64
	shape       pipelineShape
	compress    bool // jobs need an output buffer
	// hasher hashes the chunks of a pipeline that compares (hashChunk):
	// the image's, so that an encrypted image's keyed digests compare;
	// nil means format.PlainHasher.
	hasher *format.Hasher

	process func(*chunkJob)       // on a worker goroutine
	sink    func(*chunkJob) error // on one goroutine, in chunk order
}

// run runs the pipeline until every chunk reached the sink, or the first
// error, or ctx is cancelled.
func (p *chunkPipeline) run(ctx context.Context) error {
	free := make(chan *chunkJob, p.shape.jobs)
	nblocks := format.NumBlocks(p.chunkSize)
	hasher := p.hasher
	if hasher == nil {
		hasher = format.PlainHasher()
	}
	for range p.shape.jobs {
		j := &chunkJob{raw: make([]byte, p.chunkSize), blocks: make([]format.BlockDigest, nblocks), done: make(chan struct{}, 1), hasher: hasher}
		if p.compress {
			// Room for zstd's worst case, so it is never regrown.
			j.out = make([]byte, 0, p.chunkSize+p.chunkSize/64+4096)
		}
		free <- j
	}
	work := make(chan *chunkJob, p.shape.workers)
	ordered := make(chan *chunkJob, p.shape.jobs)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.read(gctx, free, work, ordered) })
	for range p.shape.workers {
		g.Go(func() error {
			for j := range work {
				p.process(j)
				j.done <- struct{}{}
			}
			return nil
		})
	}
	g.Go(func() error { return p.drain(gctx, ordered, free) })
	return g.Wait()
}

// read is the one sequential pass over the source.
func (p *chunkPipeline) read(ctx context.Context, free <-chan *chunkJob, work, ordered chan<- *chunkJob) error {
	defer close(work)
	defer close(ordered)
	for i := p.first; i < p.last; i++ {
		var j *chunkJob
		select {
		case j = <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
		off := int64(i) * int64(p.chunkSize)
		n := int(min(int64(p.chunkSize), p.size-off))
		if _, err := p.src.ReadAt(j.raw[:n], off); err != nil {
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w (the %s shrank)", io.ErrUnexpectedEOF, p.role())
			}
			return fmt.Errorf("read %s %s at byte %d: %w", p.role(), p.name, off, err)
		}
		j.index, j.raw = i, j.raw[:n]
		for _, ch := range []chan<- *chunkJob{ordered, work} {
			select {
			case ch <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// role names what the pipeline reads, for messages.
func (p *chunkPipeline) role() string {
	if p.target {
		return "target"
	}
	return "source"
}

// drain hands processed jobs to the sink in order and recycles them.
func (p *chunkPipeline) drain(ctx context.Context, ordered <-chan *chunkJob, free chan<- *chunkJob) error {
	for j := range ordered {
		select {
		case <-j.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := p.sink(j); err != nil {
			return err
		}
		if !j.ec.Zero && j.ec.Codec != format.CodecRaw && cap(j.ec.Payload) > cap(j.out) {
			j.out = j.ec.Payload[:0] // keep a grown buffer
		}
		j.raw, j.ec = j.raw[:cap(j.raw)], format.EncodedChunk{}
		free <- j
	}
	return nil
}

// hashChunk is the work of a pipeline that compares: the chunk's hash
// into j.ec.Hash and its block digests into j.blocks (computed in the same
// pass), with the pipeline's hasher, for the pipelines that locate changes
// to the block. A chunk of zeros gets what a chunk table records for one
// (the hasher's ZeroTableHash, so it compares with a zero chunk's entry in
// a plain and an encrypted image alike), and j.ec.Zero; its plain block
// digests cost no hashing.
func hashChunk(j *chunkJob) {
	blocks := j.blocks[:format.NumBlocks(len(j.raw))]
	if format.IsZero(j.raw) {
		j.ec.Zero, j.ec.Hash = true, j.hasher.ZeroTableHash(len(j.raw))
		if j.hasher.Keyed() {
			j.hasher.Zero(j.index, len(j.raw), blocks) // bound to the place: hashed
		} else {
			zeroDigests(j.raw, blocks)
		}
		return
	}
	j.ec.Hash = j.hasher.Chunk(j.index, j.raw, blocks)
}

// MaxWorkers bounds --workers: more hash/compress workers than this only
// add memory (each holds chunk buffers and a zstd encoder).
const MaxWorkers = 64

// pipelineShape is how many workers and jobs a pipeline runs.
type pipelineShape struct{ workers, jobs int }

// shapeFor sizes a capture pipeline for chunks of chunkSize bytes: as many
// as the asked-for workers and two jobs per worker (plus two, so reading
// and writing overlap the work) as fit in budget bytes by pipelineCost. It
// never goes below minPipeline, which fits captureMemory for every chunk
// size; checkParity refuses parity that would not leave room for it.
func shapeFor(chunkSize, workers int, compress bool, budget int64) pipelineShape {
	s := pipelineShape{workers: max(workers, 1), jobs: 2*max(workers, 1) + 2}
	for pipelineCost(chunkSize, s, compress) > budget && s != minPipeline {
		switch {
		case s.jobs > s.workers+1:
			s.jobs--
		case s.workers > 1:
			s.workers--
		default: // one worker, two jobs
			s.jobs--
		}
	}
	return s
}
