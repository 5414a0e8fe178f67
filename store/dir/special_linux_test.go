package dir

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/seedship/seedship/store"
)

// mknodZero makes a character device like /dev/zero at p (root only).
func mknodZero(p string) error {
	return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5)))
}

// TestNoSpace fills a small tmpfs: a full destination is ErrNoSpace, which
// is final for retrying but not bad input (ErrPermanent), and leaves no
// temporary file. Before the fix it matched ErrPermanent (exit 2).
func TestNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root; TestClassify covers ENOSPC")
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
	s, err := New(mnt)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 1<<20)
	err = s.Put(t.Context(), "data/00000000.seg", strings.NewReader(big), int64(len(big)))
	if !errors.Is(err, store.ErrNoSpace) || store.IsPermanent(err) || !store.IsFinal(err) || !errors.Is(err, unix.ENOSPC) {
		t.Errorf("Put onto a full file system = %v; want ErrNoSpace (final, not permanent) wrapping ENOSPC", err)
	}
	if left := temps(t, s.Root()); len(left) > 0 {
		t.Errorf("temporary files left behind: %q", left)
	}
}
