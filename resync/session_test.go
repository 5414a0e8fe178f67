package resync

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// sessionFor is a session over hosts "nodea" (this system) and "nodeb"
// (over the fake ssh), logging to out.
func sessionFor(w *fakeWorld, out *bytes.Buffer, dry bool) *Session {
	cfg := &Config{Hosts: []HostConfig{{Name: "nodea"}, {Name: "nodeb", SSH: w.ssh("nodeb")}}}
	return NewSession(cfg, out, dry)
}

func TestSessionEditFileRestoresByteForByte(t *testing.T) {
	const original = "LKROOT=/opt/LifeKeeper\nLKDR_NO_FULL_SYNC=0\n# no newline at the end"
	for _, host := range []string{"", "nodea", "nodeb"} {
		t.Run("host="+host, func(t *testing.T) {
			w := newFakeWorld(t)
			var out bytes.Buffer
			s := sessionFor(w, &out, false)
			file := w.path("etc/default/LifeKeeper")
			onDisk := file
			if host == "nodeb" {
				onDisk = w.hostPath("nodeb", "etc/default/LifeKeeper")
				w.write(file, "this system's own file\n", 0o600) // must stay untouched
			}
			w.write(onDisk, original, 0o640)
			ctx := context.Background()

			err := s.EditFile(ctx, host, file, func(old []byte) ([]byte, error) {
				return append(old, "\nLKDR_NO_FULL_SYNC=1\n"...), nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := w.read(onDisk), original+"\nLKDR_NO_FULL_SYNC=1\n"; got != want {
				t.Fatalf("edited file = %q, want %q", got, want)
			}
			if got := w.read(onDisk + backupSuffix); got != original {
				t.Fatalf("backup = %q, want the original", got)
			}
			if fi, err := os.Stat(onDisk); err != nil || fi.Mode().Perm() != 0o640 {
				t.Fatalf("mode after edit: %v %v, want 0640", fi.Mode(), err)
			}
			if !strings.Contains(out.String(), "+LKDR_NO_FULL_SYNC=1") {
				t.Fatalf("step log has no diff of the edit:\n%s", out.String())
			}
			if s.Pending() != 1 {
				t.Fatalf("Pending = %d, want 1", s.Pending())
			}

			if err := s.RestoreAll(ctx); err != nil {
				t.Fatal(err)
			}
			if got := w.read(onDisk); got != original {
				t.Fatalf("restored file = %q, want the original byte for byte", got)
			}
			if _, err := os.Stat(onDisk + backupSuffix); !os.IsNotExist(err) {
				t.Fatalf("backup still there after the restore: %v", err)
			}
			if fi, _ := os.Stat(onDisk); fi.Mode().Perm() != 0o640 {
				t.Fatalf("mode after restore: %v, want 0640", fi.Mode())
			}
			if host == "nodeb" && w.read(file) != "this system's own file\n" {
				t.Fatal("the remote edit touched this system's file")
			}
			if s.Pending() != 0 {
				t.Fatalf("Pending = %d after RestoreAll, want 0", s.Pending())
			}
		})
	}
}

func TestSessionRestoreOfAFileChangedSince(t *testing.T) {
	for _, tc := range []struct {
		name     string
		revert   func([]byte) ([]byte, error)
		wantErr  bool
		wantFile string
	}{
		{name: "no revert: refused, backup kept", wantErr: true, wantFile: "a=1\nmine=1\nother=1\n"},
		{name: "revert", revert: func(cur []byte) ([]byte, error) {
			return bytes.Replace(cur, []byte("mine=1\n"), nil, 1), nil
		}, wantFile: "a=1\nother=1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFakeWorld(t)
			s := sessionFor(w, &bytes.Buffer{}, false)
			file := w.path("f")
			w.write(file, "a=1\n", 0o644)
			ctx := context.Background()
			if err := s.EditFileReversible(ctx, "", file, func(old []byte) ([]byte, error) { return append(old, "mine=1\n"...), nil }, tc.revert); err != nil {
				t.Fatal(err)
			}
			w.write(file, "a=1\nmine=1\nother=1\n", 0o644) // the product (or the operator) changed it meanwhile
			err := s.RestoreAll(ctx)
			if (err != nil) != tc.wantErr {
				t.Fatalf("RestoreAll: %v, want error %v", err, tc.wantErr)
			}
			if got := w.read(file); got != tc.wantFile {
				t.Fatalf("file = %q, want %q", got, tc.wantFile)
			}
			_, statErr := os.Stat(file + backupSuffix)
			if tc.wantErr {
				if !errors.Is(err, ErrStep) || !strings.Contains(err.Error(), backupSuffix) {
					t.Fatalf("error %v: want ErrStep naming the backup", err)
				}
				if statErr != nil {
					t.Fatal("the backup is gone although the restore was refused")
				}
			} else if !os.IsNotExist(statErr) {
				t.Fatal("backup left after a successful revert")
			}
		})
	}
}

func TestSessionRefusesALeftoverBackup(t *testing.T) {
	for _, host := range []string{"", "nodeb"} {
		t.Run("host="+host, func(t *testing.T) {
			w := newFakeWorld(t)
			s := sessionFor(w, &bytes.Buffer{}, false)
			file := w.path("etc/default/LifeKeeper")
			onDisk := file
			if host != "" {
				onDisk = w.hostPath(host, "etc/default/LifeKeeper")
			}
			w.write(onDisk, "LKDR_NO_FULL_SYNC=1\n", 0o644) // left by a run that was killed
			w.write(onDisk+backupSuffix, "LKDR_NO_FULL_SYNC=0\n", 0o644)
			err := s.EditFile(context.Background(), host, file, func(old []byte) ([]byte, error) { return []byte("x\n"), nil })
			if err == nil || !strings.Contains(err.Error(), "earlier seedship run did not finish") {
				t.Fatalf("EditFile over a leftover backup: %v, want a refusal", err)
			}
			if w.read(onDisk) != "LKDR_NO_FULL_SYNC=1\n" || w.read(onDisk+backupSuffix) != "LKDR_NO_FULL_SYNC=0\n" {
				t.Fatal("the refused edit changed the file or the backup")
			}
			if s.Pending() != 0 {
				t.Fatal("a refused edit was put on the undo stack")
			}
		})
	}
}

func TestSessionDryRunTouchesNothing(t *testing.T) {
	w := newFakeWorld(t)
	var out bytes.Buffer
	s := sessionFor(w, &out, true)
	tool := w.tool(w.path("usr/bin/tool"), "tool")
	file := w.path("etc/conf")
	w.write(file, "a=1\n", 0o644)
	w.write(w.hostPath("nodeb", "etc/conf"), "b=1\n", 0o644)
	before := w.snapshot()
	ctx := context.Background()

	if _, err := s.Do(ctx, "", tool, "change", "it"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Do(ctx, "nodeb", tool, "remote", "change"); err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"", "nodeb"} {
		if err := s.EditFile(ctx, host, file, func(old []byte) ([]byte, error) { return append(old, "new=1\n"...), nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RestoreAll(ctx); err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, before, w.snapshot())
	for _, c := range w.calls() {
		if !strings.HasPrefix(c, "ssh") { // reading nodeb's file over ssh is allowed
			t.Fatalf("dry run ran %q", c)
		}
		if !strings.Contains(c, "cat -- ") {
			t.Fatalf("dry run ran a changing command over ssh: %q", c)
		}
	}
	log := out.String()
	for _, want := range []string{
		"would run " + tool + " change it",
		"would run on nodeb: " + tool + " remote change",
		"--- a/" + file, "+++ b/" + file, "+new=1",
		"--- a/nodeb:" + file, "would restore nodeb:" + file, "-new=1",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, log)
		}
	}
}

func TestSessionCommandErrors(t *testing.T) {
	w := newFakeWorld(t)
	s := sessionFor(w, &bytes.Buffer{}, false)
	tool := w.tool(w.path("bin/tool"), "tool")
	w.set("tool", "exit", "3")
	w.set("tool", "stderr", "tool: the mirror\nis busy\n")
	_, err := s.Do(context.Background(), "", tool, "pause", "a b")
	var ce *CommandError
	if !errors.Is(err, ErrStep) || !errors.As(err, &ce) {
		t.Fatalf("error %v: want a CommandError matching ErrStep", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, tool+" pause 'a b'") || !strings.Contains(msg, "the mirror is busy") || !strings.Contains(msg, "exit status 3") {
		t.Fatalf("error %q: want one line with the argv, the status and the stderr", msg)
	}
}

func TestSessionSSHKeepsEveryWord(t *testing.T) {
	w := newFakeWorld(t)
	s := sessionFor(w, &bytes.Buffer{}, false)
	tool := w.tool(w.hostPath("nodeb", "bin/tool"), "nodeb:tool")
	words := []string{"two words", "it's", `$HOME`, "a;b", `"q"`, "", "*"}
	if _, err := s.Do(context.Background(), "nodeb", append([]string{w.path("bin/tool")}, words...)...); err != nil {
		t.Fatal(err)
	}
	calls := w.calls()
	if len(calls) != 2 || calls[1] != tabs(append([]string{"nodeb:tool"}, words...)...) {
		t.Fatalf("remote argv:\n%q\nwant the words unchanged (%s)", calls, tool)
	}
	if !strings.HasPrefix(calls[0], tabs("ssh", "root@nodeb")) {
		t.Fatalf("ssh call %q: want the configured prefix", calls[0])
	}
}

func TestSessionInterruptedCommand(t *testing.T) {
	w := newFakeWorld(t)
	s := sessionFor(w, &bytes.Buffer{}, false)
	tool := w.tool(w.path("bin/tool"), "tool")
	w.set("tool", "block", "")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { w.waitRunning("tool"); cancel() }()
	_, err := s.Do(ctx, "", tool)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrStep) {
		t.Fatalf("interrupted command: %v, want context.Canceled and ErrStep", err)
	}
}

func TestSessionRestoreAllRetriesWhatFailed(t *testing.T) {
	w := newFakeWorld(t)
	s := sessionFor(w, &bytes.Buffer{}, false)
	file := w.path("f")
	w.write(file, "old\n", 0o644)
	if err := s.EditFile(context.Background(), "", file, func([]byte) ([]byte, error) { return []byte("new\n"), nil }); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.RestoreAll(cancelled); err == nil {
		t.Fatal("RestoreAll on a cancelled context succeeded")
	}
	if s.Pending() != 1 || w.read(file) != "new\n" {
		t.Fatalf("after a failed restore: Pending %d, file %q", s.Pending(), w.read(file))
	}
	if err := s.RestoreAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.read(file) != "old\n" || s.Pending() != 0 {
		t.Fatal("the second RestoreAll did not restore the file")
	}
}

func TestSessionUnknownHost(t *testing.T) {
	w := newFakeWorld(t)
	s := sessionFor(w, &bytes.Buffer{}, false)
	_, err := s.Query(context.Background(), "nodez", "true")
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `"nodez"`) {
		t.Fatalf("unknown host: %v", err)
	}
}
