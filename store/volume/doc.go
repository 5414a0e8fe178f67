// Package volume spreads one seed image across several removable drives
// (courier volumes): a store.Store over V member stores, typically the mount
// points of the drives (store/dir), or s3:// prefixes.
//
// It exists because a source device is often larger than any one drive at
// hand, a shipment can lose or break a drive, and the target site may see
// the drives arrive one by one and in any order. Package store's other
// implementations hold an image in one place; this one holds it in V places
// and keeps, on every volume, a label (volume.json, spec §10) that says which
// image and which volume of how many the drive is, what it holds (every
// file's key, size and SHA-256, computed while writing) and, once the capture
// has finished, the facts an operator tapes to the drive.
//
// # Placement
//
// Each key is placed when it is written, by the "rotate" rule of spec §10,
// over the volumes that still have room: with parity K+M, data segment n
// (stripe s = n/K, position p = n%K) goes to volume (s+p) mod V and parity
// segment j of stripe s to (s+K+j) mod V, so the shards of a stripe land on
// distinct volumes when V ≥ K+M; without parity data segment n goes to
// n mod V. The manifest, its copies, the capture checkpoint and the label are
// on every volume, so any one drive identifies the whole shipment. Readers
// never depend on the rule: they find keys by listing the volumes that are
// present, so a capture continued onto a new drive (capture --resume with
// one more destination) keeps every stored key where it is. What the
// placement actually achieved, not what the rule promises, decides how many
// whole volumes may be lost (MayLose).
//
// The package knows no container format (package store must not import
// format): the caller tells it what a key is with a Classify function.
//
// # Capacity
//
// Each volume is capped: at --volume-size, and never above its free space
// (statfs) less a margin ([Margin]), so a write that would not fit fails
// with an error wrapping store.ErrNoSpace before the drive is actually
// full, naming the volume and what it lacks. A volume whose room is less
// than the largest file written so far is skipped by the placement while
// others have room, so the drives fill evenly and a capture stops only when
// all are full.
//
// # Read-back
//
// After a capture, [Set.ReadBack] syncs each volume, drops its files from
// the page cache (posix_fadvise DONTNEED) and reads every byte back against
// the SHA-256 recorded while writing, so that a failing or fake-capacity
// drive is caught before it leaves. [CheckVolume] does the same later for a
// single volume, from its label alone.
//
// # One bay at the source
//
// A capture whose volumes are full may go on with only a new drive
// attached: [Set.Suspend] records the image ID and CountUnknown in the
// labels of the full drives (their count is only a lower bound: more
// drives follow) and returns every label so far, which the caller keeps
// on the source host with the engine's state; [Create] with
// CreateOptions.Detached continues the set onto new drives alone,
// numbering them after the detached ones and refusing a detached drive
// given again, a drive of another capture and one that is not empty. The
// detached drives' labels are never written again; the last drive's,
// written by [Set.Finish], lists them (Detached) and the whole set. Every
// segment, and with parity every stripe, is on one drive: a stopped run's
// segments past its checkpoint are removed before the drive is detached.
//
// # Reading
//
// [Open] reads the labels of the volumes given, refuses (one line, naming
// the path) a volume of another image, a duplicate, and a stale volume of an
// earlier capture of the same source, and serves the union of what the
// present volumes hold: a missing volume looks like missing segments, which
// the image reader rebuilds from parity when the placement allows. The
// count is the largest the labels say, so a set whose earlier labels say
// CountUnknown is completed by its last drive's label; drives detached
// before the capture ended lack the manifest, which [Set.Adopt] supplies
// from what a reader kept of the last drive.
package volume
