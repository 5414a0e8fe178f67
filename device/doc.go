// Package device owns the Linux facts about block devices and image files
// that seedship reads from and writes to, and the safety checks that stand
// between the restore engine and a device someone is still using.
//
// It answers five questions:
//
//   - What is this path? [Stat] returns an [Info]: size, logical sector
//     size, device number and the disk's identity (serial, WWN, model,
//     /dev/disk/by-id links), so an image can record where it came from.
//   - May seedship overwrite it? [CheckWritable] refuses, with an error
//     wrapping [ErrInUse], a target that is mounted, has a mounted
//     partition, is held by md, device-mapper or LVM, is active swap, backs
//     a loop device that is in use, or is claimed exclusively by anybody
//     else. [OpenTarget] runs the same checks and then keeps an exclusive
//     claim on a block device for as long as the file stays open, so nobody
//     can mount it halfway through a restore.
//   - Are these two paths the same storage? [SameDevice] catches restoring
//     onto the capture source, its partition or disk, a loop device over
//     it, or the disk that holds the image files.
//   - How is a range made to read back as zeros cheaply? [ZeroRange].
//   - Is a capture source changing? [OpenSource] holds a block device with
//     O_EXCL for the whole capture (so it cannot be mounted meanwhile), and
//     [Source.CheckUnchanged] tells whether a file or device was written
//     while it was read (a file's identity, size and times; a device's
//     sectors-written counters in sysfs).
//
// A regular file restore target is also held with an exclusive flock, so
// two restores onto one file cannot both run.
//
// # Why a separate package
//
// The checks read /proc/self/mountinfo, /proc/swaps and sysfs and issue
// block-device ioctls. Keeping them here keeps the engine free of Linux
// details and lets them be tested against real loop devices and against
// fake sysfs trees. device must not import format or store: it knows
// nothing about images, only about the places they come from and go to.
//
// # Failing closed
//
// When a check cannot read what it needs (mountinfo, a sysfs directory) it
// returns an error rather than assume the device is free. The checks see
// only this process's mount namespace; a device mounted in another
// namespace, or claimed by a filesystem, RAID or swap, is still caught by
// the exclusive open ([CheckWritable] probes with O_EXCL, [OpenTarget]
// holds O_EXCL). A program that opened the device without O_EXCL (dd, a
// backup agent) cannot be detected by any of these means.
//
// Parsers for mountinfo and /proc/swaps are pure functions over io.Reader
// and are fuzzed. Real-device tests use [github.com/seedship/seedship/device/devicetest].
package device
