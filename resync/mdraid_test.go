package resync

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
)

// mdEnv is one mdraid test's world: fake mdadm and readlink, a temporary
// /proc/mdstat, a session.
type mdEnv struct {
	t     *testing.T
	tools *scriptedTools
	root  string
	cfg   *Config
	out   *bytes.Buffer
}

const mdSeedPath = "/dev/disk/by-id/ata-SEED-01"

func newMDEnv(t *testing.T, mdstat, section string) *mdEnv {
	t.Helper()
	e := &mdEnv{t: t, tools: newScriptedTools(t, "mdadm", "readlink"), root: t.TempDir(), out: &bytes.Buffer{}}
	scriptedMust(t, os.WriteFile(filepath.Join(e.root, "mdstat"), []byte(mdstat), 0o644))
	bin, err := json.Marshal(e.tools.bin)
	scriptedMust(t, err)
	if section != "" {
		section = ", " + section
	}
	conf := fmt.Sprintf(`{"adapter": "mdraid", "bin": %s, "mdraid": {"array": "/dev/md0", "member": %q, "proc_mdstat": %q%s}}`, bin, mdSeedPath, filepath.Join(e.root, "mdstat"), section)
	e.cfg, err = ParseConfig("test.json", []byte(conf))
	scriptedMust(t, err)
	e.tools.
		on([]string{"readlink", "-f", "--", "/dev/md0"}, scriptedOK("/dev/md0\n")).
		on([]string{"readlink", "-f", "--", mdSeedPath}, scriptedOK("/dev/sdd\n")).
		on([]string{"readlink", "-f", "--", "/dev/sdh"}, scriptedOK("/dev/sdh\n"))
	return e
}

func (e *mdEnv) run(capture bool, dryRun bool, tok *Token) (*Token, error) {
	e.t.Helper()
	a, err := New(e.cfg)
	scriptedMust(e.t, err)
	s := NewSession(e.cfg, e.out, dryRun)
	s.Now = func() time.Time { return time.Date(2026, 12, 3, 10, 15, 0, 0, time.UTC) }
	if capture {
		var raw json.RawMessage
		err := RunCapture(context.Background(), a, s, captureThat(nil, &raw))
		if err != nil || raw == nil {
			return nil, err
		}
		return ParseToken(raw)
	}
	return nil, RunExtend(context.Background(), a, s, tok, "/dev/sdh")
}

func TestMDRaidCaptureSequence(t *testing.T) {
	e := newMDEnv(t, mdstatFull, "")
	e.tools.
		on([]string{"mdadm", "--detail", "/dev/md0"}, scriptedOK(mdDetailFull), scriptedOK(mdDetailFull), scriptedOK(mdDetailDegraded)).
		on([]string{"mdadm", "/dev/md0", "--fail", mdSeedPath, "--remove", mdSeedPath}, scriptedAnswer{Stderr: "mdadm: set /dev/sdd faulty in /dev/md0\nmdadm: hot removed /dev/sdd from /dev/md0\n"}).
		on([]string{"mdadm", "--examine", mdSeedPath}, scriptedOK(mdExamineSeed))
	tok, err := e.run(true, false, nil)
	if err != nil {
		t.Fatalf("capture: %v\n%s", err, e.out)
	}
	want := []string{
		"mdadm --detail /dev/md0",
		"readlink -f -- /dev/md0",
		"readlink -f -- " + mdSeedPath,
		"mdadm --detail /dev/md0",
		"readlink -f -- /dev/md0",
		"mdadm /dev/md0 --fail " + mdSeedPath + " --remove " + mdSeedPath,
		"mdadm --detail /dev/md0",
		"mdadm --examine " + mdSeedPath,
		"mdadm --detail /dev/md0",
	}
	if d := scriptedDiff(e.tools.calls(), want); d != "" {
		t.Error(d)
	}
	wantFields := map[string]string{"array_uuid": "3aaa0122:29827cfa:5331ad66:ca767371", "device_uuid": "9d1c7e2a:4f6b8c3d:a1e2f3b4:c5d6e7f8", "role": "2", "events": "1843", "array_events": "2210", "metadata": "1.2", "array": "/dev/md0"}
	for k, v := range wantFields {
		if tok.Fields[k] != v {
			t.Errorf("token %s = %q, want %q", k, tok.Fields[k], v)
		}
	}
	if strings.Contains(e.out.String(), "WARNING") {
		t.Errorf("a 4 MiB chunk on 10 GiB warned:\n%s", e.out)
	}
}

func TestMDRaidCaptureRefusals(t *testing.T) {
	rebuilding := strings.Replace(mdDetailFull, "active sync   /dev/sdd", "spare rebuilding   /dev/sdd", 1)
	lonely := strings.NewReplacer("active sync   /dev/sdb", "faulty   /dev/sdb", "active sync   /dev/sdc", "faulty   /dev/sdc").Replace(mdDetailFull)
	notMember := strings.Replace(mdDetailFull, "/dev/sdd", "/dev/sde", 1)
	raid5 := strings.Replace(mdDetailFull, "Raid Level : raid1", "Raid Level : raid5", 1)
	noBitmap := strings.Replace(mdDetailFull, "     Intent Bitmap : Internal\n", "", 1)
	tests := []struct {
		name, detail, mdstat, section, want string
	}{
		{"member rebuilding", rebuilding, mdstatFull, "", "not an active in-sync member"},
		{"recovery running", mdDetailFull, mdstatRecovering, "", "running a recovery"},
		{"last in-sync member", lonely, mdstatFull, "", "only in-sync member"},
		{"not a member", notMember, mdstatFull, "", "is not a member of /dev/md0"},
		{"raid5", raid5, mdstatFull, "", "is raid5"},
		{"no bitmap", noBitmap, mdstatFull, "", "no write-intent bitmap"},
		{"array not running", mdDetailFull, "Personalities : [raid1]\nunused devices: <none>\n", "", "is not in"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMDEnv(t, tt.mdstat, tt.section)
			e.tools.on([]string{"mdadm", "--detail", "/dev/md0"}, scriptedOK(tt.detail)).onPrefix([]string{"mdadm"})
			_, err := e.run(true, false, nil)
			var ce *CheckError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a check containing %q", err, tt.want)
			}
			for _, c := range e.tools.calls() {
				if strings.Contains(c, "--fail") || strings.Contains(c, "--remove") {
					t.Errorf("changing command after a failed check: %s", c)
				}
			}
		})
	}
}

func TestMDRaidCoarseBitmapWarning(t *testing.T) {
	tests := []struct {
		name, mdstat, section, want string
	}{
		{"64 MiB chunk", mdstatCoarse, "", "160 chunks of 64 MiB"},
		{"few chunks", strings.Replace(mdstatFull, "10475520 blocks", "2097152 blocks", 1), "", "512 chunks of 4 MiB"},
		{"threshold configured", mdstatFull, `"coarse_chunk_bytes": 4194304`, "2558 chunks of 4 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMDEnv(t, tt.mdstat, tt.section)
			e.tools.on([]string{"mdadm", "--detail", "/dev/md0"}, scriptedOK(mdDetailFull))
			a, err := New(e.cfg)
			scriptedMust(t, err)
			s := NewSession(e.cfg, e.out, false)
			if err := a.Preflight(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(e.out.String(), "WARNING: /dev/md0's write-intent bitmap is coarse: "+tt.want) {
				t.Errorf("step log:\n%s", e.out)
			}
			if !strings.Contains(e.out.String(), "--bitmap-chunk=4M") {
				t.Errorf("the warning does not say what to do:\n%s", e.out)
			}
		})
	}
}

// mdSeedToken is the token of TestMDRaidCaptureSequence.
func mdSeedToken() *Token {
	return &Token{Adapter: "mdraid", Mark: time.Date(2026, 12, 3, 10, 15, 0, 0, time.UTC), Fields: map[string]string{
		"array": "/dev/md0", "array_uuid": "3aaa0122:29827cfa:5331ad66:ca767371", "device_uuid": "9d1c7e2a:4f6b8c3d:a1e2f3b4:c5d6e7f8",
		"role": "2", "events": "1843", "array_events": "2210", "metadata": "1.2", "member": mdSeedPath,
	}}
}

// The restored seed, seen on the array's system as /dev/sdh.
var mdExamineTarget = strings.Replace(mdExamineSeed, "/dev/sdd:", "/dev/sdh:", 1)

func TestMDRaidExtendSequence(t *testing.T) {
	e := newMDEnv(t, mdstatDegraded, "")
	e.tools.
		on([]string{"mdadm", "--detail", "/dev/md0"}, scriptedOK(mdDetailDegraded), scriptedOK(mdDetailDegraded), scriptedOK(mdDetailReAdded)).
		on([]string{"mdadm", "--examine", "/dev/sdh"}, scriptedOK(mdExamineTarget)).
		on([]string{"mdadm", "--examine-bitmap", "/dev/sdb"}, scriptedOK(mdBitmapDegraded)).
		on([]string{"mdadm", "/dev/md0", "--re-add", "/dev/sdh"}, scriptedAnswer{Stderr: "mdadm: re-added /dev/sdh\n"})
	if _, err := e.run(false, false, mdSeedToken()); err != nil {
		t.Fatalf("extend: %v\n%s", err, e.out)
	}
	want := []string{
		"mdadm --detail /dev/md0",
		"readlink -f -- /dev/md0",
		"readlink -f -- /dev/sdh",
		"readlink -f -- /dev/md0",
		"mdadm --examine /dev/sdh",
		"mdadm --detail /dev/md0",
		"mdadm --examine-bitmap /dev/sdb",
		"mdadm /dev/md0 --re-add /dev/sdh",
		"readlink -f -- /dev/sdh",
		"mdadm --detail /dev/md0",
	}
	if d := scriptedDiff(e.tools.calls(), want); d != "" {
		t.Error(d)
	}
	if !strings.Contains(e.out.String(), "/dev/sdh is back in slot 2 of /dev/md0 (spare rebuilding)") {
		t.Errorf("step log:\n%s", e.out)
	}
}

func TestMDRaidExtendReAddAsSpareFails(t *testing.T) {
	e := newMDEnv(t, mdstatDegraded, "")
	e.tools.
		on([]string{"mdadm", "--detail", "/dev/md0"}, scriptedOK(mdDetailDegraded), scriptedOK(mdDetailDegraded), scriptedOK(mdDetailSpare)).
		on([]string{"mdadm", "--examine", "/dev/sdh"}, scriptedOK(mdExamineTarget)).
		on([]string{"mdadm", "--examine-bitmap", "/dev/sdb"}, scriptedOK(mdBitmapDegraded)).
		on([]string{"mdadm", "/dev/md0", "--re-add", "/dev/sdh"})
	_, err := e.run(false, false, mdSeedToken())
	if !errors.Is(err, ErrStep) || !strings.Contains(err.Error(), "not into slot 2") {
		t.Fatalf("err = %v", err)
	}
}

func TestMDRaidExtendReAddRefusedByMdadm(t *testing.T) {
	e := newMDEnv(t, mdstatDegraded, "")
	e.tools.
		on([]string{"mdadm", "--detail", "/dev/md0"}, scriptedOK(mdDetailDegraded)).
		on([]string{"mdadm", "--examine", "/dev/sdh"}, scriptedOK(mdExamineTarget)).
		on([]string{"mdadm", "--examine-bitmap", "/dev/sdb"}, scriptedOK(mdBitmapDegraded)).
		on([]string{"mdadm", "/dev/md0", "--re-add", "/dev/sdh"}, scriptedFail(1, "mdadm: --re-add for /dev/sdh to /dev/md0 is not possible"))
	_, err := e.run(false, false, mdSeedToken())
	if !errors.Is(err, ErrStep) || !strings.Contains(err.Error(), "is not possible") || !strings.Contains(err.Error(), "never --add") {
		t.Fatalf("err = %v", err)
	}
	for _, c := range e.tools.calls() {
		if strings.Contains(c, "--add") && !strings.Contains(c, "--re-add") {
			t.Errorf("fell back to %s", c)
		}
	}
}

// No extend after a failed check.
func TestMDRaidExtendRefusals(t *testing.T) {
	slotTaken := strings.Replace(mdDetailDegraded, "       -       0        0        2      removed", "       4       8      128        2      active sync   /dev/sdi", 1)
	twoSlots := strings.Replace(mdDetailDegraded, "Raid Devices : 3", "Raid Devices : 2", 1)
	otherArray := strings.Replace(mdDetailDegraded, "UUID : 3aaa0122:29827cfa:5331ad66:ca767371", "UUID : 11112222:33334444:55556666:77778888", 1)
	tests := []struct {
		name, mdstat, detail, examine, bitmap, want string
		differs                                     bool
	}{
		{"assembled", mdstatAssembled, mdDetailDegraded, mdExamineTarget, mdBitmapDegraded, "is a member of md127", false},
		{"events ahead", mdstatDegraded, mdDetailDegraded, strings.Replace(mdExamineTarget, "Events : 1843", "Events : 2300", 1), mdBitmapDegraded, "ahead of /dev/md0's", true},
		{"events changed", mdstatDegraded, mdDetailDegraded, strings.Replace(mdExamineTarget, "Events : 1843", "Events : 1900", 1), mdBitmapDegraded, "changed since the capture", true},
		{"other array's disk", mdstatDegraded, mdDetailDegraded, strings.Replace(mdExamineTarget, "3aaa0122:29827cfa", "3aaa0122:29827cfb", 1), mdBitmapDegraded, "belongs to array", true},
		{"other member", mdstatDegraded, mdDetailDegraded, strings.Replace(mdExamineTarget, "9d1c7e2a", "9d1c7e2b", 1), mdBitmapDegraded, "the seed was 9d1c7e2a", true},
		{"other slot", mdstatDegraded, mdDetailDegraded, strings.Replace(mdExamineTarget, "Active device 2", "Active device 1", 1), mdBitmapDegraded, "is slot 1", true},
		{"slot taken", mdstatDegraded, slotTaken, mdExamineTarget, mdBitmapDegraded, "held by /dev/sdi", false},
		{"array shrunk", mdstatDegraded, twoSlots, mdExamineTarget, mdBitmapDegraded, "has 2 slots", false},
		{"other array", mdstatDegraded, otherArray, mdExamineTarget, mdBitmapDegraded, "is array 11112222", false},
		{"bitmap cleared since", mdstatDegraded, mdDetailDegraded, mdExamineTarget, strings.Replace(mdBitmapDegraded, "Events Cleared : 1843", "Events Cleared : 2001", 1), "cleared at event 2001", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMDEnv(t, tt.mdstat, "")
			e.tools.
				on([]string{"mdadm", "--detail", "/dev/md0"}, scriptedOK(tt.detail)).
				on([]string{"mdadm", "--examine", "/dev/sdh"}, scriptedOK(tt.examine)).
				on([]string{"mdadm", "--examine-bitmap", "/dev/sdb"}, scriptedOK(tt.bitmap)).
				onPrefix([]string{"mdadm"})
			_, err := e.run(false, false, mdSeedToken())
			var ce *CheckError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a check containing %q", err, tt.want)
			}
			if ce.Differs != tt.differs {
				t.Errorf("Differs = %v, want %v", ce.Differs, tt.differs)
			}
			for _, c := range e.tools.calls() {
				if strings.Contains(c, "--re-add") {
					t.Errorf("extend after a failed check: %s", c)
				}
			}
		})
	}
}

func TestMDRaidDryRunTouchesNothing(t *testing.T) {
	readOnly := func(c string) bool {
		return strings.HasPrefix(c, "readlink ") || strings.HasPrefix(c, "mdadm --detail ") ||
			strings.HasPrefix(c, "mdadm --examine ") || strings.HasPrefix(c, "mdadm --examine-bitmap ")
	}
	t.Run("capture", func(t *testing.T) {
		e := newMDEnv(t, mdstatFull, "")
		e.tools.
			on([]string{"mdadm", "--detail", "/dev/md0"}, scriptedOK(mdDetailFull)).
			on([]string{"mdadm", "--examine", mdSeedPath}, scriptedOK(mdExamineSeed))
		before := treeSum(t, e.root)
		if _, err := e.run(true, true, nil); err != nil {
			t.Fatalf("dry run: %v\n%s", err, e.out)
		}
		for _, c := range e.tools.calls() {
			if !readOnly(c) {
				t.Errorf("dry run ran %s", c)
			}
		}
		if treeSum(t, e.root) != before {
			t.Error("dry run changed the tree")
		}
		if !strings.Contains(e.out.String(), "would run "+e.tools.bin["mdadm"]+" /dev/md0 --fail "+mdSeedPath+" --remove "+mdSeedPath) {
			t.Errorf("dry run does not print the removal:\n%s", e.out)
		}
	})
	t.Run("extend", func(t *testing.T) {
		e := newMDEnv(t, mdstatDegraded, "")
		e.tools.
			on([]string{"mdadm", "--detail", "/dev/md0"}, scriptedOK(mdDetailDegraded)).
			on([]string{"mdadm", "--examine", "/dev/sdh"}, scriptedOK(mdExamineTarget)).
			on([]string{"mdadm", "--examine-bitmap", "/dev/sdb"}, scriptedOK(mdBitmapDegraded))
		before := treeSum(t, e.root)
		if _, err := e.run(false, true, mdSeedToken()); err != nil {
			t.Fatalf("dry run: %v\n%s", err, e.out)
		}
		for _, c := range e.tools.calls() {
			if !readOnly(c) {
				t.Errorf("dry run ran %s", c)
			}
		}
		if treeSum(t, e.root) != before {
			t.Error("dry run changed the tree")
		}
		if !strings.Contains(e.out.String(), "would run "+e.tools.bin["mdadm"]+" /dev/md0 --re-add /dev/sdh") {
			t.Errorf("dry run does not print the re-add:\n%s", e.out)
		}
	})
}

func TestMDRaidConfigErrors(t *testing.T) {
	tests := []struct{ section, field string }{
		{`{}`, "mdraid.array"},
		{`{"array": "md0"}`, "mdraid.array"},
		{`{"array": "/dev/md0", "member": "sdd"}`, "mdraid.member"},
		{`{"array": "/dev/md0", "host": "nowhere"}`, "mdraid.host"},
		{`{"array": "/dev/md0", "proc_mdstat": "mdstat"}`, "mdraid.proc_mdstat"},
		{`{"array": "/dev/md0", "target": "sdh"}`, "mdraid.target"},
		{`{"array": "/dev/md0", "min_bitmap_chunks": -1}`, "mdraid"},
		{`{"array": "/dev/md0", "chunk": 1}`, "mdraid"},
	}
	for _, tt := range tests {
		cfg, err := ParseConfig("x.json", []byte(`{"adapter": "mdraid", "mdraid": `+tt.section+`}`))
		if err != nil {
			t.Fatalf("%s: %v", tt.section, err)
		}
		_, err = New(cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: err = %v, want a configuration error naming %s", tt.section, err, tt.field)
		}
	}
	// The capture side needs the member.
	cfg, err := ParseConfig("x.json", []byte(`{"adapter": "mdraid", "mdraid": {"array": "/dev/md0"}}`))
	scriptedMust(t, err)
	a, err := New(cfg)
	scriptedMust(t, err)
	err = RunCapture(context.Background(), a, NewSession(cfg, nil, false), captureThat(nil, nil))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "mdraid.member") {
		t.Errorf("capture without a member: %v", err)
	}
}

// Over ssh: the array's system is reached through the host's ssh prefix
// (a fake ssh here that runs the command it is given), and every step,
// /proc/mdstat included, goes there.
func TestMDRaidExtendOverSSH(t *testing.T) {
	e := newMDEnv(t, mdstatDegraded, `"host": "arrayhost", "target": "/dev/sdh"`)
	sshLog := filepath.Join(e.root, "ssh.log")
	ssh := filepath.Join(e.root, "ssh")
	scriptedMust(t, os.WriteFile(ssh, []byte("#!/bin/sh\nprintf '%s\\n' \"$1\" >> '"+sshLog+"'\nshift\nexec sh -c \"$1\"\n"), 0o755))
	var err error
	conf := strings.Replace(string(mustJSON(t, e.cfg)), `"adapter"`, `"hosts": [{"name": "here"}, {"name": "arrayhost", "ssh": [`+fmt.Sprintf("%q", ssh)+`, "root@arrayhost"]}], "adapter"`, 1)
	e.cfg, err = ParseConfig("test.json", []byte(conf))
	scriptedMust(t, err)
	e.tools.
		on([]string{"mdadm", "--detail", "/dev/md0"}, scriptedOK(mdDetailDegraded), scriptedOK(mdDetailDegraded), scriptedOK(mdDetailReAdded)).
		on([]string{"mdadm", "--examine", "/dev/sdh"}, scriptedOK(mdExamineTarget)).
		on([]string{"mdadm", "--examine-bitmap", "/dev/sdb"}, scriptedOK(mdBitmapDegraded)).
		on([]string{"mdadm", "/dev/md0", "--re-add", "/dev/sdh"})
	a, err := New(e.cfg)
	scriptedMust(t, err)
	// Here the restored disk is /dev/sdq; the array's system sees it as
	// /dev/sdh (mdraid.target).
	if err := RunExtend(context.Background(), a, NewSession(e.cfg, e.out, false), mdSeedToken(), "/dev/sdq"); err != nil {
		t.Fatalf("extend: %v\n%s", err, e.out)
	}
	if n := len(e.tools.calls()); n != 10 {
		t.Errorf("%d tool calls, want 10:\n%s", n, strings.Join(e.tools.calls(), "\n"))
	}
	hosts, err := os.ReadFile(sshLog)
	scriptedMust(t, err)
	// Each tool call and each /proc/mdstat read went through ssh.
	if got := strings.Count(string(hosts), "root@arrayhost\n"); got != 12 {
		t.Errorf("%d ssh calls, want 12 (10 commands, 2 reads of /proc/mdstat)", got)
	}
}
