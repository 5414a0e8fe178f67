package resync

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/seedship/seedship/verify"
)

// LoadReceipt reads and decodes the restore receipt at path
// ([verify.ParseReceipt]). A missing, unreadable, oversized or malformed
// file is a [*CheckError] naming the file: without a receipt that decodes
// there is no evidence.
func LoadReceipt(path string) (*verify.Receipt, error) {
	fail := func(problem, fix string) error {
		return &CheckError{Condition: CondReceipt, Problem: "receipt " + path + " " + problem, Fix: fix}
	}
	write := "write one with verify --device TARGET --receipt " + path + " IMAGE"
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fail("does not exist", write)
	case err != nil:
		return nil, fail(fmt.Sprintf("cannot be read: %v", err), "check the path")
	case !fi.Mode().IsRegular():
		return nil, fail(fmt.Sprintf("is not a regular file (%s)", fi.Mode().Type()), "name the receipt file verify --receipt wrote")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(fmt.Sprintf("cannot be read: %v", err), "check the path")
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, verify.MaxReceiptSize+1))
	if err != nil {
		return nil, fail(fmt.Sprintf("cannot be read: %v", err), "check the path")
	}
	r, err := verify.ParseReceipt(data)
	if err != nil {
		return nil, fail(fmt.Sprintf("is not usable: %v", err), write)
	}
	return r, nil
}
