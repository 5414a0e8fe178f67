// Package engine runs seedship's operations on images and devices: capture
// (read → hash → compress → write, as stages: plan, workers, ordered sink),
// restore (a plan that gives every chunk one origin — already on the
// target, zero, this image, parity, a fallback image — then one executor
// that fetches, verifies and writes), copy and repair, with bounded
// concurrency, bounded memory and progress reports.
//
// It exists as its own package because this is the one place where the
// format (package format), the places images live (package store), the
// verified image reader (package seed), the checks (package verify) and
// the devices (package device) meet; each of those stays ignorant of the
// others. The engine parses no bytes itself: every byte layout is package
// format's, and every verified read of an image is package seed's.
//
// An encrypted image (spec §11) is made by a capture with
// CaptureOptions.Encrypt and opened by every command the same way: its
// manifest, then its signature, then its key from the identities given
// (openKeyed), before any chunk is read or anything written. Copy and
// verify work on its stored bytes without a key; the commands that
// compare or write chunks need one. Every chunk hash and block digest is
// the image's hasher's (format.Manifest.Hasher), never the plain
// sha256-tree directly, so a plaintext image behaves as before.
//
// Every error it returns is classified by [KindOf] into bad input (nothing
// written), integrity, resumable partial work, interruption or another
// runtime failure; the CLI maps only those kinds to exit codes.
package engine
