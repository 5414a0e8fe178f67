package engine

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/seedship/seedship/format"
)

// The partial-restore state file (restore --partial): which chunks of
// which image are on which target, and which volumes have been seen. It is
// read back on the next run, so it is hostile input: bounded in size,
// strict JSON, every field checked against the image and the target.
const (
	partialFormat  = "seedship-partial-restore"
	partialVersion = 1
	// maxPartialState bounds the state file before it is read: a bitmap
	// of maxPartialDone chunks in base64 is about 11 MiB; the rest is a
	// few hundred bytes.
	maxPartialState = 16 << 20
	// maxPartialDone is more chunks than any manifest holds (one of
	// format.MaxManifestSize bytes holds about 19 M 56-byte entries).
	maxPartialDone = 1 << 26
)

// A manifest never has more chunks than a state file records.
const _ = uint64(maxPartialDone - format.MaxManifestSize/56)

// ErrPartialState marks a state file of restore --partial that cannot be
// used: damaged, of another image, or of another target.
var ErrPartialState = errors.New("partial restore state refused")

// partialState is the content of the state file.
type partialState struct {
	Format         string        `json:"format"`
	Version        int           `json:"version"`
	ImageID        string        `json:"image_id"`
	ManifestSHA256 string        `json:"manifest_sha256"`
	Chunks         uint64        `json:"chunks"`
	Volumes        int           `json:"volumes"`
	Seen           []int         `json:"seen"`
	Target         partialTarget `json:"target"`
	// Done is a bitmap, base64: bit i%8 of byte i/8 says chunk i is on
	// the target, written, verified and fsynced.
	Done    string    `json:"done"`
	Updated time.Time `json:"updated"`
}

// partialTarget identifies the target the state describes, so that the
// state of one target is never applied to another.
type partialTarget struct {
	Path string `json:"path"`
	Kind string `json:"kind"` // "file" or "block"
	// Size is a block device's size; for a file, 0.
	Size int64 `json:"size,omitempty"`
	// Dev and Ino identify a regular file (its inode): a file replaced
	// under the same name is another target.
	Dev uint64 `json:"dev,omitempty"`
	Ino uint64 `json:"ino,omitempty"`
	// Rdev ("major:minor") and ByID (its /dev/disk/by-id names, which
	// survive a reboot that renames it) identify a block device.
	Rdev string   `json:"rdev,omitempty"`
	ByID []string `json:"by_id,omitempty"`
}

// same reports whether a and b describe the same target, and if not, why.
func (a partialTarget) same(b partialTarget) (bool, string) {
	if a.Kind != b.Kind {
		return false, fmt.Sprintf("it was a %s, now a %s", a.Kind, b.Kind)
	}
	if a.Kind == "file" {
		if a.Dev != b.Dev || a.Ino != b.Ino {
			return false, "it is another file than the one the state records (the file was replaced or the state belongs elsewhere)"
		}
		return true, ""
	}
	if a.Size != b.Size {
		return false, fmt.Sprintf("the device holds %d bytes, the state's %d", b.Size, a.Size)
	}
	if len(a.ByID) > 0 && len(b.ByID) > 0 {
		for _, id := range a.ByID {
			if slices.Contains(b.ByID, id) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("its disk identity is %s, the state's %s", b.ByID[0], a.ByID[0])
	}
	if a.Rdev != b.Rdev {
		return false, fmt.Sprintf("it is device %s, the state's %s", b.Rdev, a.Rdev)
	}
	return true, ""
}

// parsePartialState decodes and checks a state file's bytes: strict JSON
// (unknown fields and trailing data refused), every field in range. It
// does not compare with the image or the target: the caller does.
func parsePartialState(b []byte) (*partialState, []byte, error) {
	if len(b) > maxPartialState {
		return nil, nil, fmt.Errorf("%d bytes, more than a state file ever holds", len(b))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s partialState
	if err := dec.Decode(&s); err != nil {
		return nil, nil, fmt.Errorf("not a state file: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, errors.New("data after the JSON object")
	}
	switch {
	case s.Format != partialFormat:
		return nil, nil, fmt.Errorf("format %q, want %q", s.Format, partialFormat)
	case s.Version != partialVersion:
		return nil, nil, fmt.Errorf("version %d, this seedship reads %d", s.Version, partialVersion)
	case !isHex(s.ImageID, 32):
		return nil, nil, fmt.Errorf("image_id %q: want 32 lowercase hex digits", s.ImageID)
	case !isHex(s.ManifestSHA256, 64):
		return nil, nil, fmt.Errorf("manifest_sha256 %q: want 64 lowercase hex digits", s.ManifestSHA256)
	case s.Chunks > maxPartialDone:
		return nil, nil, fmt.Errorf("%d chunks, more than a state file records", s.Chunks)
	case s.Volumes < 1 || s.Volumes > 256:
		return nil, nil, fmt.Errorf("volumes %d: want 1 to 256", s.Volumes)
	case s.Target.Path == "" || (s.Target.Kind != "file" && s.Target.Kind != "block") || s.Target.Size < 0:
		return nil, nil, fmt.Errorf("target %+v: want a path and kind file or block", s.Target)
	}
	for i, v := range s.Seen {
		if v < 1 || v > s.Volumes || (i > 0 && v <= s.Seen[i-1]) {
			return nil, nil, fmt.Errorf("seen volumes %v: want increasing numbers from 1 to %d", s.Seen, s.Volumes)
		}
	}
	done, err := base64.StdEncoding.Strict().DecodeString(s.Done)
	if err != nil {
		return nil, nil, fmt.Errorf("done: %w", err)
	}
	if uint64(len(done)) != (s.Chunks+7)/8 {
		return nil, nil, fmt.Errorf("done holds %d bytes for %d chunks, want %d", len(done), s.Chunks, (s.Chunks+7)/8)
	}
	if r := s.Chunks % 8; r != 0 && done[len(done)-1]>>r != 0 {
		return nil, nil, errors.New("done marks chunks past the last one")
	}
	return &s, done, nil
}

// isHex reports whether s is n lowercase hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && s == string(bytes.ToLower([]byte(s)))
}

// readPartialState reads the state file at path: nil and no error when
// there is none. Its size is checked before it is read.
func readPartialState(path string) (*partialState, []byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w: state file %s: %w", ErrBadInput, ErrPartialState, path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w: state file %s: %w", ErrBadInput, ErrPartialState, path, err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxPartialState {
		return nil, nil, fmt.Errorf("%w: %w: state file %s is not a state file (%d bytes, %s): give another --state or remove it to start over",
			ErrBadInput, ErrPartialState, path, fi.Size(), fi.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPartialState+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w: read state file %s: %w", ErrBadInput, ErrPartialState, path, err)
	}
	s, done, err := parsePartialState(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w: state file %s is damaged (%w): remove it to start the partial restore over (the volumes seen so far must then be given again)",
			ErrBadInput, ErrPartialState, path, err)
	}
	return s, done, nil
}

// writePartialState writes s with the done bitmap to path atomically: a
// temporary file beside it, fsynced, renamed over it, and the directory
// fsynced, so that a crash leaves the old state or the new one.
func writePartialState(path string, s *partialState, done []byte) error {
	s.Done = base64.StdEncoding.EncodeToString(done)
	s.Updated = time.Now().UTC().Truncate(time.Second)
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync state file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	ok = true
	return syncDir(dir)
}

// removePartialState removes a finished state file durably.
func removePartialState(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove state file %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// syncDir fsyncs a directory, so that a rename or removal in it lasts.
// Systems that cannot fsync a directory (Windows) are not an error.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) && !errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
