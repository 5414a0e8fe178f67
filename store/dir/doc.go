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
// # Only regular files, and never outside the root
//
// An image is hostile input. Every path below the root is reached one
// element at a time from the root with O_NOFOLLOW (openat, renameat,
// unlinkat on the directory's descriptor; an [os.Root] with Lstat checks on
// systems without openat), so no symbolic link inside the root is followed,
// whether it stands in for an object or for a directory such as data/.
// Objects are opened only after Lstat shows a regular file, and the open
// cannot block (O_NONBLOCK) and is checked again with fstat, so a FIFO, a
// device, a socket, a symlink or a directory where an object should be is
// refused at once with an error wrapping [store.ErrNotRegular] that names
// its path (a directory also matches [store.ErrNotExist]: directories are
// not keys). Readers treat that as damage of the one object; writes (Put)
// into a symlinked directory fail with it and [store.ErrPermanent]. List
// reports regular files only and descends only into real directories.
// The root itself may be a symlink: it is the operator's path.
//
// # Writer lock
//
// [Store.Lock] holds flock(2) on the file [store.LockKey] in the root,
// which records the holder; the kernel drops the lock when the holder dies.
// The file is not a key: List skips it and the other methods refuse it.
//
// # Errors
//
// Every error names the operation and key and starts with "dir: ". A missing
// key wraps [store.ErrNotExist] (the os errors already match it; a directory
// or a path through a regular file also counts as missing). A full file
// system (no space, quota exceeded) wraps [store.ErrNoSpace], which retrying
// at once cannot fix but which is not bad input either: freeing space and
// resuming continues the work. Failures that retrying cannot fix (read-only
// file system, permission denied, file too large, name too long, a file
// where a directory must be) wrap [store.ErrPermanent], as do invalid keys.
//
// # Limits
//
// Directories are not keys: Stat and Get of "data" report ErrNotExist even if
// "data/00000000.seg" exists. The store assumes it is the only writer of its
// root while RemoveTemps runs.
package dir
