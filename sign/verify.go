package sign

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// The first and last lines of an armored SSH signature (PROTOCOL.sshsig
// §1).
const (
	armorBegin = "-----BEGIN " + sshsig.PEMType + "-----"
	armorEnd   = "-----END " + sshsig.PEMType + "-----"
)

// Signatory is who signed a manifest, as the trust file names them.
type Signatory struct {
	// Principals is the principals field of the allowed_signers line that
	// accepted the signature (a comma-separated pattern list, e.g.
	// "ops@example.com"), or the comment of a public key line; it may be
	// empty.
	Principals string
	// Key is the signing key's type and SHA-256 fingerprint, as ssh-keygen
	// -l prints it: "ssh-ed25519 SHA256:…".
	Key string
	// Trust names the trust file and Line its line that accepted the key
	// (empty and 0 from Inspect).
	Trust string
	Line  int
	// Signature is the signature file that verified, byte for byte: what
	// a copy of the image stores beside its manifests.
	Signature []byte
}

// String names the signer: "ops@example.com (ssh-ed25519 SHA256:…)".
func (s *Signatory) String() string {
	if s.Principals == "" {
		return s.Key
	}
	return s.Principals + " (" + s.Key + ")"
}

// Verify checks sig, the bytes of a signature file, against manifest and
// trust, and returns who signed. A nil sig (no signature file) wraps
// ErrUnsigned; a malformed one, one for another namespace, or one that
// does not match manifest wraps ErrBadSignature; a valid signature by a
// key the trust file does not list for namespace "seedship" at this time
// wraps ErrUntrusted. Messages start with the sentinel's text ("bad
// signature: …"); the caller puts the file's name before them.
func Verify(manifest, sig []byte, trust *Trust) (*Signatory, error) {
	return trust.verifyAt(manifest, sig, time.Now())
}

// VerifyNamespace is [Verify] for data signed in namespace (see
// [Signer.SignNamespace]): the signature must be made for exactly that
// namespace, and a trust line restricted by namespaces="…" must allow it.
// VerifyNamespace(m, sig, t, Namespace) is Verify(m, sig, t).
func VerifyNamespace(data, sig []byte, trust *Trust, namespace string) (*Signatory, error) {
	return trust.verifyNamespaceAt(data, sig, namespace, time.Now())
}

// verifyAt is Verify at time now, for valid-after and valid-before.
func (t *Trust) verifyAt(manifest, sig []byte, now time.Time) (*Signatory, error) {
	return t.verifyNamespaceAt(manifest, sig, Namespace, now)
}

// verifyNamespaceAt is VerifyNamespace at time now.
func (t *Trust) verifyNamespaceAt(data, sig []byte, namespace string, now time.Time) (*Signatory, error) {
	s, err := checkSignature(data, sig, namespace)
	if err != nil {
		return nil, err
	}
	who, err := t.accept(s.PublicKey, namespace, now)
	if err != nil {
		return nil, err
	}
	who.Signature = sig
	return who, nil
}

// Inspect checks sig against manifest with the key the signature itself
// names, without a trust set: it tells which key claims the manifest and
// that the signature is intact and matches it, which proves nothing about
// who made it (anyone can sign with a key of their own). It is for info,
// which shows the signer, and copy, which carries an intact signature
// along; refusing an image takes Verify. Errors are Verify's, less
// ErrUntrusted.
func Inspect(manifest, sig []byte) (*Signatory, error) {
	s, err := checkSignature(manifest, sig, Namespace)
	if err != nil {
		return nil, err
	}
	return &Signatory{Key: describeKey(s.PublicKey), Signature: sig}, nil
}

// checkSignature parses sig and checks it against data with the key it
// names, for namespace.
func checkSignature(data, sig []byte, namespace string) (*sshsig.Signature, error) {
	if sig == nil {
		return nil, fmt.Errorf("%w: there is no signature file", ErrUnsigned)
	}
	s, err := parseSignature(sig)
	if err != nil {
		return nil, err
	}
	what, whose := signedThing(namespace)
	// The namespace and hash are also inside the signed data, so a false
	// one fails below; checking first only makes the message plain.
	if s.Namespace != namespace {
		return nil, fmt.Errorf("%w: made for namespace %q, not %q: it is no %s",
			ErrBadSignature, clip(s.Namespace), namespace, whose)
	}
	if err := sshsig.Verify(bytes.NewReader(data), s, s.PublicKey, s.HashAlgorithm, namespace); err != nil {
		return nil, fmt.Errorf("%w by %s: it does not match the %s: the %s or the signature was altered",
			ErrBadSignature, describeKey(s.PublicKey), what, what)
	}
	return s, nil
}

// signedThing names what a namespace's signatures sign, and such a
// signature, for messages.
func signedThing(namespace string) (what, whose string) {
	switch namespace {
	case Namespace:
		return "manifest", "seedship manifest's signature"
	case ReceiptNamespace:
		return "receipt", "seedship restore receipt's signature"
	}
	return "signed data", "signature for " + strconv.Quote(namespace)
}

// parseSignature reads an armored SSH signature strictly: the whole file
// is one "SSH SIGNATURE" block, with nothing but blanks after it.
func parseSignature(sig []byte) (*sshsig.Signature, error) {
	if len(sig) > MaxSignatureSize {
		return nil, fmt.Errorf("%w: the file is %d bytes, larger than any signature (%d)", ErrBadSignature, len(sig), MaxSignatureSize)
	}
	if !bytes.HasPrefix(sig, []byte(armorBegin)) {
		return nil, fmt.Errorf("%w: the file does not start with %q", ErrBadSignature, armorBegin)
	}
	block, rest := pem.Decode(sig)
	if block == nil || block.Type != sshsig.PEMType || len(block.Headers) != 0 {
		return nil, fmt.Errorf("%w: the file is not one well-formed %s block", ErrBadSignature, sshsig.PEMType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: the file has %d bytes after its end line", ErrBadSignature, len(rest))
	}
	s, err := sshsig.ParseSignature(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: malformed: %s", ErrBadSignature, printable(err.Error()))
	}
	if _, isCert := s.PublicKey.(*ssh.Certificate); isCert {
		return nil, fmt.Errorf("%w: made with an SSH certificate; seedship trusts plain keys only", ErrBadSignature)
	}
	return s, nil
}

// accept returns the signatory of the first trust line that lists key
// for namespace at time now, or ErrUntrusted naming why the lines that
// list key did not accept it.
func (t *Trust) accept(key ssh.PublicKey, namespace string, now time.Time) (*Signatory, error) {
	kb := key.Marshal()
	signer := describeKey(key)
	var refusals []string
	for i := range t.entries {
		e := &t.entries[i]
		if !bytes.Equal(e.keyBytes, kb) {
			continue
		}
		switch {
		case e.hasNamespaces && matchPatternList(namespace, e.namespaces) != 1:
			refusals = append(refusals, fmt.Sprintf("line %d allows it only for namespaces %q", e.line, clip(e.namespaces)))
		case !e.validAfter.IsZero() && now.Before(e.validAfter):
			refusals = append(refusals, fmt.Sprintf("line %d makes it valid only after %s", e.line, e.validAfter.UTC().Format(time.RFC3339)))
		case !e.validBefore.IsZero() && now.After(e.validBefore):
			refusals = append(refusals, fmt.Sprintf("line %d made it valid only before %s", e.line, e.validBefore.UTC().Format(time.RFC3339)))
		default:
			return &Signatory{Principals: e.principals, Key: signer, Trust: t.name, Line: e.line}, nil
		}
	}
	if len(refusals) == 0 {
		return nil, fmt.Errorf("%w %s: trust file %s does not list it; add its public key there if that signer is trusted",
			ErrUntrusted, signer, t.name)
	}
	return nil, fmt.Errorf("%w %s: trust file %s does not accept it now: %s",
		ErrUntrusted, signer, t.name, strings.Join(refusals, "; "))
}

// Refused reports whether err refuses an image's signature (unsigned,
// untrusted or bad: exit 3), as opposed to an unusable key or trust file
// or a failure to read.
func Refused(err error) bool {
	return errors.Is(err, ErrUnsigned) || errors.Is(err, ErrUntrusted) || errors.Is(err, ErrBadSignature)
}
