package resync_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/seedship/seedship/resync"
)

// The README's walkthroughs are the manual of the adapters: these tests
// keep them true. Two conventions make them checkable:
//
//   - a configuration example is a ```json block on the line right after
//     "<!-- seedship-config PATH -->", where PATH is the file the commands
//     name with --config;
//   - a command is a line starting with "seedship " in a ```sh block.
//
// Every configuration must load (resync.LoadConfig, as the CLI loads it),
// and every command may use only flags that `seedship CMD --help` of the
// binary built from this tree lists, before its operands (urfave/cli stops
// reading flags at the first operand), with --adapter and --config naming
// a configuration shown, of that adapter.

const readmePath = "../README.md"

// readmeConfigMarker is the line before a configuration example.
var readmeConfigMarker = regexp.MustCompile(`^<!-- seedship-config (\S+) -->$`)

// readmeConfig is one marked configuration example.
type readmeConfig struct {
	path string // as the marker names it
	line int    // of the ```json line
	body []byte
}

// readmeCommand is one seedship command line (continuations joined).
type readmeCommand struct {
	line  int
	text  string
	words []string // shell words, comment dropped; words[0] == "seedship"
}

// readmeDoc is what the checks read from a README.
type readmeDoc struct {
	configs  []readmeConfig
	commands []readmeCommand
	problems []string // malformed conventions, found while parsing
}

// parseReadme reads the fenced blocks of a README (name is for messages).
func parseReadme(name string, data []byte) readmeDoc {
	var doc readmeDoc
	lines := strings.Split(string(data), "\n")
	problem := func(line int, format string, args ...any) {
		doc.problems = append(doc.problems, fmt.Sprintf("%s:%d: ", name, line)+fmt.Sprintf(format, args...))
	}
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], "\r")
		if m := readmeConfigMarker.FindStringSubmatch(line); m != nil {
			if i+1 >= len(lines) || strings.TrimSpace(lines[i+1]) != "```json" {
				problem(i+1, "the marker for %s must be followed directly by a ```json block", m[1])
				continue
			}
			body, end := fencedBody(lines, i+1)
			doc.configs = append(doc.configs, readmeConfig{path: m[1], line: i + 2, body: []byte(body)})
			i = end
			continue
		}
		if !strings.HasPrefix(line, "```") || len(line) == 3 {
			continue
		}
		lang := strings.TrimSpace(line[3:])
		body, end := fencedBody(lines, i)
		switch lang {
		case "json":
			// An unmarked block that is a configuration would escape the
			// load check: it must carry the marker.
			var top map[string]json.RawMessage
			if json.Unmarshal([]byte(body), &top) == nil && top["adapter"] != nil {
				problem(i+1, "a configuration example without the line <!-- seedship-config PATH --> before it")
			}
		case "sh":
			doc.commands = append(doc.commands, shellCommands(name, lines, i+1, end, problem)...)
		}
		i = end
	}
	return doc
}

// fencedBody returns the text between the fence at lines[open] and its
// closing fence, and the index of the closing fence.
func fencedBody(lines []string, open int) (string, int) {
	for j := open + 1; j < len(lines); j++ {
		if strings.TrimSpace(lines[j]) == "```" {
			return strings.Join(lines[open+1:j], "\n"), j
		}
	}
	return strings.Join(lines[open+1:], "\n"), len(lines)
}

// shellCommands collects the seedship commands of lines[from:to] (a sh
// block), joining lines continued with a backslash.
func shellCommands(name string, lines []string, from, to int, problem func(int, string, ...any)) []readmeCommand {
	var out []readmeCommand
	for j := from; j < to; j++ {
		start := j
		text := strings.TrimSpace(lines[j])
		for strings.HasSuffix(text, `\`) && j+1 < to {
			j++
			text = strings.TrimSuffix(text, `\`) + " " + strings.TrimSpace(lines[j])
		}
		text = strings.TrimPrefix(text, "$ ")
		if !strings.HasPrefix(text, "seedship ") {
			continue
		}
		words, err := shellWords(text)
		if err != nil {
			problem(start+1, "%v: %s", err, text)
			continue
		}
		out = append(out, readmeCommand{line: start + 1, text: text, words: words})
	}
	return out
}

// shellWords splits a command line as sh would for the cases a README
// uses: blanks, single and double quotes, backslash escapes, and a comment
// from a '#' that starts a word.
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, nil
		case (c == ';' || c == '|' || c == '>' || c == '<' || c == '&') && !inWord:
			// The command ends where the shell's next one (or a
			// redirection) begins: "seedship diff A B; case $? ...".
			return words, nil
		case c == ';' || c == '|' || c == '&':
			words = append(words, cur.String())
			return words, nil
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			j := i + 1
			for ; j < len(s) && s[j] != '"'; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				cur.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			i = j
			inWord = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// cliCommand is what `seedship CMD --help` says about a command line.
type cliCommand struct {
	flags   map[string]bool // name (without dashes) → takes a value
	minArgs int             // operands required
	maxArgs int             // operands allowed; -1: any number
}

// parseHelp reads `seedship CMD --help` output: the operands from the
// USAGE line ("seedship restore [command options] IMAGE... TARGET": at
// least 2, no limit) and the flags from the lines under OPTIONS that start
// with a dash ("--quiet, -q   no progress...", "--config value   with ...").
func parseHelp(help string) cliCommand {
	cmd := cliCommand{flags: map[string]bool{"help": false, "h": false}} // urfave/cli's own, hidden
	lines := strings.Split(help, "\n")
	inOptions := false
	for i, line := range lines {
		if strings.HasPrefix(line, "USAGE:") && i+1 < len(lines) {
			_, operands, _ := strings.Cut(lines[i+1], "[command options]")
			for _, op := range strings.Fields(operands) {
				cmd.minArgs++
				if strings.HasSuffix(op, "...") {
					cmd.maxArgs = -1
				} else if cmd.maxArgs >= 0 {
					cmd.maxArgs++
				}
			}
		}
		if strings.HasPrefix(line, "OPTIONS:") || strings.HasPrefix(line, "GLOBAL OPTIONS:") {
			inOptions = true
			continue
		}
		trimmed := strings.TrimSpace(line)
		if !inOptions || !strings.HasPrefix(trimmed, "-") {
			continue
		}
		head, _, _ := strings.Cut(trimmed, "  ") // the usage follows after two blanks
		// A repeatable flag reads "--chain value [ --chain value ]".
		head, _, _ = strings.Cut(head, " [ ")
		head, takesValue := strings.CutSuffix(head, " value")
		for _, name := range strings.Split(head, ", ") {
			cmd.flags[strings.TrimLeft(name, "-")] = takesValue
		}
	}
	return cmd
}

// checkReadmeCommands checks every command against the flags of its
// command (help, by command name; a command missing from help is
// unknown) and the configurations shown. Problems with a flag that a
// command lacks are reported once per command and flag, with every line.
func checkReadmeCommands(name string, doc readmeDoc, help map[string]cliCommand) []string {
	var problems []string
	adapterOf := make(map[string]string) // config path → adapter
	for _, c := range doc.configs {
		var top struct {
			Adapter string `json:"adapter"`
		}
		if json.Unmarshal(c.body, &top) == nil {
			adapterOf[c.path] = top.Adapter
		}
	}
	// A flag a command lacks may still take a value elsewhere (capture's
	// --adapter before the CLI has it): reading its value as one keeps
	// one missing flag from showing up as misplaced flags too.
	valueElsewhere := make(map[string]bool)
	for _, cmd := range help {
		for f, v := range cmd.flags {
			valueElsewhere[f] = valueElsewhere[f] || v
		}
	}
	type missingKey struct{ cmd, flag string }
	missing := make(map[missingKey][]int)
	for _, c := range doc.commands {
		at := fmt.Sprintf("%s:%d: %s", name, c.line, c.text)
		if len(c.words) < 2 {
			problems = append(problems, at+": no command")
			continue
		}
		cmd := c.words[1]
		spec, ok := help[cmd]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: %q is not a seedship command", at, cmd))
			continue
		}
		values := make(map[string]string)
		var operands []string
		args := c.words[2:]
		for k := 0; k < len(args); k++ {
			w := args[k]
			if w == "--" {
				operands = append(operands, args[k+1:]...)
				break
			}
			if !strings.HasPrefix(w, "-") || w == "-" {
				operands = append(operands, w)
				continue
			}
			if len(operands) > 0 {
				problems = append(problems, fmt.Sprintf("%s: flag %s comes after the operand %s; seedship reads flags only before the operands", at, w, operands[0]))
				continue
			}
			flag, value, hasValue := strings.Cut(strings.TrimLeft(w, "-"), "=")
			takesValue, known := spec.flags[flag]
			if !known {
				key := missingKey{cmd, flag}
				missing[key] = append(missing[key], c.line)
				takesValue = valueElsewhere[flag]
			}
			if takesValue && !hasValue {
				if k+1 >= len(args) {
					problems = append(problems, fmt.Sprintf("%s: flag %s needs a value", at, w))
					break
				}
				k++
				value = args[k]
			}
			values[flag] = value
		}
		if n := len(operands); n < spec.minArgs || (spec.maxArgs >= 0 && n > spec.maxArgs) {
			want := strconv.Itoa(spec.minArgs)
			switch {
			case spec.maxArgs < 0:
				want = "at least " + want
			case spec.maxArgs != spec.minArgs:
				want += " to " + strconv.Itoa(spec.maxArgs)
			}
			problems = append(problems, fmt.Sprintf("%s: %d operand(s) %q; seedship %s takes %s", at, n, operands, cmd, want))
		}
		adapter, hasAdapter := values["adapter"]
		config, hasConfig := values["config"]
		switch {
		case hasAdapter && !hasConfig:
			problems = append(problems, fmt.Sprintf("%s: --adapter without --config", at))
		case hasConfig && !hasAdapter:
			problems = append(problems, fmt.Sprintf("%s: --config without --adapter", at))
		case hasAdapter:
			shown, ok := adapterOf[config]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s: --config %s is not a configuration shown in %s (mark it with <!-- seedship-config %s -->)", at, config, name, config))
			case shown != adapter:
				problems = append(problems, fmt.Sprintf("%s: --adapter %s, but %s configures adapter %q", at, adapter, config, shown))
			}
		}
	}
	keys := make([]missingKey, 0, len(missing))
	for k := range missing {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].cmd+" "+keys[i].flag < keys[j].cmd+" "+keys[j].flag
	})
	for _, k := range keys {
		lines := make([]string, len(missing[k]))
		for i, l := range missing[k] {
			lines[i] = strconv.Itoa(l)
		}
		problems = append(problems, fmt.Sprintf("%s: `seedship %s --help` has no flag --%s, which %s uses on line(s) %s",
			name, k.cmd, k.flag, name, strings.Join(lines, ", ")))
	}
	return problems
}

func readReadme(t *testing.T) readmeDoc {
	t.Helper()
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatalf("read the README: %v", err)
	}
	doc := parseReadme("README.md", data)
	for _, p := range doc.problems {
		t.Error(p)
	}
	return doc
}

// TestREADMEConfigs loads every configuration example of the README the
// way the CLI does, and requires one for every adapter.
func TestREADMEConfigs(t *testing.T) {
	doc := readReadme(t)
	dir := t.TempDir()
	seen := make(map[string]readmeConfig)
	adapters := make(map[string]bool)
	for i, c := range doc.configs {
		if prev, ok := seen[c.path]; ok && !bytes.Equal(prev.body, c.body) {
			t.Errorf("README.md:%d: %s is shown twice, differently (first at line %d)", c.line, c.path, prev.line)
		}
		seen[c.path] = c
		t.Run(strings.TrimPrefix(c.path, "/"), func(t *testing.T) {
			file := filepath.Join(dir, fmt.Sprintf("%d-%s", i, filepath.Base(c.path)))
			if err := os.WriteFile(file, c.body, 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := resync.LoadConfig(file)
			if err != nil {
				t.Fatalf("README.md:%d: %s is refused: %v", c.line, c.path, err)
			}
			if _, err := resync.New(cfg); err != nil {
				t.Fatalf("README.md:%d: %s: %v", c.line, c.path, err)
			}
			adapters[cfg.Adapter] = true
		})
	}
	for _, name := range resync.Names() {
		if !adapters[name] {
			t.Errorf("README.md shows no configuration that loads for adapter %s: every adapter needs a walkthrough", name)
		}
	}
}

// TestREADMECommands checks every seedship command line of the README
// against the --help of the binary built from this tree.
func TestREADMECommands(t *testing.T) {
	doc := readReadme(t)
	if len(doc.commands) == 0 {
		t.Fatal("README.md: no seedship command found in ```sh blocks")
	}
	bin := buildSeedship(t)
	help := make(map[string]cliCommand)
	for _, c := range doc.commands {
		if len(c.words) < 2 {
			continue
		}
		cmd := c.words[1]
		if _, done := help[cmd]; done || strings.HasPrefix(cmd, "-") {
			continue
		}
		out, err := exec.Command(bin, cmd, "--help").Output()
		if err != nil || !strings.Contains(string(out), "seedship "+cmd+" - ") {
			continue // not a command: reported by the check
		}
		help[cmd] = parseHelp(string(out))
	}
	for _, p := range checkReadmeCommands("README.md", doc, help) {
		t.Error(p)
	}
}

// buildSeedship builds the CLI from this tree into a temporary directory.
// Without a Go toolchain, or when the tree does not build, the test
// cannot check the commands: it says so and skips (or fails, when
// SEEDSHIP_TEST_DISALLOW_SKIP=1, as make test sets it).
func buildSeedship(t *testing.T) string {
	t.Helper()
	skip := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("SEEDSHIP_TEST_DISALLOW_SKIP") == "1" {
			t.Fatalf("%s (and SEEDSHIP_TEST_DISALLOW_SKIP=1 forbids skipping)", msg)
		}
		t.Skip(msg)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		skip("cannot check the README's commands: no go command to build seedship with: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "seedship")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	build := exec.Command(goTool, "build", "-o", bin, "./cmd/seedship")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		skip("cannot check the README's commands: go build ./cmd/seedship failed: %v\n%s", err, out)
	}
	return bin
}

// TestREADMECheckerFinds shows that the checks above can fail: each
// README below breaks one convention, and the checker must name it.
func TestREADMECheckerFinds(t *testing.T) {
	help := map[string]cliCommand{
		"capture": {flags: map[string]bool{"parity": true, "json": false, "help": false}, minArgs: 2, maxArgs: -1},
		"extend":  {flags: map[string]bool{"adapter": true, "config": true, "dry-run": false, "receipt": true}, minArgs: 2, maxArgs: 2},
	}
	config := "<!-- seedship-config /etc/x.json -->\n```json\n{\"adapter\": \"exec\", \"exec\": {\"mark\": [\"m\"], \"extend\": [\"e\"]}}\n```\n"
	sh := func(lines ...string) string { return "```sh\n" + strings.Join(lines, "\n") + "\n```\n" }
	for _, tc := range []struct {
		name, readme, want string
	}{
		{"unknown flag", sh("seedship capture --no-such /dev/sdb1 /mnt/x"), "has no flag --no-such, which README.md uses on line(s) 2"},
		{"flag missing on several lines", sh("seedship capture --adapter exec /a /b", "seedship capture --adapter exec /c /d"), "`seedship capture --help` has no flag --adapter, which README.md uses on line(s) 2, 3"},
		{"flag after operand", sh("seedship capture /dev/sdb1 /mnt/x --json"), "flag --json comes after the operand /dev/sdb1"},
		{"flag after a missing flag's value", sh("seedship capture --adapter exec /a /b --json"), "flag --json comes after the operand /a"},
		{"unknown command", sh("seedship bogus /x"), `"bogus" is not a seedship command`},
		{"adapter without config", config + sh("seedship extend --adapter exec /i /dev/t"), "--adapter without --config"},
		{"config not shown", config + sh("seedship extend --adapter exec --config /etc/y.json /i /dev/t"), "--config /etc/y.json is not a configuration shown"},
		{"adapter differs from config", config + sh("seedship extend --adapter sios --config /etc/x.json /i /dev/t"), `--adapter sios, but /etc/x.json configures adapter "exec"`},
		{"value flag at the end", sh("seedship extend --receipt"), "flag --receipt needs a value"},
		{"operand missing", sh("seedship extend --receipt /r /i"), `1 operand(s) ["/i"]; seedship extend takes 2`},
		{"operand too many", sh("seedship extend /i /dev/t /dev/u"), "seedship extend takes 2"},
		{"operand missing, variadic", sh("seedship capture /dev/sdb1"), "seedship capture takes at least 2"},
		{"unmarked configuration", "```json\n{\"adapter\": \"exec\"}\n```\n", "without the line <!-- seedship-config PATH -->"},
		{"marker without block", "<!-- seedship-config /etc/x.json -->\ntext\n", "must be followed directly by a ```json block"},
		{"unterminated quote", sh("seedship capture 'x /y"), "unterminated single quote"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := parseReadme("README.md", []byte(tc.readme))
			problems := append(doc.problems, checkReadmeCommands("README.md", doc, help)...)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("want a problem containing %q, got %q", tc.want, problems)
			}
		})
	}
	t.Run("a missing flag is reported once, not as misplaced flags", func(t *testing.T) {
		doc := parseReadme("README.md", []byte(config+sh("seedship capture --adapter exec --config /etc/x.json --parity 2+1 /a /b")))
		problems := checkReadmeCommands("README.md", doc, help)
		if len(problems) != 2 || !strings.Contains(problems[0]+problems[1], "no flag --adapter") || !strings.Contains(problems[0]+problems[1], "no flag --config") {
			t.Errorf("want exactly the missing --adapter and --config, got %q", problems)
		}
	})
	t.Run("a correct README has no problem", func(t *testing.T) {
		readme := config + sh(
			"# a comment",
			"seedship capture --parity 10+2 --json /dev/sdb1 s3://b/p   # trailing comment",
			`seedship extend --adapter exec --config=/etc/x.json --dry-run \`,
			"    --receipt /r /i /dev/t",
			"mdadm --wait /dev/md0",
		)
		doc := parseReadme("README.md", []byte(readme))
		if len(doc.commands) != 2 || len(doc.configs) != 1 {
			t.Fatalf("found %d commands and %d configurations, want 2 and 1", len(doc.commands), len(doc.configs))
		}
		if problems := append(doc.problems, checkReadmeCommands("README.md", doc, help)...); len(problems) > 0 {
			t.Errorf("problems in a correct README: %q", problems)
		}
	})
}

func TestShellWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"seedship capture /a /b", []string{"seedship", "capture", "/a", "/b"}},
		{"seedship  verify\t/x   # why", []string{"seedship", "verify", "/x"}},
		{`seedship info 'a b' "c \"d\"" e\ f`, []string{"seedship", "info", "a b", `c "d"`, "e f"}},
		{"seedship info a#b", []string{"seedship", "info", "a#b"}},
	} {
		got, err := shellWords(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("shellWords(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
