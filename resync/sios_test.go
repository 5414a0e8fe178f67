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

// siosWorld is a DataKeeper mirror in a fake world: nodea (this system,
// the source), nodeb and, for the third node, nodec over the fake ssh,
// each with its own LifeKeeper defaults file.
type siosWorld struct {
	*fakeWorld
	hosts      []string
	lkroot     string
	bitmap     string
	defaults   map[string]string // host -> defaults file on disk
	original   map[string]string // host -> its original content
	duringLog  string            // what the extend fake saw in every defaults file
	configFile string
}

const testTag = "datarep-dr"

// newSiosWorld writes the fakes and a configuration; thirdNode is "",
// "source" or "first_target".
func newSiosWorld(t *testing.T, thirdNode string) *siosWorld {
	w := &siosWorld{fakeWorld: newFakeWorld(t), hosts: []string{"nodea", "nodeb"}}
	if thirdNode != "" {
		w.hosts = append(w.hosts, "nodec")
	}
	w.lkroot = w.path("opt/LifeKeeper")
	w.bitmap = w.path("opt/LifeKeeper/bitmap__dr")
	w.write(w.bitmap, "\x00\x01\x02 bitmap", 0o600)
	w.tool(w.lkroot+"/bin/bitmap", "bitmap")
	w.tool(w.lkroot+"/bin/perform_action", "perform_action")
	for _, h := range w.hosts[1:] {
		w.tool(w.hostPath(h, "sbin/umount"), h+":umount")
		w.tool(w.hostPath(h, "sbin/mdadm"), h+":mdadm")
	}
	w.tool(w.path("bin/check_paused"), "check_paused")
	w.defaults = make(map[string]string)
	w.original = make(map[string]string)
	for i, h := range w.hosts {
		p := w.path("etc/default/LifeKeeper")
		if i > 0 {
			p = w.hostPath(h, "etc/default/LifeKeeper")
		}
		// Each host's file differs, one without a final newline and one
		// with a LKDR_NO_FULL_SYNC=0 already, so a restore that mixed
		// them up or normalised them would show.
		content := fmt.Sprintf("# LifeKeeper defaults on %s\nLKROOT=/opt/LifeKeeper\nLKDR_CHUNK_SIZE=256\n", h)
		switch i {
		case 1:
			content += "LKDR_NO_FULL_SYNC=0\nLKDR_SPEED_LIMIT=50000"
		case 2:
			content += "export PATH=$PATH:/opt/LifeKeeper/bin\n"
		}
		w.write(p, content, 0o644)
		w.defaults[h], w.original[h] = p, content
	}
	// The extend fake copies every defaults file as it was while it ran
	// to during-extend.HOST.
	w.duringLog = filepath.Join(w.dir, "during-extend")
	var cats []string
	for _, h := range w.hosts {
		cats = append(cats, fmt.Sprintf("cp '%s' '%s.%s'", w.defaults[h], w.duringLog, h))
	}
	w.toolWith(w.path("bin/lkextend"), "lkextend", strings.Join(cats, "\n"))
	// mirror_action copies this system's file to during-ACTION.nodea.
	w.toolWith(w.lkroot+"/bin/mirror_action", "mirror_action", fmt.Sprintf(`cp '%s' '%s/during-'"$2"'.nodea'`, w.defaults["nodea"], w.dir))

	hosts := []map[string]any{{"name": "nodea"}}
	for _, h := range w.hosts[1:] {
		hosts = append(hosts, map[string]any{"name": h, "ssh": w.ssh(h)})
	}
	sios := map[string]any{
		"tag":            testTag,
		"lkroot":         w.lkroot,
		"bitmap_file":    w.bitmap,
		"defaults_file":  w.path("etc/default/LifeKeeper"),
		"out_of_service": []string{w.lkroot + "/bin/perform_action", "-t", testTag, "-a", "remove"},
		"in_service":     []string{w.lkroot + "/bin/perform_action", "-t", testTag, "-a", "restore"},
		"extend":         []string{w.path("bin/lkextend"), "--tag", testTag, "--target", "nodeb"},
	}
	if thirdNode != "" {
		delete(sios, "bitmap_file")
		sios["extend"] = []string{w.path("bin/lkextend"), "--tag", testTag, "--target", "nodec"}
		tn := map[string]any{
			"target":    "nodec",
			"copy_from": thirdNode,
			"stop_target": []any{
				map[string]any{"host": "nodec", "argv": []string{w.path("sbin/umount"), "/data"}},
				map[string]any{"host": "nodec", "argv": []string{w.path("sbin/mdadm"), "--stop", "/dev/md0"}},
			},
			"check_paused": []string{w.path("bin/check_paused"), testTag, "nodec"},
		}
		if thirdNode == "first_target" {
			delete(sios, "out_of_service")
			delete(sios, "in_service")
			tn["first_target"] = "nodeb"
			tn["stop_first_target"] = []any{
				map[string]any{"host": "nodeb", "argv": []string{w.path("sbin/umount"), "/data"}},
			}
		}
		sios["third_node"] = tn
	}
	data, err := json.MarshalIndent(map[string]any{"adapter": "sios", "hosts": hosts, "sios": sios}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	w.configFile = filepath.Join(w.dir, "resync.json")
	w.write(w.configFile, string(data), 0o644)
	return w
}

// session loads the configuration and makes a session with a clock that
// ticks one second per reading.
func (w *siosWorld) session(out *bytes.Buffer, dry bool) (Adapter, *Session) {
	w.t.Helper()
	cfg, err := LoadConfig(w.configFile)
	if err != nil {
		w.t.Fatal(err)
	}
	a, err := New(cfg)
	if err != nil {
		w.t.Fatal(err)
	}
	s := NewSession(cfg, out, dry)
	s.Now = tickingClock()
	return a, s
}

func tickingClock() func() time.Time {
	t := time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)
	return func() time.Time { t = t.Add(time.Second); return t }
}

// products is the log without the ssh transport lines (the fakes on the
// remote hosts log themselves, labelled with the host).
func (w *siosWorld) products() []string {
	var out []string
	for _, c := range w.calls() {
		if !strings.HasPrefix(c, "ssh\t") {
			out = append(out, c)
		}
	}
	return out
}

// assertRestored checks every defaults file is its original byte for
// byte, with no backup or temp file beside it.
func (w *siosWorld) assertRestored() {
	w.t.Helper()
	for _, h := range w.hosts {
		if got := w.read(w.defaults[h]); got != w.original[h] {
			w.t.Fatalf("%s's defaults file = %q, want the original %q", h, got, w.original[h])
		}
		entries, err := os.ReadDir(filepath.Dir(w.defaults[h]))
		if err != nil {
			w.t.Fatal(err)
		}
		if len(entries) != 1 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			w.t.Fatalf("%s: files beside the defaults file: %v", h, names)
		}
	}
}

func perform(action string) string { return tabs("perform_action", "-t", testTag, "-a", action) }

func TestSiosCaptureNewTarget(t *testing.T) {
	w := newSiosWorld(t, "")
	var out bytes.Buffer
	a, s := w.session(&out, false)
	var raw json.RawMessage
	if err := RunCapture(context.Background(), a, s, w.capture(&raw, nil)); err != nil {
		t.Fatal(err)
	}
	equalLines(t, "capture-side commands", w.products(), []string{
		perform("remove"),
		"CAPTURE",
		tabs("bitmap", "-c", w.bitmap),
		perform("restore"),
	})
	tok, err := ParseToken(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Clock: 11:00:01 is out_of_service's return (the mark), 11:00:02 the
	// bitmap clear.
	if want := time.Date(2026, 12, 3, 11, 0, 1, 0, time.UTC); !tok.Mark.Equal(want) {
		t.Fatalf("mark %v, want %v (when out_of_service returned)", tok.Mark, want)
	}
	wantFields := map[string]string{"procedure": "new_target", "source": "nodea", "tag": testTag, "bitmap_file": w.bitmap, "bitmap_cleared": "2026-12-03T11:00:02Z"}
	if fmt.Sprint(tok.Fields) != fmt.Sprint(wantFields) {
		t.Fatalf("token fields %v, want %v", tok.Fields, wantFields)
	}
	w.assertRestored() // the capture side edits no defaults file
}

func TestSiosCaptureFailures(t *testing.T) {
	captureFailed := errors.New("the store is full")
	for _, tc := range []struct {
		name       string
		failLabel  string // fake that exits 1
		captureErr error
		want       []string
		wantIs     error
	}{
		{name: "capture fails: back in service, bitmap not cleared", captureErr: captureFailed,
			want: []string{perform("remove"), "CAPTURE", perform("restore")}, wantIs: captureFailed},
		{name: "bitmap clear fails: back in service, no token", failLabel: "bitmap",
			want: []string{perform("remove"), "CAPTURE", tabs("bitmap", "-c", "BITMAP"), perform("restore")}, wantIs: ErrStep},
		{name: "out of service fails: no capture, in_service tried", failLabel: "perform_action",
			want: []string{perform("remove"), perform("restore")}, wantIs: ErrStep},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newSiosWorld(t, "")
			if tc.failLabel != "" {
				w.set(tc.failLabel, "exit", "1")
			}
			a, s := w.session(&bytes.Buffer{}, false)
			var raw json.RawMessage
			err := RunCapture(context.Background(), a, s, w.capture(&raw, tc.captureErr))
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("RunCapture: %v, want %v", err, tc.wantIs)
			}
			want := strings.Split(strings.ReplaceAll(strings.Join(tc.want, "\n"), "BITMAP", w.bitmap), "\n")
			equalLines(t, "commands", w.products(), want)
			if raw != nil {
				t.Fatalf("a token was made: %s", raw)
			}
		})
	}
}

func TestSiosCaptureInterrupted(t *testing.T) {
	w := newSiosWorld(t, "")
	a, s := w.session(&bytes.Buffer{}, false)
	ctx, cancel := context.WithCancel(context.Background())
	err := RunCapture(ctx, a, s, func(ctx context.Context, post func(context.Context) (json.RawMessage, error)) error {
		cancel() // SIGINT during the capture
		return ctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("RunCapture: %v, want context.Canceled", err)
	}
	// Cleanup ran on a context that was not cancelled.
	equalLines(t, "commands", w.products(), []string{perform("remove"), perform("restore")})
}

// extendWith captures a token in w, then runs the extend side.
func (w *siosWorld) tokenFromCapture() *Token {
	w.t.Helper()
	a, s := w.session(&bytes.Buffer{}, false)
	var raw json.RawMessage
	if err := RunCapture(context.Background(), a, s, w.capture(&raw, nil)); err != nil {
		w.t.Fatal(err)
	}
	tok, err := ParseToken(raw)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := os.Remove(w.log); err != nil {
		w.t.Fatal(err)
	}
	return tok
}

func TestSiosExtendNewTarget(t *testing.T) {
	w := newSiosWorld(t, "")
	tok := w.tokenFromCapture()
	var out bytes.Buffer
	a, s := w.session(&out, false)
	if err := RunExtend(context.Background(), a, s, tok, "/dev/sdb1"); err != nil {
		t.Fatal(err)
	}
	equalLines(t, "extend-side commands", w.products(), []string{tabs("lkextend", "--tag", testTag, "--target", "nodeb")})
	// While the extend ran, every system had LKDR_NO_FULL_SYNC=1 as the
	// last word on it, and only that changed.
	for _, h := range w.hosts {
		during := w.read(w.duringLog + "." + h)
		if want := setNoFullSync([]byte(w.original[h])); during != string(want) {
			t.Fatalf("%s's defaults during the extend:\n%s\nwant:\n%s", h, during, want)
		}
		if !noFullSyncSet([]byte(during)) {
			t.Fatalf("%s: LKDR_NO_FULL_SYNC=1 not in force during the extend", h)
		}
	}
	w.assertRestored()
	if !strings.Contains(out.String(), "+LKDR_NO_FULL_SYNC=1") || !strings.Contains(out.String(), "-LKDR_NO_FULL_SYNC=0") {
		t.Fatalf("step log lacks the diffs:\n%s", out.String())
	}
}

func TestSiosExtendAlwaysRestores(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(w *siosWorld)
		cancel bool
		wantIs error
		want   []string // product commands
	}{
		{name: "extend fails", setup: func(w *siosWorld) { w.set("lkextend", "exit", "1") },
			wantIs: ErrStep, want: []string{tabs("lkextend", "--tag", testTag, "--target", "nodeb")}},
		{name: "extend interrupted", setup: func(w *siosWorld) { w.set("lkextend", "block", "") }, cancel: true,
			wantIs: context.Canceled, want: []string{tabs("lkextend", "--tag", testTag, "--target", "nodeb")}},
		{name: "second host's edit fails: no extend", setup: func(w *siosWorld) {
			w.write(w.defaults["nodeb"]+backupSuffix, "left by a killed run\n", 0o644)
		}, wantIs: ErrStep, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newSiosWorld(t, "")
			tok := w.tokenFromCapture()
			tc.setup(w)
			a, s := w.session(&bytes.Buffer{}, false)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				go func() { w.waitRunning("lkextend"); cancel() }()
			}
			err := RunExtend(ctx, a, s, tok, "/dev/sdb1")
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("RunExtend: %v, want %v", err, tc.wantIs)
			}
			equalLines(t, "commands", w.products(), tc.want)
			if tc.want == nil {
				// The leftover backup is the operator's: kept, and nodeb's
				// file untouched; nodea's edit was undone.
				if w.read(w.defaults["nodeb"]+backupSuffix) != "left by a killed run\n" {
					t.Fatal("the leftover backup was changed")
				}
				os.Remove(w.defaults["nodeb"] + backupSuffix)
			}
			w.assertRestored()
		})
	}
}

func TestSiosExtendRefusals(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(w *siosWorld, tok *Token)
		want  string
	}{
		{name: "leftover LKDR_NO_FULL_SYNC=1", setup: func(w *siosWorld, _ *Token) {
			w.original["nodeb"] += "\nLKDR_NO_FULL_SYNC=1\n"
			w.write(w.defaults["nodeb"], w.original["nodeb"], 0o644)
		}, want: "nodeb:" + "DEFAULTS already sets LKDR_NO_FULL_SYNC=1"},
		{name: "token of another bitmap", setup: func(_ *siosWorld, tok *Token) {
			tok.Fields["bitmap_file"] = "/opt/LifeKeeper/bitmap_other"
		}, want: `bitmap_file is "/opt/LifeKeeper/bitmap_other"`},
		{name: "token of another resource", setup: func(_ *siosWorld, tok *Token) { tok.Fields["tag"] = "datarep-other" },
			want: `tag is "datarep-other", the configuration's "datarep-dr"`},
		{name: "token of another adapter", setup: func(_ *siosWorld, tok *Token) { tok.Adapter = "drbd" },
			want: `made by adapter "drbd"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newSiosWorld(t, "")
			tok := w.tokenFromCapture()
			tc.setup(w, tok)
			a, s := w.session(&bytes.Buffer{}, false)
			err := RunExtend(context.Background(), a, s, tok, "/dev/sdb1")
			want := strings.ReplaceAll(tc.want, "DEFAULTS", w.path("etc/default/LifeKeeper"))
			if !errors.Is(err, ErrCheck) || !strings.Contains(err.Error(), want) {
				t.Fatalf("RunExtend: %v, want ErrCheck with %q", err, want)
			}
			equalLines(t, "commands", w.products(), nil)
			w.assertRestored()
		})
	}
}

func TestSiosDryRunTouchesNothing(t *testing.T) {
	for _, third := range []string{"", "source", "first_target"} {
		t.Run("third_node="+third, func(t *testing.T) {
			w := newSiosWorld(t, third)
			before := w.snapshot()
			var out bytes.Buffer
			a, s := w.session(&out, true)
			if err := RunCapture(context.Background(), a, s, func(context.Context, func(context.Context) (json.RawMessage, error)) error {
				t.Fatal("dry run called the capture")
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			tok := &Token{Adapter: "sios", Mark: time.Now(), Fields: map[string]string{"procedure": a.(*siosAdapter).procedure(), "source": "nodea", "bitmap_file": w.bitmap, "tag": testTag, "target": "nodec"}}
			a, s = w.session(&out, true)
			if err := RunExtend(context.Background(), a, s, tok, "/dev/sdb1"); err != nil {
				t.Fatal(err)
			}
			sameSnapshot(t, before, w.snapshot())
			// Only reads ran: the defaults files over ssh, and the
			// read-only check that the mirror is paused.
			for _, c := range w.calls() {
				if strings.HasPrefix(c, "ssh\t") && strings.Contains(c, "\tcat -- ") || strings.HasPrefix(c, "check_paused\t") {
					continue
				}
				t.Errorf("dry run ran %q", c)
			}
			for _, want := range []string{"would run ", w.lkroot + "/bin/", "would edit nodeb:" + w.path("etc/default/LifeKeeper"), "+LKDR_NO_FULL_SYNC=1", "would restore nodeb:"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("dry-run output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestSiosThirdNode(t *testing.T) {
	pause := func(target string) string { return tabs("mirror_action", testTag, "pause", "nodea", target) }
	resume := func(target string) string { return tabs("mirror_action", testTag, "resume", "nodea", target) }
	extend := tabs("lkextend", "--tag", testTag, "--target", "nodec")
	stopC := []string{tabs("nodec:umount", "/data"), tabs("nodec:mdadm", "--stop", "/dev/md0")}
	for _, tc := range []struct {
		copyFrom    string
		wantCapture []string
		fields      map[string]string
	}{
		{copyFrom: "source", wantCapture: append(append([]string{extend, pause("nodec")}, stopC...),
			perform("remove"), "CAPTURE", perform("restore"))},
		{copyFrom: "first_target", wantCapture: append(append([]string{extend, pause("nodec")}, stopC...),
			pause("nodeb"), tabs("nodeb:umount", "/data"), "CAPTURE", resume("nodeb"))},
	} {
		t.Run(tc.copyFrom, func(t *testing.T) {
			w := newSiosWorld(t, tc.copyFrom)
			a, s := w.session(&bytes.Buffer{}, false)
			var raw json.RawMessage
			if err := RunCapture(context.Background(), a, s, w.capture(&raw, nil)); err != nil {
				t.Fatal(err)
			}
			equalLines(t, "capture-side commands", w.products(), tc.wantCapture)
			// The extend to the new target ran with the setting on all
			// three systems, and it was gone before the pause.
			for _, h := range w.hosts {
				if during := w.read(w.duringLog + "." + h); !noFullSyncSet([]byte(during)) {
					t.Fatalf("%s's defaults during the extend:\n%s", h, during)
				}
			}
			if during := w.read(filepath.Join(w.dir, "during-pause.nodea")); during != w.original["nodea"] {
				t.Fatalf("LKDR_NO_FULL_SYNC still set at the pause, i.e. for the days in transit:\n%s", during)
			}
			w.assertRestored()
			tok, err := ParseToken(raw)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Fields["procedure"] != "third_node_from_"+tc.copyFrom || tok.Fields["target"] != "nodec" || tok.Fields["tag"] != testTag || tok.Fields["paused"] != tok.Mark.Format(time.RFC3339Nano) {
				t.Fatalf("token %+v", tok)
			}

			// Extend side: still paused? then resume with the setting on.
			os.Remove(w.log)
			a, s = w.session(&bytes.Buffer{}, false)
			if err := RunExtend(context.Background(), a, s, tok, "/dev/sdc1"); err != nil {
				t.Fatal(err)
			}
			equalLines(t, "extend-side commands", w.products(), []string{tabs("check_paused", testTag, "nodec"), resume("nodec")})
			if during := w.read(filepath.Join(w.dir, "during-resume.nodea")); !noFullSyncSet([]byte(during)) {
				t.Fatalf("LKDR_NO_FULL_SYNC not set during the resume of the new target:\n%s", during)
			}
			w.assertRestored()

			// Not paused any more: refused before anything changes.
			os.Remove(w.log)
			w.set("check_paused", "exit", "1")
			a, s = w.session(&bytes.Buffer{}, false)
			err = RunExtend(context.Background(), a, s, tok, "/dev/sdc1")
			if !errors.Is(err, ErrCheck) || !strings.Contains(err.Error(), "not paused") {
				t.Fatalf("extend with the mirror resumed: %v", err)
			}
			equalLines(t, "commands", w.products(), []string{tabs("check_paused", testTag, "nodec")})
			w.assertRestored()
		})
	}
}

func TestSiosThirdNodeFirstTargetResumedOnFailure(t *testing.T) {
	w := newSiosWorld(t, "first_target")
	a, s := w.session(&bytes.Buffer{}, false)
	var raw json.RawMessage
	err := RunCapture(context.Background(), a, s, w.capture(&raw, errors.New("disk read error")))
	if err == nil {
		t.Fatal("RunCapture succeeded")
	}
	calls := w.products()
	if last := calls[len(calls)-1]; last != tabs("mirror_action", testTag, "resume", "nodea", "nodeb") {
		t.Fatalf("after a failed copy the first target was not resumed: %q", calls)
	}
	w.assertRestored()
}

func TestNoFullSyncEdits(t *testing.T) {
	for _, tc := range []struct{ in, set string }{
		{"", "LKDR_NO_FULL_SYNC=1\n"},
		{"A=1", "A=1\nLKDR_NO_FULL_SYNC=1\n"},
		{"A=1\n", "A=1\nLKDR_NO_FULL_SYNC=1\n"},
		{"LKDR_NO_FULL_SYNC=0\nB=2\n", "LKDR_NO_FULL_SYNC=1\nB=2\n"},
		{"  export LKDR_NO_FULL_SYNC=\"0\" # off\nB=2", "LKDR_NO_FULL_SYNC=1\nB=2"},
		{"#LKDR_NO_FULL_SYNC=0\n", "#LKDR_NO_FULL_SYNC=0\nLKDR_NO_FULL_SYNC=1\n"},
		{"LKDR_NO_FULL_SYNCX=0\n", "LKDR_NO_FULL_SYNCX=0\nLKDR_NO_FULL_SYNC=1\n"},
	} {
		got := setNoFullSync([]byte(tc.in))
		if string(got) != tc.set {
			t.Errorf("setNoFullSync(%q) = %q, want %q", tc.in, got, tc.set)
		}
		if !noFullSyncSet(got) {
			t.Errorf("noFullSyncSet(%q) = false", got)
		}
		if noFullSyncSet([]byte(tc.in)) {
			t.Errorf("noFullSyncSet(%q) = true", tc.in)
		}
		// Someone appends a line meanwhile: the revert keeps it and puts
		// the original assignment (or none) back.
		changed := append(append([]byte(nil), got...), "NEW=1\n"...)
		reverted := revertNoFullSync(changed, []byte(tc.in))
		if noFullSyncSet(reverted) || !strings.Contains(string(reverted), "NEW=1") {
			t.Errorf("revertNoFullSync(%q) = %q", changed, reverted)
		}
	}
	if !noFullSyncSet([]byte("LKDR_NO_FULL_SYNC=0\nLKDR_NO_FULL_SYNC=1\n")) || noFullSyncSet([]byte("LKDR_NO_FULL_SYNC=1\nLKDR_NO_FULL_SYNC=0\n")) {
		t.Error("noFullSyncSet must follow the last assignment, as the shell does")
	}
}

func TestSiosCaptureRefusesAMissingBitmap(t *testing.T) {
	w := newSiosWorld(t, "")
	if err := os.Remove(w.bitmap); err != nil {
		t.Fatal(err)
	}
	a, s := w.session(&bytes.Buffer{}, false)
	var raw json.RawMessage
	err := RunCapture(context.Background(), a, s, w.capture(&raw, nil))
	if !errors.Is(err, ErrCheck) || !strings.Contains(err.Error(), "sios.bitmap_file") {
		t.Fatalf("RunCapture: %v, want ErrCheck naming sios.bitmap_file", err)
	}
	equalLines(t, "commands", w.products(), nil) // not even out of service
}
