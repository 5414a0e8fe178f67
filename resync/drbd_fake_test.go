package resync

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// scriptedTools are fake executables for the drbd and mdraid tests: POSIX
// shell scripts, one per tool name, that append their argv to one shared
// log (a line per call: the tool's name and its arguments, tab-separated)
// and answer from rules: the first rule whose pattern matches the line
// prints its canned stdout and stderr and exits with its code. A rule
// with several answers gives them in turn (the last one repeats), for a
// status that changes between polls. A call that no rule matches fails
// with exit 97, so an unexpected command fails the test.
type scriptedTools struct {
	t     *testing.T
	dir   string
	rules int
	bin   map[string]string
}

// scriptedAnswer is one answer of a rule.
type scriptedAnswer struct {
	Stdout, Stderr string
	Code           int
}

func newScriptedTools(t *testing.T, tools ...string) *scriptedTools {
	t.Helper()
	st := &scriptedTools{t: t, dir: t.TempDir(), bin: make(map[string]string)}
	scriptedMust(t, os.MkdirAll(filepath.Join(st.dir, "rules"), 0o755))
	scriptedMust(t, os.WriteFile(filepath.Join(st.dir, "log"), nil, 0o644))
	for _, name := range tools {
		st.add(name)
	}
	return st
}

func scriptedMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// scriptedToolScript is the fake executable. @DIR@ and @NAME@ are
// replaced; the rules are directories rules/NNN holding "match" (the
// pattern), optionally "prefix" (match the start of the line), "save"
// (copy the last argument, a file, to saved.N), and per answer out.K,
// err.K, code.K.
const scriptedToolScript = `#!/bin/sh
dir='@DIR@'
line='@NAME@'
for a in "$@"; do line="$line	$a"; done
last=''
for a in "$@"; do last="$a"; done
printf '%s\n' "$line" >> "$dir/log"
for r in "$dir"/rules/*; do
	[ -d "$r" ] || continue
	pat=$(cat "$r/match")
	if [ -e "$r/prefix" ]; then
		case "$line" in "$pat"*) ;; *) continue ;; esac
	else
		[ "$line" = "$pat" ] || continue
	fi
	n=$(cat "$r/count" 2>/dev/null || echo 0)
	echo $((n + 1)) > "$r/count"
	if [ -e "$r/save" ]; then cp "$last" "$r/saved.$n"; fi
	k=$n
	while [ ! -e "$r/code.$k" ]; do k=$((k - 1)); done
	cat "$r/out.$k"
	cat "$r/err.$k" >&2
	exit "$(cat "$r/code.$k")"
done
echo "fake @NAME@: no rule for: $line" >&2
exit 97
`

func (st *scriptedTools) add(name string) {
	st.t.Helper()
	p := filepath.Join(st.dir, "bin", name)
	scriptedMust(st.t, os.MkdirAll(filepath.Dir(p), 0o755))
	script := strings.NewReplacer("@DIR@", st.dir, "@NAME@", name).Replace(scriptedToolScript)
	scriptedMust(st.t, os.WriteFile(p, []byte(script), 0o755))
	st.bin[name] = p
}

// on adds a rule for the exact command line (tool and arguments).
func (st *scriptedTools) on(argv []string, answers ...scriptedAnswer) *scriptedTools {
	st.rule(strings.Join(argv, "\t"), false, false, answers)
	return st
}

// onPrefix adds a rule for every command line that starts with argv.
func (st *scriptedTools) onPrefix(argv []string, answers ...scriptedAnswer) *scriptedTools {
	st.rule(strings.Join(argv, "\t"), true, false, answers)
	return st
}

// onSave adds a rule for the exact command line that also keeps a copy
// of the file named by its last argument (see saved).
func (st *scriptedTools) onSave(argv []string, answers ...scriptedAnswer) *scriptedTools {
	st.rule(strings.Join(argv, "\t"), false, true, answers)
	return st
}

func (st *scriptedTools) rule(pattern string, prefix, save bool, answers []scriptedAnswer) {
	st.t.Helper()
	if len(answers) == 0 {
		answers = []scriptedAnswer{{}}
	}
	r := filepath.Join(st.dir, "rules", fmt.Sprintf("%03d", st.rules))
	st.rules++
	scriptedMust(st.t, os.MkdirAll(r, 0o755))
	scriptedMust(st.t, os.WriteFile(filepath.Join(r, "match"), []byte(pattern), 0o644))
	if prefix {
		scriptedMust(st.t, os.WriteFile(filepath.Join(r, "prefix"), nil, 0o644))
	}
	if save {
		scriptedMust(st.t, os.WriteFile(filepath.Join(r, "save"), nil, 0o644))
	}
	for k, a := range answers {
		scriptedMust(st.t, os.WriteFile(filepath.Join(r, fmt.Sprintf("out.%d", k)), []byte(a.Stdout), 0o644))
		scriptedMust(st.t, os.WriteFile(filepath.Join(r, fmt.Sprintf("err.%d", k)), []byte(a.Stderr), 0o644))
		scriptedMust(st.t, os.WriteFile(filepath.Join(r, fmt.Sprintf("code.%d", k)), []byte(fmt.Sprint(a.Code)), 0o644))
	}
}

// saved is the copy a save rule kept of its n-th call's file (from 0).
func (st *scriptedTools) saved(rule, n int) string {
	st.t.Helper()
	data, err := os.ReadFile(filepath.Join(st.dir, "rules", fmt.Sprintf("%03d", rule), fmt.Sprintf("saved.%d", n)))
	scriptedMust(st.t, err)
	return string(data)
}

// calls is the log: one entry per call, the tool's name and arguments
// joined by spaces (for readable comparisons).
func (st *scriptedTools) calls() []string {
	st.t.Helper()
	data, err := os.ReadFile(filepath.Join(st.dir, "log"))
	scriptedMust(st.t, err)
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line != "" {
			out = append(out, strings.ReplaceAll(line, "\t", " "))
		}
	}
	return out
}

// scriptedOK is an answer printing stdout with exit 0.
func scriptedOK(stdout string) scriptedAnswer { return scriptedAnswer{Stdout: stdout} }

// scriptedFail is an answer with stderr and a non-zero exit.
func scriptedFail(code int, stderr string) scriptedAnswer {
	return scriptedAnswer{Stderr: stderr, Code: code}
}

// scriptedDiff reports the first difference between two call lists.
func scriptedDiff(got, want []string) string {
	for i := 0; i < max(len(got), len(want)); i++ {
		g, w := "(none)", "(none)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Sprintf("call %d:\n got %s\nwant %s\nall calls:\n  %s", i, g, w, strings.Join(got, "\n  "))
		}
	}
	return ""
}
