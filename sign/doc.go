// Package sign signs an image's manifest with an ordinary OpenSSH key and
// checks such a signature against a trust file, so that a seed altered on
// its way (a chunk changed and every hash recomputed, manifest included)
// is refused before a single chunk is read or a block reaches a target.
//
// The manifest hash (spec §6.5) protects the manifest only against damage:
// whoever can write to the drive or bucket can recompute it. A signature
// made with a private key that never travels with the seed closes that
// gap, and the manifest binds every chunk hash, so signing it signs the
// image.
//
// The signature is the SSH signature format of OpenSSH's PROTOCOL.sshsig
// (the armored "-----BEGIN SSH SIGNATURE-----" file that `ssh-keygen -Y
// sign` writes), with namespace "seedship" and hash sha512, stored beside
// each manifest copy as "<manifest file>.sig" ([SigKey]); with an ed25519
// key the file is byte for byte the one ssh-keygen -Y sign writes for
// the same manifest and key (testdata/vector). Operators use
// the keys they already have (`ssh-keygen -t ed25519`), and anyone can
// check a seed with OpenSSH alone:
//
//	ssh-keygen -Y verify -f allowed_signers -I ops@example.com -n seedship \
//	    -s manifest.ssm.sig < manifest.ssm
//
// The trust set is a public key file (id_ed25519.pub, or several such
// lines) or an OpenSSH allowed_signers file (ssh-keygen(1), ALLOWED
// SIGNERS) with its namespaces, valid-after and valid-before options;
// cert-authority lines are refused, as seedship trusts listed keys only.
//
// Restore receipts (verify --device --receipt --sign-key) are signed the
// same way for namespace "seedship-receipt" ([ReceiptNamespace],
// [Signer.SignNamespace], [VerifyNamespace]): a receipt's signature is
// never a manifest's, nor the reverse, though the key may be the same. An
// allowed_signers line restricted with namespaces="seedship" trusts its
// key for manifests only; namespaces="seedship,seedship-receipt" for both.
//
// Everything read here is hostile input: signature files are refused above
// [MaxSignatureSize] before they are parsed, trust and key files above
// their own bounds, and every refusal is one line naming the file. Errors
// match [ErrUnsigned], [ErrUntrusted] and [ErrBadSignature] (an image
// refused: the CLI's exit 3), or [ErrBadKey] and [ErrBadTrust] (the
// operator's key or trust file is unusable: exit 2), with errors.Is.
//
// The wire format and the signing itself are github.com/hiddeco/sshsig on
// golang.org/x/crypto/ssh; this package adds what seedship needs around
// them: strict reading of the armored file, the namespace, the trust file,
// and the files beside the manifest in a store. It imports store only.
package sign
