// Package seal is the cryptography of an encrypted seed image, in one
// audited place: the image's keys (a random root key, the keys derived
// from it, and the root key wrapped for age recipients or a passphrase),
// the authenticated encryption of each chunk's stored payload and of the
// image's secret metadata, the keyed digests that replace the plaintext
// chunk hash and block digests, and the keyed MAC of the manifest.
//
// It exists so that no other package chooses a nonce, a label, a key or
// an associated-data layout: format, engine and the CLI call the few
// functions here and never touch crypto/cipher or age themselves. The
// byte layouts are spec/FORMAT.md §11; testdata/seal/ holds its test
// vectors, which TestVectors checks.
//
// seal depends on no other seedship package, so format (pure codecs) can
// call it.
package seal
