package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
)

// Tests on real loop devices. devicetest skips them (or fails them, with
// SEEDSHIP_TEST_DISALLOW_SKIP=1) when the machine cannot attach loop
// devices. They do not run in parallel: each attaches its own devices.

// readDevice reads the first n bytes of a block device (or file).
func readDevice(t *testing.T, dev string, n int64) []byte {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		t.Fatalf("reading %d bytes of %s: %v", n, dev, err)
	}
	return b
}

// loopOver writes content to a new backing file and attaches a loop device
// to it.
func loopOver(t *testing.T, content []byte) (dev, backing string) {
	t.Helper()
	devicetest.RequireLoop(t)
	backing = devicetest.Image(t, int64(len(content)))
	if err := os.WriteFile(backing, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return devicetest.Attach(t, backing), backing
}

func TestLoopDevices(t *testing.T) {
	devicetest.RequireLoop(t)
	// 3 MiB + 12345 bytes at 1 MiB chunks: chunk 1 is zero.
	data := append(append(append(randBytes(31, mib), make([]byte, mib)...), textBytes(mib)...), randBytes(32, 12345)...)
	n := int64(len(data))
	src := writeFile(t, filepath.Join(t.TempDir(), "source.img"), data)
	img := captureImage(t, src, "--chunk-size", "1MiB")
	zeroChunk := data[mib : 2*mib]
	if !isZero(zeroChunk) {
		t.Fatal("test source: chunk 1 should be zero")
	}

	t.Run("restore onto a device that is not zeroed", func(t *testing.T) {
		dev, _ := loopOver(t, bytes.Repeat([]byte{0xFF}, 8*mib))
		var ro restoreOut
		decodeJSON(t, must(t, "restore", "--json", img, dev), &ro)
		if ro.SkippedZeros || ro.ZeroedBytes != mib {
			t.Errorf("restore onto a 0xFF device: skipped_zeros %v zeroed_bytes %d; want false and %d", ro.SkippedZeros, ro.ZeroedBytes, mib)
		}
		all := readDevice(t, dev, 8*mib)
		if !bytes.Equal(all[:n], data) {
			t.Errorf("device differs from the source after restore (zero chunk zeroed: %v)", isZero(all[mib:2*mib]))
		}
		if !bytes.Equal(all[n:], bytes.Repeat([]byte{0xFF}, int(8*mib-n))) {
			t.Errorf("restore wrote past the image's %d bytes on the device", n)
		}
		must(t, "verify", "--device", dev, img)
	})

	t.Run("restore --target-zeroed onto a zeroed device", func(t *testing.T) {
		dev, _ := loopOver(t, make([]byte, 4*mib))
		var ro restoreOut
		decodeJSON(t, must(t, "restore", "--json", "--target-zeroed", img, dev), &ro)
		if !ro.SkippedZeros || ro.ZeroedBytes != 0 {
			t.Errorf("--target-zeroed: skipped_zeros %v zeroed_bytes %d; want true and 0", ro.SkippedZeros, ro.ZeroedBytes)
		}
		if !bytes.Equal(readDevice(t, dev, n), data) {
			t.Errorf("device differs from the source after a --target-zeroed restore")
		}
		must(t, "verify", "--device", dev, img)
	})

	t.Run("--target-zeroed leaves zero chunks alone", func(t *testing.T) {
		// The operator's promise is taken at its word: zero chunks are not
		// written, and verify --device finds the lie.
		dev, _ := loopOver(t, bytes.Repeat([]byte{0xFF}, 4*mib))
		must(t, "restore", "--target-zeroed", img, dev)
		got := readDevice(t, dev, n)
		if !bytes.Equal(got[mib:2*mib], bytes.Repeat([]byte{0xFF}, mib)) {
			t.Errorf("--target-zeroed wrote the zero chunk")
		}
		if !bytes.Equal(got[:mib], data[:mib]) || !bytes.Equal(got[2*mib:], data[2*mib:]) {
			t.Errorf("stored chunks differ from the source")
		}
		r := expect(t, exitIntegrity, "verify", "--device", dev, img)
		if got := badChunkLines(r.stderr); !slices.Equal(got, []uint64{1}) {
			t.Errorf("verify --device lists %v, want [1]: %s", got, r)
		}
	})

	t.Run("device smaller than the source", func(t *testing.T) {
		before := randBytes(33, 2*mib)
		dev, _ := loopOver(t, before)
		r := expect(t, exitUsage, "restore", img, dev)
		oneLineError(t, r, dev, strconv.FormatInt(n, 10))
		if !bytes.Equal(readDevice(t, dev, 2*mib), before) {
			t.Errorf("a refused restore changed the device")
		}
		oneLineError(t, expect(t, exitIntegrity, "verify", "--device", dev, img), dev)
	})

	t.Run("device with a mounted filesystem", func(t *testing.T) {
		dev, _ := loopOver(t, make([]byte, 16*mib))
		// No lazy initialisation: nothing writes to the device in the
		// background while it is mounted and idle.
		devicetest.Run(t, "mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev)
		mnt := devicetest.Mount(t, dev)
		marker := writeFile(t, filepath.Join(mnt, "data.txt"), []byte("live data"))
		devicetest.Run(t, "sync")
		before := readDevice(t, dev, 16*mib)

		r := expect(t, exitUsage, "restore", img, dev)
		oneLineError(t, r, dev, mnt)
		expect(t, exitUsage, "restore", "--target-zeroed", img, dev)

		devicetest.Run(t, "sync")
		if !bytes.Equal(readDevice(t, dev, 16*mib), before) {
			t.Errorf("a refused restore changed the mounted device")
		}
		if string(readFile(t, marker)) != "live data" {
			t.Errorf("file on the mounted filesystem changed")
		}

		// Capturing a mounted device is refused too (the filesystem
		// changes while it is read), and nothing is created; the
		// operator can insist.
		dest := filepath.Join(t.TempDir(), "live-seed")
		r = expect(t, exitUsage, "capture", dev, dest)
		oneLineError(t, r, dev, mnt, "--allow-in-use")
		if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused capture created %s", dest)
		}
		expect(t, exitOK, "capture", "--quiet", "--allow-in-use", dev, dest)
	})

	t.Run("capture from a device, restore onto it", func(t *testing.T) {
		dev, backing := loopOver(t, append(bytes.Clone(data), make([]byte, 4*mib-n)...))
		devImg := captureImage(t, dev, "--chunk-size", "1MiB")
		var info imageInfo
		decodeJSON(t, must(t, "info", "--json", devImg), &info)
		want := append(bytes.Clone(data), make([]byte, 4*mib-n)...)
		if info.Source.Kind != "block" || info.Size != 4*mib || info.SHA256 != shaHex(want) {
			t.Errorf("capture of %s: kind %q size %d sha256 %s; want block, %d, %s", dev, info.Source.Kind, info.Size, info.SHA256, 4*mib, shaHex(want))
		}
		// Round trip to a file.
		out := filepath.Join(t.TempDir(), "copy.img")
		must(t, "restore", devImg, out)
		if !bytes.Equal(readFile(t, out), want) {
			t.Errorf("restore of a device capture differs from the device")
		}
		// Onto its own source, by device and by the file behind it.
		for _, target := range []string{dev, backing} {
			oneLineError(t, expect(t, exitUsage, "restore", devImg, target), target, "capture source")
		}
		if !bytes.Equal(readDevice(t, dev, 4*mib), want) {
			t.Errorf("a refused restore changed the source device")
		}
	})
}
