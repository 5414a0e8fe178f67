package seed

import (
	"fmt"
	"runtime"
	"sync"

	"filippo.io/age"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
)

// Unlock opens an encrypted image with the identities (age identities; a
// passphrase is seal.PassphraseIdentity): it unwraps the image's key,
// checks the manifest's MAC with it and opens its sealed metadata
// (format.Manifest.Unseal), so that from then on Image.Read, Image.Chunk,
// Image.CheckStream and Image.Rebuild open every chunk (decrypt,
// decompress, check against its keyed chunk hash and block digests).
// When no identity opens the key the error wraps format.ErrNoKey (bad
// input: nothing was read); a manifest that fails its MAC under the key
// opened (altered, or not the manifest the key was made for) is
// integrity damage (it wraps format.ErrChecksum, so format.IsDamage
// holds), and so is a wrapped key that is not an age file of a key
// (format.ErrCorrupt). A manifest that fails its MAC is refused, not
// replaced by a copy that passes: whoever altered it may have altered
// more. Unlocking an image that is not encrypted, or one already
// unlocked, does nothing and returns nil.
//
// The manifest is opened in place, so every Image sharing it (Image.In,
// New with the same manifest) is unlocked too. Call Unlock before reading,
// not while another goroutine reads the image.
func (im *Image) Unlock(ids []age.Identity) error {
	if !im.m.Encrypted() || im.m.Unsealed() {
		return nil
	}
	k, err := format.OpenKeys(&im.m.Header, ids)
	if err != nil {
		return fmt.Errorf("%s: %w", im, err)
	}
	if err := im.m.Unseal(k); err != nil {
		return fmt.Errorf("%s: %s: %w", im, im.from, err)
	}
	return nil
}

// Encrypted reports whether the image is encrypted (feature "aead").
func (im *Image) Encrypted() bool { return im.m.Encrypted() }

// Locked reports whether the image is encrypted and was not unlocked:
// its chunks cannot be opened, only their stored bytes checked
// (ReadOptions.Transport).
func (im *Image) Locked() bool { return im.m.Encrypted() && !im.m.Unsealed() }

// errLocked is the refusal to open the chunks of a locked image.
func (im *Image) errLocked(what string) error {
	return lockedError(fmt.Sprintf("%s: %s needs the image's key: the image is encrypted and was not unlocked (give an identity or passphrase that opens it)", im, what))
}

// lockedError is the one-line refusal to open a chunk without the key;
// it matches format.ErrNoKey.
type lockedError string

func (e lockedError) Error() string { return string(e) }

// Is makes errors.Is(err, format.ErrNoKey) true.
func (e lockedError) Is(target error) bool { return target == format.ErrNoKey }

// newCodec returns a fresh decoder for the image's chunks, with up to
// concurrency decodes at once: keyed once the image is unlocked.
func (im *Image) newCodec(concurrency int) (*format.ChunkCodec, error) {
	if im.Locked() {
		return nil, im.errLocked("opening chunks")
	}
	c, err := format.NewChunkCodec(0, concurrency, im.m.Header.ChunkSize)
	if err != nil {
		return nil, err
	}
	if k := im.m.Keys(); k != nil {
		c.SetKeys(k)
	}
	return c, nil
}

// codec returns the shared decoder of the image's chunks for single chunk
// fetches and stream checks: the plain one of its chunk size, or a keyed
// one of its keys.
func (im *Image) codec() (*format.ChunkCodec, error) {
	if im.Locked() {
		return nil, im.errLocked("opening chunks")
	}
	k := im.m.Keys()
	if k == nil {
		return sharedCodec(im.m.Header.ChunkSize)
	}
	return keyedCodecs.get(k, im.m.Header.ChunkSize)
}

// codecs holds one decoder per image chunk size, shared by the single
// chunk fetches and segment stream checks of every Image (a zstd decoder
// is costly to make); up to GOMAXPROCS decodes run at once.
var codecs sync.Map // chunk size → *format.ChunkCodec

func sharedCodec(chunkSize int) (*format.ChunkCodec, error) {
	if c, ok := codecs.Load(chunkSize); ok {
		return c.(*format.ChunkCodec), nil
	}
	c, err := format.NewChunkCodec(0, runtime.GOMAXPROCS(0), chunkSize)
	if err != nil {
		return nil, err
	}
	if prev, loaded := codecs.LoadOrStore(chunkSize, c); loaded {
		c.Close()
		return prev.(*format.ChunkCodec), nil
	}
	return c, nil
}

// keyedCodecs keeps the keyed decoders of the few images unlocked last.
// It is bounded because every unlocked image has keys of its own: a
// process that opens many (a test binary, a long copy job) keeps only the
// last few decoders; an evicted one is left to the garbage collector, not
// closed, since a fetch may still be using it.
var keyedCodecs = &keyedCache{max: 4}

type keyedCache struct {
	mu  sync.Mutex
	max int
	c   []keyedCodec
}

type keyedCodec struct {
	keys      *seal.Keys
	chunkSize int
	codec     *format.ChunkCodec
}

func (kc *keyedCache) get(k *seal.Keys, chunkSize int) (*format.ChunkCodec, error) {
	kc.mu.Lock()
	defer kc.mu.Unlock()
	for _, e := range kc.c {
		if e.keys == k && e.chunkSize == chunkSize {
			return e.codec, nil
		}
	}
	c, err := format.NewChunkCodec(0, runtime.GOMAXPROCS(0), chunkSize)
	if err != nil {
		return nil, err
	}
	c.SetKeys(k)
	if len(kc.c) == kc.max {
		copy(kc.c, kc.c[1:])
		kc.c = kc.c[:len(kc.c)-1]
	}
	kc.c = append(kc.c, keyedCodec{k, chunkSize, c})
	return c, nil
}
