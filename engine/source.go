package engine

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/seedship/seedship/device"
	"github.com/seedship/seedship/format"
)

// Source is a block device or regular file opened for capture. A block
// device is held exclusively (O_EXCL) until Close, unless it was opened
// with allowInUse.
type Source struct {
	Path string
	Info device.Info
	// AllowInUse says the operator accepted a source that may be in use
	// or change while it is read: it is neither held nor checked for
	// changes, and the manifest records it.
	AllowInUse bool
	dev        *device.Source
}

// OpenSource opens path for capture: a block device or a regular file
// that this process can read. Errors wrap ErrBadInput.
func OpenSource(path string) (*Source, error) { return OpenSourceWith(path, false) }

// OpenSourceWith is OpenSource that, unless allowInUse, also refuses a
// block device that is mounted or otherwise in use and holds it
// exclusively while it is open, so nobody can mount it during the
// capture: a live filesystem changes while it is read, and the seed would
// not be a consistent image of any moment. Take the mirror out of service
// first, as the vendors' procedures say, or capture a snapshot.
func OpenSourceWith(path string, allowInUse bool) (*Source, error) {
	// The manifest records an absolute path, so that restore can recognise
	// the source from any working directory.
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	ds, err := device.OpenSource(path, allowInUse)
	var inUse *device.InUseError
	switch {
	case errors.As(err, &inUse):
		return nil, fmt.Errorf("%w: source %s %s: a live device changes while it is read; take it out of service (%s), capture a snapshot, or pass --allow-in-use",
			ErrBadInput, path, inUse.Reason, inUse.Fix)
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("%w: cannot read source %s: %w (devices usually need root)", ErrBadInput, path, err)
	case err != nil:
		return nil, fmt.Errorf("%w: source %s: %w (check the path)", ErrBadInput, path, err)
	}
	return &Source{Path: path, Info: ds.Info, AllowInUse: allowInUse, dev: ds}, nil
}

// Close closes the source and releases its exclusive claim.
func (s *Source) Close() error { return s.dev.Close() }

// reader returns the source for positioned reads.
func (s *Source) reader() io.ReaderAt { return s.dev.File }

// checkUnchanged refuses a source that was written while it was read,
// unless the operator allowed it. The error names the cause and the fix.
func (s *Source) checkUnchanged() error {
	if s.AllowInUse {
		return nil
	}
	err := s.dev.CheckUnchanged()
	if errors.Is(err, device.ErrSourceChanged) {
		return fmt.Errorf("%w: the image would be neither its old nor its new state, so no manifest was written; capture a snapshot (or stop every writer) into an empty destination, or pass --allow-in-use", err)
	}
	if err != nil {
		return fmt.Errorf("cannot tell whether source %s changed during capture: %w", s.Path, err)
	}
	return nil
}

// describe returns the manifest's record of the source.
func (s *Source) describe() format.Source {
	info := s.Info
	src := format.Source{Path: s.Path, Kind: "file", Size: info.Size, InUse: s.AllowInUse}
	if info.IsBlock {
		src.Kind = "block"
		src.SectorSize = info.LogicalSectorSize
		src.Serial, src.WWN, src.Model, src.ByID = info.Serial, info.WWN, info.Model, info.ByID
	}
	if h, err := os.Hostname(); err == nil {
		src.Host = h
	}
	return src
}
