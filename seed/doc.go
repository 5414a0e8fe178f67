// Package seed is the one reader of seedship images: it reads an image
// from a [store.Store] and hands out only verified bytes, or typed damage.
//
// It owns every read of an image with verification: the manifest and its
// redundant copies (only copies of this image count; copies of another
// image are named and ignored), the streams of data and parity segments
// (every segment header, frame, index, footer and parity row checked
// against the manifest), a single verified chunk fetch by ranged read, and
// the Reed-Solomon rebuild of damaged chunks and segments from parity.
// Chunk bytes reach a caller only after they decoded within their
// length, matched their chunk hash (the authority, from the manifest) and
// matched the block digests of their segment's index; when that index is
// itself damaged, which is reported as damage of the segment, a streamed
// or rebuilt chunk is delivered on its chunk hash alone, while a single
// fetched chunk ([Image.Chunk]) is refused.
//
// Every frame's stored bytes are also checked against the stored digest
// its segment index records (BLAKE3 of header and payload; the index is
// authenticated by the manifest's segment table), in every read and
// before anything is decoded. A transport read ([ReadOptions.Transport])
// checks only that, with every structure and parity row, and opens no
// chunk: it needs no key and runs near the speed of reading.
//
// An encrypted image (feature "aead") opens without a key: its manifest
// (SHA-256), copies, structure and stored digests are all checkable, and
// a read of it is a transport read. [Image.Unlock] opens its key with age
// identities and checks the manifest's MAC; from then on every chunk is
// authenticated and decrypted before it is decompressed, and a payload
// that fails authentication is damage of its chunk like a hash mismatch.
// Nothing hands out a chunk of an encrypted image that was not unlocked:
// it fails with format.ErrNoKey. Rebuilding segments from parity needs no
// key; each rebuilt segment is checked as it streams and stored only if
// it passes.
//
// Damage is never an error that stops the reader unless the caller asks
// for that: it is reported per chunk ([format.ChunkError]) or per segment
// ([format.SegmentError]) as a [Damage], and [format.IsDamage] tells it
// from operational failures (network, cancellation), which do stop it. A
// missing, non-regular or short object is damage of that object; a read
// that ends early although the store holds the object at its full recorded
// size was cut in transit (a dropped connection), an operational failure:
// the reader asks the store (Stat) before it calls a short read damage.
//
// Package seed exists so that verify, restore, copy, repair and the
// fallback fetch share one implementation of these checks instead of
// repeating them. It imports format, store and, for keys, seal and age
// only: it must not import engine, cmd or verify (they are built on it),
// and it never writes to the image it reads; rebuilt segments are handed
// to the caller, who decides where they go.
package seed
