// Package ratelimit wraps a [store.Store] so that the bytes of Put and Get
// bodies flow no faster than a configured rate, for --bwlimit.
//
// # What it owns
//
//   - [Limiter], a token bucket in bytes per second shared by every
//     goroutine that uses it (one Limiter for uploads and one for downloads,
//     or a single one for both to cap the total).
//   - [New], the wrapper: Put's reader and Get's returned reader wait for
//     tokens as the bytes pass. Stat, List and Delete are not limited, and
//     [store.Lock] reaches the wrapped store's lock through [Store.Unwrap].
//   - [ParseRate], which reads "50MiB/s", "10M", "1.5GB/s" or "0" (no
//     limit).
//
// A token bucket was chosen over golang.org/x/time/rate to avoid a new
// dependency for forty lines; it is deliberately simple: tokens accrue at
// the rate up to one burst, and a reservation may drive the balance negative
// so that a large read waits proportionally.
//
// # What it must not import
//
// Package format, or any store implementation: it works on the interface.
package ratelimit
