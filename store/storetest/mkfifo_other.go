//go:build !unix

package storetest

import "errors"

func mkfifo(p string) error { return errors.ErrUnsupported }
