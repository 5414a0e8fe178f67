// Package retry wraps a [store.Store] so that transient failures are retried
// with exponential backoff and jitter, as restic's backend/retry does.
//
// # What it owns
//
// The retry policy: which errors are worth another attempt ([Retryable]:
// anything but a done context, [store.ErrPermanent], [store.ErrNoSpace] and
// [store.ErrNotExist]), how many attempts (6 by default), how long to wait
// between them, and how to repeat each operation safely:
//
//   - Put is retried only when its reader is an [io.Seeker], which is rewound
//     to where it stood when Put was called. Any other reader is consumed by
//     the first attempt, so such a Put gets exactly one attempt.
//   - Get retries opening the object, and the reader it returns resumes: when
//     a read fails transiently (a reset, a body cut short, a 5xx), it issues
//     a new ranged Get from the first byte not yet delivered. This relies on
//     objects being immutable once written, which seedship's images are: an
//     object overwritten between the cut and the resumption would yield the
//     old bytes followed by the new (the format's hashes catch that, and
//     writers never overwrite segments).
//   - List is retried from the start, skipping the keys already given to fn
//     (listings are in lexical order), so fn sees every key once.
//   - Stat and Delete are retried as they are.
//   - The writer lock is not retried here: [store.Lock] reaches the wrapped
//     store's [store.Locker] through [Store.Unwrap].
//
// It classifies nothing itself: the implementations translate their errors
// (store/s3 marks bad credentials and missing buckets permanent), and this
// package trusts those marks.
//
// # What it must not import
//
// Package format, or any store implementation: it works on the interface.
package retry
