package engine_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store/storetest/memstore"
)

// TestRestoreDroppedLinkIsResumable: a restore whose image stops serving
// one segment (a link that stays down after the store's retries) fails as
// resumable work, keeps the file it created, and the same restore with
// Resume completes it, reading only what is missing.
func TestRestoreDroppedLinkIsResumable(t *testing.T) {
	t.Parallel()
	data, st, _, m := multiSegmentImage(t)
	mem := memstore.New()
	if _, err := engine.Copy(context.Background(), st, mem, engine.CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	faulty := memstore.NewFaulty(mem)
	faulty.Add(memstore.Rule{Op: memstore.OpGet, Key: format.DataID(2).Key(), Kind: memstore.Cut, At: 4096})
	target := filepath.Join(t.TempDir(), "target.img")
	_, err := engine.Restore(context.Background(), faulty, target, engine.RestoreOptions{Workers: 1, Readers: 1})
	if engine.KindOf(err) != engine.KindResumable || !errors.Is(err, memstore.ErrInjected) {
		t.Fatalf("Restore over a dropped link: %v (kind %v), want resumable", err, engine.KindOf(err))
	}
	if _, serr := os.Stat(target); serr != nil {
		t.Fatalf("a resumable failure removed the target: %v", serr)
	}
	faulty.Reset()
	cs := &countingStore{Store: mem}
	res, err := engine.Restore(context.Background(), cs, target, engine.RestoreOptions{Resume: true})
	if err != nil {
		t.Fatalf("resumed Restore: %v", err)
	}
	if got := readTarget(t, target); !bytes.Equal(got, data) {
		t.Fatal("target differs from the source after resuming")
	}
	if res.InPlace == 0 || cs.read.Load() >= m.Header.StoredBytes {
		t.Errorf("resume found %d chunks in place and read %d bytes of %d: it started over", res.InPlace, cs.read.Load(), m.Header.StoredBytes)
	}
}

// TestRestoreTargetFullIsResumable: a restore onto a file system that
// runs out of space fails as resumable work and keeps what it wrote.
func TestRestoreTargetFullIsResumable(t *testing.T) {
	devicetest.RequireLoop(t)
	data, st, _, _ := multiSegmentImage(t)
	dev := devicetest.Attach(t, devicetest.Image(t, 3<<20))
	devicetest.Mkfs(t, "ext4", dev)
	mnt := devicetest.Mount(t, dev)
	target := filepath.Join(mnt, "target.img")
	_, err := engine.Restore(context.Background(), st, target, engine.RestoreOptions{})
	if engine.KindOf(err) != engine.KindResumable {
		t.Fatalf("Restore of %d bytes onto a 3 MiB file system: %v (kind %v), want resumable", len(data), err, engine.KindOf(err))
	}
	if _, serr := os.Stat(target); serr != nil {
		t.Errorf("a restore that ran out of space removed what it wrote: %v", serr)
	}
}
