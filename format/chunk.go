package format

import (
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// EncodedChunk is a chunk after hashing and compression, ready for
// [ImageWriter.Add].
type EncodedChunk struct {
	RawLen  int           // length of the raw chunk
	Hash    Hash          // chunk hash of the raw bytes
	Blocks  []BlockDigest // truncated block digests, NumBlocks(RawLen) of them
	Zero    bool          // all zero: nothing is stored
	Codec   Codec         // how Payload is stored (unset when Zero)
	Payload []byte        // stored bytes (nil when Zero)
}

// ChunkCodec hashes, compresses and decompresses chunk payloads. Its
// methods are safe for concurrent use; each call runs on the calling
// goroutine, and one shared codec serves every pipeline worker.
type ChunkCodec struct {
	enc     *zstd.Encoder
	dec     *zstd.Decoder
	scratch sync.Pool // *[]byte for the x86-filtered copy of a chunk
}

// NewChunkCodec returns a codec for chunks of up to chunkSize bytes at the
// given zstd level (1-22; 0 stores every chunk raw). concurrency bounds how
// many encodes or decodes run at once; it should be the number of pipeline
// workers.
func NewChunkCodec(level, concurrency, chunkSize int) (*ChunkCodec, error) {
	if level < 0 || level > 22 {
		return nil, fmt.Errorf("format: compression level %d out of range 0-22", level)
	}
	if concurrency < 1 {
		concurrency = 1
	}
	c := &ChunkCodec{}
	c.scratch.New = func() any { b := make([]byte, 0, chunkSize); return &b }
	var err error
	if level > 0 {
		c.enc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithEncoderConcurrency(concurrency),
			// Chunk hashes already protect every byte; a zstd CRC
			// would be a second check of the same thing.
			zstd.WithEncoderCRC(false),
			// A frame holds one chunk: a larger window would only
			// allocate history that is never used.
			zstd.WithWindowSize(windowFor(chunkSize)),
			// Entropy-code literals even where the encoder would not
			// bother: about 0.05% smaller for little CPU.
			zstd.WithAllLitEntropyCompression(true),
		)
		if err != nil {
			return nil, fmt.Errorf("format: zstd encoder: %w", err)
		}
	}
	c.dec, err = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(concurrency),
		// A frame never legitimately decodes to more than a chunk, and
		// Decode gives DecodeAll a buffer of exactly the chunk's length:
		// with the cap limit a frame that declares or produces more is
		// refused at that length, so a crafted frame costs no more than
		// its chunk.
		zstd.WithDecoderMaxMemory(MaxChunkSize),
		zstd.WithDecoderMaxWindow(MaxChunkSize),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		return nil, fmt.Errorf("format: zstd decoder: %w", err)
	}
	return c, nil
}

func windowFor(n int) int {
	w := zstd.MinWindowSize
	for w < n && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}

// Close releases the codec's resources.
func (c *ChunkCodec) Close() {
	if c.enc != nil {
		c.enc.Close()
	}
	c.dec.Close()
}

// incompressible reports whether a compressed payload saves too little to
// be worth decompressing at restore: under 1/64 (about 1.6%) of the chunk.
func incompressible(raw, compressed int) bool {
	return compressed >= raw-raw/64
}

// Encode hashes raw and, unless it is all zero, compresses it into dst
// (reusing dst's capacity). blocks must have room for NumBlocks(len(raw))
// digests; the returned chunk's Blocks aliases it, its Payload aliases dst
// or raw. Encode never retains raw or dst after returning.
func (c *ChunkCodec) Encode(raw, dst []byte, blocks []BlockDigest) EncodedChunk {
	ec, zero := hashChunk(raw, blocks)
	if zero {
		return ec
	}
	if c.enc != nil {
		bp := c.scratch.Get().(*[]byte)
		f := append((*bp)[:0], raw...)
		x86Encode(f)
		out := c.enc.EncodeAll(f, dst[:0])
		*bp = f
		c.scratch.Put(bp)
		if !incompressible(len(raw), len(out)) {
			ec.Codec, ec.Payload = CodecZstdX86, out
			return ec
		}
	}
	ec.Codec, ec.Payload = CodecRaw, raw
	return ec
}

// hashChunk starts the encoding of raw: its length, hash and block
// digests (into blocks), and whether it is a zero chunk (then ec is
// complete).
func hashChunk(raw []byte, blocks []BlockDigest) (ec EncodedChunk, zero bool) {
	n := NumBlocks(len(raw))
	ec = EncodedChunk{RawLen: len(raw), Blocks: blocks[:n]}
	if IsZero(raw) {
		ec.Zero = true
		ec.Hash = ZeroChunkHash(len(raw))
		zd := zeroBlockDigest
		for i := range ec.Blocks {
			ec.Blocks[i] = zd
		}
		if rem := len(raw) % blockSize; rem != 0 {
			// The short last block has its own digest.
			ChunkHash(raw[len(raw)-rem:], ec.Blocks[n-1:])
		}
		return ec, true
	}
	ec.Hash = ChunkHash(raw, ec.Blocks)
	return ec, false
}

// DigestChunk encodes raw for a digest-only image (feature
// "digest-only"): it is hashed (chunk hash and block digests, into
// blocks) but not stored; a chunk that is not all zero becomes a frame of
// codec CodecDigestOnly with an empty payload. DigestChunk never retains
// raw.
func DigestChunk(raw []byte, blocks []BlockDigest) EncodedChunk {
	ec, zero := hashChunk(raw, blocks)
	if !zero {
		ec.Codec, ec.Payload = CodecDigestOnly, nil
	}
	return ec
}

// Decode turns a stored payload back into rawLen raw bytes in dst (reusing
// its capacity) and checks them against want. It returns the raw bytes only
// if they hash to want; otherwise an error wrapping ErrChecksum or
// ErrCorrupt. blocks, if not nil, receives the block digests.
func (c *ChunkCodec) Decode(codec Codec, payload []byte, rawLen int, want Hash, dst []byte, blocks []BlockDigest) ([]byte, error) {
	var raw []byte
	switch codec {
	case CodecRaw:
		if len(payload) != rawLen {
			return nil, corruptf("raw payload is %d bytes, want %d", len(payload), rawLen)
		}
		raw = payload
	case CodecZstd, CodecZstdX86:
		if rawLen < 1 || rawLen > MaxChunkSize {
			return nil, fmt.Errorf("%w: chunk of %d bytes", ErrTooLarge, rawLen)
		}
		if cap(dst) < rawLen {
			dst = make([]byte, 0, rawLen)
		}
		// The capacity is the decoding limit (WithDecodeAllCapLimit).
		out, err := c.dec.DecodeAll(payload, dst[:0:rawLen])
		if err != nil {
			return nil, corruptf("zstd: %v", err)
		}
		if len(out) != rawLen {
			return nil, corruptf("zstd payload decodes to %d bytes, want %d", len(out), rawLen)
		}
		if codec == CodecZstdX86 {
			x86Decode(out)
		}
		raw = out
	case CodecDigestOnly:
		return nil, fmt.Errorf("%w: a digest-only image records hashes, not data", ErrNoData)
	default:
		return nil, corruptf("unknown codec %d", codec)
	}
	if got := ChunkHash(raw, blocks); got != want {
		return nil, fmt.Errorf("%w: got %x, want %x", ErrChecksum, got[:8], want[:8])
	}
	return raw, nil
}
