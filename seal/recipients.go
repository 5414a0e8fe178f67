package seal

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"filippo.io/age"
)

// maxKeyFile bounds a recipients, identities or passphrase file: a file
// larger than this is not a key file (age's own limit is 16 MiB; a
// thousand recipients take 63 KiB).
const maxKeyFile = 1 << 20

// ErrBadKeyFile marks a recipients, identities or passphrase file (or a
// --recipient string) that cannot be used: bad input, nothing written.
var ErrBadKeyFile = errors.New("bad key file")

// keyFileError is a one-line error naming the file, the line and the fix.
type keyFileError struct {
	name string
	line int
	msg  string
}

func (e *keyFileError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s line %d: %s", e.name, e.line, e.msg)
	}
	return fmt.Sprintf("%s: %s", e.name, e.msg)
}

func (e *keyFileError) Unwrap() error { return ErrBadKeyFile }

// Recipient is a public key the root key can be wrapped for: an age
// X25519 recipient ("age1…") or a post-quantum hybrid one ("age1pq1…").
type Recipient interface {
	age.Recipient
	String() string // the age1… encoding
}

// ParseRecipient parses one recipient string, as given to --recipient.
// name says where it came from, for the error message.
func ParseRecipient(name, s string) (Recipient, error) {
	r, msg := parseRecipientLine(s)
	if msg != "" {
		return nil, &keyFileError{name: name, msg: msg}
	}
	return r, nil
}

// parseRecipientLine returns the recipient of one non-comment line, or
// a message saying what the line is instead and what to give. The line's
// text is never quoted: it may be a private key pasted by mistake.
func parseRecipientLine(line string) (Recipient, string) {
	switch {
	case strings.HasPrefix(line, "AGE-SECRET-KEY-"):
		return nil, "this is a private key (an identity), not a recipient: give its public key (age-keygen -y FILE prints it), and keep the private key off the source host"
	case strings.HasPrefix(line, "ssh-"), strings.HasPrefix(line, "ecdsa-"), strings.HasPrefix(line, "sk-"):
		return nil, "SSH public keys are not supported as recipients: give an age public key (age1…, made with age-keygen)"
	case strings.HasPrefix(line, "age1pq1"):
		r, err := age.ParseHybridRecipient(line)
		if err != nil {
			return nil, "not a valid age post-quantum recipient (age1pq1…): copy it again from age-keygen -pq -y"
		}
		return r, ""
	case strings.HasPrefix(line, "age1"):
		r, err := age.ParseX25519Recipient(line)
		if err != nil {
			return nil, "not a valid age recipient (age1… in Bech32, 62 characters): copy it again from age-keygen -y"
		}
		return r, ""
	}
	return nil, "not an age recipient: want one public key (age1…) per line, # comments and blank lines allowed"
}

// ParseRecipientsFile parses a recipients file in age's format: one
// recipient per line; blank lines and lines starting with # are ignored;
// surrounding spaces and a CR before the newline are tolerated. It
// returns at least one recipient, or a one-line error naming the file
// and the line (matching ErrBadKeyFile).
func ParseRecipientsFile(name string, r io.Reader) ([]Recipient, error) {
	var out []Recipient
	err := scanKeyFile(name, r, "recipients", func(n int, line string) error {
		rec, msg := parseRecipientLine(line)
		if msg != "" {
			return &keyFileError{name: name, line: n, msg: msg}
		}
		out = append(out, rec)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, &keyFileError{name: name, msg: "no recipients in the file: want one age public key (age1…) per line"}
	}
	return out, nil
}

// ParseIdentitiesFile parses an identities file as age-keygen writes it
// (AGE-SECRET-KEY-1… lines, # comments), possibly holding several keys.
// Its one-line error names the file and the line, never a key.
func ParseIdentitiesFile(name string, r io.Reader) ([]age.Identity, error) {
	var out []age.Identity
	err := scanKeyFile(name, r, "identities", func(n int, line string) error {
		var (
			id  age.Identity
			err error
		)
		switch {
		case strings.HasPrefix(line, "AGE-SECRET-KEY-PQ-1"):
			id, err = age.ParseHybridIdentity(line)
		case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
			id, err = age.ParseX25519Identity(line)
		case strings.HasPrefix(line, "age1"):
			return &keyFileError{name: name, line: n, msg: "this is a public key (a recipient), not an identity: give the private key file made by age-keygen"}
		case strings.HasPrefix(line, "-----BEGIN"):
			return &keyFileError{name: name, line: n, msg: "SSH and passphrase-protected identities are not supported: give an age-keygen key file"}
		default:
			return &keyFileError{name: name, line: n, msg: "not an age identity: want the secret key lines of a key file made by age-keygen"}
		}
		if err != nil {
			return &keyFileError{name: name, line: n, msg: "not a valid age identity: copy the key file again"}
		}
		out = append(out, id)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, &keyFileError{name: name, msg: "no identities in the file: want a key file made by age-keygen"}
	}
	return out, nil
}

// scanKeyFile calls fn for every line that is not blank or a comment,
// with its 1-based number and surrounding spaces removed.
func scanKeyFile(name string, r io.Reader, what string, fn func(n int, line string) error) error {
	data, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		return fmt.Errorf("reading %s file %s: %w", what, name, err)
	}
	if len(data) > maxKeyFile {
		return &keyFileError{name: name, msg: fmt.Sprintf("larger than %d bytes: not an age %s file", maxKeyFile, what)}
	}
	if !utf8.Valid(data) {
		return &keyFileError{name: name, msg: fmt.Sprintf("not UTF-8 text: not an age %s file", what)}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxKeyFile+1)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// ReadPassphraseFile reads a passphrase file: its first line, without
// the line ending. An empty passphrase is refused.
func ReadPassphraseFile(name string, r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxKeyFile+1))
	if err != nil {
		return "", fmt.Errorf("reading passphrase file %s: %w", name, err)
	}
	if len(data) > maxKeyFile {
		return "", &keyFileError{name: name, msg: fmt.Sprintf("larger than %d bytes: not a passphrase file", maxKeyFile)}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", &keyFileError{name: name, msg: "the first line is empty: write the passphrase on the first line"}
	}
	return line, nil
}
