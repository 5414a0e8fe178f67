package engine

import (
	"context"
	"errors"

	"filippo.io/age"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seed"
	"github.com/seedship/seedship/sign"
	"github.com/seedship/seedship/store"
)

// manifestKeys returns the manifest files of im, the one its manifest was
// read from first: beside each is its signature (sign.SigKey).
func manifestKeys(im *seed.Image) []string {
	keys := []string{im.ManifestKey()}
	for _, k := range append([]string{format.ManifestKey}, im.Manifest().CopyKeys()...) {
		if k != im.ManifestKey() {
			keys = append(keys, k)
		}
	}
	return keys
}

// checkSigned refuses im unless a key in trust signed its manifest (an
// error that sign.Refused matches: integrity, exit 3), before any chunk
// is read. A nil trust checks nothing and returns nil.
func checkSigned(ctx context.Context, im *seed.Image, trust *sign.Trust) (*sign.Signatory, error) {
	if trust == nil {
		return nil, nil
	}
	// sign's errors name the signature file and the store.
	return sign.VerifyStored(ctx, im.Store(), manifestKeys(im), im.ManifestBytes(), trust)
}

// putSignature stores sig beside every manifest file of m in dst (at
// SignatureSuffix: sign.SigKey); nil sig stores nothing. Called before
// manifest.ssm is written, so that a finished signed image always has its
// signature.
func putSignature(ctx context.Context, dst store.Store, m *format.Manifest, sig []byte) error {
	if sig == nil {
		return nil
	}
	return sign.PutSignatures(ctx, dst, append(m.CopyKeys(), format.ManifestKey), sig)
}

// Signature tells who signed the image in st. With a trust set it checks
// the signature as Restore does (refusing, exit 3, an image unsigned,
// signed by another key, or not matching); without one it only reads the
// first intact signature and names its key, trusting nothing (nil, nil
// for an unsigned image).
func Signature(ctx context.Context, st store.Store, trust *sign.Trust) (*sign.Signatory, error) {
	_, who, err := OpenImageSigned(ctx, st, trust)
	return who, err
}

// OpenImageSigned is OpenImage and Signature on one read of the manifest:
// the manifest returned is the very bytes whose signature was checked, so
// a store that serves a signed manifest to the check and another one
// afterwards gains nothing.
func OpenImageSigned(ctx context.Context, st store.Store, trust *sign.Trust) (*format.Manifest, *sign.Signatory, error) {
	im, who, err := openImageSigned(ctx, st, trust)
	if err != nil {
		return nil, nil, err
	}
	return im.Manifest(), who, nil
}

// OpenImageKeyed is OpenImageSigned that also opens an encrypted image
// (spec §11) with ids, after its signature is checked: its manifest is
// then unsealed (the sealed header fields, such as sha256 and the
// source's identity, filled in, and Manifest.Hasher keyed), so that a
// device can be compared with it (verify --device) or its sealed fields
// shown (info). Without ids an encrypted image's manifest is returned
// sealed, unless needKey: then it is refused (ErrBadInput). Identities
// that open none of its wrapped keys are bad input either way; a
// manifest whose MAC fails under the key is an integrity failure. A
// plaintext image ignores ids.
func OpenImageKeyed(ctx context.Context, st store.Store, trust *sign.Trust, ids []age.Identity, needKey bool) (*format.Manifest, *sign.Signatory, error) {
	im, who, err := openImageSigned(ctx, st, trust)
	if err != nil {
		return nil, nil, err
	}
	use := keyIfGiven
	if needKey {
		use = keyRequired
	}
	if err := unlock(im, ids, use); err != nil {
		return nil, nil, err
	}
	return im.Manifest(), who, nil
}

// openImageSigned opens the image in st and checks its signature against
// trust, or, without one, names the key of its first intact signature.
func openImageSigned(ctx context.Context, st store.Store, trust *sign.Trust) (*seed.Image, *sign.Signatory, error) {
	im, err := openImage(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	if trust != nil {
		who, err := checkSigned(ctx, im, trust)
		if err != nil {
			return nil, nil, err
		}
		return im, who, nil
	}
	who, err := sign.InspectStored(ctx, st, manifestKeys(im), im.ManifestBytes())
	if errors.Is(err, sign.ErrUnsigned) {
		return im, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return im, who, nil
}
