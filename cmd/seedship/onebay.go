package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	dirstore "github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/store/volume"
)

// One bay at the source: when a courier capture's volumes are full, what
// continuing needs without them (the engine's continuation and the
// volumes' labels) is kept in a state file on the source host, so that
// `capture --resume SOURCE NEW-DRIVE` continues with only the new drive
// attached.

const (
	continuationFormat  = "seedship-capture-continuation"
	continuationVersion = 1
	// continuationDomain separates the state file's seal from every
	// other SHA-256.
	continuationDomain = "seedship-capture-continuation\n"
	// maxContinuationFile bounds a state file before it is read: the
	// engine's rows (at most about 200 MiB, base64) and the labels.
	maxContinuationFile = 512 << 20
)

// continuationFile is the state file, JSON, mode 0600.
type continuationFile struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	ImageID string `json:"image_id"`
	SetID   string `json:"set_id"`
	// Source is the captured device, to find the state of a source.
	Source volume.Source `json:"source"`
	Saved  time.Time     `json:"saved"`
	// Checkpoint is the capture's sealed checkpoint (spec §7.1).
	Checkpoint string `json:"checkpoint"`
	// Rows are the engine's chunk table and segment summaries
	// (engine.Continuation.Rows), base64.
	Rows []byte `json:"rows"`
	// Volumes are the labels of every volume so far, as last written.
	Volumes []volume.Label `json:"volumes"`
	// Seal is the SHA-256 over the domain string, the image id and this
	// JSON with an empty seal: an edited or damaged file is refused.
	Seal string `json:"seal"`
}

// continuation is a state file as read and checked.
type continuation struct {
	path   string
	file   continuationFile
	engine *engine.Continuation
}

// stateBase is where seedship keeps state on this host:
// $XDG_STATE_HOME/seedship, by default ~/.local/state/seedship.
func stateBase() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "seedship"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("where to keep seedship's state: %w (set XDG_STATE_HOME)", err)
	}
	return filepath.Join(home, ".local", "state", "seedship"), nil
}

// continuationDir is where the capture continuation states are kept:
// <stateBase>/capture.
func continuationDir() (string, error) {
	base, err := stateBase()
	return filepath.Join(base, "capture"), err
}

func (f *continuationFile) seal() (string, error) {
	g := *f
	g.Seal = ""
	b, err := json.Marshal(&g)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(continuationDomain))
	h.Write([]byte(f.ImageID))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// saveContinuation writes the state of a capture stopped on full volumes,
// atomically (a temporary file, fsynced, renamed), mode 0600, and returns
// its path.
func saveContinuation(ct *engine.Continuation, labels []volume.Label, src volume.Source) (string, error) {
	dir, err := continuationDir()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	rows, err := ct.Rows()
	if err != nil {
		return "", err
	}
	if len(labels) == 0 {
		return "", errors.New("no volume labels to keep")
	}
	f := continuationFile{Format: continuationFormat, Version: continuationVersion, ImageID: ct.ImageID(), SetID: labels[0].SetID,
		Source: src, Saved: time.Now().UTC(), Checkpoint: string(ct.Checkpoint), Rows: rows, Volumes: labels}
	if f.Seal, err = f.seal(); err != nil {
		return "", err
	}
	b, err := json.Marshal(&f)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, f.ImageID+".json")
	err = writeFileAtomic(path, b)
	if err != nil {
		return "", fmt.Errorf("write the continuation state %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename is durable once the directory is
		d.Close()
	}
	return path, nil
}

// readContinuation reads and checks one state file: its size, its seal,
// the engine's continuation (its checkpoint's seal, the rows against the
// stored-segment digest) and that the labels are of the image. Errors
// name the file.
func readContinuation(path string) (*continuation, error) {
	damaged := func(err error) error {
		return fmt.Errorf("%w: continuation state %s cannot be used: %w; remove it and continue with every drive of the capture attached",
			engine.ErrBadInput, path, err)
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, damaged(err)
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxContinuationFile+1))
	if err != nil {
		return nil, damaged(err)
	}
	if len(b) > maxContinuationFile {
		return nil, damaged(fmt.Errorf("more than %d bytes", maxContinuationFile))
	}
	var f continuationFile
	if err := json.Unmarshal(b, &f); err != nil || f.Format != continuationFormat {
		return nil, damaged(errors.New("not a capture continuation state"))
	}
	if f.Version != continuationVersion {
		return nil, damaged(fmt.Errorf("version %d, this seedship reads %d", f.Version, continuationVersion))
	}
	if want, err := f.seal(); err != nil || want != f.Seal {
		return nil, damaged(errors.New("its seal does not match its contents (edited or damaged)"))
	}
	ct, err := engine.ParseContinuation([]byte(f.Checkpoint), f.Rows)
	if err != nil {
		return nil, damaged(err)
	}
	if ct.ImageID() != f.ImageID || len(f.Volumes) == 0 {
		return nil, damaged(fmt.Errorf("it is of image %s, its checkpoint of %s", f.ImageID, ct.ImageID()))
	}
	for _, l := range f.Volumes {
		if l.SetID != f.SetID || l.ImageID != f.ImageID {
			return nil, damaged(fmt.Errorf("volume %d's label is of another capture", l.Volume))
		}
	}
	return &continuation{path: path, file: f, engine: ct}, nil
}

// sameSource reports whether a label's source is the device being
// captured: by serial and WWN when both know either, else by host and
// path; and always the same size.
func sameSource(a, b volume.Source) bool {
	if a.Size != b.Size {
		return false
	}
	if (a.Serial != "" || a.WWN != "") && (b.Serial != "" || b.WWN != "") {
		return a.Serial == b.Serial && a.WWN == b.WWN
	}
	return a.Host == b.Host && a.Path == b.Path
}

// findContinuation finds the state file of a capture of src to continue
// onto members: the one of the set a labelled member belongs to, or, with
// only empty members, the one state of src. It returns nil (continue as
// before, with every drive) when there is none, or when members include
// every volume the state records. Several candidates, or a damaged
// state, are refused (bad input: nothing written).
func findContinuation(ctx context.Context, src volume.Source, members []volume.Member) (*continuation, error) {
	dir, err := continuationDir()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", engine.ErrBadInput, dir, err)
	}
	sets := map[string]bool{}
	attached := map[string]map[int]bool{} // set id → volume numbers among members
	for _, m := range members {
		if l, _, err := volume.ReadLabel(ctx, m.Store); err == nil && l != nil {
			sets[l.SetID] = true
			if attached[l.SetID] == nil {
				attached[l.SetID] = map[int]bool{}
			}
			attached[l.SetID][l.Volume] = true
		}
	}
	var found []*continuation
	var mismatched []string // states of a source at the same path, which is not the same
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		// A quick look first: only the states of this source are checked
		// in full (a damaged one of another source is not our business).
		var head struct {
			SetID  string        `json:"set_id"`
			Source volume.Source `json:"source"`
		}
		b, err := readHead(path)
		if err == nil {
			err = json.Unmarshal(b, &head)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: continuation state %s cannot be read: %w; remove it and continue with every drive of the capture attached",
				engine.ErrBadInput, path, err)
		}
		if len(sets) > 0 && !sets[head.SetID] {
			continue
		}
		if !sameSource(head.Source, src) {
			if head.Source.Path == src.Path && head.Source.Host == src.Host {
				mismatched = append(mismatched, fmt.Sprintf("%s (of %s, %d bytes, serial %q)", path, head.Source, head.Source.Size, head.Source.Serial))
			}
			continue
		}
		ct, err := readContinuation(path)
		if err != nil {
			return nil, err
		}
		found = append(found, ct)
	}
	switch {
	case len(found) == 0 && len(mismatched) > 0 && len(sets) == 0:
		return nil, fmt.Errorf("%w: capture --resume: the continuation state %s is not of this source %s (%d bytes, serial %q): resume with the same source",
			engine.ErrBadInput, strings.Join(mismatched, ", "), src, src.Size, src.Serial)
	case len(found) == 0:
		return nil, nil
	case len(found) > 1:
		var paths []string
		for _, f := range found {
			paths = append(paths, f.path)
		}
		return nil, fmt.Errorf("%w: capture --resume: %d continuation states of %s: %s: give a drive of the capture to continue, or remove the stale state",
			engine.ErrBadInput, len(found), src, strings.Join(paths, ", "))
	}
	ct := found[0]
	all := true
	for _, l := range ct.file.Volumes {
		all = all && attached[l.SetID][l.Volume]
	}
	if all {
		return nil, nil // every drive is here: continue from the drives themselves
	}
	return ct, nil
}

// readHead reads a state file for its source and set id; the whole file
// is small enough to read (it is bounded), and json needs all of it.
func readHead(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, maxContinuationFile+1))
	if err != nil || len(b) > maxContinuationFile {
		return nil, fmt.Errorf("%s: unreadable or too large", path)
	}
	return b, nil
}

// removeContinuations removes the state files of image id once its
// capture is complete.
func removeContinuations(imageID string) {
	dir, err := continuationDir()
	if err != nil {
		return
	}
	_ = os.Remove(filepath.Join(dir, imageID+".json"))
}

// labels returns the labels of the volumes the state records: the full
// drives gone ahead, detached.
func (ct *continuation) labels() []volume.Label {
	return slices.Clone(ct.file.Volumes)
}

// continuesVolumes reports whether capture --resume SOURCE DEST continues
// a courier volume set: DEST is a volume, or this host keeps a
// continuation state of a capture of SOURCE (one bay at the source: DEST
// is the next, empty drive).
func continuesVolumes(source, dest string) bool {
	if isVolumeDir(dest) {
		return true
	}
	if _, err := os.Lstat(filepath.Join(dest, format.CheckpointKey)); err == nil && !isS3(dest) {
		return false // an interrupted capture into one directory: resumed as always
	}
	dir, err := continuationDir()
	if err != nil {
		return false
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := readHead(filepath.Join(dir, e.Name()))
		var head struct {
			Source volume.Source `json:"source"`
		}
		if err != nil || json.Unmarshal(b, &head) != nil {
			return true // a damaged state: captureVolumes names it
		}
		if head.Source.Path == source || abs(head.Source.Path) == abs(source) {
			return true
		}
	}
	return false
}

// keptLabelKey is the last volume's label in a kept-manifest directory.
const keptLabelKey = "last-volume.json"

// keptDir is where a reader keeps the manifest files of a set whose
// earlier drives do not hold them: <stateBase>/volumes/<image id>.
func keptDir(imageID string) (string, error) {
	base, err := stateBase()
	return filepath.Join(base, "volumes", imageID), err
}

// keepManifests copies, from the present volumes of a set completed
// after some of its drives were detached (one bay at the source), the
// manifest files and the last volume's label to keptDir, each checked
// against the SHA-256 the label records, so that those earlier drives can
// be read later on their own (restore --partial one drive at a time). It
// does nothing for other sets, or when they are kept already.
func keepManifests(ctx context.Context, set *volume.Set) error {
	for _, v := range set.Volumes() {
		l := v.Label
		if !l.Complete || len(l.Detached) == 0 || !isHexID(l.ImageID) {
			continue
		}
		dir, err := keptDir(l.ImageID)
		if err != nil {
			return err
		}
		if b, err := os.ReadFile(filepath.Join(dir, keptLabelKey)); err == nil {
			if kept, err := volume.ParseLabel(b); err == nil && kept.ManifestSHA256 == l.ManifestSHA256 {
				return nil
			}
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		for _, f := range l.Files {
			if f.Shard != nil || f.Key == format.CheckpointKey || strings.Contains(f.Key, "/") {
				continue
			}
			rc, err := set.Get(ctx, f.Key, 0, -1)
			if err != nil {
				return err
			}
			b, err := io.ReadAll(io.LimitReader(rc, maxContinuationFile+1))
			rc.Close()
			if err != nil {
				return err
			}
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(b)) != f.Size {
				return fmt.Errorf("%s on %s does not match its label", f.Key, v.Loc)
			}
			if err := writeFileAtomic(filepath.Join(dir, f.Key), b); err != nil {
				return err
			}
		}
		lb, err := json.Marshal(&l)
		if err != nil {
			return err
		}
		return writeFileAtomic(filepath.Join(dir, keptLabelKey), lb)
	}
	return nil
}

// adoptKept completes a set of drives detached before the capture ended
// from the manifest files kept when its last drive was read. It reports
// whether it did.
func adoptKept(set *volume.Set) bool {
	vs := set.Volumes()
	if len(vs) == 0 || !isHexID(vs[0].Label.ImageID) {
		return false
	}
	dir, err := keptDir(vs[0].Label.ImageID)
	if err != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join(dir, keptLabelKey))
	if err != nil {
		return false
	}
	last, err := volume.ParseLabel(b)
	if err != nil {
		return false
	}
	st, err := dirstore.Open(dir)
	if err != nil {
		return false
	}
	return set.Adopt(last, st) == nil
}

func isHexID(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// writeFileAtomic writes b to path through a temporary file, mode 0600.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".kept-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
