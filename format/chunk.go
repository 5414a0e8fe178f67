package format

import (
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/seedship/seedship/seal"
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

// ChunkCodec hashes, compresses and decompresses chunk payloads; after
// SetKeys it also seals and opens them (an encrypted image, spec §11.3)
// and hashes with the image's keyed hasher. Its methods are safe for
// concurrent use; each call runs on the calling goroutine, and one shared
// codec serves every pipeline worker.
type ChunkCodec struct {
	enc     *zstd.Encoder
	dec     *zstd.Decoder
	scratch sync.Pool // *[]byte of a chunk's size: the x86-filtered copy, a compressed or opened payload
	keys    *seal.Keys
	hasher  *Hasher
	// nonces, when set (test vectors only), replaces the CSPRNG as the
	// source of sealing nonces.
	nonces io.Reader
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
	c := &ChunkCodec{hasher: PlainHasher()}
	// Room for zstd's worst case (a little over the input), so that a
	// compressed payload that turns out larger than the chunk does not
	// grow the buffer.
	c.scratch.New = func() any { b := make([]byte, 0, chunkSize+chunkSize/64+4096); return &b }
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

// SetKeys makes the codec keyed: it seals every payload it encodes, opens
// every payload it decodes, and hashes with NewKeyedHasher(k). Call it
// before the codec's first use.
func (c *ChunkCodec) SetKeys(k *seal.Keys) {
	c.keys, c.hasher = k, NewKeyedHasher(k)
}

// Keyed reports whether SetKeys was called.
func (c *ChunkCodec) Keyed() bool { return c.keys != nil }

// Hasher returns the hasher the codec uses: PlainHasher, or the keyed
// hasher of the keys given to SetKeys.
func (c *ChunkCodec) Hasher() *Hasher { return c.hasher }

// EncodeAt hashes chunk index's raw bytes and, unless they are all zero,
// compresses them into dst (reusing dst's capacity), then, on a keyed
// codec, seals the result into dst (spec §11.3; dst should then have
// room for len(raw)+SealOverhead bytes and must not overlap raw). blocks
// must have room for NumBlocks(len(raw)) digests; the returned chunk's
// Blocks aliases it, its Payload aliases dst or (raw, unkeyed) raw. A zero
// chunk's Hash is its chunk hash (keyed: the digest of its zeros at
// index); the table records ZeroTableHash for it. EncodeAt never retains
// raw or dst after returning.
func (c *ChunkCodec) EncodeAt(index uint64, raw, dst []byte, blocks []BlockDigest) EncodedChunk {
	ec := EncodedChunk{RawLen: len(raw), Blocks: blocks[:NumBlocks(len(raw))]}
	if IsZero(raw) {
		ec.Zero = true
		ec.Hash = c.hasher.Zero(index, len(raw), ec.Blocks)
		return ec
	}
	ec.Hash = c.hasher.Chunk(index, raw, ec.Blocks)
	if c.keys == nil {
		ec.Codec, ec.Payload = c.compress(raw, dst)
		return ec
	}
	bp := c.scratch.Get().(*[]byte)
	codec, plain := c.compress(raw, *bp)
	ec.Codec = codec | CodecSealed
	ad := seal.ChunkAD{ImageID: c.keys.ImageID(), Index: index, Codec: byte(ec.Codec), RawLen: uint32(len(raw))}
	if c.nonces != nil {
		ec.Payload = c.keys.SealChunkWithNonces(dst[:0], plain, ad, c.nonces)
	} else {
		ec.Payload = c.keys.SealChunk(dst[:0], plain, ad)
	}
	if codec != CodecRaw && cap(plain) > cap(*bp) {
		*bp = plain[:0] // keep a grown buffer
	}
	c.scratch.Put(bp)
	return ec
}

// compress returns the §4 payload of a non-zero chunk: zstd of its
// x86-filtered bytes in dst, or raw itself when that saves too little.
func (c *ChunkCodec) compress(raw, dst []byte) (Codec, []byte) {
	if c.enc == nil {
		return CodecRaw, raw
	}
	bp := c.scratch.Get().(*[]byte)
	f := append((*bp)[:0], raw...)
	x86Encode(f)
	out := c.enc.EncodeAll(f, dst[:0])
	*bp = f
	c.scratch.Put(bp)
	if incompressible(len(raw), len(out)) {
		return CodecRaw, raw
	}
	return CodecZstdX86, out
}

// DigestChunk encodes raw for a digest-only image (feature
// "digest-only"): it is hashed (chunk hash and block digests, into
// blocks) but not stored; a chunk that is not all zero becomes a frame of
// codec CodecDigestOnly with an empty payload. DigestChunk never retains
// raw.
func DigestChunk(raw []byte, blocks []BlockDigest) EncodedChunk {
	ec, _ := digestChunk(PlainHasher(), 0, raw, blocks)
	return ec
}

// DigestChunkAt is DigestChunk through the codec. A digest-only image
// cannot be encrypted in this format version, so on a keyed codec it
// returns an error and no chunk.
func (c *ChunkCodec) DigestChunkAt(index uint64, raw []byte, blocks []BlockDigest) (EncodedChunk, error) {
	if c.keys != nil {
		return EncodedChunk{}, errDigestOnlyAEAD
	}
	return digestChunk(c.hasher, index, raw, blocks)
}

func digestChunk(h *Hasher, index uint64, raw []byte, blocks []BlockDigest) (EncodedChunk, error) {
	ec := EncodedChunk{RawLen: len(raw), Blocks: blocks[:NumBlocks(len(raw))]}
	if IsZero(raw) {
		ec.Zero, ec.Hash = true, h.Zero(index, len(raw), ec.Blocks)
		return ec, nil
	}
	ec.Hash = h.Chunk(index, raw, ec.Blocks)
	ec.Codec = CodecDigestOnly
	return ec, nil
}

// DecodeAt turns chunk index's stored payload back into rawLen raw bytes
// in dst (reusing its capacity) and checks them against want. A keyed
// codec first opens the sealed payload with the associated data of
// (image, index, rawLen, codec) and decompresses nothing that fails; a
// failure wraps ErrChecksum (and seal.ErrAuthentication). It returns the
// raw bytes only if they hash to want; otherwise an error wrapping
// ErrChecksum or ErrCorrupt. blocks, if not nil, receives the block
// digests. A keyed codec refuses a payload that is not sealed, and one
// without keys a sealed one.
func (c *ChunkCodec) DecodeAt(index uint64, codec Codec, payload []byte, rawLen int, want Hash, dst []byte, blocks []BlockDigest) ([]byte, error) {
	if rawLen < 1 || rawLen > MaxChunkSize {
		return nil, fmt.Errorf("%w: chunk of %d bytes", ErrTooLarge, rawLen)
	}
	var raw []byte
	var err error
	switch {
	case c.keys == nil && codec.Sealed():
		return nil, corruptf("%s payload, but the image is not encrypted", codec)
	case c.keys == nil:
		raw, err = c.decompress(codec, payload, rawLen, dst)
	case !codec.Sealed():
		return nil, corruptf("%s payload in an encrypted image, whose payloads are all sealed", codec)
	default:
		raw, err = c.open(index, codec, payload, rawLen, dst)
	}
	if err != nil {
		return nil, err
	}
	if got := c.hasher.Chunk(index, raw, blocks); got != want {
		return nil, fmt.Errorf("%w: got %x, want %x", ErrChecksum, got[:8], want[:8])
	}
	return raw, nil
}

// open authenticates and decrypts a sealed payload, then decompresses it.
func (c *ChunkCodec) open(index uint64, codec Codec, payload []byte, rawLen int, dst []byte) ([]byte, error) {
	if !codec.valid() || !PayloadLenOK(codec, uint32(min(len(payload), MaxChunkSize+SealOverhead+1)), int64(rawLen)) {
		return nil, corruptf("%s payload of %d bytes for %d raw bytes", codec, len(payload), rawLen)
	}
	ad := seal.ChunkAD{ImageID: c.keys.ImageID(), Index: index, Codec: byte(codec), RawLen: uint32(rawLen)}
	if codec.Plain() == CodecRaw {
		if cap(dst) < rawLen {
			dst = make([]byte, 0, rawLen)
		}
		raw, err := c.keys.OpenChunk(dst[:0], payload, ad)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrChecksum, err)
		}
		return raw, nil
	}
	bp := c.scratch.Get().(*[]byte)
	defer c.scratch.Put(bp)
	opened, err := c.keys.OpenChunk((*bp)[:0], payload, ad)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrChecksum, err)
	}
	if cap(opened) > cap(*bp) {
		*bp = opened[:0]
	}
	return c.decompress(codec.Plain(), opened, rawLen, dst)
}

// decompress decodes a plain §4 payload into rawLen bytes.
func (c *ChunkCodec) decompress(codec Codec, payload []byte, rawLen int, dst []byte) ([]byte, error) {
	switch codec {
	case CodecRaw:
		if len(payload) != rawLen {
			return nil, corruptf("raw payload is %d bytes, want %d", len(payload), rawLen)
		}
		return payload, nil
	case CodecZstd, CodecZstdX86:
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
		return out, nil
	case CodecDigestOnly:
		return nil, fmt.Errorf("%w: a digest-only image records hashes, not data", ErrNoData)
	default:
		return nil, corruptf("unknown codec %d", codec)
	}
}
