//go:build linux

package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/verify"
)

// basicVector returns the manifest of the basic test vector and a copy
// of its source in a temporary directory.
func basicVector(t *testing.T) (*format.Manifest, string, []byte) {
	t.Helper()
	dir := filepath.Join(vectorDir, "basic")
	mb, err := os.ReadFile(filepath.Join(dir, "image", format.ManifestKey))
	if err != nil {
		t.Fatal(err)
	}
	m, err := format.DecodeManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "source.bin"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "target.bin")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return m, src, data
}

// readBack runs Device on path and builds its receipt, as the CLI does.
func readBack(t *testing.T, m *format.Manifest, path string, between func()) *verify.Receipt {
	t.Helper()
	before, err := verify.DescribeTarget(path)
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	rep, err := verify.Device(context.Background(), m, path, verify.DeviceOptions{Workers: 2})
	if between != nil {
		between()
	}
	in := verify.ReceiptInput{Manifest: m, Location: "dir:/images/basic", Before: before, Report: rep, Err: err,
		Tool: "seedship test", Host: "h", Started: started, Finished: time.Now()}
	if after, err := verify.DescribeTarget(path); err == nil {
		in.After = &after
	}
	return verify.NewReceipt(in)
}

// TestNewReceipt: a receipt is a pass only when every chunk and the
// whole-source SHA-256 matched and the target did not change during the
// read-back; every other outcome is a fail with a reason, and a
// difference is marked as such. Each receipt written round-trips through
// ParseReceipt.
func TestNewReceipt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, m *format.Manifest, path string) // before the read-back
		between func(path string)                                   // after it, before the target is described again
		pass    bool
		differs bool
		reason  string
	}{
		{name: "matching target", pass: true},
		{name: "one byte differs", prepare: func(t *testing.T, m *format.Manifest, path string) { flipByte(t, path, 100) },
			differs: true, reason: "chunk(s) of the target differ"},
		{name: "target too small", prepare: func(t *testing.T, m *format.Manifest, path string) {
			if err := os.Truncate(path, m.Header.Size-1); err != nil {
				t.Fatal(err)
			}
		}, differs: true, reason: "smaller than the image"},
		{name: "manifest sha256 wrong", prepare: func(t *testing.T, m *format.Manifest, path string) {
			m.Header.SHA256 = strings.Repeat("0", 64)
		}, differs: true, reason: "whole-source SHA-256"},
		{name: "written during the read-back", between: func(path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err == nil {
				// The same byte: the content matches, but a write happened.
				b := make([]byte, 1)
				r, _ := os.Open(path)
				_, _ = r.ReadAt(b, 0)
				r.Close()
				time.Sleep(10 * time.Millisecond)
				_, _ = f.WriteAt(b, 0)
				f.Close()
			}
		}, reason: "changed during the read-back"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, path, _ := basicVector(t)
			if tc.prepare != nil {
				tc.prepare(t, m, path)
			}
			var between func()
			if tc.between != nil {
				between = func() { tc.between(path) }
			}
			r := readBack(t, m, path, between)
			if r.Passed() != tc.pass || r.Result.Differs != tc.differs || !strings.Contains(r.Result.Reason, tc.reason) {
				t.Fatalf("status %q differs %v reason %q, want pass %v differs %v reason containing %q",
					r.Result.Status, r.Result.Differs, r.Result.Reason, tc.pass, tc.differs, tc.reason)
			}
			if strings.Contains(r.Result.Reason, "\n") {
				t.Errorf("reason is not one line: %q", r.Result.Reason)
			}
			b, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := verify.ParseReceipt(b)
			if err != nil {
				t.Fatalf("ParseReceipt of a receipt NewReceipt made: %v\n%s", err, b)
			}
			if back.Passed() != r.Passed() || back.Image != r.Image || back.Target.Differs(r.Target) != "" {
				t.Errorf("receipt changed in the round trip:\n%+v\n%+v", r, back)
			}
		})
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestNewReceiptInterrupted: a read-back that did not finish is a fail
// that is not a difference.
func TestNewReceiptInterrupted(t *testing.T) {
	m, path, _ := basicVector(t)
	before, err := verify.DescribeTarget(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := verify.Device(ctx, m, path, verify.DeviceOptions{})
	if err == nil {
		t.Fatal("Device with a cancelled context returned no error")
	}
	r := verify.NewReceipt(verify.ReceiptInput{Manifest: m, Before: before, After: &before, Report: rep, Err: err, Started: time.Now(), Finished: time.Now()})
	if r.Passed() || r.Result.Differs || !strings.Contains(r.Result.Reason, "did not finish") {
		t.Fatalf("interrupted read-back: status %q differs %v reason %q", r.Result.Status, r.Result.Differs, r.Result.Reason)
	}
}

// goodReceipt is a passing receipt of the basic vector, as JSON fields.
func goodReceipt(t *testing.T) map[string]any {
	t.Helper()
	m, path, _ := basicVector(t)
	r := readBack(t, m, path, nil)
	if !r.Passed() {
		t.Fatalf("receipt of the basic vector did not pass: %s", r.Result.Reason)
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

func set(obj map[string]any, path string, v any) {
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		obj = obj[k].(map[string]any)
	}
	if v == nil {
		delete(obj, keys[len(keys)-1])
		return
	}
	obj[keys[len(keys)-1]] = v
}

// TestParseReceipt: everything that is not a well-formed receipt is
// refused with one line naming what is wrong, and a pass whose numbers do
// not show a complete check is not accepted as a pass.
func TestParseReceipt(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(obj map[string]any) []byte // nil result: marshal obj
		want string
	}{
		{"valid", func(map[string]any) []byte { return nil }, ""},
		{"not JSON", func(map[string]any) []byte { return []byte("receipt: yes\n") }, "invalid character"},
		{"empty", func(map[string]any) []byte { return []byte{} }, "EOF"},
		{"two objects", func(obj map[string]any) []byte {
			b, _ := json.Marshal(obj)
			return append(append(b, '\n'), b...)
		}, "data after"},
		{"unknown field (a signature this version cannot check)", func(obj map[string]any) []byte {
			obj["signature"] = "c2lnbmVk"
			return nil
		}, `unknown field "signature"`},
		{"other format", func(obj map[string]any) []byte { obj["format"] = "restic-receipt"; return nil }, "format is"},
		{"newer version", func(obj map[string]any) []byte { obj["version"] = 2; return nil }, "version 2"},
		{"short manifest hash", func(obj map[string]any) []byte { set(obj, "image.manifest_sha256", "abcd"); return nil }, "image.manifest_sha256"},
		{"upper-case hash", func(obj map[string]any) []byte {
			set(obj, "image.manifest_sha256", strings.ToUpper(obj["image"].(map[string]any)["manifest_sha256"].(string)))
			return nil
		}, "lowercase hex"},
		{"unknown status", func(obj map[string]any) []byte { set(obj, "result.status", "ok"); return nil }, `result.status is "ok"`},
		{"unknown kind", func(obj map[string]any) []byte { set(obj, "target.kind", "tape"); return nil }, `target.kind is "tape"`},
		{"no path", func(obj map[string]any) []byte { set(obj, "target.path", ""); return nil }, "target.path is missing"},
		{"no time", func(obj map[string]any) []byte { set(obj, "started", nil); return nil }, "time is missing"},
		{"finished before started", func(obj map[string]any) []byte {
			set(obj, "finished", "2000-01-01T00:00:00Z")
			return nil
		}, "before started"},
		{"pass without the source check", func(obj map[string]any) []byte {
			set(obj, "result.checked", []string{"chunk-hashes"})
			return nil
		}, "without both"},
		{"pass over fewer chunks", func(obj map[string]any) []byte {
			set(obj, "result.chunks_ok", obj["result"].(map[string]any)["chunks_ok"].(float64)-1)
			return nil
		}, "chunks"},
		{"pass over fewer bytes", func(obj map[string]any) []byte { set(obj, "result.bytes_checked", 1); return nil }, "bytes"},
		{"pass with another recomputed sum", func(obj map[string]any) []byte {
			set(obj, "result.source_sha256", strings.Repeat("1", 64))
			return nil
		}, "recomputed SHA-256"},
		{"pass that lists a finding", func(obj map[string]any) []byte {
			set(obj, "result.findings", []string{"chunk 0 differs"})
			return nil
		}, "lists a failure"},
		{"fail is a valid receipt", func(obj map[string]any) []byte {
			set(obj, "result.status", "fail")
			set(obj, "result.reason", "1 chunk(s) differ")
			return nil
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := goodReceipt(t)
			data := tc.edit(obj)
			if data == nil {
				var err error
				if data, err = json.Marshal(obj); err != nil {
					t.Fatal(err)
				}
			}
			r, err := verify.ParseReceipt(data)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ParseReceipt: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, verify.ErrBadReceipt) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("ParseReceipt = %+v, %v; want a one-line ErrBadReceipt containing %q", r, err, tc.want)
			}
		})
	}
	if _, err := verify.ParseReceipt(bytes.Repeat([]byte(" "), verify.MaxReceiptSize+1)); !errors.Is(err, verify.ErrBadReceipt) {
		t.Errorf("oversized receipt: %v", err)
	}
}

// TestTargetDiffers: each identity field of a target is compared.
func TestTargetDiffers(t *testing.T) {
	block := verify.Target{Path: "/dev/sdc", Resolved: "/dev/sdc", Kind: verify.KindBlock, Size: 1 << 30, Major: 8, Minor: 32,
		Serial: "S1", WWN: "naa.1", ByID: []string{"/dev/disk/by-id/ata-S1"}, Writes: "10 0", BootID: "b1"}
	file := verify.Target{Path: "t.img", Resolved: "/srv/t.img", Kind: verify.KindFile, Size: 4096, FileDev: 2049, FileInode: 77, MTimeNS: 5, CTimeNS: 6, BootID: "b1"}
	for _, tc := range []struct {
		name string
		base verify.Target
		edit func(*verify.Target)
		want string
	}{
		{"same device", block, func(*verify.Target) {}, ""},
		{"same device, written", block, func(x *verify.Target) { x.Writes = "11 0" }, ""},
		{"same device named by another path", block, func(x *verify.Target) { x.Path = "/dev/disk/by-id/ata-S1" }, ""},
		{"another path", block, func(x *verify.Target) { x.Resolved = "/dev/sdd" }, "receipt names /dev/sdc"},
		{"another size", block, func(x *verify.Target) { x.Size++ }, "bytes"},
		{"another device number", block, func(x *verify.Target) { x.Minor = 48 }, "device 8:48"},
		{"another serial", block, func(x *verify.Target) { x.Serial = "S2" }, "serial"},
		{"another WWN", block, func(x *verify.Target) { x.WWN = "naa.2" }, "WWN"},
		{"another backing file", block, func(x *verify.Target) { x.BackingFile = "/x" }, "loop device"},
		{"no by-id in common", block, func(x *verify.Target) { x.ByID = []string{"/dev/disk/by-id/ata-S9"} }, "by-id"},
		{"a file, not a device", block, func(x *verify.Target) { x.Kind = verify.KindFile }, "is a file"},
		{"same file", file, func(*verify.Target) {}, ""},
		{"another inode", file, func(x *verify.Target) { x.FileInode = 78 }, "another file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := tc.base
			other.ByID = append([]string(nil), tc.base.ByID...)
			tc.edit(&other)
			got := tc.base.Differs(other)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("Differs = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTargetWrittenSince: writes are ruled out only where the kernel can
// show it: the same boot and the same counters, or a file's same times.
func TestTargetWrittenSince(t *testing.T) {
	block := verify.Target{Path: "/dev/sdc", Kind: verify.KindBlock, Writes: "10 0", BootID: "b1"}
	file := verify.Target{Path: "t.img", Kind: verify.KindFile, MTimeNS: 5, CTimeNS: 6}
	for _, tc := range []struct {
		name string
		base verify.Target
		edit func(*verify.Target)
		want string
	}{
		{"unwritten", block, func(*verify.Target) {}, ""},
		{"written", block, func(x *verify.Target) { x.Writes = "18 0" }, "counters moved from 10 0 to 18 0"},
		{"discarded", block, func(x *verify.Target) { x.Writes = "10 8" }, "counters moved"},
		{"another boot", block, func(x *verify.Target) { x.BootID = "b2" }, "restarted"},
		{"no boot id", block, func(x *verify.Target) { x.BootID = "" }, "boot id is unknown"},
		{"no counters", block, func(x *verify.Target) { x.Writes = "" }, "counters of /dev/sdc are unknown"},
		{"file unwritten", file, func(*verify.Target) {}, ""},
		{"file modified", file, func(x *verify.Target) { x.MTimeNS++ }, "modified"},
		{"file changed", file, func(x *verify.Target) { x.CTimeNS++ }, "modified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.base
			tc.edit(&now)
			got := tc.base.WrittenSince(now)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("WrittenSince = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzParseReceipt: ParseReceipt never panics, and whatever it accepts
// encodes and parses again to the same receipt.
func FuzzParseReceipt(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":"seedship-restore-receipt","version":1}`))
	now := time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)
	r := verify.Receipt{Format: verify.ReceiptFormat, Version: verify.ReceiptVersion,
		Image:  verify.ReceiptImage{ID: strings.Repeat("a", 32), ManifestSHA256: strings.Repeat("b", 64), Size: 10, Chunks: 1, SourceSHA256: strings.Repeat("c", 64)},
		Target: verify.Target{Path: "/dev/sdc", Resolved: "/dev/sdc", Kind: verify.KindBlock, Size: 10},
		Result: verify.ReceiptResult{Status: verify.StatusPass, ChunksOK: 1, BytesChecked: 10,
			Checked: []verify.CheckKind{verify.CheckChunkHashes, verify.CheckSourceSHA256}, SourceSHA256: strings.Repeat("c", 64)},
		Started: now, Finished: now}
	b, err := r.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	if _, err := verify.ParseReceipt(b); err != nil {
		f.Fatalf("seed receipt does not parse: %v", err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := verify.ParseReceipt(data)
		if err != nil {
			if !errors.Is(err, verify.ErrBadReceipt) {
				t.Fatalf("error does not wrap ErrBadReceipt: %v", err)
			}
			return
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := verify.ParseReceipt(b)
		if err != nil {
			t.Fatalf("accepted receipt does not parse again: %v\n%s", err, b)
		}
		if fmt.Sprint(*again) != fmt.Sprint(*r) {
			t.Fatalf("round trip changed the receipt:\n%+v\n%+v", *r, *again)
		}
	})
}
