package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/format"
)

// TestDeltaVerifyChecksBaseDigests: verify of a delta image reads its
// base-digest table and says so; a table that is damaged or missing is
// damage of the image (exit 3, naming base.digests), found before any
// restore would refuse it.
func TestDeltaVerifyChecksBaseDigests(t *testing.T) {
	_, _, delta, _ := capturedDelta(t)

	r := must(t, "verify", "--json", delta)
	if !strings.Contains(r.stdout, `"base-digests"`) {
		t.Errorf("verify of an intact delta does not list the base-digests check: %s", r.stdout)
	}

	table := filepath.Join(delta, format.BaseDigestsKey)
	good := readFile(t, table)
	bad := append([]byte(nil), good...)
	bad[len(bad)/2] ^= 0x40 // a base digest: the table no longer hashes to the manifest's
	writeFile(t, table, bad)
	if r := expect(t, exitIntegrity, "verify", delta); !strings.Contains(r.stderr, "BAD "+format.BaseDigestsKey) {
		t.Errorf("verify of a delta with a damaged base-digest table does not name it: %s", r)
	}

	if err := os.Remove(table); err != nil {
		t.Fatal(err)
	}
	if r := expect(t, exitIntegrity, "verify", delta); !strings.Contains(r.stderr, "BAD "+format.BaseDigestsKey) {
		t.Errorf("verify of a delta without its base-digest table does not name it: %s", r)
	}

	writeFile(t, table, good)
	must(t, "verify", "--quiet", delta)
}
