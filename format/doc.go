// Package format is the seedship container format: pure codecs over
// io.Writer, io.Reader, io.ReaderAt and []byte. It owns the magic numbers and
// version, the chunk hash (a two-level SHA-256 tree over 64 KiB blocks), chunk
// frames (raw or zstd, chosen per chunk), segment files with their trailing
// index and footer, parity segments with their row CRCs, the manifest and its
// encode/decode, the keys of an image's files (SegmentID, the one place keys
// are made and parsed), and the sentinel and typed errors that say what is
// damaged and where ([ChunkError], [SegmentError]), with [IsDamage], the one
// answer to "is this damage or an operational failure?".
//
// Readers here check every count and size before they allocate or decode:
// a manifest is read no further than its preamble's counts allow, a segment
// index no longer than the manifest says, and a frame is decoded with an
// output limit of its chunk's length. Package seed builds the verified image
// reader on these codecs.
//
// The byte layout is specified in spec/FORMAT.md; every constant here is named
// there. This package never opens files, devices or network connections, and
// must not import package store: the engine hands it writers and readers.
//
// An encrypted image (feature "aead", spec §11) is the same layout with
// sealed payloads, keyed digests, sealed metadata and a keyed manifest
// trailer. Package seal does the cryptography; this package decides where
// it applies: [ChunkCodec.SetKeys] seals and opens payloads, [Hasher] is
// the one source of chunk digests (plain or keyed), [Manifest.Unseal]
// checks the MAC and opens the sealed metadata, and [OpenKeys] unwraps an
// image's key with age identities.
//
// Work that can run in parallel (hashing, compression) is exposed as pure
// functions ([ChunkCodec.EncodeAt], [ChunkCodec.DecodeAt]) so a pipeline's workers can call
// them concurrently; the ordered part ([ImageWriter]) only
// appends finished frames and never seeks back.
package format
