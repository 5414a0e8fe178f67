package sign

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// Namespace is the SSH signature namespace of seedship manifests: a
// signature made for anything else (git commits, files) is never accepted
// as a seed's, and ours never as theirs.
const Namespace = "seedship"

// ReceiptNamespace is the SSH signature namespace of seedship restore
// receipts (verify --device --receipt): distinct from [Namespace], so a
// receipt's signature is never accepted as a manifest's, nor the reverse,
// even though both are made with the same kind of key, often the same key.
const ReceiptNamespace = "seedship-receipt"

// hashAlgorithm is the hash signed manifests use; the one ssh-keygen -Y
// sign uses by default. Verification also accepts sha256, the only other
// hash PROTOCOL.sshsig allows, as the hash is itself signed.
const hashAlgorithm = sshsig.HashSHA512

// Size bounds on what is read before it is parsed. A signature by a
// 16384-bit RSA key is about 3 KiB armored, its private key about 13 KiB.
const (
	// MaxSignatureSize is the largest signature file accepted.
	MaxSignatureSize = 64 << 10
	// MaxKeySize is the largest private key file accepted.
	MaxKeySize = 64 << 10
	// MaxTrustSize is the largest trust file accepted.
	MaxTrustSize = 1 << 20
	// maxPassphraseSize bounds a passphrase file.
	maxPassphraseSize = 4 << 10
)

// Errors, for errors.Is. The first three refuse an image (exit 3); the
// last two are bad input from the operator (exit 2).
var (
	// ErrUnsigned: the image has no signature file beside its manifest.
	ErrUnsigned = errors.New("not signed")
	// ErrUntrusted: the signature verifies, but by a key the trust file
	// does not list, or lists only for another namespace or time.
	ErrUntrusted = errors.New("signed by an untrusted key")
	// ErrBadSignature: the signature file is malformed, made for another
	// namespace, or does not match the manifest.
	ErrBadSignature = errors.New("bad signature")
	// ErrBadKey: the signing key file or its passphrase is unusable.
	ErrBadKey = errors.New("unusable signing key")
	// ErrBadTrust: the trust file is unusable.
	ErrBadTrust = errors.New("unusable trust file")
)

// Signer signs manifests with one private key. Load it before any work
// starts, so that a wrong path or passphrase is refused before a source
// is read; sign when the manifest is final.
type Signer struct {
	signer ssh.Signer
	name   string
}

// NewSigner parses an OpenSSH private key (as written by ssh-keygen:
// ed25519, ecdsa or rsa; also the older PEM encodings). passphrase is
// called only if the key is encrypted; it may be nil when none is
// available. name names the key file in errors.
func NewSigner(name string, privateKeyPEM []byte, passphrase func() ([]byte, error)) (*Signer, error) {
	signer, err := ssh.ParsePrivateKey(privateKeyPEM)
	if missing := (*ssh.PassphraseMissingError)(nil); errors.As(err, &missing) {
		if passphrase == nil {
			return nil, fmt.Errorf("signing key %s: %w: it is protected by a passphrase; give its passphrase file (--sign-passphrase-file)", name, ErrBadKey)
		}
		pass, perr := passphrase()
		if perr != nil {
			return nil, fmt.Errorf("signing key %s: %w: %v", name, ErrBadKey, perr)
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(privateKeyPEM, pass)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("signing key %s: %w: the passphrase is wrong", name, ErrBadKey)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w: not an OpenSSH private key (%s); make one with ssh-keygen -t ed25519", name, ErrBadKey, printable(err.Error()))
	}
	switch t := signer.PublicKey().Type(); t {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSA:
	default:
		return nil, fmt.Errorf("signing key %s: %w: %s keys are not accepted; make one with ssh-keygen -t ed25519", name, ErrBadKey, t)
	}
	return &Signer{signer: signer, name: name}, nil
}

// LoadSigner reads the private key file keyPath; passphrasePath, if not
// empty, is a file holding the key's passphrase (see [PassphraseFile]).
func LoadSigner(keyPath, passphrasePath string) (*Signer, error) {
	pem, err := readBounded(keyPath, MaxKeySize)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w: %v", keyPath, ErrBadKey, err)
	}
	var pass func() ([]byte, error)
	if passphrasePath != "" {
		pass = PassphraseFile(passphrasePath)
	}
	return NewSigner(keyPath, pem, pass)
}

// PassphraseFile returns a passphrase callback that reads path: its
// content less one trailing newline (LF or CRLF), which must leave a
// non-empty passphrase.
func PassphraseFile(path string) func() ([]byte, error) {
	return func() ([]byte, error) {
		b, err := readBounded(path, maxPassphraseSize)
		if err != nil {
			return nil, fmt.Errorf("passphrase file %s: %v", path, err)
		}
		if b2, ok := bytes.CutSuffix(b, []byte("\r\n")); ok {
			b = b2
		} else {
			b = bytes.TrimSuffix(b, []byte("\n"))
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("passphrase file %s is empty", path)
		}
		return b, nil
	}
}

// PublicKey returns the signer's public key, e.g. for a line of an
// allowed_signers file.
func (s *Signer) PublicKey() ssh.PublicKey { return s.signer.PublicKey() }

// String names the key: its type and SHA-256 fingerprint.
func (s *Signer) String() string { return describeKey(s.signer.PublicKey()) }

// Sign returns the armored SSH signature of manifest (namespace
// "seedship", hash sha512): the bytes of the file stored beside it.
func (s *Signer) Sign(manifest []byte) ([]byte, error) {
	return s.SignNamespace(manifest, Namespace)
}

// SignNamespace returns the armored SSH signature of data for namespace
// (hash sha512), e.g. [ReceiptNamespace] for a restore receipt; check it
// with [VerifyNamespace] or ssh-keygen -Y verify -n NAMESPACE.
func (s *Signer) SignNamespace(data []byte, namespace string) ([]byte, error) {
	if namespace == "" {
		return nil, fmt.Errorf("signing with %s: %w", s.name, errors.New("empty namespace"))
	}
	sig, err := sshsig.Sign(bytes.NewReader(data), s.signer, hashAlgorithm, namespace)
	if err != nil {
		return nil, fmt.Errorf("signing with %s: %w", s.name, err)
	}
	return armor(sig.Marshal()), nil
}

// armor encodes a signature blob exactly as ssh-keygen -Y sign writes it
// (OpenSSH's sshsig_armor): the begin line, the base64 in lines of 70
// columns, the end line. An ed25519 signature is deterministic, so the
// file is then byte for byte the one ssh-keygen makes with the same key.
func armor(blob []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString(blob)
	var b bytes.Buffer
	b.WriteString(armorBegin + "\n")
	for len(b64) > 70 {
		b.WriteString(b64[:70] + "\n")
		b64 = b64[70:]
	}
	b.WriteString(b64 + "\n")
	b.WriteString(armorEnd + "\n")
	return b.Bytes()
}

// Sign returns the armored SSH signature of manifest made with the
// private key privateKeyPEM (see [NewSigner]).
func Sign(manifest, privateKeyPEM []byte, passphrase func() ([]byte, error)) ([]byte, error) {
	s, err := NewSigner("(given)", privateKeyPEM, passphrase)
	if err != nil {
		return nil, err
	}
	return s.Sign(manifest)
}

// describeKey names a public key for messages: "ssh-ed25519 SHA256:…".
func describeKey(k ssh.PublicKey) string {
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

// readBounded reads a file of at most limit bytes: a regular file, or a
// pipe such as a shell's <(…) for a secret that never touches a disk. Its
// errors do not repeat the path, which the caller names.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unpath(err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, unpath(err)
	}
	if info.IsDir() {
		return nil, errors.New("it is a directory")
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, unpath(err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("it is larger than %d bytes", limit)
	}
	return b, nil
}

// unpath drops the operation and path of an *fs.PathError.
func unpath(err error) error {
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
