package volume

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/seedship/seedship/store"
)

// LabelKey is the key of the label on every volume. It is the set's own
// file: [Set.List] never reports it and [Set.Put] refuses it.
const LabelKey = "volume.json"

// LabelFormat is the label's "format" field; LabelVersion its "version".
const (
	LabelFormat  = "seedship-volume"
	LabelVersion = 1
)

// MaxVolumes bounds the volumes of one set, as K+M bounds the shards of a
// stripe.
const MaxVolumes = 256

// maxLabelSize bounds a label read from a drive before it is parsed: about
// 250,000 files of 250 bytes, a 16 TiB drive of 64 MiB segments.
const maxLabelSize = 64 << 20

// Layout is the placement rule of a volume set (spec §10): "rotate" over
// stripes of Data data segments and Parity parity segments. Without parity
// it is Data 1, Parity 0 (a stripe is one data segment).
type Layout struct {
	Name   string `json:"name"`   // "rotate"
	Data   int    `json:"data"`   // K
	Parity int    `json:"parity"` // M
}

// RotateLayout is the layout for parity K+M (k 0 or m 0: no parity).
func RotateLayout(k, m int) Layout {
	if k <= 0 || m <= 0 {
		return Layout{Name: "rotate", Data: 1}
	}
	return Layout{Name: "rotate", Data: k, Parity: m}
}

func (l Layout) validate() error {
	if l.Name != "rotate" || l.Data < 1 || l.Parity < 0 || l.Data+l.Parity > 256 || (l.Parity == 0 && l.Data != 1) {
		return fmt.Errorf("layout %+v: want rotate with data ≥ 1, parity ≥ 0, data+parity ≤ 256 (data 1 without parity)", l)
	}
	return nil
}

// Source identifies the captured device, so that a volume of an earlier
// capture of the same source is recognised as stale.
type Source struct {
	Host   string `json:"host,omitempty"`
	Path   string `json:"path"`
	Kind   string `json:"kind,omitempty"` // "block" or "file"
	Size   int64  `json:"size"`
	Serial string `json:"serial,omitempty"`
	WWN    string `json:"wwn,omitempty"`
	Model  string `json:"model,omitempty"`
}

// sameSource reports whether two labels name the same source; an
// encrypted image's label does not say which source it is.
func (l *Label) sameSource(ref *Label) bool {
	return !l.Encrypted && !ref.Encrypted && l.Source.same(ref.Source)
}

// same reports whether a and b name the same source: by serial and WWN
// when both know either, else by host and path.
func (a Source) same(b Source) bool {
	if (a.Serial != "" || a.WWN != "") && (b.Serial != "" || b.WWN != "") {
		return a.Serial == b.Serial && a.WWN == b.WWN
	}
	return a.Host == b.Host && a.Path == b.Path
}

// String names the source for messages: "/dev/sdb1 on host-a".
func (a Source) String() string {
	if a.Path == "" { // an encrypted image's label names no source
		return fmt.Sprintf("a source of %d bytes", a.Size)
	}
	if a.Host == "" {
		return a.Path
	}
	return a.Path + " on " + a.Host
}

// Shard places a segment in its stripe: Index 0…K-1 are data shards,
// K…K+M-1 parity shards.
type Shard struct {
	Stripe uint32 `json:"stripe"`
	Index  int    `json:"index"`
}

// File is one file a volume holds, as written.
type File struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`          // of the bytes written, computed while writing
	Shard  *Shard `json:"shard,omitempty"` // absent for the keys every volume holds
}

// Summary is one volume of the set, as every label lists it once the
// capture is complete: what to expect of the drives that are not here.
type Summary struct {
	Volume int   `json:"volume"`
	Files  int   `json:"files"`
	Bytes  int64 `json:"bytes"`
}

// Label is the content of volume.json (spec §10).
type Label struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// SetID identifies the volume set: random when its first capture run
	// begins, kept by --resume. Every volume of one image carries it.
	SetID string `json:"set_id"`
	// ImageID is the image's ID (manifest header image_id), once the
	// manifest is written.
	ImageID string    `json:"image_id,omitempty"`
	Volume  int       `json:"volume"`  // this volume's number, 1 … Volumes
	Volumes int       `json:"volumes"` // how many volumes the set has
	Layout  Layout    `json:"layout"`
	Source  Source    `json:"source"`
	Created time.Time `json:"created"` // when the set's first capture run began
	Updated time.Time `json:"updated"`
	Cap     int64     `json:"cap,omitempty"` // the most this volume was allowed to hold, 0 = no cap
	// Reserve is the part of Cap kept for the files every volume holds.
	Reserve int64 `json:"reserve,omitempty"`
	// Complete is set once the manifest is on every volume.
	Complete bool `json:"complete"`
	// Encrypted marks a volume of an encrypted image: its Source holds
	// only the size and kind, and SHA256, CaptureStart and CaptureEnd
	// are absent, because the manifest seals them (spec §11.5).
	Encrypted bool `json:"encrypted,omitempty"`
	// CountUnknown says the set was still open when this label was last
	// written: the volume filled up and the capture continued on later
	// drives with this one detached (one bay at the source), so Volumes
	// is only a lower bound and the manifest is on the last drive.
	CountUnknown bool `json:"count_unknown,omitempty"`
	// Detached lists, in the labels written when the capture completed,
	// the volumes that filled and were detached before then (one bay at
	// the source): they hold neither the manifest nor a final label.
	Detached       []int      `json:"detached,omitempty"`
	Size           int64      `json:"size,omitempty"`   // source size
	SHA256         string     `json:"sha256,omitempty"` // whole-source SHA-256
	CaptureStart   *time.Time `json:"capture_start,omitempty"`
	CaptureEnd     *time.Time `json:"capture_end,omitempty"`
	ManifestSHA256 string     `json:"manifest_sha256,omitempty"`
	// MayLose is how many whole volumes may be lost with the image still
	// restorable, from the placement the capture achieved.
	MayLose *int      `json:"may_lose,omitempty"`
	Files   []File    `json:"files"`
	Set     []Summary `json:"set,omitempty"`
}

// Holds returns the bytes the files of the volume add up to.
func (l *Label) Holds() (files int, bytes int64) {
	for _, f := range l.Files {
		bytes += f.Size
	}
	return len(l.Files), bytes
}

// isHex reports whether s is n lowercase hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// validKey accepts a clean relative slash-separated key.
func validKey(k string) bool {
	if k == "" || k == LabelKey || k == store.LockKey || strings.ContainsAny(k, "\\\x00") || strings.HasPrefix(k, "/") {
		return false
	}
	return path.Clean(k) == k && !slices.Contains(strings.Split(k, "/"), "..")
}

// validate checks a label read from a drive (hostile input) before any of
// it is used.
func (l *Label) validate() error {
	switch {
	case l.Format != LabelFormat:
		return fmt.Errorf("format %q is not %q", l.Format, LabelFormat)
	case l.Version != LabelVersion:
		return fmt.Errorf("label version %d: this seedship reads version %d", l.Version, LabelVersion)
	case !isHex(l.SetID, 32):
		return fmt.Errorf("set_id %q is not 32 hex digits", l.SetID)
	case l.ImageID != "" && !isHex(l.ImageID, 32):
		return fmt.Errorf("image_id %q is not 32 hex digits", l.ImageID)
	case l.Volumes < 1 || l.Volumes > MaxVolumes || l.Volume < 1 || l.Volume > l.Volumes:
		return fmt.Errorf("volume %d of %d: want 1 ≤ volume ≤ volumes ≤ %d", l.Volume, l.Volumes, MaxVolumes)
	case l.SHA256 != "" && !isHex(l.SHA256, 64), l.ManifestSHA256 != "" && !isHex(l.ManifestSHA256, 64):
		return errors.New("sha256 or manifest_sha256 is not 64 hex digits")
	case l.Cap < 0 || l.Size < 0 || l.Reserve < 0:
		return errors.New("negative cap or size")
	}
	if err := l.Layout.validate(); err != nil {
		return err
	}
	for _, n := range l.Detached {
		if n < 1 || n > l.Volumes {
			return fmt.Errorf("detached volume %d outside 1 … %d", n, l.Volumes)
		}
	}
	if len(l.Detached) > MaxVolumes {
		return fmt.Errorf("%d detached volumes, at most %d", len(l.Detached), MaxVolumes)
	}
	seen := make(map[string]bool, len(l.Files))
	for _, f := range l.Files {
		if !validKey(f.Key) || f.Size < 0 || !isHex(f.SHA256, 64) || seen[f.Key] {
			return fmt.Errorf("file entry %q: want a clean key listed once, a size ≥ 0 and a 64-digit SHA-256", f.Key)
		}
		if f.Shard != nil && (f.Shard.Index < 0 || f.Shard.Index >= l.Layout.Data+l.Layout.Parity) {
			return fmt.Errorf("file entry %q: shard %d outside the layout's %d", f.Key, f.Shard.Index, l.Layout.Data+l.Layout.Parity)
		}
		seen[f.Key] = true
	}
	return nil
}

// marshal encodes the label as volume.json.
func (l *Label) marshal() ([]byte, error) {
	b, err := json.MarshalIndent(l, "", " ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ParseLabel decodes and checks volume.json.
func ParseLabel(b []byte) (*Label, error) {
	var l Label
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadLabel, err)
	}
	if err := l.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadLabel, err)
	}
	return &l, nil
}

// ReadLabel reads the label of the volume in st: nil and no error when
// there is none, an error wrapping ErrBadLabel when it is not a valid
// label. Its size is checked before it is read.
func ReadLabel(ctx context.Context, st store.Store) (*Label, []byte, error) {
	info, err := st.Stat(ctx, LabelKey)
	if errors.Is(err, store.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", LabelKey, err)
	}
	if info.Size > maxLabelSize {
		return nil, nil, fmt.Errorf("%w: %s is %d bytes, more than a label can be (%d)", ErrBadLabel, LabelKey, info.Size, maxLabelSize)
	}
	rc, err := st.Get(ctx, LabelKey, 0, -1)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", LabelKey, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxLabelSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", LabelKey, err)
	}
	l, err := ParseLabel(b)
	if err != nil {
		return nil, nil, err
	}
	return l, b, nil
}
