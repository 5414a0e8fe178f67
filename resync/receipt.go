package resync

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/seedship/seedship/sign"
	"github.com/seedship/seedship/verify"
)

// LoadReceipt reads and decodes the restore receipt at path
// ([verify.ParseReceipt]). A missing, unreadable, oversized or malformed
// file is a [*CheckError] naming the file: without a receipt that decodes
// there is no evidence. A signature beside it is not looked at: see
// [LoadSignedReceipt].
func LoadReceipt(path string) (*verify.Receipt, error) {
	r, _, err := LoadSignedReceipt(path, nil)
	return r, err
}

// LoadSignedReceipt is [LoadReceipt] that, when trust is not nil, also
// requires the receipt's signature ([verify.ReceiptSignatureFile], made
// by verify --receipt --sign-key) to verify, over the very bytes decoded,
// for namespace [sign.ReceiptNamespace], by a key that trust lists for
// it. A receipt unsigned, signed by another key, or altered after
// signing (or signed as something else, such as a manifest) is a
// [*CheckError] for [CondReceiptSigned] whose Cause matches
// [sign.Refused]; the signatory is returned when the signature verified.
// With a nil trust the signature is not read, and nil is returned for it.
func LoadSignedReceipt(path string, trust *sign.Trust) (*verify.Receipt, *sign.Signatory, error) {
	data, err := readReceipt(path)
	if err != nil {
		return nil, nil, err
	}
	// The signature is checked before the JSON is decoded: a receipt
	// that is not the signed one is refused as such, whatever it says.
	var who *sign.Signatory
	if trust != nil {
		if who, err = checkReceiptSignature(path, data, trust); err != nil {
			return nil, nil, err
		}
	}
	r, err := verify.ParseReceipt(data)
	if err != nil {
		return nil, nil, &CheckError{Condition: CondReceipt, Problem: fmt.Sprintf("receipt %s is not usable: %v", path, err), Fix: writeReceipt(path)}
	}
	return r, who, nil
}

// writeReceipt is the fix for a receipt that is missing or unusable.
func writeReceipt(path string) string {
	return "write one with verify --device TARGET --receipt " + path + " IMAGE"
}

// readReceipt reads the receipt file at path, bounded by
// verify.MaxReceiptSize (ParseReceipt refuses what is over it).
func readReceipt(path string) ([]byte, error) {
	fail := func(problem, fix string) error {
		return &CheckError{Condition: CondReceipt, Problem: "receipt " + path + " " + problem, Fix: fix}
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fail("does not exist", writeReceipt(path))
	case err != nil:
		return nil, fail(fmt.Sprintf("cannot be read: %v", err), "check the path")
	case !fi.Mode().IsRegular():
		return nil, fail(fmt.Sprintf("is not a regular file (%s)", fi.Mode().Type()), "name the receipt file verify --receipt wrote")
	}
	data, err := readBounded(path, verify.MaxReceiptSize)
	if err != nil {
		return nil, fail(fmt.Sprintf("cannot be read: %v", err), "check the path")
	}
	return data, nil
}

// checkReceiptSignature checks the signature beside the receipt at path
// over data against trust.
func checkReceiptSignature(path string, data []byte, trust *sign.Trust) (*sign.Signatory, error) {
	sigPath := verify.ReceiptSignatureFile(path)
	fix := "write a receipt signed by a key the trust file lists: verify --device TARGET --receipt " + path + " --sign-key KEY IMAGE"
	sig, err := readSignature(sigPath)
	if err != nil {
		// Not a refusal of the receipt: a file in the way, or a failure
		// to read.
		return nil, &CheckError{Condition: CondReceiptSigned, Problem: fmt.Sprintf("signature %s of receipt %s %v", sigPath, path, err), Fix: "check the path, or " + fix}
	}
	who, err := sign.VerifyNamespace(data, sig, trust, sign.ReceiptNamespace)
	if err != nil {
		return nil, &CheckError{Condition: CondReceiptSigned, Problem: fmt.Sprintf("receipt %s (signature %s): %v", path, sigPath, err), Fix: fix, Cause: err}
	}
	return who, nil
}

// readSignature reads a receipt's signature file: nil (and no error) when
// there is none, which the check refuses as unsigned; one larger than
// sign.MaxSignatureSize is returned cut just over it, which the check
// refuses as malformed.
func readSignature(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("cannot be read: %v", err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("is not a regular file (%s)", fi.Mode().Type())
	}
	sig, err := readBounded(path, sign.MaxSignatureSize)
	if err != nil {
		return nil, fmt.Errorf("cannot be read: %v", err)
	}
	return sig, nil
}

// readBounded reads at most limit+1 bytes of the file at path.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}
