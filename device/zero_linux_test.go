package device

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
)

// pattern returns n non-zero bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.IntN(255) + 1)
	}
	return b
}

// checkZeroed reads all of f and checks that [off, off+length) is zero and
// everything else still equals orig.
func checkZeroed(t *testing.T, f *os.File, orig []byte, off, length int64) {
	t.Helper()
	got := make([]byte, len(orig))
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(orig)
	clear(want[off : off+length])
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("byte %d = %#x, want %#x (zeroed [%d, %d))", i, got[i], want[i], off, off+length)
			}
		}
	}
}

var zeroRanges = []struct{ off, length int64 }{
	{0, 0},
	{0, 4096},
	{4096, 3 << 20}, // aligned, larger than the zero buffer
	{100, 1},        // inside one sector
	{511, 2},        // across a sector boundary
	{1000, 10000},   // unaligned head and tail
	{4095, 4097 + 512},
	{8<<20 - 1, 1}, // the last byte
	{0, 8 << 20},   // everything
}

func TestZeroRangeFile(t *testing.T) {
	const size = 8 << 20
	orig := pattern(size)
	for _, r := range zeroRanges {
		t.Run(fmt.Sprintf("%d+%d", r.off, r.length), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "image")
			if err := os.WriteFile(path, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := ZeroRange(f, r.off, r.length); err != nil {
				t.Fatal(err)
			}
			checkZeroed(t, f, orig, r.off, r.length)
			if fi, err := f.Stat(); err != nil || fi.Size() != size {
				t.Errorf("size after ZeroRange = %v, %v; want %d", fi.Size(), err, size)
			}
		})
	}
}

func TestZeroRangeFileGrows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "image")
	orig := pattern(10000)
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := ZeroRange(f, 5000, 20000); err != nil {
		t.Fatal(err)
	}
	checkZeroed(t, f, append(orig, make([]byte, 15000)...), 5000, 20000)
	if fi, _ := f.Stat(); fi.Size() != 25000 {
		t.Errorf("size = %d, want 25000", fi.Size())
	}
}

func TestWriteZeros(t *testing.T) {
	orig := pattern(3<<20 + 7)
	path := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(path, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := writeZeros(f, 3, int64(len(orig))-2); err != nil {
		t.Fatal(err)
	}
	checkZeroed(t, f, orig, 3, int64(len(orig))-5)
}

func TestZeroRangeLoop(t *testing.T) {
	const size = 8 << 20
	orig := pattern(size)
	for _, sector := range []int{512, 4096} {
		for _, r := range zeroRanges {
			t.Run(fmt.Sprintf("sector%d/%d+%d", sector, r.off, r.length), func(t *testing.T) {
				img := devicetest.Image(t, 0)
				if err := os.WriteFile(img, orig, 0o600); err != nil {
					t.Fatal(err)
				}
				dev := devicetest.Attach(t, img, "--sector-size", strconv.Itoa(sector))
				f, err := os.OpenFile(dev, os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if err := ZeroRange(f, r.off, r.length); err != nil {
					t.Fatal(err)
				}
				checkZeroed(t, f, orig, r.off, r.length)

				// And through the backing file, once the device is synced.
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
				bf, err := os.Open(img)
				if err != nil {
					t.Fatal(err)
				}
				defer bf.Close()
				checkZeroed(t, bf, orig, r.off, r.length)
			})
		}
	}
}

func TestZeroRangeErrors(t *testing.T) {
	img := devicetest.Image(t, 1<<20)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, r := range []struct{ off, length int64 }{{-1, 1}, {0, -1}, {1, 1<<63 - 1}} {
		if err := ZeroRange(f, r.off, r.length); err == nil {
			t.Errorf("ZeroRange(%d, %d) succeeded", r.off, r.length)
		}
	}
	null, err := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if err := ZeroRange(null, 0, 1); !errors.Is(err, ErrNotBlockOrFile) {
		t.Errorf("ZeroRange(/dev/null) = %v, want ErrNotBlockOrFile", err)
	}

	dev := devicetest.Attach(t, img)
	d, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := ZeroRange(d, 1<<20-512, 1024); err == nil {
		t.Error("ZeroRange past the end of the device succeeded")
	}
}

// TestBlkZeroOut checks that the fast path itself works on a loop device,
// so the loop tests above are not passing on the fallback alone.
func TestBlkZeroOut(t *testing.T) {
	orig := pattern(1 << 20)
	img := devicetest.Image(t, 0)
	if err := os.WriteFile(img, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(devicetest.Attach(t, img), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := blkZeroOut(f, 4096, 8192); err != nil {
		t.Fatal(err)
	}
	checkZeroed(t, f, orig, 4096, 8192)
	if err := blkZeroOut(f, 100, 512); err == nil {
		t.Error("BLKZEROOUT of an unaligned range succeeded")
	}
}

// TestZeroRangeWriteOnlyExclusive zeroes through the kind of handle a
// restore holds: write-only and exclusive.
func TestZeroRangeWriteOnlyExclusive(t *testing.T) {
	orig := pattern(1 << 20)
	img := devicetest.Image(t, 0)
	if err := os.WriteFile(img, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	dev := devicetest.Attach(t, img)
	f, err := os.OpenFile(dev, os.O_WRONLY|os.O_EXCL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := ZeroRange(f, 1000, 100000); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkZeroed(t, r, orig, 1000, 100000)
}
