package sign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/seedship/seedship/store"
)

// sigSuffix ends the key of the signature beside a manifest file.
const sigSuffix = ".sig"

// SigKey returns the key of the signature stored beside the manifest file
// manifestKey: manifest.ssm.sig beside manifest.ssm, manifest.ssm.1.sig
// beside manifest.ssm.1. ssh-keygen -Y verify -s FILE.sig < FILE checks
// the pair with OpenSSH alone.
func SigKey(manifestKey string) string { return manifestKey + sigSuffix }

// ReadSignature reads the signature beside manifestKey in st, refusing
// one larger than MaxSignatureSize without reading it all. A missing one
// wraps ErrUnsigned; a directory or other non-file in its place
// ErrBadSignature; a failure to read is returned as it is.
func ReadSignature(ctx context.Context, st store.Store, manifestKey string) ([]byte, error) {
	key := SigKey(manifestKey)
	rc, err := st.Get(ctx, key, 0, -1)
	switch {
	// A directory in its place matches both; it is no signature.
	case errors.Is(err, store.ErrNotRegular):
		return nil, fmt.Errorf("%s of %s: %w: not a regular file", key, st, ErrBadSignature)
	case errors.Is(err, store.ErrNotExist):
		return nil, fmt.Errorf("%s of %s: %w: no such file; sign images at capture with --sign-key, or check this one without --trust", key, st, ErrUnsigned)
	case err != nil:
		return nil, fmt.Errorf("%s of %s: %w", key, st, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(store.ContextReader(ctx, rc), MaxSignatureSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", key, st, err)
	}
	if len(b) > MaxSignatureSize {
		return nil, fmt.Errorf("%s of %s: %w: larger than any signature (%d bytes)", key, st, ErrBadSignature, MaxSignatureSize)
	}
	return b, nil
}

// PutSignatures stores sig beside each of the manifest files
// manifestKeys. Write them before manifest.ssm, which marks an image
// finished, so that a finished signed image always has its signature.
func PutSignatures(ctx context.Context, st store.Store, manifestKeys []string, sig []byte) error {
	for _, k := range manifestKeys {
		if err := st.Put(ctx, SigKey(k), bytes.NewReader(sig), int64(len(sig))); err != nil {
			return fmt.Errorf("%s of %s: %w", SigKey(k), st, err)
		}
	}
	return nil
}

// VerifyStored checks the manifest bytes against the signatures beside
// the manifest files manifestKeys in st, in order (put the file the
// manifest was read from first), and returns the signatory of the first
// that verifies against trust. Every manifest copy holds the same bytes,
// so any one signature by a trusted key proves them; the others are read
// only when it fails. When none verifies it returns the error of the
// first signature that exists (ErrBadSignature or ErrUntrusted), else
// ErrUnsigned; a failure to read stops it at once.
func VerifyStored(ctx context.Context, st store.Store, manifestKeys []string, manifest []byte, trust *Trust) (*Signatory, error) {
	if trust == nil {
		return nil, errors.New("sign.VerifyStored: no trust set")
	}
	return firstStored(ctx, st, manifestKeys, func(sig []byte) (*Signatory, error) { return Verify(manifest, sig, trust) })
}

// InspectStored is [Inspect] of the signatures beside manifestKeys in st,
// in order, as VerifyStored reads them: the first intact signature of
// manifest, by whatever key. It trusts nothing: info shows its key, copy
// carries its bytes.
func InspectStored(ctx context.Context, st store.Store, manifestKeys []string, manifest []byte) (*Signatory, error) {
	return firstStored(ctx, st, manifestKeys, func(sig []byte) (*Signatory, error) { return Inspect(manifest, sig) })
}

// firstStored returns what check says of the first signature beside
// manifestKeys that it accepts (see VerifyStored for the errors).
func firstStored(ctx context.Context, st store.Store, manifestKeys []string, check func(sig []byte) (*Signatory, error)) (*Signatory, error) {
	if len(manifestKeys) == 0 {
		return nil, errors.New("sign: no manifest keys")
	}
	var first, unsigned error
	for _, k := range manifestKeys {
		sig, err := ReadSignature(ctx, st, k)
		if err == nil {
			var who *Signatory
			if who, err = check(sig); err == nil {
				return who, nil
			}
			err = fmt.Errorf("%s of %s: %w", SigKey(k), st, err)
		}
		switch {
		case errors.Is(err, ErrUnsigned):
			if unsigned == nil {
				unsigned = err
			}
		case Refused(err):
			if first == nil {
				first = err
			}
		default:
			return nil, err
		}
	}
	if first != nil {
		return nil, first
	}
	return nil, unsigned
}
