package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"filippo.io/age"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/sign"
	"github.com/seedship/seedship/store"
)

// EncryptOptions makes a capture encrypted (spec §11): a fresh root key
// seals every chunk and the image's secret metadata, wrapped for each
// recipient and, when Passphrase is not empty, for the passphrase.
type EncryptOptions struct {
	Recipients []seal.Recipient
	Passphrase string
}

// captureKeys are the keys of an encrypted capture: the image's keys, its
// encryption header object (the wrapped copies for its recipients), and
// the copy wrapped for the resume identity, which only the checkpoint
// holds (spec §11.5).
type captureKeys struct {
	keys       *seal.Keys
	enc        *format.Encryption
	resumeCopy string
	// resumeID is the resume identity a fresh capture writes to
	// resumeKeyPath before its first checkpoint; nil on resume (the file
	// exists, or the capture was resumed with an identity of its own).
	resumeID *age.X25519Identity
	hasher   *format.Hasher // keyed with keys
}

// newCaptureKeys makes the keys of a fresh encrypted capture of image id:
// a new root key (fixed: tests only), wrapped for eo's recipients and
// passphrase and for a new resume identity. It writes nothing.
func newCaptureKeys(eo *EncryptOptions, id [16]byte, fixed *seal.RootKey) (*captureKeys, error) {
	root := seal.NewRootKey()
	if fixed != nil {
		root = *fixed
	}
	enc, err := format.NewEncryption(root, eo.Recipients, eo.Passphrase)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	keys, err := seal.DeriveKeys(root, id)
	if err != nil {
		return nil, err
	}
	rid, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("make the resume identity: %w", err)
	}
	r, err := seal.ParseRecipient("resume identity", rid.Recipient().String())
	if err != nil {
		return nil, err
	}
	wrapped, err := seal.Wrap(root, []seal.Recipient{r}, "")
	if err != nil {
		return nil, fmt.Errorf("wrap the image key for the resume identity: %w", err)
	}
	return &captureKeys{keys: keys, enc: enc, resumeCopy: wrapped[0], resumeID: rid, hasher: format.NewKeyedHasher(keys)}, nil
}

// resumeKeyPath is where a capture keeps the resume identity of image id
// on the source host (spec §11.5): $XDG_STATE_HOME/seedship/resume/ID.key,
// by default under ~/.local/state.
func resumeKeyPath(id [16]byte) (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if !filepath.IsAbs(base) { // the XDG rule: a relative value is ignored
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("the resume key of an encrypted capture is kept under $XDG_STATE_HOME or ~/.local/state: %w: set XDG_STATE_HOME", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(base, "seedship", "resume", fmt.Sprintf("%x.key", id)), nil
}

// writeResumeKey stores the resume identity of image id, readable by its
// owner only, before the capture's first checkpoint names its copy.
func writeResumeKey(id [16]byte, rid *age.X25519Identity) error {
	path, err := resumeKeyPath(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("keep the resume key of this encrypted capture: %w: set XDG_STATE_HOME to a writable directory", err)
	}
	body := fmt.Sprintf("# seedship resume identity of the encrypted capture of image %x: deleted when the capture finishes\n%s\n", id, rid)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keep the resume key of this encrypted capture: %w: set XDG_STATE_HOME to a writable directory", err)
	}
	_, err = f.WriteString(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("write the resume key %s: %w", path, err)
	}
	return nil
}

// removeResumeKey deletes the resume identity of image id, once the
// capture's checkpoint is gone; a missing file is no error.
func removeResumeKey(id [16]byte) error {
	path, err := resumeKeyPath(id)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the resume key %s: %w", path, err)
	}
	return nil
}

// readResumeKey returns the resume identity of image id kept on this
// host, or none when there is none.
func readResumeKey(id [16]byte) ([]age.Identity, error) {
	path, err := resumeKeyPath(id)
	if err != nil {
		return nil, nil // no state directory: no resume key either
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read the resume key %s: %w", ErrBadInput, path, err)
	}
	ids, err := seal.ParseIdentitiesFile(path, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadInput, err)
	}
	return ids, nil
}

// errNoResumeKey is the one line with which an encrypted capture that
// cannot be unlocked refuses to resume (spec §11.5).
const errNoResumeKey = "this encrypted capture can be resumed only on the host that began it, or with --identity of one of its recipients; else capture again"

// openCheckpoint opens the checkpoint of an interrupted encrypted capture
// (spec §11.5): it unwraps the root key with the resume identity this
// host keeps (resumeKeyPath) or opts.Identities, and unseals the
// checkpoint with it, so that the resume can compare the source's
// identity and whole-source hash. A plaintext checkpoint returns nil.
// Every error wraps ErrBadInput: nothing was written.
func openCheckpoint(ck *format.Checkpoint, opts CaptureOptions) (*captureKeys, error) {
	if !ck.Encrypted() {
		if opts.Encrypt != nil {
			return nil, fmt.Errorf("%w: --resume with --recipient or --recipients-file, but the interrupted capture is not encrypted: drop them, or capture again into an empty destination", ErrBadInput)
		}
		return nil, nil
	}
	if opts.Encrypt != nil {
		return nil, fmt.Errorf("%w: --resume with --recipient or --recipients-file: the interrupted capture keeps the recipients it began with; drop them", ErrBadInput)
	}
	ids, err := readResumeKey(ck.ImageID)
	if err != nil {
		return nil, err
	}
	keys, err := ck.OpenKeys(append(ids, opts.Identities...))
	switch {
	case errors.Is(err, format.ErrNoKey), errors.Is(err, seal.ErrNoIdentity):
		return nil, fmt.Errorf("%w: %s", ErrBadInput, errNoResumeKey)
	case err != nil:
		return nil, fmt.Errorf("%w: %s cannot be trusted: %w; capture again into an empty destination", ErrBadInput, CheckpointKey, err)
	}
	if err := ck.Unseal(keys); err != nil {
		return nil, fmt.Errorf("%w: %s cannot be trusted: %w; capture again into an empty destination", ErrBadInput, CheckpointKey, err)
	}
	// The image's copies come first, the resume copy last (planCapture).
	return &captureKeys{keys: keys, hasher: format.NewKeyedHasher(keys), enc: &format.Encryption{Scheme: format.EncryptionScheme, AEAD: format.EncryptionAEAD, KDF: format.EncryptionKDF,
		WrappedKeys: slices.Clone(ck.WrappedKeys[:len(ck.WrappedKeys)-1]), Recipients: ck.Recipients, Passphrase: ck.Passphrase}}, nil
}

// hasher returns the hasher of the image being captured: keyed for an
// encrypted capture, so that a resumed one compares the source with the
// stored chunks' keyed digests, and records 32 zero bytes for a zero
// chunk (ZeroTableHash).
func (c *capture) hasher() *format.Hasher {
	if c.keys == nil {
		return format.PlainHasher()
	}
	return c.keys.hasher
}

// keepResumeKey writes a fresh encrypted capture's resume identity.
func (c *capture) keepResumeKey() error {
	if c.keys == nil || c.keys.resumeID == nil {
		return nil
	}
	return writeResumeKey(c.ck.ImageID, c.keys.resumeID)
}

// dropResumeKey deletes an encrypted capture's resume identity once its
// checkpoint is gone.
func (c *capture) dropResumeKey() error {
	if c.keys == nil {
		return nil
	}
	return removeResumeKey(c.ck.ImageID)
}

// putCheckpoint stores ck: as writeCheckpoint does for a plaintext
// capture, sealed with the image's keys for an encrypted one.
func (c *capture) putCheckpoint(ctx context.Context, ck *format.Checkpoint) error {
	if c.keys == nil {
		return c.writeCheckpoint(ctx, ck)
	}
	if ck.SHA256State == nil {
		state, err := hashState(sha256.New())
		if err != nil {
			return err
		}
		ck.SHA256State = state
	}
	b, err := c.marshalCheckpoint(ck)
	if err != nil {
		return err
	}
	if err := c.dst.Put(ctx, CheckpointKey, bytes.NewReader(b), int64(len(b))); err != nil {
		return fmt.Errorf("write %s to %s: %w", CheckpointKey, c.dst, err)
	}
	return nil
}

// marshalCheckpoint encodes ck: sealed with the image's keys for an
// encrypted capture (whose checkpoint, once read, must first be opened
// with openCheckpoint), plain otherwise.
func (c *capture) marshalCheckpoint(ck *format.Checkpoint) ([]byte, error) {
	if c.keys == nil {
		return ck.Marshal()
	}
	return ck.MarshalSealed(c.keys.keys)
}

// keyUse says what a command needs of an encrypted image's key.
type keyUse int

const (
	// keyRequired: the command opens chunks (restore, diff, delta's
	// base): an encrypted image no identity given opens is refused.
	keyRequired keyUse = iota
	// keyIfGiven: the command can work on the stored bytes alone (copy,
	// verify, repair): it opens chunks only when identities are given,
	// and then they must open the image.
	keyIfGiven
)

// openKeyed opens the image in st as every command that reads it does:
// the manifest (openImage), its signature checked against trust (before
// any chunk is read; nil checks nothing), then an encrypted image's key
// unwrapped with ids and its manifest's MAC checked (unlock). Nothing is
// written before it returns.
func openKeyed(ctx context.Context, st store.Store, trust *sign.Trust, ids []age.Identity, use keyUse) (*seed.Image, *sign.Signatory, error) {
	im, err := openImage(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	signer, err := checkSigned(ctx, im, trust)
	if err != nil {
		return nil, nil, err
	}
	if err := unlock(im, ids, use); err != nil {
		return nil, nil, err
	}
	return im, signer, nil
}

// unlock opens an encrypted image's chunks with ids (seed.Image.Unlock):
// no identity that opens its key is bad input (exit 2, the one line that
// says what the image is encrypted for); a key that opens but a manifest
// whose MAC fails under it is an integrity failure (exit 3). A plaintext
// image, or with keyIfGiven and no identities, is left as it is.
func unlock(im *seed.Image, ids []age.Identity, use keyUse) error {
	if !im.Encrypted() || (use == keyIfGiven && len(ids) == 0) {
		return nil
	}
	err := im.Unlock(ids)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, format.ErrNoKey), errors.Is(err, seal.ErrNoIdentity):
		return fmt.Errorf("%w: %w", ErrBadInput, err)
	case format.IsDamage(err):
		return fmt.Errorf("%w: %w", ErrIntegrity, err)
	}
	return err
}

// imageHasher returns the hasher of im's chunks: plain, or keyed once an
// encrypted image is unlocked. A locked image has none: the caller
// should have unlocked it with keyRequired.
func imageHasher(im *seed.Image) (*format.Hasher, error) {
	if h := im.Manifest().Hasher(); h != nil {
		return h, nil
	}
	return nil, fmt.Errorf("%w: %s is encrypted: %w", ErrBadInput, im, format.ErrNoKey)
}
