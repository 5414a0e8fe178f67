package volume

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
)

// loopMember is a volume on a fresh loop-mounted ext4 file system.
func loopMember(t *testing.T, size int64) Member {
	t.Helper()
	dev := devicetest.Attach(t, devicetest.Image(t, size))
	devicetest.Mkfs(t, "ext4", dev)
	p := filepath.Join(devicetest.Mount(t, dev), "seed")
	st, err := dir.New(p)
	if err != nil {
		t.Fatal(err)
	}
	return Member{Loc: p, Store: st, Dir: p}
}

func freeBytes(t *testing.T, p string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// TestCapFromFreeSpace: a volume's default cap is its free space less the
// margin, and filling it to the cap stops with ErrNoSpace while the file
// system still has the margin free.
func TestCapFromFreeSpace(t *testing.T) {
	m := loopMember(t, 96<<20)
	free := freeBytes(t, m.Dir)
	s := create(t, []Member{m}, CreateOptions{})
	if got := s.Volumes()[0].Cap; got != free-Margin(free) {
		t.Fatalf("cap %d, want free %d less margin %d", got, free, Margin(free))
	}
	seg := bytes.Repeat([]byte("z"), 4<<20)
	var err error
	for n := 0; err == nil && n < 100; n++ {
		err = s.Put(t.Context(), fmt.Sprintf("data/%08d", n), bytes.NewReader(seg), -1)
	}
	var full *FullError
	if !errors.As(err, &full) || !errors.Is(err, store.ErrNoSpace) {
		t.Fatalf("filling the volume ended with %v, want a FullError", err)
	}
	if left := freeBytes(t, m.Dir); left < Margin(free)/2 {
		t.Errorf("only %d bytes left free when the cap stopped the writes, want about the margin %d", left, Margin(free))
	}
	noTemps(t, m.Dir)
}

// TestRealNoSpace: when the drive fills up below the cap (someone else
// wrote to it), the file system's ENOSPC comes back as store.ErrNoSpace
// naming the volume, and nothing is left of the failed write.
func TestRealNoSpace(t *testing.T) {
	m := loopMember(t, 96<<20)
	s := create(t, []Member{m}, CreateOptions{})
	put(t, s, "capture.ckpt", []byte("ck"))
	// Ballast fills the file system behind the set's back.
	ballast := filepath.Join(filepath.Dir(m.Dir), "ballast")
	f, err := os.Create(ballast)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	err = s.Put(t.Context(), "data/00000000", bytes.NewReader(make([]byte, 8<<20)), -1)
	if !errors.Is(err, store.ErrNoSpace) || !strings.Contains(err.Error(), "volume 1 ("+m.Loc+")") {
		t.Fatalf("Put onto a full file system = %v, want ErrNoSpace naming volume 1 and %s", err, m.Loc)
	}
	noTemps(t, m.Dir)
	if got := where([]Member{m}, "data/00000000"); len(got) != 0 {
		t.Errorf("the failed file is on the volume")
	}
}
