package engine_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/engine"
)

// TestDeltaOntoLoopDevice applies a delta of a grown source, with a range
// zeroed (BLKZEROOUT on a device), onto a real block device: restored from
// the base, applied twice, and refused once the device holds other bytes.
func TestDeltaOntoLoopDevice(t *testing.T) {
	devicetest.RequireLoop(t)
	const B = 64 * kib
	base := randBytes(21, 128*B)
	clear(base[10*B : 20*B])
	changed := changedCopy(base, 144*B, 4, [2]int{B, B + 1}, [2]int{15 * B, 15*B + 7}, [2]int{130 * B, 131 * B})
	clear(changed[60*B : 62*B])
	baseSt := dirStore(t, "base")
	captureStore(t, writeSource(t, base), baseSt, engine.CaptureOptions{})
	deltaSt := dirStore(t, "delta")
	if _, err := deltaInto(t, baseSt, writeSource(t, changed), deltaSt, engine.DeltaOptions{}); err != nil {
		t.Fatal(err)
	}
	dev := devicetest.Attach(t, devicetest.Image(t, int64(len(changed))))
	if _, err := engine.Restore(context.Background(), baseSt, dev, engine.RestoreOptions{}); err != nil {
		t.Fatalf("restore the base onto %s: %v", dev, err)
	}
	for round := 1; round <= 2; round++ {
		if _, err := engine.Restore(context.Background(), deltaSt, dev, engine.RestoreOptions{}); err != nil {
			t.Fatalf("apply %d onto %s: %v", round, dev, err)
		}
		got := make([]byte, len(changed))
		f, err := os.Open(dev)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.ReadAt(got, 0)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, changed) {
			t.Fatalf("apply %d: %s differs from the changed source", round, dev)
		}
	}
	// Another image's bytes where the delta writes: refused, unchanged.
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(randBytes(77, B), 15*B); err != nil {
		t.Fatal(err)
	}
	f.Close()
	before := fileSHA(t, dev)
	if _, err := engine.Restore(context.Background(), deltaSt, dev, engine.RestoreOptions{}); engine.KindOf(err) != engine.KindBadInput {
		t.Fatalf("apply onto a device not in the base state: %v, want bad input", err)
	}
	if fileSHA(t, dev) != before {
		t.Fatal("the refused device changed")
	}
}
