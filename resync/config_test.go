package resync

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfigRefusesBadInput(t *testing.T) {
	const goodExec = `"exec": {"mark": ["/bin/mark"], "extend": ["/bin/extend"]}`
	const siosBase = `"lkroot": "/opt/LifeKeeper", "bitmap_file": "/opt/LifeKeeper/bitmap__dr", "out_of_service": ["oos"], "in_service": ["ins"], "extend": ["ext"]`
	const twoHosts = `"hosts": [{"name": "nodea"}, {"name": "nodeb", "ssh": ["ssh", "root@nodeb"]}]`
	for _, tc := range []struct {
		name, json, field, msg string
	}{
		{"not JSON", `{"adapter": `, "", "not a JSON object"},
		{"not an object", `["exec"]`, "", "not a JSON object"},
		{"null", `null`, "", "not a JSON object"},
		{"missing adapter", `{` + goodExec + `}`, "adapter", "missing"},
		{"unknown adapter", `{"adapter": "veritas", ` + goodExec + `}`, "adapter", `unknown adapter "veritas": use one of`},
		{"unknown top-level field", `{"adapter": "exec", "adaptor": "x", ` + goodExec + `}`, "adaptor", "unknown field"},
		{"unknown field in a section", `{"adapter": "exec", "exec": {"mark": ["m"], "extend": ["e"], "extned": ["e"]}}`, "exec", `unknown field "extned"`},
		{"unknown field in a host", `{"adapter": "exec", "hosts": [{"name": "a", "sshh": ["ssh"]}], ` + goodExec + `}`, "hosts", `unknown field "sshh"`},
		{"unknown field in a command", `{"adapter": "exec", "exec": {"mark": {"hots": "a", "argv": ["m"]}, "extend": ["e"]}}`, "exec", `unknown field "hots"`},
		{"host without a name", `{"adapter": "exec", "hosts": [{"ssh": ["ssh", "x"]}], ` + goodExec + `}`, "hosts[0].name", "missing"},
		{"host twice", `{"adapter": "exec", "hosts": [{"name": "a"}, {"name": "a"}], ` + goodExec + `}`, "hosts[1].name", "listed twice"},
		{"empty bin path", `{"adapter": "exec", "bin": {"ssh": ""}, ` + goodExec + `}`, "bin.ssh", "empty path"},
		{"exec without extend", `{"adapter": "exec", "exec": {"mark": ["m"]}}`, "exec.extend", "missing"},
		{"exec without mark", `{"adapter": "exec", "exec": {"extend": ["e"]}}`, "exec.mark", "missing"},
		{"exec empty argv", `{"adapter": "exec", "exec": {"mark": [], "extend": ["e"]}}`, "exec.mark", "missing"},
		{"exec command on an unknown host", `{"adapter": "exec", "exec": {"mark": ["m"], "extend": {"host": "nodez", "argv": ["e"]}}}`, "exec.extend.host", `no host named "nodez"`},
		{"exec placeholder out of place", `{"adapter": "exec", "exec": {"mark": ["m", "{target}"], "extend": ["e"]}}`, "exec.mark", "placeholder {target} is not known in mark"},
		{"exec token placeholder out of place", `{"adapter": "exec", "exec": {"mark": ["m"], "post_capture": ["p", "{token.volume}"], "extend": ["e"]}}`, "exec.post_capture", "placeholder {token.volume} is not known in post_capture"},
		{"sios on one host", `{"adapter": "sios", "sios": {` + siosBase + `}}`, "hosts", "every system of the mirror"},
		{"sios second host without ssh", `{"adapter": "sios", "hosts": [{"name": "nodea"}, {"name": "nodeb"}], "sios": {` + siosBase + `}}`, "hosts[1].ssh", "only the first host is this system"},
		{"sios without extend", `{"adapter": "sios", ` + twoHosts + `, "sios": {"lkroot": "/opt/LifeKeeper", "bitmap_file": "/b", "out_of_service": ["o"], "in_service": ["i"]}}`, "sios.extend", "never guessed"},
		{"sios without out_of_service", `{"adapter": "sios", ` + twoHosts + `, "sios": {"lkroot": "/opt/LifeKeeper", "bitmap_file": "/b", "in_service": ["i"], "extend": ["e"]}}`, "sios.out_of_service", "missing"},
		{"sios without lkroot", `{"adapter": "sios", ` + twoHosts + `, "sios": {"bitmap_file": "/b", "out_of_service": ["o"], "in_service": ["i"], "extend": ["e"]}}`, "sios.lkroot", "missing"},
		{"sios without bitmap_file", `{"adapter": "sios", ` + twoHosts + `, "sios": {"lkroot": "/l", "out_of_service": ["o"], "in_service": ["i"], "extend": ["e"]}}`, "sios.bitmap_file", "missing"},
		{"sios relative bitmap_file", `{"adapter": "sios", ` + twoHosts + `, "sios": {"lkroot": "/l", "bitmap_file": "bitmap", "out_of_service": ["o"], "in_service": ["i"], "extend": ["e"]}}`, "sios.bitmap_file", "not an absolute path"},
		{"sios unknown source", `{"adapter": "sios", ` + twoHosts + `, "sios": {` + siosBase + `, "source": "nodez"}}`, "sios.source", `no host named "nodez"`},
		{"sios third node without tag", `{"adapter": "sios", ` + twoHosts + `, "sios": {` + siosBase + `, "third_node": {"target": "nodeb", "copy_from": "source"}}}`, "sios.tag", "missing"},
		{"sios third node bad copy_from", `{"adapter": "sios", ` + twoHosts + `, "sios": {` + siosBase + `, "tag": "t", "third_node": {"target": "nodeb", "copy_from": "target1"}}}`, "sios.third_node.copy_from", `"target1"`},
		{"sios third node target is the source", `{"adapter": "sios", ` + twoHosts + `, "sios": {` + siosBase + `, "tag": "t", "third_node": {"target": "nodea", "copy_from": "source"}}}`, "sios.third_node.target", "is the source"},
		{"sios third node without first_target", `{"adapter": "sios", ` + twoHosts + `, "sios": {` + siosBase + `, "tag": "t", "third_node": {"target": "nodeb", "copy_from": "first_target"}}}`, "sios.third_node.first_target", "missing"},
		{"sios third node unknown field", `{"adapter": "sios", ` + twoHosts + `, "sios": {` + siosBase + `, "tag": "t", "third_node": {"target": "nodeb", "copy_from": "source", "pause": true}}}`, "sios", `unknown field "pause"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resync.json")
			if err := os.WriteFile(path, []byte(tc.json), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(path)
			if err == nil {
				t.Fatal("LoadConfig accepted it")
			}
			msg := err.Error()
			prefix := "config " + path + ": "
			if tc.field != "" {
				prefix += tc.field + ": "
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(msg, prefix) || !strings.Contains(msg, tc.msg) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line wrapping ErrConfig with %q and %q", msg, prefix, tc.msg)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.json")
	_, err := LoadConfig(path)
	if !errors.Is(err, ErrConfig) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadConfig of a missing file: %v", err)
	}
}

func TestLoadConfigGood(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resync.json")
	data := `{
	  "adapter": "sios",
	  "hosts": [{"name": "nodea"}, {"name": "nodeb", "ssh": ["ssh", "-o", "BatchMode=yes", "root@nodeb"]}],
	  "bin": {"ssh": "/usr/bin/ssh"},
	  "sios": {
	    "lkroot": "/opt/LifeKeeper", "bitmap_file": "/opt/LifeKeeper/bitmap__dr",
	    "out_of_service": ["/opt/LifeKeeper/bin/perform_action", "-t", "datarep-dr", "-a", "remove"],
	    "in_service": ["/opt/LifeKeeper/bin/perform_action", "-t", "datarep-dr", "-a", "restore"],
	    "extend": {"host": "nodea", "argv": ["/usr/local/sbin/extend-dr", "nodeb"]}
	  },
	  "exec": {"mark": ["m"], "extend": ["e"]}
	}`
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Adapter != "sios" || len(cfg.Hosts) != 2 || cfg.Hosts[1].SSH[3] != "root@nodeb" || cfg.Exe("ssh") != "/usr/bin/ssh" || cfg.Exe("drbdadm") != "drbdadm" || cfg.Path() != path {
		t.Fatalf("config %+v", cfg)
	}
	var c siosConfig
	if err := cfg.Section("sios", &c); err != nil {
		t.Fatal(err)
	}
	if c.Extend.Host != "nodea" || c.Extend.Argv[1] != "nodeb" || c.OutOfService.Argv[4] != "remove" {
		t.Fatalf("sios section %+v", c)
	}
	if _, ok := cfg.Sections["exec"]; !ok {
		t.Fatal("another adapter's section was dropped")
	}
}
