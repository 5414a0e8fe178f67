package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/seedship/seedship/sign"
)

// trustFlag is --trust of the commands that read an image (verify,
// restore, copy, info).
func trustFlag() cli.Flag {
	return &cli.StringFlag{Name: "trust", Usage: "refuse the image (exit 3, nothing written) unless its manifest is signed by a key in this file: a public key file (id_ed25519.pub) or an OpenSSH allowed_signers file; checked before any chunk is read"}
}

// loadTrust reads the --trust file; nil when not given. An unusable file
// is bad input (exit 2).
func loadTrust(c *cli.Context) (*sign.Trust, error) {
	if !c.IsSet("trust") {
		return nil, nil
	}
	return sign.LoadTrust(c.String("trust"))
}

// signKeyFlag and signPassphraseFlag are capture's and delta's signing
// flags (signPassphraseFlag also verify's, with receiptSignKeyFlag).
func signKeyFlag() cli.Flag {
	return &cli.StringFlag{Name: "sign-key", Usage: "sign the manifest with this OpenSSH private key (ssh-keygen -t ed25519): the signature is stored beside each manifest file as <file>.sig, checked by --trust or by ssh-keygen -Y verify -n seedship"}
}

// receiptSignKeyFlag is verify's --sign-key, which signs the restore
// receipt (verify --device --receipt), not an image.
func receiptSignKeyFlag() cli.Flag {
	return &cli.StringFlag{Name: "sign-key", Usage: "with --receipt: sign the receipt with this OpenSSH private key (ssh-keygen -t ed25519), pass or fail: the signature is written beside it as FILE.sig, checked by extend --trust or by ssh-keygen -Y verify -n seedship-receipt"}
}

func signPassphraseFlag() cli.Flag {
	return &cli.StringFlag{Name: "sign-passphrase-file", Usage: "with --sign-key: a file holding the key's passphrase (one trailing newline is ignored)"}
}

// loadSigner reads --sign-key (and its passphrase) before anything is
// read or written; nil when not given.
func loadSigner(c *cli.Context) (*sign.Signer, error) {
	if !c.IsSet("sign-key") {
		if c.IsSet("sign-passphrase-file") {
			return nil, usagef("%s: --sign-passphrase-file is the passphrase of --sign-key: add --sign-key FILE", c.Command.Name)
		}
		return nil, nil
	}
	return sign.LoadSigner(c.String("sign-key"), c.String("sign-passphrase-file"))
}

// signerText describes who signed, for summaries and --json: checked
// against the trust file, or (without one) only the key's claim.
func signerText(who *sign.Signatory, trusted bool) string {
	switch {
	case who == nil:
		return ""
	case trusted:
		return fmt.Sprintf("%s, trusted by %s line %d", who, who.Trust, who.Line)
	}
	return who.String() + " (not checked: give --trust)"
}

// signManifest is the engine's SignManifest hook of signer; nil without
// one.
func signManifest(s *sign.Signer) func([]byte) ([]byte, error) {
	if s == nil {
		return nil
	}
	return s.Sign
}
