// Package dir implements [store.Store] over a local directory: an image is a
// plain directory tree whose relative paths are the keys, so key
// "data/00000000.seg" is the file <root>/data/00000000.seg. The layout is the
// same as in every other store, so a directory copied to a bucket with any S3
// tool (or back) is a valid image.
//
// It owns the mapping from keys to OS paths (and the rejection of keys that
// could escape the root, see [ErrInvalidKey]), atomic and durable writes,
// ranged reads that refuse to be short, and the classification of OS errors
// into [store.ErrNotExist] and [store.ErrPermanent]. It moves opaque bytes and
// must not import package format, the engine or the CLI; it depends only on
// package store and the standard library.
//
// # Writes
//
// [Store.Put] follows restic's local backend: the bytes go to a temporary
// file in the target directory whose name starts with ".tmp-", which is
// synced, closed and renamed over the key, and then the directory is synced.
// Missing parent directories are created (never above the root, so an
// unmounted volume is not silently replaced by an empty directory) and their
// parents are synced too. Readers therefore see the old object or the whole
// new one, never a partial file, and a finished Put survives a power cut.
// Temporary files are never listed; a process that is killed mid-Put leaves
// one behind, which [Store.RemoveTemps] deletes.
//
// # Errors
//
// Every error names the operation and key and starts with "dir: ". A missing
// key wraps [store.ErrNotExist] (the os errors already match it; a directory
// or a path through a regular file also counts as missing). Failures that
// retrying cannot fix (no space, quota exceeded, read-only file system,
// permission denied, file too large, name too long, a file where a directory
// must be) wrap [store.ErrPermanent], as do invalid keys.
//
// # Limits
//
// Directories are not keys: Stat and Get of "data" report ErrNotExist even if
// "data/00000000.seg" exists, and List reports only regular files (a symbolic
// link to a regular file counts as one; links to directories are not
// followed). The store assumes it is the only writer of its root while
// RemoveTemps runs.
package dir
