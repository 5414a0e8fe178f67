// Package resync drives a replication product's mark point and its
// partial-resync extend around a seed, so that a mirror seeded from a
// seedship image starts with a partial resync instead of a full one.
//
// # Why it exists
//
// A seed is only worth shipping if the product then resyncs only what
// changed since the seed. Every product that supports this relies on a
// mark point: change tracking must start no later than the capture, the
// seed must be a verbatim copy of the member device, the target must not
// be touched between restore and extend, and the change map must not be
// reset in between. Each product reaches that with its own commands and
// temporary settings (DataKeeper's bitmap clear and LKDR_NO_FULL_SYNC,
// DRBD's new-current-uuid, md's write-intent bitmap and --re-add). This
// package runs those steps in the right order, records the mark point in
// the image's manifest as a seed token ([Token]), checks it before the
// extend, and undoes every temporary change afterwards, also after a
// failure or an interrupt: a LKDR_NO_FULL_SYNC=1 left behind would make
// every later new target skip its full resync.
//
// # Layout
//
// An [Adapter] is one product ("sios", "drbd", "mdraid", and "exec" for
// the operator's own commands), registered by name ([Register]) and
// configured from one JSON file ([LoadConfig], [Config]). [RunCapture]
// and [RunExtend] drive the steps. Adapters touch the world only through
// a [Session]: commands as argv (locally or over the configured ssh
// prefix of each host, never a shell line built from strings), file
// edits that are atomic, backed up and undone by [Session.RestoreAll].
// The session implements dry run (every argv and a unified diff of every
// file edit printed, nothing changed) in one place for all adapters.
// Paths and executables are configuration, so the tests run every
// sequence against temporary trees and fake executables that record
// their argv.
//
// # Configuration
//
// One JSON file ([LoadConfig]); every command is an argv array (or
// {"host": NAME, "argv": [...]} to run it on another system of the
// mirror over that host's ssh prefix) and is never guessed. For
// DataKeeper, seeding a new target:
//
//	{
//	  "adapter": "sios",
//	  "hosts": [
//	    {"name": "nodea"},
//	    {"name": "nodeb", "ssh": ["ssh", "-o", "BatchMode=yes", "root@nodeb"]}
//	  ],
//	  "sios": {
//	    "lkroot": "/opt/LifeKeeper",
//	    "bitmap_file": "/opt/LifeKeeper/bitmap__dr",
//	    "out_of_service": ["/opt/LifeKeeper/bin/perform_action", "-t", "datarep-dr", "-a", "remove"],
//	    "in_service": ["/opt/LifeKeeper/bin/perform_action", "-t", "datarep-dr", "-a", "restore"],
//	    "extend": ["/usr/local/sbin/extend-datarep-dr", "nodeb"]
//	  }
//	}
//
// and for a third node, "tag" plus "third_node": {"target": "nodec",
// "copy_from": "source" | "first_target", "first_target": "nodeb",
// "stop_target": [...], "stop_first_target": [...], "check_paused":
// [...]}. The generic adapter:
//
//	{"adapter": "exec", "exec": {
//	  "preflight": ["/usr/local/sbin/seed-check", "{side}"],
//	  "mark": ["/usr/local/sbin/seed-mark"],
//	  "post_capture": ["/usr/local/sbin/seed-token"],
//	  "extend": ["/usr/local/sbin/seed-extend", "{target}", "{token.volume}"],
//	  "cleanup": ["/usr/local/sbin/seed-cleanup", "{side}"]
//	}}
//
// # Errors
//
// [ErrConfig] is bad input (nothing ran), [ErrCheck] a check that failed
// before anything changed, [ErrStep] a product command or a file edit
// that failed ([CommandError] names the argv and carries its stderr),
// context.Canceled an interrupt; cleanup errors are joined to the step's
// (errors.Join), so a setting that could not be restored is never
// hidden behind the failure that came first.
//
// # Layering
//
// resync sits beside the engine, not in it: it never reads or writes an
// image (the CLI passes the token between it and the manifest,
// format.Header.Resync, through engine.CaptureOptions.BeforeManifest),
// so it never imports engine or the CLI. The checks before extend use
// verify (restore receipts) and device (is the target in use); the
// adapters need only the standard library and a unified-diff library
// (github.com/aymanbagabas/go-udiff, a maintained port of the Go team's
// own internal diff) for dry run.
package resync
