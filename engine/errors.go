package engine

import "errors"

// Sentinel errors that the CLI maps to exit codes.
var (
	// ErrBadInput marks a problem with what the operator asked for: a
	// missing source, a non-empty destination, a target too small or in
	// use. Nothing was written. (exit code 2)
	ErrBadInput = errors.New("bad input")
	// ErrIntegrity marks damage found in an image or a mismatch between
	// a device and an image. (exit code 3)
	ErrIntegrity = errors.New("integrity check failed")
)
