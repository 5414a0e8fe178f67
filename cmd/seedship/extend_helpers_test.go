//go:build linux

package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/resync"
)

// fakeProduct is a replication product made of fake executables: shell
// scripts that append their name and argv (tab-separated) to a log, run
// by the exec adapter from a configuration file.
type fakeProduct struct {
	root   string // everything of the product: bin/, the log, the config
	log    string
	config string
}

// newFakeProduct writes the fake executables and an exec configuration.
// postCapture is what the post_capture command prints (the token lines);
// then, each command whose name is a key of then runs that shell code
// after logging its argv.
func newFakeProduct(t *testing.T, postCapture string, then ...map[string]string) fakeProduct {
	t.Helper()
	root := t.TempDir()
	fp := fakeProduct{root: root, log: filepath.Join(root, "argv.log"), config: filepath.Join(root, "resync.json")}
	logArgv := `printf '%s' "$(basename "$0")" >> ` + shellQuote(fp.log) + `
for a; do printf '\t%s' "$a" >> ` + shellQuote(fp.log) + `; done
printf '\n' >> ` + shellQuote(fp.log) + "\n"
	scripts := map[string]string{
		"mark":         logArgv,
		"post_capture": logArgv + "cat <<'EOF'\n" + postCapture + "\nEOF\n",
		"pre_extend":   logArgv,
		"extend":       logArgv,
		"cleanup":      logArgv,
	}
	cfg := map[string]any{}
	for name, body := range scripts {
		for _, m := range then {
			body += m[name] + "\n"
		}
		p := filepath.Join(root, "bin", name)
		writeFile(t, p, []byte("#!/bin/sh\n"+body))
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
		argv := []string{p, "{side}"}
		if name == "pre_extend" || name == "extend" {
			argv = append(argv, "{target}", "{token.volume}")
		}
		cfg[name] = argv
	}
	b, err := json.Marshal(map[string]any{"adapter": "exec", "exec": cfg})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, fp.config, b)
	return fp
}

// calls returns the logged calls, one "name\targ..." string each.
func (fp fakeProduct) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(fp.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// names returns the names of the logged calls, in order.
func (fp fakeProduct) names(t *testing.T) []string {
	var out []string
	for _, c := range fp.calls(t) {
		name, _, _ := strings.Cut(c, "\t")
		out = append(out, name)
	}
	return out
}

// ran reports whether the fake product's command name ran.
func (fp fakeProduct) ran(t *testing.T, name string) bool {
	for _, n := range fp.names(t) {
		if n == name {
			return true
		}
	}
	return false
}

// captureAdapterCLI runs the capture command with args (which include
// --adapter).
func captureAdapterCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	return seedshipCtx(context.Background(), append([]string{"capture"}, args...)...)
}

// tokenOf decodes the seed token of the image at img.
func tokenOf(t *testing.T, img string) *resync.Token {
	t.Helper()
	tok, err := resync.ParseToken(loadManifest(t, img).Header.Resync)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// errorLine checks that the run's error is one line, "seedship: ...",
// the last on stderr (the step log and verify's BAD lines come before
// it), containing every one of names.
func errorLine(t *testing.T, r cliResult, names ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, "seedship: ") {
			n++
		}
	}
	if n != 1 || !strings.HasPrefix(last, "seedship: ") {
		t.Errorf("want one error line \"seedship: ...\", last on stderr, got %s", r)
		return
	}
	for _, name := range names {
		if !strings.Contains(last, name) {
			t.Errorf("error %q does not name %q", last, name)
		}
	}
}
