package volume

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// Member is the place of one volume.
type Member struct {
	Loc   string      // as the operator named it, for messages
	Store store.Store // opened on Loc
	// Dir is Loc's local directory, "" for object storage. Capacity
	// (statfs), the page cache before read-back and the same-directory
	// check need it.
	Dir string
}

// RoleKind says how a key is placed.
type RoleKind int

// The kinds of keys.
const (
	// Everywhere keys (manifest, its copies, the checkpoint, anything not
	// a segment) are written to every volume.
	Everywhere RoleKind = iota
	Data                // data segment Number
	Parity              // parity segment Number
)

// Role is what a key is to the placement.
type Role struct {
	Kind   RoleKind
	Number uint32
}

// Classify tells the set what a key is. The caller supplies it (package
// format's key parser): the store knows no format.
type Classify func(key string) Role

// CreateOptions tunes [Create].
type CreateOptions struct {
	// Layout of a fresh set; a resumed set keeps its labels' layout.
	Layout Layout
	// Source identifies the captured device in the labels.
	Source Source
	// Encrypted marks the labels of an encrypted image (spec §10.1,
	// §11): Source should then hold only the size and kind, and Finish
	// leaves out the whole-source SHA-256 and the capture times, which
	// the manifest seals.
	Encrypted bool
	// VolumeSize caps what each volume holds (0: no cap but the free
	// space less [Margin]).
	VolumeSize int64
	// Reserve is what each volume keeps for the files every volume holds
	// (the manifest and its copies, written last): segments are placed
	// within the cap less Reserve. A resumed set keeps its labels' value
	// when Reserve is 0.
	Reserve int64
	// Resume continues the capture the labelled volumes among members
	// hold; members without a label must be empty and join the set.
	Resume bool
	// Detached are the labels of earlier volumes of the set that are not
	// attached (full drives gone to the courier), as [Set.Suspend]
	// returned them when the capture stopped: with Resume, the members
	// need not include them, and they count as present for numbering,
	// the set's summary and [Set.MayLose]. A member that is one of them
	// is refused.
	Detached []Label
	Classify Classify
}

// Set is a store.Store over the volumes of one image. It is safe for
// concurrent use.
type Set struct {
	vols     []*vol // present volumes, in volume number order
	count    int    // volumes of the set
	layout   Layout
	classify Classify
	setID    string
	created  time.Time
	source   Source
	// encrypted: the labels leave out what the manifest seals.
	encrypted bool
	write     bool // created by Create: writes allowed
	// detached are the labels of earlier volumes not attached (one bay
	// at the source), from CreateOptions.Detached.
	detached []Label
	// kept serves the files every volume of a complete set holds when no
	// present volume has them (Adopt).
	kept store.Store

	mu       sync.Mutex
	index    map[string][]*vol // key → the present volumes that hold it
	largest  int64             // the largest file written, which the placement expects next
	labelled bool              // every label written in this session
	verified map[string]*vol   // an everywhere key → the volume whose copy matched its label
}

// vol is one present volume.
type vol struct {
	m       Member
	number  int
	cap     int64 // 0: no cap
	reserve int64 // of cap, kept for the everywhere keys

	mu       sync.Mutex // label, written, used, inflight
	label    Label
	written  []byte // the label's bytes as last written in this session
	used     int64  // bytes of the files it holds
	inflight int64  // bytes of Puts in progress
}

func (v *vol) String() string { return fmt.Sprintf("volume %d (%s)", v.number, v.m.Loc) }

// Open opens the volumes in the directories paths for reading: see
// [OpenMembers].
func Open(ctx context.Context, paths ...string) (*Set, error) {
	members := make([]Member, len(paths))
	for i, p := range paths {
		st, err := dir.Open(p)
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", p, err)
		}
		members[i] = Member{Loc: p, Store: st, Dir: st.Root()}
	}
	return OpenMembers(ctx, members)
}

// OpenMembers opens the volumes of one image for reading, in any order and
// any subset. It reads every label and refuses (an error wrapping
// ErrRefused and the reason, naming the path) a location without a label,
// a volume of another image, a stale volume of another capture of the
// same source, and a duplicate (the same volume number, or the same
// directory, twice). The set serves the union of what the present volumes
// hold; [Set.Missing] says which volumes are absent.
func OpenMembers(ctx context.Context, members []Member) (*Set, error) {
	labels, err := identify(ctx, members)
	if err != nil {
		return nil, err
	}
	for i, l := range labels {
		if l == nil {
			return nil, refuse(ErrNoLabel, "%s holds no volume label (%s): it is not a volume of a seedship volume set; give only the volumes of one image", members[i].Loc, LabelKey)
		}
	}
	ref, err := oneSet(members, labels)
	if err != nil {
		return nil, err
	}
	s := &Set{layout: ref.Layout, setID: ref.SetID, created: ref.Created, source: ref.Source, encrypted: ref.Encrypted,
		index: map[string][]*vol{}, verified: map[string]*vol{}}
	for i, l := range labels {
		s.count = max(s.count, l.Volumes)
		v := &vol{m: members[i], number: l.Volume, cap: l.Cap, label: *l}
		_, v.used = l.Holds()
		s.vols = append(s.vols, v)
	}
	s.sortVols()
	if err := s.buildIndex(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Create opens members as the volumes of a capture: a fresh one (every
// member must be empty), or,
// with opts.Resume, the interrupted capture their labels describe, with
// every volume it had and, optionally, new empty members that join it. It
// writes nothing: the labels are written with the first write to the set.
func Create(ctx context.Context, members []Member, opts CreateOptions) (*Set, error) {
	if len(members) < 1 || len(members) > MaxVolumes {
		return nil, fmt.Errorf("%w: %d volumes: give 1 to %d", ErrRefused, len(members), MaxVolumes)
	}
	labels, err := identify(ctx, members)
	if err != nil {
		return nil, err
	}
	s := &Set{classify: opts.Classify, write: true, source: opts.Source, encrypted: opts.Encrypted, index: map[string][]*vol{}, verified: map[string]*vol{}}
	if s.classify == nil {
		s.classify = func(string) Role { return Role{Kind: Everywhere} }
	}
	if len(opts.Detached) > 0 && !opts.Resume {
		return nil, fmt.Errorf("%w: detached volumes are for a resumed capture", ErrRefused)
	}
	if opts.Resume {
		err = s.resumeVolumes(ctx, members, labels, opts.Detached)
	} else if err = s.freshVolumes(members, labels, opts.Layout); err == nil {
		for _, m := range members {
			if err = requireEmpty(ctx, m); err != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if err := s.buildIndex(ctx); err != nil {
		return nil, err
	}
	for _, v := range s.vols {
		c, err := capOf(v.m, v.used, opts.VolumeSize)
		if err != nil {
			return nil, err
		}
		v.cap, v.label.Cap = c, c
		if opts.Reserve > 0 || !opts.Resume {
			v.label.Reserve = opts.Reserve
		}
		v.reserve = v.label.Reserve
		if !opts.Resume && c != opts.VolumeSize && c < minCap {
			return nil, refuse(ErrTaken, "%s has room for only %s (its free space less a margin of %s): give a larger drive", v.m.Loc, humanBytes(c), humanBytes(marginOf(v.m)))
		}
		if err := s.reconcile(ctx, v); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// minCap is the least a fresh volume must be able to hold.
const minCap = 1 << 20

func (s *Set) freshVolumes(members []Member, labels []*Label, layout Layout) error {
	if layout.Name == "" {
		layout = RotateLayout(0, 0)
	}
	if err := layout.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	for i, l := range labels {
		if l != nil {
			return refuse(ErrTaken, "%s already holds volume %d of %d of %s: give an empty drive, or continue that capture with --resume",
				members[i].Loc, l.Volume, l.Volumes, describe(l))
		}
	}
	var id [16]byte
	rand.Read(id[:])
	s.setID, s.created, s.layout, s.count = hex.EncodeToString(id[:]), time.Now().UTC(), layout, len(members)
	for i, m := range members {
		v := &vol{m: m, number: i + 1}
		v.label = Label{Format: LabelFormat, Version: LabelVersion, SetID: s.setID, Volume: v.number, Volumes: s.count,
			Layout: layout, Source: s.source, Encrypted: s.encrypted, Created: s.created, Files: []File{}}
		s.vols = append(s.vols, v)
	}
	return nil
}

func (s *Set) resumeVolumes(ctx context.Context, members []Member, labels []*Label, detached []Label) error {
	var labelled []int
	for i, l := range labels {
		if l != nil {
			labelled = append(labelled, i)
		}
	}
	if len(detached) > 0 {
		return s.continueVolumes(ctx, members, labels, detached)
	}
	if len(labelled) == 0 {
		return refuse(ErrNoLabel, "none of %s holds a volume label (%s): there is no interrupted capture to continue; run the capture without --resume",
			locs(members), LabelKey)
	}
	ref, err := oneSet(members, labels)
	if err != nil {
		return err
	}
	s.layout, s.setID, s.created, s.source = ref.Layout, ref.SetID, ref.Created, ref.Source
	s.encrypted = s.encrypted || ref.Encrypted
	old := 0
	have := map[int]bool{}
	for _, i := range labelled {
		old = max(old, labels[i].Volumes)
		have[labels[i].Volume] = true
	}
	for n := 1; n <= old; n++ {
		if !have[n] {
			return refuse(ErrMissingVolume, "volume %d of %d of %s is not among the destinations: a capture continues only with all its volumes attached; add its mount point",
				n, old, describe(ref))
		}
	}
	next, err := s.addVolumes(ctx, members, labels, old, ref, "")
	if err != nil {
		return err
	}
	s.count = next
	for _, v := range s.vols {
		v.label.Volumes = s.count
	}
	s.sortVols()
	return nil
}

// requireEmpty refuses a member that holds any file: a volume starts
// empty.
func requireEmpty(ctx context.Context, m Member) error {
	errFound := errors.New("found")
	var first string
	err := m.Store.List(ctx, "", func(i store.Info) error { first = i.Key; return errFound })
	switch {
	case errors.Is(err, errFound):
		return refuse(ErrTaken, "%s is not empty (it holds %s) and is no volume of this capture: give an empty drive or directory", m.Loc, first)
	case err != nil:
		return fmt.Errorf("%w: list %s: %w", ErrRefused, m.Loc, err)
	}
	return nil
}

func (s *Set) sortVols() {
	slices.SortFunc(s.vols, func(a, b *vol) int { return cmp.Compare(a.number, b.number) })
}

// identify reads the label of every member (nil where there is none) and
// refuses the same directory given twice.
func identify(ctx context.Context, members []Member) ([]*Label, error) {
	for i := range members {
		for j := range i {
			if sameLocation(members[i], members[j]) {
				return nil, refuse(ErrDuplicate, "%s and %s are the same directory: give each volume once", members[j].Loc, members[i].Loc)
			}
		}
	}
	labels := make([]*Label, len(members))
	for i, m := range members {
		l, _, err := ReadLabel(ctx, m.Store)
		if errors.Is(err, ErrBadLabel) {
			return nil, refuse(ErrBadLabel, "%s: %v: it is not a readable volume label; leave the volume out (parity may cover it) or check the drive", m.Loc, err)
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", m.Loc, err)
		}
		labels[i] = l
	}
	return labels, nil
}

func sameLocation(a, b Member) bool {
	if a.Dir != "" && b.Dir != "" {
		fa, errA := os.Stat(a.Dir)
		fb, errB := os.Stat(b.Dir)
		if errA == nil && errB == nil {
			return os.SameFile(fa, fb)
		}
		return a.Dir == b.Dir
	}
	return a.Store.String() == b.Store.String()
}

// oneSet picks the set most of the labels belong to (the newest on a tie)
// and refuses every label of another set, and a volume number given twice.
func oneSet(members []Member, labels []*Label) (*Label, error) {
	count := map[string]int{}
	var ref *Label
	refAt := -1
	for i, l := range labels {
		if l == nil {
			continue
		}
		count[l.SetID]++
		if ref == nil || count[l.SetID] > count[ref.SetID] || (count[l.SetID] == count[ref.SetID] && l.Created.After(ref.Created)) {
			ref, refAt = l, i
		}
	}
	byNumber := map[int]int{}
	for i, l := range labels {
		if l == nil {
			continue
		}
		if l.SetID != ref.SetID || (l.ImageID != "" && ref.ImageID != "" && l.ImageID != ref.ImageID) {
			if l.sameSource(ref) {
				when := "an earlier"
				if l.Created.After(ref.Created) {
					when = "a later"
				}
				return nil, refuse(ErrStale, "%s is stale: it is volume %d of %d of %s capture of the same source %s (%s), not of %s like %s: leave it out",
					members[i].Loc, l.Volume, l.Volumes, when, l.Source, describe(l), describe(ref), members[refAt].Loc)
			}
			return nil, refuse(ErrForeign, "%s is volume %d of %d of another image (%s), not of %s like %s: leave it out",
				members[i].Loc, l.Volume, l.Volumes, describe(l), describe(ref), members[refAt].Loc)
		}
		if j, ok := byNumber[l.Volume]; ok {
			return nil, refuse(ErrDuplicate, "%s and %s are both volume %d of %d of %s: give each volume once",
				members[j].Loc, members[i].Loc, l.Volume, l.Volumes, describe(ref))
		}
		byNumber[l.Volume] = i
	}
	return ref, nil
}

// describe names the image (or, before its manifest, the capture) of a
// label, with its source and start, for messages.
func describe(l *Label) string {
	id := "image " + l.ImageID
	if l.ImageID == "" {
		id = "the unfinished capture " + l.SetID
	}
	return fmt.Sprintf("%s of %s begun %s", id, l.Source, l.Created.UTC().Format(time.RFC3339))
}

func locs(members []Member) string {
	out := make([]string, len(members))
	for i, m := range members {
		out[i] = m.Loc
	}
	return strings.Join(out, ", ")
}

// buildIndex lists every present volume: where each key is.
func (s *Set) buildIndex(ctx context.Context) error {
	for _, v := range s.vols {
		err := v.m.Store.List(ctx, "", func(i store.Info) error {
			if i.Key != LabelKey {
				s.index[i.Key] = append(s.index[i.Key], v)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list %s: %w", v, err)
		}
	}
	return nil
}

// reconcile makes a resumed volume's label match its files: entries of
// files that are gone are dropped, and a file the label does not record
// with its size (one whose Put finished just before the process died) is
// read and recorded.
func (s *Set) reconcile(ctx context.Context, v *vol) error {
	present := map[string]bool{}
	for key, vs := range s.index {
		if slices.Contains(vs, v) {
			present[key] = true
		}
	}
	files := v.label.Files[:0:0]
	for _, f := range v.label.Files {
		if present[f.Key] {
			files = append(files, f)
		}
	}
	for key := range present {
		info, err := v.m.Store.Stat(ctx, key)
		if err != nil {
			return fmt.Errorf("%s: stat %s: %w", v, key, err)
		}
		i := slices.IndexFunc(files, func(f File) bool { return f.Key == key })
		if i >= 0 && files[i].Size == info.Size {
			continue
		}
		sum, n, err := hashObject(ctx, v.m.Store, key)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", v, key, err)
		}
		f := File{Key: key, Size: n, SHA256: sum, Shard: s.shardOf(s.classify(key))}
		if i >= 0 {
			files[i] = f
		} else {
			files = append(files, f)
		}
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Key, b.Key) })
	v.label.Files = files
	v.used = 0
	for _, f := range files {
		v.used += f.Size
		s.largest = max(s.largest, f.Size)
	}
	return nil
}

// hashObject reads key from st and returns its SHA-256 and length.
func hashObject(ctx context.Context, st store.Store, key string) (string, int64, error) {
	rc, err := st.Get(ctx, key, 0, -1)
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// shardOf places a segment role in its stripe; nil for everywhere keys.
func (s *Set) shardOf(r Role) *Shard {
	k, m := uint32(s.layout.Data), uint32(s.layout.Parity)
	switch {
	case r.Kind == Data:
		return &Shard{Stripe: r.Number / k, Index: int(r.Number % k)}
	case r.Kind == Parity && m > 0:
		return &Shard{Stripe: r.Number / m, Index: int(k + r.Number%m)}
	}
	return nil
}

// Put stores key on the volume the placement chooses (or on every volume,
// for the manifest, its copies and the checkpoint), hashing the bytes on
// the way and recording them in that volume's label.
func (s *Set) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if !s.write {
		return fmt.Errorf("volumes: put %s: %w: %w", key, ErrReadOnly, store.ErrPermanent)
	}
	if key == LabelKey {
		return fmt.Errorf("volumes: put %s: the label is the volume set's own file: %w", key, store.ErrPermanent)
	}
	if err := s.ensureLabels(ctx); err != nil {
		return err
	}
	role := s.classify(key)
	sh := s.shardOf(role)
	if sh == nil {
		return s.putEverywhere(ctx, key, r, size)
	}
	v, err := s.choose(key, sh, size)
	if err != nil {
		return err
	}
	return s.putOn(ctx, v, key, r, size, sh)
}

// maxEverywhere bounds a key written to every volume whose reader cannot
// be read more than once (the engine hands over byte slices).
const maxEverywhere = 1 << 30

func (s *Set) putEverywhere(ctx context.Context, key string, r io.Reader, size int64) error {
	ra, ok := r.(io.ReaderAt)
	if !ok || size < 0 {
		b, err := io.ReadAll(io.LimitReader(r, maxEverywhere+1))
		if err != nil {
			return fmt.Errorf("volumes: put %s: reading data: %w", key, err)
		}
		if len(b) > maxEverywhere {
			return fmt.Errorf("volumes: put %s: more than %d bytes for a file every volume holds", key, maxEverywhere)
		}
		ra, size = bytes.NewReader(b), int64(len(b))
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, v := range s.vols {
		g.Go(func() error { return s.putOn(gctx, v, key, io.NewSectionReader(ra, 0, size), size, nil) })
	}
	return g.Wait()
}

// choose picks the volume for a segment: the rotate rule over the volumes
// with room for a file as large as the largest written so far.
func (s *Set) choose(key string, sh *Shard, size int64) (*vol, error) {
	s.mu.Lock()
	expect := max(s.largest, size)
	s.mu.Unlock()
	var room []*vol
	for _, v := range s.vols {
		if v.hasRoom(expect) {
			room = append(room, v)
		}
	}
	if len(room) == 0 {
		return nil, s.allFull(key, expect)
	}
	return room[(uint64(sh.Stripe)+uint64(sh.Index))%uint64(len(room))], nil
}

func (v *vol) hasRoom(n int64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cap == 0 {
		return true
	}
	left := v.cap - v.reserve - v.used - v.inflight
	return left > 0 && left >= n
}

// limit is what v may hold once a file of shard sh is added: segments
// leave the reserve for the files every volume holds.
func (v *vol) limit(sh *Shard) int64 {
	if sh == nil {
		return v.cap
	}
	return v.cap - v.reserve
}

// putOn writes key to v, within v's cap, and records it in v's label.
func (s *Set) putOn(ctx context.Context, v *vol, key string, r io.Reader, size int64, sh *Shard) error {
	if size >= 0 {
		if err := v.reserveCheck(key, size, sh); err != nil {
			return err
		}
	}
	cr := &capReader{r: r, v: v, key: key, sh: sh}
	h := sha256.New()
	err := v.m.Store.Put(ctx, key, io.TeeReader(cr, h), size)
	v.release(cr.n)
	if err != nil {
		var full *FullError
		if errors.As(err, &full) {
			return full
		}
		return fmt.Errorf("%s: %w", v, err)
	}
	f := File{Key: key, Size: cr.n, SHA256: hex.EncodeToString(h.Sum(nil)), Shard: sh}
	if err := v.record(ctx, f); err != nil {
		return err
	}
	s.mu.Lock()
	others := slices.DeleteFunc(slices.Clone(s.index[key]), func(u *vol) bool { return u == v })
	if !slices.Contains(s.index[key], v) {
		s.index[key] = append(s.index[key], v)
	}
	s.largest = max(s.largest, cr.n)
	delete(s.verified, key)
	s.mu.Unlock()
	if sh == nil {
		return nil
	}
	// A segment lives on one volume: a copy left elsewhere by an earlier
	// run (written again after a resume) goes.
	for _, u := range others {
		if err := s.deleteOn(ctx, u, key); err != nil {
			return err
		}
	}
	return nil
}

// capReader counts what a Put reads against its volume's cap and fails
// the Put, before the drive is full, when the cap would be exceeded.
type capReader struct {
	r   io.Reader
	v   *vol
	key string
	sh  *Shard
	n   int64
}

func (c *capReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		if ferr := c.v.grow(c.key, c.sh, int64(n), c.n); ferr != nil {
			return 0, ferr
		}
	}
	return n, err
}

// grow adds n in-flight bytes for key (sofar read of it), failing when
// they exceed the cap.
func (v *vol) grow(key string, sh *Shard, n, sofar int64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.inflight += n
	if v.cap > 0 && v.used+v.inflight > v.limit(sh) {
		return &FullError{Volume: v.number, Loc: v.m.Loc, Cap: v.limit(sh), Used: v.used, Key: key, Need: sofar, Partial: true}
	}
	return nil
}

// reserveCheck fails at once a Put of known size that cannot fit.
func (v *vol) reserveCheck(key string, size int64, sh *Shard) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cap > 0 && v.used+v.inflight+size > v.limit(sh) {
		return &FullError{Volume: v.number, Loc: v.m.Loc, Cap: v.limit(sh), Used: v.used + v.inflight, Key: key, Need: size}
	}
	return nil
}

func (v *vol) release(n int64) {
	v.mu.Lock()
	v.inflight -= n
	v.mu.Unlock()
}

// record adds (or replaces) f in v's label and writes the label.
func (v *vol) record(ctx context.Context, f File) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := slices.IndexFunc(v.label.Files, func(g File) bool { return g.Key == f.Key })
	if i >= 0 {
		v.used -= v.label.Files[i].Size
		v.label.Files[i] = f
	} else {
		at, _ := slices.BinarySearchFunc(v.label.Files, f.Key, func(g File, k string) int { return strings.Compare(g.Key, k) })
		v.label.Files = slices.Insert(v.label.Files, at, f)
	}
	v.used += f.Size
	return v.writeLabelLocked(ctx)
}

// forget removes key from v's label and writes it, if it was there.
func (v *vol) forget(ctx context.Context, key string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := slices.IndexFunc(v.label.Files, func(g File) bool { return g.Key == key })
	if i < 0 {
		return nil
	}
	v.used -= v.label.Files[i].Size
	v.label.Files = slices.Delete(v.label.Files, i, i+1)
	return v.writeLabelLocked(ctx)
}

func (v *vol) writeLabelLocked(ctx context.Context) error {
	v.label.Updated = time.Now().UTC().Truncate(time.Second)
	b, err := v.label.marshal()
	if err != nil {
		return err
	}
	if err := v.m.Store.Put(ctx, LabelKey, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("%s: write its label: %w", v, err)
	}
	v.written = b
	return nil
}

// ensureLabels writes every volume's label once, with the first write of
// the session, so that every volume of a capture is labelled (and a
// resumed set's labels carry the new count) before anything else lands.
func (s *Set) ensureLabels(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.labelled {
		return nil
	}
	for _, v := range s.vols {
		v.mu.Lock()
		err := v.writeLabelLocked(ctx)
		v.mu.Unlock()
		if err != nil {
			return err
		}
	}
	s.labelled = true
	return nil
}

// holders returns the present volumes holding key, the one whose copy of
// an everywhere key matched its label first.
func (s *Set) holders(key string) []*vol {
	s.mu.Lock()
	defer s.mu.Unlock()
	vs := slices.Clone(s.index[key])
	if v, ok := s.verified[key]; ok {
		vs = slices.DeleteFunc(vs, func(u *vol) bool { return u == v })
		vs = append([]*vol{v}, vs...)
	}
	return vs
}

// maxVerify bounds the everywhere keys Get checks against the labels
// before choosing a volume's copy.
const maxVerify = 64 << 20

// preferIntact finds, once per key, the first volume whose copy of an
// everywhere key (the manifest, its copies) still has the SHA-256 its
// label recorded, so that a damaged copy on one drive does not hide the
// intact ones on the others.
func (s *Set) preferIntact(ctx context.Context, key string, vs []*vol) {
	if len(vs) < 2 {
		return
	}
	s.mu.Lock()
	_, done := s.verified[key]
	s.mu.Unlock()
	if done {
		return
	}
	for _, v := range vs {
		v.mu.Lock()
		i := slices.IndexFunc(v.label.Files, func(f File) bool { return f.Key == key })
		var want File
		if i >= 0 {
			want = v.label.Files[i]
		}
		v.mu.Unlock()
		if i < 0 {
			continue // not recorded on this volume: judge the others
		}
		if want.Shard != nil || want.Size > maxVerify {
			return
		}
		if sum, n, err := hashObject(ctx, v.m.Store, key); err == nil && n == want.Size && sum == want.SHA256 {
			s.mu.Lock()
			s.verified[key] = v
			s.mu.Unlock()
			return
		}
	}
}

// Get reads key from a present volume that holds it.
func (s *Set) Get(ctx context.Context, key string, off, length int64) (io.ReadCloser, error) {
	vs := s.holders(key)
	s.preferIntact(ctx, key, vs)
	vs = s.holders(key)
	err := s.absent(key)
	for _, v := range vs {
		rc, gerr := v.m.Store.Get(ctx, key, off, length)
		if gerr == nil {
			return rc, nil
		}
		err = fmt.Errorf("%s: %w", v, gerr)
		if !errors.Is(gerr, store.ErrNotExist) {
			return nil, err
		}
	}
	if len(vs) == 0 && s.kept != nil {
		if rc, kerr := s.kept.Get(ctx, key, off, length); kerr == nil || !errors.Is(kerr, store.ErrNotExist) {
			return rc, kerr
		}
	}
	return nil, err
}

func (s *Set) absent(key string) error {
	return fmt.Errorf("volumes: %s is on none of the %d volume(s) present of %d: %w", key, len(s.vols), s.count, store.ErrNotExist)
}

// Stat reports key as a present volume holding it has it.
func (s *Set) Stat(ctx context.Context, key string) (store.Info, error) {
	err := s.absent(key)
	for _, v := range s.holders(key) {
		info, serr := v.m.Store.Stat(ctx, key)
		if serr == nil {
			return info, nil
		}
		err = fmt.Errorf("%s: %w", v, serr)
		if !errors.Is(serr, store.ErrNotExist) {
			return store.Info{}, err
		}
	}
	if s.kept != nil && len(s.holders(key)) == 0 {
		if info, kerr := s.kept.Stat(ctx, key); kerr == nil || !errors.Is(kerr, store.ErrNotExist) {
			return info, kerr
		}
	}
	return store.Info{}, err
}

// List reports the union of the keys the present volumes hold (a key on
// several volumes once, as the lowest-numbered one has it), in lexical
// order. Labels are not listed.
func (s *Set) List(ctx context.Context, prefix string, fn func(store.Info) error) error {
	all := map[string]store.Info{}
	sources := make([]store.Store, 0, len(s.vols)+1)
	names := make([]string, 0, len(s.vols)+1)
	for _, v := range s.vols {
		sources, names = append(sources, v.m.Store), append(names, v.String())
	}
	if s.kept != nil {
		sources, names = append(sources, s.kept), append(names, "the kept manifest of the last volume")
	}
	for i, st := range sources {
		err := st.List(ctx, prefix, func(i store.Info) error {
			if _, ok := all[i.Key]; !ok && i.Key != LabelKey {
				all[i.Key] = i
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list %s: %w", names[i], err)
		}
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(all[k]); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes key from every present volume.
func (s *Set) Delete(ctx context.Context, key string) error {
	if !s.write {
		return fmt.Errorf("volumes: delete %s: %w: %w", key, ErrReadOnly, store.ErrPermanent)
	}
	if key == LabelKey {
		return fmt.Errorf("volumes: delete %s: the label is the volume set's own file: %w", key, store.ErrPermanent)
	}
	if err := s.ensureLabels(ctx); err != nil {
		return err
	}
	for _, v := range s.vols {
		if err := s.deleteOn(ctx, v, key); err != nil {
			return err
		}
	}
	return nil
}

func (s *Set) deleteOn(ctx context.Context, v *vol, key string) error {
	if err := v.m.Store.Delete(ctx, key); err != nil {
		return fmt.Errorf("%s: %w", v, err)
	}
	s.mu.Lock()
	s.index[key] = slices.DeleteFunc(s.index[key], func(u *vol) bool { return u == v })
	if len(s.index[key]) == 0 {
		delete(s.index, key)
	}
	delete(s.verified, key)
	s.mu.Unlock()
	return v.forget(ctx, key)
}

// String names the set for messages.
func (s *Set) String() string {
	names := make([]string, len(s.vols))
	for i, v := range s.vols {
		names[i] = v.m.Store.String()
	}
	return "volumes(" + strings.Join(names, ", ") + ")"
}

// Connections is the sum of the volumes' parallelism: the drives'
// bandwidth adds up.
func (s *Set) Connections() int {
	n := 0
	for _, v := range s.vols {
		n += store.ConnectionsOf(v.m.Store, 2)
	}
	return n
}

// Lock takes the writer lock of every volume, in volume order; it fails
// (releasing those taken) if any volume is locked or cannot lock.
func (s *Set) Lock(ctx context.Context, owner string) (func(context.Context) error, error) {
	var unlocks []func(context.Context) error
	release := func(ctx context.Context) error {
		var errs []error
		for _, u := range slices.Backward(unlocks) {
			errs = append(errs, u(ctx))
		}
		return errors.Join(errs...)
	}
	for _, v := range s.vols {
		u, err := store.Lock(ctx, v.m.Store, owner)
		if err != nil {
			_ = release(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		unlocks = append(unlocks, u)
	}
	return release, nil
}

// RemoveIncomplete removes the leftovers of unfinished writes on every
// volume that can.
func (s *Set) RemoveIncomplete(ctx context.Context) error {
	for _, v := range s.vols {
		if c, ok := store.AsCleaner(v.m.Store); ok {
			if err := c.RemoveIncomplete(ctx); err != nil {
				return fmt.Errorf("%s: %w", v, err)
			}
		}
	}
	return nil
}

// Path names the file of key on a present local volume that holds it,
// so that restore can refuse a target that is one of the image's files.
func (s *Set) Path(key string) (string, error) {
	for _, v := range s.holders(key) {
		if lp, ok := v.m.Store.(interface{ Path(string) (string, error) }); ok {
			return lp.Path(key)
		}
	}
	return "", s.absent(key)
}

var (
	_ store.Store       = (*Set)(nil)
	_ store.Locker      = (*Set)(nil)
	_ store.Cleaner     = (*Set)(nil)
	_ store.Connections = (*Set)(nil)
)

// addVolumes adds members to the set: a labelled one as its label says,
// an unlabelled one (which must be empty) as volume next+1, next+2, …
// of image imageID ("" before the manifest), with ref's room for the
// manifest. It returns the highest number it gave.
func (s *Set) addVolumes(ctx context.Context, members []Member, labels []*Label, next int, ref *Label, imageID string) (int, error) {
	for i, l := range labels {
		v := &vol{m: members[i]}
		if l != nil {
			v.number, v.label = l.Volume, *l
			_, v.used = l.Holds()
		} else {
			if err := requireEmpty(ctx, members[i]); err != nil {
				return next, err
			}
			next++
			v.number = next
			// A new volume keeps the same room for the manifest as the others.
			v.label = Label{Format: LabelFormat, Version: LabelVersion, SetID: s.setID, ImageID: imageID, Volume: v.number,
				Layout: s.layout, Source: s.source, Encrypted: s.encrypted, Created: s.created, Reserve: ref.Reserve, Files: []File{}}
		}
		s.vols = append(s.vols, v)
	}
	return next, nil
}
