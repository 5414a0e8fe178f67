//go:build !linux

package device

import "os"

// Source is a capture source held open; capture is supported on Linux only.
type Source struct {
	File      *os.File
	Info      Info
	Exclusive bool
}

// OpenSource is supported on Linux only.
func OpenSource(path string, allowInUse bool) (*Source, error) {
	return nil, unsupported("capture from", path)
}

// CheckUnchanged is supported on Linux only.
func (s *Source) CheckUnchanged() error { return unsupported("check", s.Info.Path) }

// Close releases the source.
func (s *Source) Close() error { return s.File.Close() }
