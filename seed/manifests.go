package seed

import (
	"context"
	"errors"
	"fmt"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
)

// errNoCopy means no manifest copy of this image could be adopted.
var errNoCopy = errors.New("no usable manifest copy")

// candidate is one manifest copy that decoded.
type candidate struct {
	key string
	n   int
	m   *format.Manifest
	b   []byte
}

// openCopy adopts a redundant manifest copy when manifest.ssm failed. A
// copy counts only if it belongs to this image: its image ID is the one in
// the header of data segment 0 (when that is readable), it is copy n of
// a manifest that has at least n copies, and every such copy is the same
// manifest. Copies of another image are remembered as strays.
func openCopy(ctx context.Context, st store.Store) (*Image, error) {
	var keys []string
	err := st.List(ctx, format.ManifestKey+".", func(i store.Info) error {
		if _, ok := format.ParseManifestCopyKey(i.Key); ok {
			keys = append(keys, i.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", st, err)
	}
	var cands []candidate
	var tried []error
	for _, key := range keys {
		n, _ := format.ParseManifestCopyKey(key)
		m, b, err := readManifest(ctx, st, key)
		if err != nil {
			if !worthCopies(err) {
				return nil, err
			}
			tried = append(tried, err)
			continue
		}
		cands = append(cands, candidate{key, n, m, b})
	}
	if len(cands) == 0 {
		if len(keys) > 0 {
			return nil, fmt.Errorf("%s: manifest.ssm and every copy are damaged: %w", st, errors.Join(append(tried, format.ErrCorrupt)...))
		}
		return nil, errNoCopy
	}
	id, known, err := segmentImageID(ctx, st)
	if err != nil {
		return nil, err
	}
	return chooseCopy(st, cands, id, known)
}

// chooseCopy picks the manifest the copies of this image agree on.
func chooseCopy(st store.Store, cands []candidate, id [16]byte, known bool) (*Image, error) {
	var mine []candidate
	var strays []Damage
	for _, c := range cands {
		cid, _ := c.m.ImageID()
		switch {
		case known && cid != id:
			strays = append(strays, strayDamage(c.key, fmt.Sprintf("belongs to image %x, the data segments to %x", cid, id)))
		case c.n > len(c.m.CopyKeys()):
			strays = append(strays, strayDamage(c.key, fmt.Sprintf("names a manifest with %d copies, so it is no copy of it", len(c.m.CopyKeys()))))
		default:
			mine = append(mine, c)
		}
	}
	if len(mine) == 0 {
		return nil, fmt.Errorf("%s: manifest.ssm is damaged and no copy belongs to this image: %w", st, format.ErrCorrupt)
	}
	for _, c := range mine[1:] {
		if c.m.Hash != mine[0].m.Hash {
			return nil, fmt.Errorf("%s: manifest.ssm is damaged and its copies %s and %s disagree (manifests %x and %x): %w",
				st, mine[0].key, c.key, mine[0].m.Hash[:8], c.m.Hash[:8], format.ErrCorrupt)
		}
	}
	im := newImage(st, mine[0].m, mine[0].b, mine[0].key)
	im.strays = strays
	return im, nil
}

func strayDamage(key, why string) Damage {
	return Damage{Key: key, Err: fmt.Errorf("manifest copy %s is not a copy of this image (it %s): ignored", key, why)}
}

// segmentImageID reads the image ID from the header of data segment 0;
// known is false when there is no readable one (an empty image, or a
// damaged segment).
func segmentImageID(ctx context.Context, st store.Store) (id [16]byte, known bool, err error) {
	key := format.DataID(0).Key()
	id, err = format.ReadImageID(store.ReaderAt(ctx, st, key), format.DataID(0))
	if err != nil {
		if _, damage := objectErr(st, key, err); damage {
			return id, false, nil
		}
		return id, false, fmt.Errorf("%s: %w", st, err)
	}
	return id, true, nil
}

// ManifestCheck is what [Image.CheckManifests] found.
type ManifestCheck struct {
	// Bad lists the image's manifest files (manifest.ssm and its copies)
	// that are missing, damaged, or hold another manifest: rewriting them
	// with the image's manifest repairs them.
	Bad []string
	// Damage describes each bad file, and each stray copy.
	Damage []Damage
	// Strays are keys like manifest.ssm.N that are no copy of this image
	// (another image's, or beyond the image's copy count): they are
	// ignored, never adopted, and never written over by a repair unless
	// they sit at one of the image's own copy keys (then they are in Bad).
	Strays []string
}

// CheckManifests reads manifest.ssm and every copy the image should have
// and compares each with the image's manifest; it also names copies
// present at other keys that belong to another image.
func (im *Image) CheckManifests(ctx context.Context) (ManifestCheck, error) {
	var out ManifestCheck
	own := map[string]bool{}
	for _, key := range append([]string{format.ManifestKey}, im.m.CopyKeys()...) {
		own[key] = true
		d, err := im.checkManifestFile(ctx, key)
		if err != nil {
			return out, err
		}
		if d != nil {
			out.Bad = append(out.Bad, key)
			out.Damage = append(out.Damage, *d)
		}
	}
	err := im.st.List(ctx, format.ManifestKey+".", func(i store.Info) error {
		if _, ok := format.ParseManifestCopyKey(i.Key); !ok || own[i.Key] {
			return nil
		}
		m, _, err := readManifest(ctx, im.st, i.Key)
		if err == nil && m.Hash == im.m.Hash {
			return nil // an extra copy of this image: harmless
		}
		out.Strays = append(out.Strays, i.Key)
		out.Damage = append(out.Damage, strayDamage(i.Key, "is not this image's manifest and not one of its copy keys"))
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("list %s: %w", im.st, err)
	}
	return out, nil
}

// checkManifestFile compares one manifest file with the image's manifest;
// it returns nil when it is an intact copy.
func (im *Image) checkManifestFile(ctx context.Context, key string) (*Damage, error) {
	m, _, err := readManifest(ctx, im.st, key)
	if err != nil {
		if !worthCopies(err) {
			return nil, err
		}
		if errors.Is(err, store.ErrNotExist) {
			err = fmt.Errorf("%w: %s is missing", format.ErrMissing, key)
		} else if !format.IsDamage(err) {
			err = fmt.Errorf("%w: %w", format.ErrCorrupt, err)
		}
		return &Damage{Key: key, Err: fmt.Errorf("manifest %s: %w", key, err)}, nil
	}
	if m.Hash == im.m.Hash {
		return nil, nil
	}
	cid, _ := m.ImageID()
	why := "another manifest of this image"
	if cid != im.id {
		why = fmt.Sprintf("the manifest of another image (%x)", cid)
	}
	return &Damage{Key: key, Err: fmt.Errorf("%w: manifest %s holds %s, not a copy of this image's manifest", format.ErrCorrupt, key, why)}, nil
}

// Strays returns the manifest copies of another image seen (and ignored)
// when Open had to adopt a copy.
func (im *Image) Strays() []Damage { return im.strays }
