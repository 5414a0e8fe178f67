package resync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// drbdEnv is one test's world: fake DRBD tools, a temporary tree for
// /proc/drbd, /sys/block and the work directory, and a session.
type drbdEnv struct {
	t     *testing.T
	tools *scriptedTools
	root  string // the temporary tree
	cfg   *Config
	out   *bytes.Buffer
}

func (e *drbdEnv) path(p string) string { return filepath.Join(e.root, p) }

// newDRBDEnv builds the world; section holds extra fields of the drbd
// section (JSON object members, without braces), where @BIN@ is the
// directory of the fake tools.
func newDRBDEnv(t *testing.T, section string) *drbdEnv {
	t.Helper()
	e := &drbdEnv{t: t, tools: newScriptedTools(t, "drbdadm", "drbdsetup", "drbdmeta", "lvcreate", "lvremove"), root: t.TempDir(), out: &bytes.Buffer{}}
	section = strings.ReplaceAll(section, "@BIN@", filepath.Join(e.tools.dir, "bin"))
	for _, d := range []string{"proc", "sys/block/drbd0", "sys/block/drbd1", "work"} {
		scriptedMust(t, os.MkdirAll(e.path(d), 0o755))
	}
	if section != "" {
		section = ", " + section
	}
	bin, err := json.Marshal(e.tools.bin)
	scriptedMust(t, err)
	conf := fmt.Sprintf(`{"adapter": "drbd", "bin": %s, "drbd": {"resource": "r0", "proc_drbd": %q, "sys_block": %q, "work_dir": %q, "poll_interval": "1ms", "watch_timeout": "10s"%s}}`,
		bin, e.path("proc/drbd"), e.path("sys/block"), e.path("work"), section)
	e.cfg, err = ParseConfig("test.json", []byte(conf))
	scriptedMust(t, err)
	return e
}

func (e *drbdEnv) writeFile(p, content string) {
	e.t.Helper()
	scriptedMust(e.t, os.WriteFile(e.path(p), []byte(content), 0o644))
}

// adapter builds the drbd adapter; onSleep, if set, runs between polls
// (instead of sleeping), to change the status the next poll reads.
func (e *drbdEnv) adapter(onSleep func(n int)) *drbdAdapter {
	e.t.Helper()
	a, err := New(e.cfg)
	scriptedMust(e.t, err)
	d := a.(*drbdAdapter)
	n := 0
	d.sleep = func(ctx context.Context, _ time.Duration) error {
		if onSleep != nil {
			onSleep(n)
		}
		n++
		return ctx.Err()
	}
	return d
}

func (e *drbdEnv) session(dryRun bool) *Session {
	s := NewSession(e.cfg, e.out, dryRun)
	s.Now = func() time.Time { return time.Date(2026, 12, 3, 10, 15, 0, 0, time.UTC) }
	return s
}

// treeSum hashes every file of the tree (paths and contents).
func treeSum(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\n", p)
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	scriptedMust(t, err)
	return fmt.Sprintf("%x", h.Sum(nil))
}

// captureThat returns a capture function that calls postCapture after
// its own work (or fails with err before it, never calling it).
func captureThat(err error, token *json.RawMessage) func(context.Context, func(context.Context) (json.RawMessage, error)) error {
	return func(ctx context.Context, post func(context.Context) (json.RawMessage, error)) error {
		if err != nil {
			return err
		}
		raw, perr := post(ctx)
		if token != nil {
			*token = raw
		}
		return perr
	}
}

// drbd9SourceRules are the source's answers for DRBD 9.
func drbd9SourceRules(e *drbdEnv) {
	e.writeFile("proc/drbd", drbd9Proc)
	e.tools.
		on([]string{"drbdadm", "sh-md-idx", "r0/0"}, scriptedOK("internal\n")).
		on([]string{"drbdadm", "sh-ll-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdsetup", "status", "r0", "--verbose", "--statistics"}, scriptedOK(drbd9StatusSource)).
		on([]string{"drbdadm", "get-gi", "r0:nodeb/0"}, scriptedOK(drbdGI9AfterMark), scriptedOK(drbdGI9AfterSecond))
}

var drbd9CaptureCalls = []string{
	"drbdadm sh-md-idx r0/0",
	"drbdadm sh-ll-dev r0/0",
	"drbdsetup status r0 --verbose --statistics",
	"drbdadm new-current-uuid --clear-bitmap r0/0",
	"drbdadm get-gi r0:nodeb/0",
	"drbdadm new-current-uuid r0/0",
	"drbdadm get-gi r0:nodeb/0",
}

func TestDRBD9CaptureSequence(t *testing.T) {
	e := newDRBDEnv(t, `"peer": "nodeb", "snapshot": ["@BIN@/lvcreate", "-s", "-n", "r0-seed", "-L", "2G", "vg0/r0"], "snapshot_remove": ["@BIN@/lvremove", "-y", "vg0/r0-seed"]`)
	drbd9SourceRules(e)
	e.tools.onPrefix([]string{"drbdadm", "new-current-uuid"}).onPrefix([]string{"lvcreate"}).onPrefix([]string{"lvremove"})
	var raw json.RawMessage
	err := RunCapture(context.Background(), e.adapter(nil), e.session(false), captureThat(nil, &raw))
	if err != nil {
		t.Fatalf("capture: %v\n%s", err, e.out)
	}
	want := append(append(append([]string(nil), drbd9CaptureCalls[:5]...), "lvcreate -s -n r0-seed -L 2G vg0/r0"), drbd9CaptureCalls[5:]...)
	want = append(want, "lvremove -y vg0/r0-seed")
	if d := scriptedDiff(e.tools.calls(), want); d != "" {
		t.Error(d)
	}
	tok, err := ParseToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	wantFields := map[string]string{"version": "9", "resource": "r0", "volume": "0", "mark_uuid": "7C2F3A6B9E0D4A11", "current_uuid": "5E6F708192A3B4C5", "bitmap_uuid": "7C2F3A6B9E0D4A10", "node_id": "0", "peer": "nodeb"}
	for k, v := range wantFields {
		if tok.Fields[k] != v {
			t.Errorf("token %s = %q, want %q", k, tok.Fields[k], v)
		}
	}
	if !tok.Mark.Equal(time.Date(2026, 12, 3, 10, 15, 0, 0, time.UTC)) {
		t.Errorf("mark %v", tok.Mark)
	}
}

func TestDRBD84CaptureSequence(t *testing.T) {
	e := newDRBDEnv(t, "")
	e.writeFile("proc/drbd", drbd84ProcSource)
	e.tools.
		on([]string{"drbdadm", "sh-md-idx", "r0/0"}, scriptedOK("internal\n")).
		on([]string{"drbdadm", "sh-ll-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdadm", "sh-minor", "r0/0"}, scriptedOK("0\n")).
		on([]string{"drbdadm", "get-gi", "r0/0"}, scriptedOK(drbdGI84AfterMark), scriptedOK(drbdGI84AfterSecond)).
		onPrefix([]string{"drbdadm", "new-current-uuid"})
	var raw json.RawMessage
	if err := RunCapture(context.Background(), e.adapter(nil), e.session(false), captureThat(nil, &raw)); err != nil {
		t.Fatalf("capture: %v\n%s", err, e.out)
	}
	want := []string{
		"drbdadm sh-md-idx r0/0",
		"drbdadm sh-ll-dev r0/0",
		"drbdadm sh-minor r0/0",
		"drbdadm new-current-uuid --clear-bitmap r0/0",
		"drbdadm get-gi r0/0",
		"drbdadm new-current-uuid r0/0",
		"drbdadm get-gi r0/0",
	}
	if d := scriptedDiff(e.tools.calls(), want); d != "" {
		t.Error(d)
	}
	tok, err := ParseToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Fields["version"] != "8.4" || tok.Fields["mark_uuid"] != "7C2F3A6B9E0D4A11" || tok.Fields["node_id"] != "" {
		t.Errorf("token %v", tok.Fields)
	}
}

// A capture that fails after the mark must still run the second
// new-current-uuid (in Cleanup), and report the failure.
func TestDRBDCaptureFailureStillRunsSecondUUID(t *testing.T) {
	e := newDRBDEnv(t, `"peer": "nodeb", "snapshot": ["@BIN@/lvcreate", "-s", "-n", "r0-seed", "-L", "2G", "vg0/r0"], "snapshot_remove": ["@BIN@/lvremove", "-y", "vg0/r0-seed"]`)
	drbd9SourceRules(e)
	e.tools.onPrefix([]string{"drbdadm", "new-current-uuid"}).onPrefix([]string{"lvcreate"}).onPrefix([]string{"lvremove"})
	boom := errors.New("source read failed")
	err := RunCapture(context.Background(), e.adapter(nil), e.session(false), captureThat(boom, nil))
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the capture's error", err)
	}
	want := append(append([]string(nil), drbd9CaptureCalls[:5]...), "lvcreate -s -n r0-seed -L 2G vg0/r0", "drbdadm new-current-uuid r0/0", "lvremove -y vg0/r0-seed")
	if d := scriptedDiff(e.tools.calls(), want); d != "" {
		t.Error(d)
	}
	if !strings.Contains(e.out.String(), "WARNING: the capture did not finish: running the second new-current-uuid") {
		t.Errorf("no warning in the step log:\n%s", e.out)
	}
}

// The second new-current-uuid failing fails the capture (no token), and
// Cleanup tries it again and reports that too.
func TestDRBDSecondUUIDFailureFailsCapture(t *testing.T) {
	e := newDRBDEnv(t, `"peer": "nodeb"`)
	drbd9SourceRules(e)
	e.tools.
		on([]string{"drbdadm", "new-current-uuid", "--clear-bitmap", "r0/0"}).
		on([]string{"drbdadm", "new-current-uuid", "r0/0"}, scriptedFail(10, "r0: State change failed: (-2) Need access to UpToDate data"))
	var raw json.RawMessage
	err := RunCapture(context.Background(), e.adapter(nil), e.session(false), captureThat(nil, &raw))
	if err == nil || !errors.Is(err, ErrStep) {
		t.Fatalf("err = %v, want a failed step", err)
	}
	if raw != nil {
		t.Errorf("a token was made: %s", raw)
	}
	if !strings.Contains(err.Error(), "run it by hand") || !strings.Contains(err.Error(), "Need access to UpToDate data") {
		t.Errorf("error does not say what to do: %v", err)
	}
	want := append(append([]string(nil), drbd9CaptureCalls[:6]...), "drbdadm new-current-uuid r0/0")
	if d := scriptedDiff(e.tools.calls(), want); d != "" {
		t.Error(d)
	}
}

// A second new-current-uuid that does not move the mark UUID into the
// bitmap slot (a peer other than the configured one, a product that
// behaves otherwise) must not give a token.
func TestDRBDBitmapUUIDNotMarkRefused(t *testing.T) {
	e := newDRBDEnv(t, `"peer": "nodeb"`)
	drbd9SourceRules(e)
	e.tools.rules = 0 // replace the get-gi answers: rules match in order
	scriptedMust(t, os.RemoveAll(filepath.Join(e.tools.dir, "rules")))
	e.tools.
		on([]string{"drbdadm", "sh-md-idx", "r0/0"}, scriptedOK("internal\n")).
		on([]string{"drbdadm", "sh-ll-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdsetup", "status", "r0", "--verbose", "--statistics"}, scriptedOK(drbd9StatusSource)).
		on([]string{"drbdadm", "get-gi", "r0:nodeb/0"}, scriptedOK(drbdGI9AfterMark), scriptedOK(drbdGI9AfterMark)).
		onPrefix([]string{"drbdadm", "new-current-uuid"})
	err := RunCapture(context.Background(), e.adapter(nil), e.session(false), captureThat(nil, nil))
	if err == nil || !strings.Contains(err.Error(), "not the mark UUID") {
		t.Fatalf("err = %v", err)
	}
}

func TestDRBDCaptureRefusesConnectedSource(t *testing.T) {
	e := newDRBDEnv(t, `"peer": "nodeb"`)
	e.writeFile("proc/drbd", drbd9Proc)
	e.tools.
		on([]string{"drbdadm", "sh-md-idx", "r0/0"}, scriptedOK("internal\n")).
		on([]string{"drbdadm", "sh-ll-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdsetup", "status", "r0", "--verbose", "--statistics"}, scriptedOK(drbd9StatusSourceConnected)).
		onPrefix([]string{"drbdadm", "new-current-uuid"})
	err := RunCapture(context.Background(), e.adapter(nil), e.session(false), captureThat(nil, nil))
	var ce *CheckError
	if !errors.As(err, &ce) || !strings.Contains(ce.Problem, "connected to nodeb") {
		t.Fatalf("err = %v, want a check naming the connection", err)
	}
	for _, c := range e.tools.calls() {
		if strings.Contains(c, "new-current-uuid") {
			t.Errorf("changing command run after a failed check: %s", c)
		}
	}
}

func TestDRBD84CaptureRefusesWFConnection(t *testing.T) {
	e := newDRBDEnv(t, "")
	e.writeFile("proc/drbd", strings.Replace(drbd84ProcSource, "cs:StandAlone ro:Primary/Unknown", "cs:WFConnection ro:Primary/Unknown", 1))
	e.tools.
		on([]string{"drbdadm", "sh-md-idx", "r0/0"}, scriptedOK("internal\n")).
		on([]string{"drbdadm", "sh-ll-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdadm", "sh-minor", "r0/0"}, scriptedOK("0\n")).
		onPrefix([]string{"drbdadm", "new-current-uuid"})
	err := RunCapture(context.Background(), e.adapter(nil), e.session(false), captureThat(nil, nil))
	var ce *CheckError
	if !errors.As(err, &ce) || !strings.Contains(ce.Problem, "WFConnection, not StandAlone") {
		t.Fatalf("err = %v", err)
	}
	for _, c := range e.tools.calls() {
		if strings.Contains(c, "new-current-uuid") {
			t.Errorf("changing command run after a failed check: %s", c)
		}
	}
}

// The configured drbd.conf is passed to every drbdadm call.
func TestDRBDConfigFileGoesToDrbdadm(t *testing.T) {
	e := newDRBDEnv(t, `"config_file": "/etc/seed/drbd.conf", "version": "9"`)
	e.tools.onPrefix([]string{"drbdadm", "-c", "/etc/seed/drbd.conf", "sh-md-idx", "r0/0"}, scriptedOK("internal\n")).
		onPrefix([]string{"drbdadm", "-c", "/etc/seed/drbd.conf", "sh-ll-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdsetup", "status", "r0", "--verbose", "--statistics"}, scriptedOK(drbd9StatusSourceConnected))
	// The source is connected: the check stops the capture after the
	// read-only commands this test is about.
	err := RunCapture(context.Background(), e.adapter(nil), e.session(false), captureThat(nil, nil))
	if !errors.Is(err, ErrCheck) {
		t.Fatalf("err = %v, want the connected source refused", err)
	}
	want := []string{
		"drbdadm -c /etc/seed/drbd.conf sh-md-idx r0/0",
		"drbdadm -c /etc/seed/drbd.conf sh-ll-dev r0/0",
		"drbdsetup status r0 --verbose --statistics",
	}
	if d := scriptedDiff(e.tools.calls(), want); d != "" {
		t.Error(d)
	}
}

func TestDRBD9CaptureNeedsPeerWithSeveralConnections(t *testing.T) {
	e := newDRBDEnv(t, `"version": "9"`)
	three := strings.Replace(drbd9StatusSource, "    volume:0 replication:Off peer-disk:DUnknown resync-suspended:no\n        received:0 sent:0 out-of-sync:0 pending:0 unacked:0\n",
		"    volume:0 replication:Off peer-disk:DUnknown resync-suspended:no\n        received:0 sent:0 out-of-sync:0 pending:0 unacked:0\n  nodec node-id:2 connection:Connecting role:Unknown\n    volume:0 replication:Off peer-disk:DUnknown\n", 1)
	e.tools.
		on([]string{"drbdadm", "sh-md-idx", "r0/0"}, scriptedOK("internal\n")).
		on([]string{"drbdadm", "sh-ll-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdsetup", "status", "r0", "--verbose", "--statistics"}, scriptedOK(three)).
		onPrefix([]string{"drbdadm", "new-current-uuid"})
	err := RunCapture(context.Background(), e.adapter(nil), e.session(false), captureThat(nil, nil))
	var ce *CheckError
	if !errors.As(err, &ce) || !strings.Contains(ce.Problem, "2 connections and drbd.peer is not set") {
		t.Fatalf("err = %v", err)
	}
}

func TestDRBDPreflightRefusesExternalMetadata(t *testing.T) {
	e := newDRBDEnv(t, `"version": "9"`)
	e.tools.on([]string{"drbdadm", "sh-md-idx", "r0/0"}, scriptedOK("0\n"))
	err := RunCapture(context.Background(), e.adapter(nil), e.session(false), captureThat(nil, nil))
	var ce *CheckError
	if !errors.As(err, &ce) || ce.Condition != "the DRBD metadata is internal" {
		t.Fatalf("err = %v", err)
	}
}

// drbd9Token is the token of TestDRBD9CaptureSequence.
func drbd9Token() *Token {
	return &Token{Adapter: "drbd", Mark: time.Date(2026, 12, 3, 10, 15, 0, 0, time.UTC), Fields: map[string]string{
		"version": "9", "resource": "r0", "volume": "0", "mark_uuid": "7C2F3A6B9E0D4A11", "current_uuid": "5E6F708192A3B4C5",
		"bitmap_uuid": "7C2F3A6B9E0D4A10", "node_id": "0", "peer": "nodeb",
	}}
}

// drbd9TargetRules are the new node's answers before `up`.
func drbd9TargetRules(e *drbdEnv, dump string) {
	e.writeFile("proc/drbd", drbd9Proc)
	e.tools.
		on([]string{"drbdadm", "sh-md-idx", "r0/0"}, scriptedOK("internal\n")).
		on([]string{"drbdadm", "sh-ll-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdadm", "sh-minor", "r0/0"}, scriptedOK("1\n")).
		on([]string{"drbdadm", "sh-md-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdsetup", "status", "r0"}, scriptedFail(10, "r0: No such resource")).
		on([]string{"drbdadm", "--", "--force", "dump-md", "r0/0"}, scriptedOK(dump)).
		on([]string{"drbdadm", "apply-al", "r0/0"}).
		on([]string{"drbdadm", "-d", "up", "r0"}, scriptedOK(drbdUpDryRun))
}

func TestDRBD9ExtendSequence(t *testing.T) {
	e := newDRBDEnv(t, `"peer": "nodea"`)
	drbd9TargetRules(e, drbdSeedDump)
	edited := e.path("work/seedship-drbd-r0-0.md")
	e.tools.
		on([]string{"drbdmeta", "--force", "1", "v09", "/dev/vg0/r0", "internal", "verify-dump", edited}, scriptedOK("input file parsed ok\n")).
		onSave([]string{"drbdmeta", "--force", "1", "v09", "/dev/vg0/r0", "internal", "restore-md", edited}, scriptedOK("reinitializing\nSuccessfully restored meta data\n")).
		on([]string{"drbdadm", "up", "r0"}).
		on([]string{"drbdsetup", "status", "r0", "--verbose", "--statistics"}, scriptedOK(drbd9StatusTargetConnecting), scriptedOK(drbd9StatusTargetPartial))
	restoreRule := e.tools.rules - 3
	err := RunExtend(context.Background(), e.adapter(nil), e.session(false), drbd9Token(), "/dev/vg0/r0")
	if err != nil {
		t.Fatalf("extend: %v\n%s", err, e.out)
	}
	want := []string{
		"drbdadm sh-md-idx r0/0",
		"drbdsetup status r0",
		"drbdadm sh-ll-dev r0/0",
		"drbdadm -- --force dump-md r0/0",
		"drbdadm -d up r0",
		"drbdadm sh-minor r0/0",
		"drbdadm sh-md-dev r0/0",
		"drbdadm sh-md-idx r0/0",
		"drbdadm apply-al r0/0",
		"drbdadm -- --force dump-md r0/0",
		"drbdmeta --force 1 v09 /dev/vg0/r0 internal verify-dump " + edited,
		"drbdmeta --force 1 v09 /dev/vg0/r0 internal restore-md " + edited,
		"drbdadm up r0",
		"drbdsetup status r0 --verbose --statistics",
		"drbdsetup status r0 --verbose --statistics",
	}
	if d := scriptedDiff(e.tools.calls(), want); d != "" {
		t.Error(d)
	}
	// What restore-md got is the guide's edit of the seed's metadata,
	// byte for byte.
	wantDump := strings.NewReplacer("node-id 0;", "node-id 1;", "peer[0] {", "peer[1] {", "peer[1] {", "peer[0] {").Replace(drbdSeedDump)
	if got := e.tools.saved(restoreRule, 0); got != wantDump {
		t.Errorf("restore-md got a dump that is not the node-id fix of the seed's")
	}
	if ents, _ := os.ReadDir(e.path("work")); len(ents) != 0 {
		t.Errorf("work files left: %v", ents)
	}
	if !strings.Contains(e.out.String(), "partial resync of r0/0: 9240 KiB of 10485404 KiB") {
		t.Errorf("step log does not report the partial resync:\n%s", e.out)
	}
}

// A failed restore-md keeps the dumps (the original puts the seed's
// metadata back) and runs nothing after it.
func TestDRBD9RestoreMDFailureKeepsDumps(t *testing.T) {
	e := newDRBDEnv(t, "")
	drbd9TargetRules(e, drbdSeedDump)
	edited := e.path("work/seedship-drbd-r0-0.md")
	e.tools.
		onPrefix([]string{"drbdmeta", "--force", "1", "v09", "/dev/vg0/r0", "internal", "verify-dump"}, scriptedOK("input file parsed ok\n")).
		onPrefix([]string{"drbdmeta", "--force", "1", "v09", "/dev/vg0/r0", "internal", "restore-md"}, scriptedFail(20, "Writing failed")).
		on([]string{"drbdadm", "up", "r0"})
	err := RunExtend(context.Background(), e.adapter(nil), e.session(false), drbd9Token(), "/dev/vg0/r0")
	if !errors.Is(err, ErrStep) || !strings.Contains(err.Error(), "original metadata dump is kept in "+e.path("work/seedship-drbd-r0-0.md-orig")) {
		t.Fatalf("err = %v", err)
	}
	for _, p := range []string{edited, edited + "-orig"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("dump removed: %v", err)
		}
	}
	for _, c := range e.tools.calls() {
		if c == "drbdadm up r0" {
			t.Error("up after a failed restore-md")
		}
	}
}

func TestDRBD9ExtendCreateMD(t *testing.T) {
	e := newDRBDEnv(t, `"metadata": "create-md"`)
	drbd9TargetRules(e, drbdSeedDump)
	e.tools.
		on([]string{"drbdadm", "create-md", "--force", "--initial-current-uuid=7C2F3A6B9E0D4A11", "r0/0"}).
		on([]string{"drbdadm", "up", "r0"}).
		on([]string{"drbdsetup", "status", "r0", "--verbose", "--statistics"}, scriptedOK(drbd9StatusTargetPartial))
	if err := RunExtend(context.Background(), e.adapter(nil), e.session(false), drbd9Token(), "/dev/vg0/r0"); err != nil {
		t.Fatalf("extend: %v\n%s", err, e.out)
	}
	want := []string{
		"drbdadm sh-md-idx r0/0",
		"drbdsetup status r0",
		"drbdadm sh-ll-dev r0/0",
		"drbdadm -- --force dump-md r0/0",
		"drbdadm create-md --force --initial-current-uuid=7C2F3A6B9E0D4A11 r0/0",
		"drbdadm up r0",
		"drbdsetup status r0 --verbose --statistics",
	}
	if d := scriptedDiff(e.tools.calls(), want); d != "" {
		t.Error(d)
	}
}

func TestDRBD9ExtendDetectsFullResync(t *testing.T) {
	e := newDRBDEnv(t, `"node_id": 1, "metadata": "create-md"`)
	drbd9TargetRules(e, drbdSeedDump)
	e.tools.
		onPrefix([]string{"drbdadm", "create-md"}).
		on([]string{"drbdadm", "up", "r0"}).
		on([]string{"drbdsetup", "status", "r0", "--verbose", "--statistics"}, scriptedOK(drbd9StatusTargetConnecting), scriptedOK(drbd9StatusTargetFull))
	err := RunExtend(context.Background(), e.adapter(nil), e.session(false), drbd9Token(), "/dev/vg0/r0")
	if !errors.Is(err, ErrFullResync) || !errors.Is(err, ErrStep) {
		t.Fatalf("err = %v, want a full resync", err)
	}
	if !strings.Contains(e.out.String(), "WARNING: FULL RESYNC: r0/0 is resyncing 10485405 KiB of its 10485404 KiB") {
		t.Errorf("no loud warning:\n%s", e.out)
	}
}

func TestDRBD9ExtendStandAloneFails(t *testing.T) {
	e := newDRBDEnv(t, `"metadata": "create-md"`)
	drbd9TargetRules(e, drbdSeedDump)
	e.tools.
		onPrefix([]string{"drbdadm", "create-md"}).
		on([]string{"drbdadm", "up", "r0"}).
		on([]string{"drbdsetup", "status", "r0", "--verbose", "--statistics"}, scriptedOK(drbd9StatusTargetStandAlone))
	err := RunExtend(context.Background(), e.adapter(nil), e.session(false), drbd9Token(), "/dev/vg0/r0")
	if err == nil || !strings.Contains(err.Error(), "StandAlone") {
		t.Fatalf("err = %v", err)
	}
}

func TestDRBD9ExtendWatchTimesOut(t *testing.T) {
	e := newDRBDEnv(t, `"metadata": "create-md", "poll_interval": "1s", "watch_timeout": "2s"`)
	drbd9TargetRules(e, drbdSeedDump)
	e.tools.
		onPrefix([]string{"drbdadm", "create-md"}).
		on([]string{"drbdadm", "up", "r0"}).
		on([]string{"drbdsetup", "status", "r0", "--verbose", "--statistics"}, scriptedOK(drbd9StatusTargetConnecting))
	a := e.adapter(nil)
	a.sleep = sleepCtx
	err := RunExtend(context.Background(), a, e.session(false), drbd9Token(), "/dev/vg0/r0")
	if err == nil || !strings.Contains(err.Error(), "did not reach a resync within 2s") {
		t.Fatalf("err = %v", err)
	}
	polls := 0
	for _, c := range e.tools.calls() {
		if c == "drbdsetup status r0 --verbose --statistics" {
			polls++
		}
	}
	if polls < 2 || polls > 3 {
		t.Errorf("%d polls in 2s at 1s", polls)
	}
}

// No extend after a failed check: each case breaks one condition, and no
// changing command may run.
func TestDRBDExtendRefusals(t *testing.T) {
	otherGen := drbdDumpV09(0, "1111222233334444", map[int]int{1: 0}, nil)
	otherNode := drbdDumpV09(2, "7C2F3A6B9E0D4A11", map[int]int{1: 0}, nil)
	tests := []struct {
		name    string
		section string
		setup   func(e *drbdEnv)
		token   func(t *Token)
		target  string
		want    string
	}{
		{"another generation", `"node_id": 1`, func(e *drbdEnv) { drbd9TargetRules(e, otherGen) }, nil, "/dev/vg0/r0", "not the mark UUID"},
		{"another node's metadata", `"node_id": 1`, func(e *drbdEnv) { drbd9TargetRules(e, otherNode) }, nil, "/dev/vg0/r0", "not the source's 0"},
		{"resource up", `"node_id": 1`, func(e *drbdEnv) {
			e.tools.on([]string{"drbdsetup", "status", "r0"}, scriptedOK("r0 role:Secondary\n  disk:UpToDate\n"))
			drbd9TargetRules(e, drbdSeedDump)
		}, nil, "/dev/vg0/r0", "is up on this node"},
		{"other target", `"node_id": 1`, func(e *drbdEnv) { drbd9TargetRules(e, drbdSeedDump) }, nil, "/dev/sdz", "not the target /dev/sdz"},
		{"token for another resource", `"node_id": 1`, func(e *drbdEnv) { drbd9TargetRules(e, drbdSeedDump) }, func(t *Token) { t.Fields["resource"] = "r9" }, "/dev/vg0/r0", "resource \"r9\""},
		{"token without mark uuid", `"node_id": 1`, func(e *drbdEnv) { drbd9TargetRules(e, drbdSeedDump) }, func(t *Token) { delete(t.Fields, "mark_uuid") }, "/dev/vg0/r0", "mark UUID"},
		{"source map reset", `"node_id": 1, "source_host": "nodea"`, func(e *drbdEnv) {
			drbd9TargetRules(e, drbdSeedDump)
			e.tools.on([]string{"drbdadm", "get-gi", "r0:nodeb/0"}, scriptedOK("5E6F708192A3B4C5:0A0B0C0D0E0F1010:4B1D2E3F5A6C7D8E:0000000000000000:1:1:1:0:1:0:0:0:0:0:0:1\n"))
		}, nil, "/dev/vg0/r0", "change map was reset"},
		{"source unknown here", `"node_id": 1`, func(e *drbdEnv) {
			e.tools.on([]string{"drbdadm", "-d", "up", "r0"}, scriptedOK("drbdsetup new-resource r0 1\ndrbdsetup new-peer r0 2 --_name=nodec\n"))
			drbd9TargetRules(e, drbdSeedDump)
		}, nil, "/dev/vg0/r0", "does not list as a peer"},
		{"node_id not drbd.conf's", `"node_id": 2`, func(e *drbdEnv) { drbd9TargetRules(e, drbdSeedDump) }, nil, "/dev/vg0/r0", "drbd.node_id: 2, but drbd.conf gives this node node-id 1"},
		{"other DRBD version", `"node_id": 1`, func(e *drbdEnv) {
			drbd9TargetRules(e, drbdSeedDump)
			e.writeFile("proc/drbd", drbd84ProcSource)
		}, nil, "/dev/vg0/r0", "the seed is from DRBD 9, this node runs 8.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newDRBDEnv(t, tt.section)
			if strings.Contains(tt.section, "source_host") {
				// The source is reached through a host entry without ssh:
				// the same fake tools answer for it.
				var err error
				conf := strings.Replace(string(mustJSON(t, e.cfg)), `"adapter"`, `"hosts": [{"name": "nodeb"}, {"name": "nodea"}], "adapter"`, 1)
				e.cfg, err = ParseConfig("test.json", []byte(conf))
				scriptedMust(t, err)
			}
			tt.setup(e)
			e.tools.onPrefix([]string{"drbdadm"}).onPrefix([]string{"drbdmeta"})
			tok := drbd9Token()
			if tt.token != nil {
				tt.token(tok)
			}
			err := RunExtend(context.Background(), e.adapter(nil), e.session(false), tok, tt.target)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
			if !errors.Is(err, ErrCheck) && !errors.Is(err, ErrConfig) {
				t.Errorf("err = %v is neither a check nor a configuration error", err)
			}
			for _, c := range e.tools.calls() {
				for _, changing := range []string{" up ", "apply-al", "restore-md", "create-md"} {
					if strings.Contains(c+" ", changing) && !strings.Contains(c, " -d up ") {
						t.Errorf("changing command after a failed check: %s", c)
					}
				}
			}
		})
	}
}

// mustJSON re-encodes a parsed configuration (for tests that add to it).
func mustJSON(t *testing.T, cfg *Config) []byte {
	t.Helper()
	top := map[string]any{"adapter": cfg.Adapter, "bin": cfg.Bin}
	for k, v := range cfg.Sections {
		top[k] = v
	}
	data, err := json.Marshal(top)
	scriptedMust(t, err)
	return data
}

func TestDRBD84ExtendSequence(t *testing.T) {
	e := newDRBDEnv(t, "")
	e.writeFile("proc/drbd", drbd84ProcSource) // minor 1 Unconfigured: r0 (minor 1 here) is down
	e.writeFile("sys/block/drbd1/size", "20970808\n")
	e.tools.
		on([]string{"drbdadm", "sh-md-idx", "r0/0"}, scriptedOK("internal\n")).
		on([]string{"drbdadm", "sh-minor", "r0/0"}, scriptedOK("1\n")).
		on([]string{"drbdadm", "sh-ll-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdadm", "--", "--force", "dump-md", "r0/0"}, scriptedOK(drbdDumpV08)).
		on([]string{"drbdadm", "up", "r0"})
	waiting := strings.Replace(drbd84ProcTargetWaiting, " 0: ", " 1: ", 1)
	partial := strings.Replace(drbd84ProcTargetPartial, " 0: ", " 1: ", 1)
	a := e.adapter(func(n int) {
		if n == 0 {
			e.writeFile("proc/drbd", partial)
		}
	})
	tok := &Token{Adapter: "drbd", Mark: time.Date(2026, 12, 3, 10, 15, 0, 0, time.UTC), Fields: map[string]string{"version": "8.4", "resource": "r0", "volume": "0", "mark_uuid": "7C2F3A6B9E0D4A11"}}
	// drbdadm up makes the resource appear: the fake up writes nothing,
	// so the test puts the waiting state in place when up is called.
	upDone := false
	s := e.session(false)
	s.Out = writerFunc(func(p []byte) (int, error) {
		if !upDone && bytes.Contains(p, []byte("run "+e.tools.bin["drbdadm"]+" up r0")) {
			upDone = true
			e.writeFile("proc/drbd", waiting)
		}
		return e.out.Write(p)
	})
	if err := RunExtend(context.Background(), a, s, tok, "/dev/vg0/r0"); err != nil {
		t.Fatalf("extend: %v\n%s", err, e.out)
	}
	want := []string{
		"drbdadm sh-md-idx r0/0",
		"drbdadm sh-minor r0/0",
		"drbdadm sh-ll-dev r0/0",
		"drbdadm -- --force dump-md r0/0",
		"drbdadm up r0",
		"drbdadm sh-minor r0/0",
	}
	if d := scriptedDiff(e.tools.calls(), want); d != "" {
		t.Error(d)
	}
	if !strings.Contains(e.out.String(), "partial resync of r0/0: 9240 KiB of 10485404 KiB") {
		t.Errorf("step log:\n%s", e.out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestDRBD84ExtendDetectsFullResyncInMiB(t *testing.T) {
	e := newDRBDEnv(t, "")
	e.writeFile("proc/drbd", drbd84ProcSource)
	e.writeFile("sys/block/drbd1/size", "20970808\n")
	e.tools.
		on([]string{"drbdadm", "sh-md-idx", "r0/0"}, scriptedOK("internal\n")).
		on([]string{"drbdadm", "sh-minor", "r0/0"}, scriptedOK("1\n")).
		on([]string{"drbdadm", "sh-ll-dev", "r0/0"}, scriptedOK("/dev/vg0/r0\n")).
		on([]string{"drbdadm", "--", "--force", "dump-md", "r0/0"}, scriptedOK(drbdDumpV08)).
		on([]string{"drbdadm", "up", "r0"})
	full := strings.Replace(drbd84ProcTargetFull, " 0: ", " 1: ", 1)
	s := e.session(false)
	s.Out = writerFunc(func(p []byte) (int, error) {
		if bytes.Contains(p, []byte(" up r0")) {
			e.writeFile("proc/drbd", full)
		}
		return e.out.Write(p)
	})
	tok := &Token{Adapter: "drbd", Mark: time.Date(2026, 12, 3, 10, 15, 0, 0, time.UTC), Fields: map[string]string{"version": "8.4", "resource": "r0", "volume": "0", "mark_uuid": "7C2F3A6B9E0D4A11"}}
	err := RunExtend(context.Background(), e.adapter(nil), s, tok, "/dev/vg0/r0")
	if !errors.Is(err, ErrFullResync) {
		t.Fatalf("err = %v, want a full resync", err)
	}
	if !strings.Contains(e.out.String(), "WARNING: FULL RESYNC") {
		t.Errorf("no loud warning:\n%s", e.out)
	}
}

// Dry run: only read-only commands run, and neither the tree nor the
// fake tools' state changes.
func TestDRBDDryRunTouchesNothing(t *testing.T) {
	readOnly := func(c string) bool {
		for _, p := range []string{"drbdadm sh-", "drbdadm get-gi", "drbdadm -- --force dump-md", "drbdadm -d up", "drbdsetup status"} {
			if strings.HasPrefix(c, p) {
				return true
			}
		}
		return false
	}
	t.Run("capture", func(t *testing.T) {
		e := newDRBDEnv(t, `"peer": "nodeb"`)
		drbd9SourceRules(e)
		before := treeSum(t, e.root)
		err := RunCapture(context.Background(), e.adapter(nil), e.session(true), captureThat(errors.New("capture must not run in dry run"), nil))
		if err != nil {
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
		for _, w := range []string{"would run " + e.tools.bin["drbdadm"] + " new-current-uuid --clear-bitmap r0/0", "would run " + e.tools.bin["drbdadm"] + " new-current-uuid r0/0"} {
			if !strings.Contains(e.out.String(), w) {
				t.Errorf("dry run does not print %q:\n%s", w, e.out)
			}
		}
	})
	t.Run("extend", func(t *testing.T) {
		e := newDRBDEnv(t, `"node_id": 1`)
		drbd9TargetRules(e, drbdSeedDump)
		before := treeSum(t, e.root)
		if err := RunExtend(context.Background(), e.adapter(nil), e.session(true), drbd9Token(), "/dev/vg0/r0"); err != nil {
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
		for _, w := range []string{"apply-al r0/0", "restore-md", "sed -i", " up r0"} {
			if !strings.Contains(e.out.String(), w) {
				t.Errorf("dry run does not print %q:\n%s", w, e.out)
			}
		}
	})
}

func TestDRBDConfigErrors(t *testing.T) {
	tests := []struct{ section, field string }{
		{`{}`, "drbd.resource"},
		{`{"resource": "r0/1"}`, "drbd.resource"},
		{`{"resource": "r0", "volume": -1}`, "drbd.volume"},
		{`{"resource": "r0", "version": "8.3"}`, "drbd.version"},
		{`{"resource": "r0", "node_id": 32}`, "drbd.node_id"},
		{`{"resource": "r0", "host": "nowhere"}`, "drbd.host"},
		{`{"resource": "r0", "proc_drbd": "proc/drbd"}`, "drbd.proc_drbd"},
		{`{"resource": "r0", "metadata": "guess"}`, "drbd.metadata"},
		{`{"resource": "r0", "watch_timeout": "soon"}`, "drbd.watch_timeout"},
		{`{"resource": "r0", "full_resync_percent": 150}`, "drbd.full_resync_percent"},
		{`{"resource": "r0", "colour": "blue"}`, "drbd"},
		{`{"resource": "r0", "snapshot": ["lvcreate", "-s", "vg0/r0"]}`, "drbd.snapshot_remove"},
		{`{"resource": "r0", "snapshot": [], "snapshot_remove": ["lvremove"]}`, "drbd.snapshot"},
	}
	for _, tt := range tests {
		cfg, err := ParseConfig("x.json", []byte(`{"adapter": "drbd", "drbd": `+tt.section+`}`))
		if err != nil {
			t.Fatalf("%s: %v", tt.section, err)
		}
		_, err = New(cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: err = %v, want a configuration error naming %s", tt.section, err, tt.field)
		}
	}
}
