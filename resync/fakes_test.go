package resync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeWorld is a temporary tree for the adapters' tests: fake executables
// that append their argv to one log and do what their control files say,
// config files for this system under root, and per-host trees that the
// fake ssh maps the same absolute paths to (a remote host's
// /etc/default/LifeKeeper is its own file).
type fakeWorld struct {
	t    *testing.T
	dir  string // everything: root, hosts, bin, ctl, log
	root string // this system's tree
	ctl  string // control files: LABEL.exit, LABEL.stdout, LABEL.stderr, LABEL.block
	log  string
}

func newFakeWorld(t *testing.T) *fakeWorld {
	t.Helper()
	dir := t.TempDir()
	w := &fakeWorld{t: t, dir: dir, root: filepath.Join(dir, "root"), ctl: filepath.Join(dir, "ctl"), log: filepath.Join(dir, "argv.log")}
	for _, d := range []string{w.root, w.ctl} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// path is p inside this system's tree.
func (w *fakeWorld) path(p string) string { return filepath.Join(w.root, p) }

// hostPath is p inside host's tree (what the fake ssh maps root to).
func (w *fakeWorld) hostPath(host, p string) string {
	return filepath.Join(w.dir, "hosts", host, p)
}

// write creates file p (a full path) with data and mode.
func (w *fakeWorld) write(p, data string, mode os.FileMode) {
	w.t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		w.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		w.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		w.t.Fatal(err)
	}
}

func (w *fakeWorld) read(p string) string {
	w.t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		w.t.Fatal(err)
	}
	return string(b)
}

// tool writes a fake executable at p that logs "label<TAB>arg<TAB>arg..."
// and returns p. Control files under ctl/label: .stdout and .stderr are
// printed, .block makes it note .running and sleep until killed, .exit
// holds its exit status (default 0).
func (w *fakeWorld) tool(p, label string) string {
	return w.toolWith(p, label, "")
}

// toolWith is tool with extra shell lines run after the logging (they
// see the arguments as "$@").
func (w *fakeWorld) toolWith(p, label, extra string) string {
	w.t.Helper()
	ctl := filepath.Join(w.ctl, label)
	script := fmt.Sprintf(`#!/bin/sh
{ printf '%%s' '%s'; for a in "$@"; do printf '\t%%s' "$a"; done; printf '\n'; } >> '%s'
%s
[ -f '%s.stdout' ] && cat '%s.stdout'
[ -f '%s.stderr' ] && cat '%s.stderr' >&2
if [ -f '%s.block' ]; then : > '%s.running'; exec sleep 60; fi
[ -f '%s.exit' ] && exit "$(cat '%s.exit')"
exit 0
`, label, w.log, extra, ctl, ctl, ctl, ctl, ctl, ctl, ctl, ctl)
	w.write(p, script, 0o755)
	return p
}

// ssh writes the fake ssh for host: it logs its argv as "ssh" and runs
// the last argument with sh, this system's tree mapped to host's.
func (w *fakeWorld) ssh(host string) []string {
	w.t.Helper()
	p := filepath.Join(w.dir, "bin", "ssh")
	script := fmt.Sprintf(`#!/bin/bash
{ printf '%%s' ssh; for a in "$@"; do printf '\t%%s' "$a"; done; printf '\n'; } >> '%s'
for last; do :; done
host=${1#root@}
cmd=${last//'%s/'/'%s/'$host/}
exec sh -c "$cmd"
`, w.log, w.root, filepath.Join(w.dir, "hosts"))
	w.write(p, script, 0o755)
	return []string{p, "root@" + host}
}

// set writes control file label.kind (exit, stdout, stderr, block).
func (w *fakeWorld) set(label, kind, data string) {
	w.write(filepath.Join(w.ctl, label+"."+kind), data, 0o644)
}

// calls is the log: one "label arg arg" line per call, tab-separated.
func (w *fakeWorld) calls() []string {
	w.t.Helper()
	b, err := os.ReadFile(w.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		w.t.Fatal(err)
	}
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// waitRunning waits until the blocking fake label runs.
func (w *fakeWorld) waitRunning(label string) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(w.ctl, label+".running")); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.t.Fatalf("fake %s never started", label)
}

// snapshot describes every file and directory under dir (root and
// hosts, not the log or the control files): mode, mtime and content
// hash, to compare a tree before and after a dry run.
func (w *fakeWorld) snapshot() map[string]string {
	w.t.Helper()
	out := make(map[string]string)
	for _, top := range []string{w.root, filepath.Join(w.dir, "hosts"), filepath.Join(w.dir, "bin")} {
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if os.IsNotExist(err) && p == top {
				return nil
			}
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			desc := fmt.Sprintf("%v %d", fi.Mode(), fi.ModTime().UnixNano())
			if fi.Mode().IsRegular() {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				desc += fmt.Sprintf(" %x", sha256.Sum256(b))
			}
			out[p] = desc
			return nil
		})
		if err != nil {
			w.t.Fatal(err)
		}
	}
	return out
}

// sameSnapshot fails the test with the differences of two snapshots.
func sameSnapshot(t *testing.T, before, after map[string]string) {
	t.Helper()
	var diffs bytes.Buffer
	for p, d := range before {
		if a, ok := after[p]; !ok {
			fmt.Fprintf(&diffs, "removed %s\n", p)
		} else if a != d {
			fmt.Fprintf(&diffs, "changed %s: %s -> %s\n", p, d, a)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			fmt.Fprintf(&diffs, "created %s\n", p)
		}
	}
	if diffs.Len() > 0 {
		t.Fatalf("tree changed:\n%s", diffs.String())
	}
}

// tabs joins words with tabs, as the fake log does.
func tabs(words ...string) string { return strings.Join(words, "\t") }

// equalLines fails with both lists when they differ.
func equalLines(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s:\ngot:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// capture is a capture function that logs CAPTURE and then calls
// postCapture, keeping the token.
func (w *fakeWorld) capture(token *json.RawMessage, fail error) func(context.Context, func(context.Context) (json.RawMessage, error)) error {
	return func(ctx context.Context, post func(context.Context) (json.RawMessage, error)) error {
		f, err := os.OpenFile(w.log, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		fmt.Fprintln(f, "CAPTURE")
		f.Close()
		if fail != nil {
			return fail
		}
		tok, err := post(ctx)
		*token = tok
		return err
	}
}
