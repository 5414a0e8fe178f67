package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
)

// Encryption flags (spec §11). capture takes the recipients and a
// passphrase; every command that reads chunks takes identities or the
// passphrase.
const (
	flagRecipient      = "recipient"
	flagRecipientsFile = "recipients-file"
	flagPassphraseFile = "passphrase-file"
	flagIdentity       = "identity"
	keysCategory       = "Encryption"
)

// recipientFlags are capture's (and delta's) encryption flags.
func recipientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: flagRecipient, Usage: "encrypt the image for this age public key (age1…, made with age-keygen); repeatable", Category: keysCategory},
		&cli.StringSliceFlag{Name: flagRecipientsFile, Usage: "encrypt the image for every age public key in this file (one per line, # comments); repeatable", Category: keysCategory},
		&cli.StringFlag{Name: flagPassphraseFile, Usage: "encrypt the image (also) for the passphrase on this file's first line (scrypt, about 1 s to open); with --resume, open the interrupted capture with it instead", Category: keysCategory},
	}
}

// identityFlags are the flags of the commands that open an encrypted
// image's chunks (verify, restore, info, copy, diff, delta).
func identityFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: flagIdentity, Usage: "open an encrypted image with the age identities (private keys made by age-keygen) in this file; repeatable", Category: keysCategory},
		&cli.StringFlag{Name: flagPassphraseFile, Usage: "open an encrypted image with the passphrase on this file's first line", Category: keysCategory},
	}
}

// resumeIdentityFlag is capture's --identity: with --resume, it opens an
// encrypted capture's checkpoint on a host that does not keep the
// capture's resume key (spec §11.5).
func resumeIdentityFlag() cli.Flag {
	return &cli.StringSliceFlag{Name: flagIdentity, Usage: "with --resume, on a host other than the one that began the encrypted capture: the age identities of one of its recipients; repeatable", Category: keysCategory}
}

// captureKeysOf reads capture's encryption flags before anything is
// opened or written. A fresh capture takes recipients and a passphrase
// (encrypt; nil for a plaintext image) and no --identity. A resumed one
// keeps the recipients it began with, so --passphrase-file and --identity
// are identities that open its checkpoint, and recipients are passed on
// for the engine to refuse in its own words.
func captureKeysOf(c *cli.Context, resume bool) (encrypt *engine.EncryptOptions, ids []age.Identity, err error) {
	if !resume {
		if c.IsSet(flagIdentity) {
			return nil, nil, usagef("capture: --identity opens an interrupted encrypted capture on another host: it goes with --resume; a new capture is encrypted with --recipient, --recipients-file or --passphrase-file")
		}
		encrypt, err = recipientsOf(c)
		return encrypt, nil, err
	}
	if ids, err = identitiesOf(c); err != nil {
		return nil, nil, err
	}
	if len(c.StringSlice(flagRecipient)) > 0 || len(c.StringSlice(flagRecipientsFile)) > 0 {
		encrypt = &engine.EncryptOptions{}
		if encrypt.Recipients, err = recipientsIn(c); err != nil {
			return nil, nil, err
		}
	}
	return encrypt, ids, nil
}

// encryptedFor says for whom an image is encrypted, from its plaintext
// header ("2 recipient(s) and a passphrase"); "" for a plaintext image.
func encryptedFor(e *format.Encryption) string {
	if e == nil {
		return ""
	}
	var parts []string
	if n := len(e.Recipients); n > 0 {
		parts = append(parts, fmt.Sprintf("%d recipient(s)", n))
	}
	if e.Passphrase {
		parts = append(parts, "a passphrase")
	}
	if len(parts) == 0 {
		return "the recipients of its wrapped keys"
	}
	return strings.Join(parts, " and ")
}

// encryptedJSON is for whom an encrypted image is, in --json output: the
// informative list of its plaintext header (spec §11.1), which readers do
// not trust.
type encryptedJSON struct {
	Recipients []string `json:"recipients"`
	Passphrase bool     `json:"passphrase"`
}

// encryptedOf is encryptedJSON of an image's encryption object; nil for a
// plaintext image.
func encryptedOf(e *format.Encryption) *encryptedJSON {
	if e == nil {
		return nil
	}
	return &encryptedJSON{Recipients: append([]string{}, e.Recipients...), Passphrase: e.Passphrase}
}

// recipientsOf reads capture's encryption flags before anything is read
// or written: nil when none is given (a plaintext image). A bad key file
// is bad input naming the file and line (never quoting it: it may hold a
// private key pasted by mistake).
func recipientsOf(c *cli.Context) (*engine.EncryptOptions, error) {
	var eo engine.EncryptOptions
	var err error
	if eo.Recipients, err = recipientsIn(c); err != nil {
		return nil, err
	}
	if name := c.String(flagPassphraseFile); name != "" {
		p, err := readKeyFile(name, "passphrase", func(r io.Reader) (string, error) {
			return seal.ReadPassphraseFile(name, r)
		})
		if err != nil {
			return nil, err
		}
		eo.Passphrase = p
	}
	if len(eo.Recipients) == 0 && eo.Passphrase == "" {
		return nil, nil
	}
	return &eo, nil
}

// recipientsIn reads --recipient and --recipients-file.
func recipientsIn(c *cli.Context) ([]seal.Recipient, error) {
	var out []seal.Recipient
	for _, s := range c.StringSlice(flagRecipient) {
		r, err := seal.ParseRecipient("--recipient", s)
		if err != nil {
			return nil, keyFileErr(err)
		}
		out = append(out, r)
	}
	for _, name := range c.StringSlice(flagRecipientsFile) {
		rs, err := readKeyFile(name, "recipients", func(r io.Reader) ([]seal.Recipient, error) {
			return seal.ParseRecipientsFile(name, r)
		})
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// identitiesOf reads --identity files and --passphrase-file: nil when
// none is given.
func identitiesOf(c *cli.Context) ([]age.Identity, error) {
	var ids []age.Identity
	for _, name := range c.StringSlice(flagIdentity) {
		got, err := readKeyFile(name, "identity", func(r io.Reader) ([]age.Identity, error) {
			return seal.ParseIdentitiesFile(name, r)
		})
		if err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	if name := c.String(flagPassphraseFile); name != "" {
		p, err := readKeyFile(name, "passphrase", func(r io.Reader) (string, error) {
			return seal.ReadPassphraseFile(name, r)
		})
		if err != nil {
			return nil, err
		}
		id, err := seal.PassphraseIdentity(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", engine.ErrBadInput, name, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// readKeyFile opens a key file given on the command line and parses it;
// a missing or unreadable file, or one that is not a key file, is bad
// input.
func readKeyFile[T any](name, what string, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	f, err := os.Open(name)
	if err != nil {
		return zero, fmt.Errorf("%w: %s file %s: %w: check the path", engine.ErrBadInput, what, name, errors.Unwrap(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return zero, fmt.Errorf("%w: %s file %s is not a regular file: give the key file itself", engine.ErrBadInput, what, name)
	}
	v, err := parse(f)
	if err != nil {
		return zero, keyFileErr(err)
	}
	return v, nil
}

// keyFileErr makes a key file's parse error bad input (exit 2).
func keyFileErr(err error) error {
	if errors.Is(err, seal.ErrBadKeyFile) {
		return fmt.Errorf("%w: %w", engine.ErrBadInput, err)
	}
	return err
}
