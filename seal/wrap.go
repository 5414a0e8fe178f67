package seal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// ScryptWorkFactor is the scrypt work factor (log2 N) of a passphrase
// wrap, age's default: about 1 s and 256 MiB. A reader refuses a larger
// one, so that a hostile image cannot make unwrapping take minutes or
// gigabytes.
const ScryptWorkFactor = 18

// scryptWorkFactor is ScryptWorkFactor; tests lower it to stay fast.
var scryptWorkFactor = ScryptWorkFactor

// MaxWrappedKeys bounds how many wrapped copies of the root key an image
// may carry (one per kind of recipient; spec §11.1), and
// maxWrappedKeySize the length of each.
const (
	MaxWrappedKeys    = 8
	maxWrappedKeySize = 1 << 20
)

// ErrNoIdentity means no identity or passphrase given unwraps the
// image's root key. It is bad input (exit 2): nothing was read or
// written.
var ErrNoIdentity = errors.New("no identity given opens this image's key")

// ErrNoRecipients means Wrap was given neither a recipient nor a
// passphrase.
var ErrNoRecipients = errors.New("an encrypted image needs at least one recipient or a passphrase")

// ErrWrappedKey means a wrapped copy of the root key is not a valid
// age file holding 32 bytes: the image's metadata is damaged or forged.
var ErrWrappedKey = errors.New("wrapped key is not a valid age file of a 32-byte key")

// Wrap wraps root for the recipients and, when passphrase is not empty,
// for the passphrase. It returns ASCII-armored age files of the 32 key
// bytes, one per kind of recipient, because age lets neither a
// passphrase nor a post-quantum recipient share a file with others: the
// X25519 recipients, the post-quantum ones, the passphrase. Each is a
// file `age -d` decrypts: `age -d -i key.txt wrapped.age | xxd -p` prints
// the root key.
func Wrap(root RootKey, recipients []Recipient, passphrase string) ([]string, error) {
	var classic, pq []age.Recipient
	for _, r := range recipients {
		if _, ok := r.(*age.HybridRecipient); ok {
			pq = append(pq, r)
		} else {
			classic = append(classic, r)
		}
	}
	groups := [][]age.Recipient{classic, pq}
	if passphrase != "" {
		s, err := age.NewScryptRecipient(passphrase)
		if err != nil {
			return nil, fmt.Errorf("passphrase: %w", err)
		}
		s.SetWorkFactor(scryptWorkFactor)
		groups = append(groups, []age.Recipient{s})
	}
	var out []string
	for _, g := range groups {
		if len(g) == 0 {
			continue
		}
		var buf bytes.Buffer
		aw := armor.NewWriter(&buf)
		w, err := age.Encrypt(aw, g...)
		if err != nil {
			return nil, fmt.Errorf("wrapping the image key: %w", err)
		}
		if _, err := w.Write(root[:]); err != nil {
			return nil, fmt.Errorf("wrapping the image key: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("wrapping the image key: %w", err)
		}
		if err := aw.Close(); err != nil {
			return nil, fmt.Errorf("wrapping the image key: %w", err)
		}
		out = append(out, buf.String())
	}
	if len(out) == 0 {
		return nil, ErrNoRecipients
	}
	return out, nil
}

// PassphraseIdentity returns the identity that unwraps a passphrase
// wrap, refusing work factors above ScryptWorkFactor.
func PassphraseIdentity(passphrase string) (age.Identity, error) {
	id, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, fmt.Errorf("passphrase: %w", err)
	}
	id.SetMaxWorkFactor(scryptWorkFactor)
	return id, nil
}

// Unwrap returns the root key from the first wrapped copy one of the
// identities opens. When none does (or none is given) it returns an
// error matching ErrNoIdentity that says what the image is encrypted
// for; a copy that is not a valid age file of 32 bytes gives one
// matching ErrWrappedKey, unless another copy opens. Unwrap does not
// prove the key is the image's: the manifest MAC (CheckManifestMAC)
// does.
func Unwrap(wrapped []string, identities []age.Identity) (RootKey, error) {
	if len(wrapped) == 0 || len(wrapped) > MaxWrappedKeys {
		return RootKey{}, fmt.Errorf("%w: an image has 1 to %d wrapped keys, this one %d", ErrWrappedKey, MaxWrappedKeys, len(wrapped))
	}
	var kinds []string
	var malformed error
	for n, w := range wrapped {
		if len(w) > maxWrappedKeySize {
			malformed = fmt.Errorf("wrapped key %d: %w: larger than %d bytes", n, ErrWrappedKey, maxWrappedKeySize)
			continue
		}
		kinds = append(kinds, stanzaKinds(w)...)
		if len(identities) == 0 {
			continue
		}
		r, err := age.Decrypt(armor.NewReader(strings.NewReader(w)), identities...)
		if err != nil {
			if _, ok := errors.AsType[*age.NoIdentityMatchError](err); !ok {
				malformed = fmt.Errorf("wrapped key %d: %w: %v", n, ErrWrappedKey, err)
			}
			continue
		}
		var key [KeySize + 1]byte
		m, err := io.ReadFull(r, key[:])
		if m != KeySize || !errors.Is(err, io.ErrUnexpectedEOF) {
			malformed = fmt.Errorf("wrapped key %d: %w: it holds %d bytes or is damaged", n, ErrWrappedKey, m)
			continue
		}
		return RootKey(key[:KeySize]), nil
	}
	if malformed != nil {
		return RootKey{}, malformed
	}
	what := "no identity or passphrase was given"
	if len(identities) > 0 {
		what = fmt.Sprintf("none of the %d identities given matches", len(identities))
	}
	return RootKey{}, fmt.Errorf("%w: the image is encrypted for %s and %s: give the age-keygen identity file of one of its recipients, or its passphrase file", ErrNoIdentity, describeKinds(kinds), what)
}

// stanzaKinds lists the stanza types ("X25519", "scrypt",
// "mlkem768x25519") in an armored age file's header, for messages only.
func stanzaKinds(armored string) []string {
	var hdr bytes.Buffer
	if _, err := io.Copy(&hdr, io.LimitReader(armor.NewReader(strings.NewReader(armored)), maxWrappedKeySize)); err != nil && hdr.Len() == 0 {
		return nil
	}
	var kinds []string
	sc := bufio.NewScanner(&hdr)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "---") {
			break
		}
		if t, ok := strings.CutPrefix(line, "-> "); ok {
			t, _, _ = strings.Cut(t, " ")
			kinds = append(kinds, t)
		}
	}
	return kinds
}

func describeKinds(kinds []string) string {
	count := map[string]int{}
	for _, k := range kinds {
		count[k]++
	}
	var parts []string
	if n := count["X25519"]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d age X25519 recipient(s)", n))
	}
	if n := count["mlkem768x25519"]; n > 0 {
		parts = append(parts, fmt.Sprintf("%d age post-quantum recipient(s)", n))
	}
	if count["scrypt"] > 0 {
		parts = append(parts, "a passphrase")
	}
	if len(parts) == 0 {
		return "unknown recipients"
	}
	return strings.Join(parts, " and ")
}
