package resync_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/resync"
	"github.com/seedship/seedship/verify"
)

// wantCheck fails unless err is a one-line *CheckError for condition
// whose message contains every one of names.
func wantCheck(t *testing.T, err error, condition string, names ...string) {
	t.Helper()
	var ce *resync.CheckError
	if !errors.As(err, &ce) || !errors.Is(err, resync.ErrCheck) {
		t.Fatalf("want a CheckError (%s), got %v", condition, err)
	}
	msg := err.Error()
	if ce.Condition != condition || !strings.HasPrefix(msg, "check failed: "+condition+": ") || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want one line naming the condition %q", msg, condition)
	}
	for _, n := range names {
		if !strings.Contains(msg, n) {
			t.Errorf("error %q does not name %q", msg, n)
		}
	}
}

func TestCheckToken(t *testing.T) {
	start := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		token *resync.Token
		start time.Time
		cond  string
		names []string
	}{
		{"mark before the capture", &resync.Token{Adapter: "drbd", Mark: start.Add(-time.Minute)}, start, "", nil},
		{"mark at the capture start", &resync.Token{Adapter: "drbd", Mark: start}, start, "", nil},
		{"mark in another zone, same instant", &resync.Token{Adapter: "drbd", Mark: start.In(time.FixedZone("X", 3600))}, start, "", nil},
		{"mark after the capture", &resync.Token{Adapter: "drbd", Mark: start.Add(time.Second)}, start, resync.CondMark,
			[]string{"2026-12-03T10:00:01Z", "1s after the capture start 2026-12-03T10:00:00Z", "neither the seed nor the change map", "capture again"}},
		{"no token", nil, start, resync.CondToken, []string{"no seed token", "--adapter drbd"}},
		{"another adapter's token", &resync.Token{Adapter: "sios", Mark: start}, start, resync.CondToken, []string{`"sios"`, `"drbd"`}},
		{"no mark", &resync.Token{Adapter: "drbd"}, start, resync.CondMark, []string{"no mark point"}},
		{"no capture start", &resync.Token{Adapter: "drbd", Mark: start}, time.Time{}, resync.CondMark, []string{"no capture start"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := resync.CheckToken(tc.token, "drbd", tc.start)
			if tc.cond == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCheck(t, err, tc.cond, tc.names...)
		})
	}
}

// receiptFor is a passing receipt for image and target.
func receiptFor(image verify.ReceiptImage, target verify.Target) *verify.Receipt {
	now := time.Now().UTC()
	return &verify.Receipt{Format: verify.ReceiptFormat, Version: verify.ReceiptVersion, Image: image, Target: target,
		Result: verify.ReceiptResult{Status: verify.StatusPass, ChunksOK: image.Chunks, BytesChecked: image.Size,
			Checked: []verify.CheckKind{verify.CheckChunkHashes, verify.CheckSourceSHA256}, SourceSHA256: image.SourceSHA256},
		Started: now, Finished: now}
}

func TestCheckReceipt(t *testing.T) {
	image := verify.ReceiptImage{Location: "dir:/seed", ID: strings.Repeat("a", 32), ManifestSHA256: strings.Repeat("b", 64),
		Size: 1 << 20, Chunks: 1, SourceSHA256: strings.Repeat("c", 64)}
	target := verify.Target{Path: "/dev/loop3", Resolved: "/dev/loop3", Kind: verify.KindBlock, Size: 1 << 20, Major: 7, Minor: 3,
		Writes: "100 0", BootID: "boot1"}
	for _, tc := range []struct {
		name     string
		edit     func(r *verify.Receipt, now *verify.Target)
		reverify bool // CheckReceipt without the target
		cond     string
		differs  bool
		names    []string
	}{
		{"matching", func(*verify.Receipt, *verify.Target) {}, false, "", false, nil},
		{"another image", func(r *verify.Receipt, _ *verify.Target) {
			r.Image.ManifestSHA256, r.Image.ID = strings.Repeat("d", 64), strings.Repeat("e", 32)
		}, false, resync.CondReceipt, false, []string{"r.json is for another image", strings.Repeat("d", 64)}},
		{"another version of the image", func(r *verify.Receipt, _ *verify.Target) { r.Image.ManifestSHA256 = strings.Repeat("d", 64) },
			false, resync.CondReceipt, false, []string{"another version of this image"}},
		{"failed, differs", func(r *verify.Receipt, _ *verify.Target) {
			r.Result.Status, r.Result.Reason, r.Result.Differs = verify.StatusFail, "3 chunk(s) of the target differ", true
		}, false, resync.CondReceipt, true, []string{"failed read-back", "3 chunk(s)", "restore"}},
		{"failed, unfinished", func(r *verify.Receipt, _ *verify.Target) {
			r.Result.Status, r.Result.Reason = verify.StatusFail, "the read-back did not finish: context canceled"
		}, false, resync.CondReceipt, false, []string{"did not finish"}},
		{"another device", func(_ *verify.Receipt, now *verify.Target) {
			now.Path, now.Resolved, now.Minor = "/dev/loop4", "/dev/loop4", 4
		},
			false, resync.CondIdentity, false, []string{"/dev/loop4 is not the target of receipt r.json", "/dev/loop3"}},
		{"same path, another device", func(_ *verify.Receipt, now *verify.Target) { now.Minor = 9 },
			false, resync.CondIdentity, false, []string{"device 7:9", "7:3"}},
		{"written since", func(_ *verify.Receipt, now *verify.Target) { now.Writes = "108 0" },
			false, resync.CondUnwritten, false, []string{"counters moved", "--reverify"}},
		{"written since, reverifying", func(_ *verify.Receipt, now *verify.Target) { now.Writes = "108 0" }, true, "", false, nil},
		{"another device after a restart, reverifying", func(_ *verify.Receipt, now *verify.Target) { now.Minor, now.BootID = 9, "boot2" }, true, "", false, nil},
		{"another image, reverifying", func(r *verify.Receipt, _ *verify.Target) { r.Image.ManifestSHA256 = strings.Repeat("d", 64) },
			true, resync.CondReceipt, false, []string{"another version of this image"}},
		{"another boot", func(_ *verify.Receipt, now *verify.Target) { now.BootID = "boot2" },
			false, resync.CondUnwritten, false, []string{"restarted", "--reverify"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, now := receiptFor(image, target), target
			tc.edit(r, &now)
			var err error
			if tc.reverify {
				err = resync.CheckReceipt("r.json", r, image, nil)
			} else {
				err = resync.CheckReceipt("r.json", r, image, &now)
			}
			if tc.cond == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantCheck(t, err, tc.cond, tc.names...)
			var ce *resync.CheckError
			if errors.As(err, &ce) && ce.Differs != tc.differs {
				t.Errorf("Differs = %v, want %v", ce.Differs, tc.differs)
			}
		})
	}
}

func TestLoadReceipt(t *testing.T) {
	d := t.TempDir()
	image := verify.ReceiptImage{Location: "dir:/seed", ID: strings.Repeat("a", 32), ManifestSHA256: strings.Repeat("b", 64),
		Size: 1 << 20, Chunks: 1, SourceSHA256: strings.Repeat("c", 64)}
	good, err := receiptFor(image, verify.Target{Path: "/dev/loop3", Resolved: "/dev/loop3", Kind: verify.KindBlock, Size: 1 << 20}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if r, err := resync.LoadReceipt(write("good.json", good)); err != nil || !r.Passed() {
		t.Fatalf("LoadReceipt of a good receipt: %v, %v", r, err)
	}
	for _, tc := range []struct {
		name, path string
		names      []string
	}{
		{"missing", filepath.Join(d, "none.json"), []string{"none.json does not exist", "verify --device TARGET --receipt"}},
		{"directory", d, []string{"is not a regular file"}},
		{"malformed", write("bad.json", good[:len(good)/2]), []string{"bad.json is not usable", "unexpected EOF"}},
		{"not a receipt", write("other.json", []byte(`{"adapter":"drbd"}`)), []string{`unknown field "adapter"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := resync.LoadReceipt(tc.path)
			wantCheck(t, err, resync.CondReceipt, tc.names...)
		})
	}
}

// TestCheckNotInUse: on real loop devices, a mounted target and a target
// with a holder (a device-mapper device over it) are refused, naming
// what uses them; an idle one passes.
func TestCheckNotInUse(t *testing.T) {
	devicetest.RequireLoop(t)
	idle := devicetest.Attach(t, devicetest.Image(t, 4<<20))
	if err := resync.CheckNotInUse(idle); err != nil {
		t.Fatalf("idle loop device: %v", err)
	}

	t.Run("mounted", func(t *testing.T) {
		dev := devicetest.Attach(t, devicetest.Image(t, 16<<20))
		devicetest.Mkfs(t, "ext4", dev)
		mnt := devicetest.Mount(t, dev)
		wantCheck(t, resync.CheckNotInUse(dev), resync.CondNotInUse, dev+" is mounted on "+mnt, "umount")
	})
	t.Run("holder", func(t *testing.T) {
		if _, err := exec.LookPath("dmsetup"); err != nil {
			t.Skip("needs dmsetup (apt-get install dmsetup): skipping the real holder test")
		}
		dev := devicetest.Attach(t, devicetest.Image(t, 4<<20))
		name := "seedship-h6-" + filepath.Base(dev)
		if out, err := exec.Command("dmsetup", "create", name, "--table", "0 8192 linear "+dev+" 0").CombinedOutput(); err != nil {
			t.Skipf("device-mapper unavailable (dmsetup create: %v: %s): skipping the real holder test", err, strings.TrimSpace(string(out)))
		}
		t.Cleanup(func() { devicetest.Run(t, "dmsetup", "remove", name) })
		wantCheck(t, resync.CheckNotInUse(dev), resync.CondNotInUse, dev+" is held by dm-", name)
	})
	t.Run("missing", func(t *testing.T) {
		wantCheck(t, resync.CheckNotInUse(filepath.Join(t.TempDir(), "none")), resync.CondNotInUse, "none")
	})
}
