// Package format is the seedship container format: pure codecs over
// io.Writer, io.Reader, io.ReaderAt and []byte. It owns the magic numbers and
// version, the chunk hash (a two-level SHA-256 tree over 64 KiB blocks), chunk
// frames (raw or zstd, chosen per chunk), segment files with their trailing
// index and footer, the manifest and its encode/decode, and the sentinel and
// typed errors that say what is damaged and where.
//
// The byte layout is specified in spec/FORMAT.md; every constant here is named
// there. This package never opens files, devices or network connections, and
// must not import package store: the engine hands it writers and readers.
//
// Work that can run in parallel (hashing, compression) is exposed as pure
// functions ([Codec.Encode], [Codec.Decode]) so a pipeline's workers can call
// them concurrently; the ordered part ([ImageWriter], [SegmentWriter]) only
// appends finished frames and never seeks back.
package format
