// Package storetest is the conformance suite for [store.Store]: one set of
// tests that every implementation (store/dir, store/s3, later the courier
// volumes, and wrappers such as retry or rate limiting) must pass, so that
// the engine can rely on the contract written in package store instead of on
// any one implementation. It follows restic's internal/backend/test and
// kopia's blobtesting.VerifyStorage.
//
// It uses nothing but the Store interface (and the optional
// [store.Connections] and [store.Locker]), plus, in [RunFiles], the file
// system under a file-backed store's root; it must not import an
// implementation, package format or the engine; implementations import it
// from their _test.go files only. Its subpackage memstore is an in-memory
// store and a fault-injecting wrapper for tests of the layers above.
//
// # Usage
//
// Call [Run] from a test in the implementation's package, with a function
// that returns a new, empty store for each subtest and arranges its cleanup
// with t.Cleanup:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := dir.New(t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// For a remote store, give every subtest its own bucket or prefix, and skip
// (or, in CI, fail) when the server is not available. Run one subtest with
// go test -run 'TestConformance/ListOrder'.
//
// # What it checks
//
//   - Put then Get and Stat round-trip objects of 0, 1 and 1 MiB+3 bytes, with
//     the size declared and unknown (-1), from readers that return short reads.
//   - Ranged Get: a middle range, to the end, length 0, and an empty range at
//     the end. A range past the end of the object yields io.ErrUnexpectedEOF
//     (from Get or from a Read), never a silent short read; so does a
//     negative length with an offset past the end. A negative offset fails.
//   - A missing key, and a "directory" that only prefixes other keys, wrap
//     store.ErrNotExist from Get and Stat, and are a no-op for Delete.
//   - A Put that fails (wrong declared size, a reader error, a cancelled ctx
//     before or during the copy) returns an error and leaves no object, and a
//     failed overwrite leaves the old object intact. A cancelled Put returns
//     an error wrapping context.Canceled.
//   - An object is invisible to Stat, Get and List while its Put is still
//     reading, and an object being overwritten keeps its old content until the
//     new one is complete. Readers racing an overwrite see one whole version.
//   - Get's reader stops with context.Canceled when its ctx is cancelled.
//   - List visits keys in byte-wise lexical order ("a-b" < "a.b" < "a/b" <
//     "a0"), filters by a plain string prefix (not only whole directories),
//     returns fn's error unchanged after calling fn no more, reports
//     context.Canceled and calls fn no more once ctx is done.
//   - Concurrent Puts of different keys (in one new directory) and of one key.
//   - [store.Connections], when implemented, is positive.
//   - The writer lock, when [store.Lock] finds one (skipped on
//     store.ErrNoLock): a second Lock fails with store.ErrLocked naming the
//     holder, a locked store lists no lock object, and unlock frees it.
//
// [RunFiles] adds, for stores that keep each key as a file under a root:
// a FIFO, a symlink to a file outside the root and a symlinked directory
// where objects belong are refused promptly with store.ErrNotRegular naming
// the path, are not listed, and lead no read, write or listing outside.
//
// Keys are chosen so that a file system can hold them all: no key is also
// the directory of another (S3 allows "a" and "a/b" together; a directory
// cannot).
//
// The suite cannot see an implementation's temporary objects except through
// List; implementations test their own leftovers (store/dir checks its
// directory tree for ".tmp-" files after failed Puts).
package storetest
