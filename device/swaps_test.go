package device

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const swapsHeader = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"

func TestParseSwaps(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []swap
	}{
		{"no swap", swapsHeader, nil},
		{"empty file", "", nil},
		{
			name: "partition and files",
			input: swapsHeader +
				"/dev/sdb2                               partition\t8388604\t\t0\t\t-2\n" +
				`/swap\040file\011x\134y                   file` + "\t\t1048572\t\t0\t\t-3\n" +
				"/swapfile\tfile\t1024\t0\t-4",
			want: []swap{
				{path: "/dev/sdb2", kind: "partition"},
				{path: "/swap file\tx\\y", kind: "file"},
				{path: "/swapfile", kind: "file"},
			},
		},
		{
			name:  "deleted swap file",
			input: swapsHeader + `/swap\040(deleted)    file	1024	0	-2` + "\n",
			want:  []swap{{path: "/swap (deleted)", kind: "file"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSwaps(strings.NewReader(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseSwapsErrors(t *testing.T) {
	for _, input := range []string{
		swapsHeader + "/dev/sdb2\n",
		swapsHeader + "/dev/sdb2 partition 1 0 -2\n /dev/sdc\n",
		"Filename Type\n/dev/sda1    \n",
	} {
		if _, err := parseSwaps(strings.NewReader(input)); !errors.Is(err, errMalformed) {
			t.Errorf("parseSwaps(%q) = %v, want errMalformed", input, err)
		}
	}
}

func FuzzParseSwaps(f *testing.F) {
	f.Add(swapsHeader + "/dev/sdb2 partition 8388604 0 -2\n")
	f.Add(swapsHeader + `/swap\040file file 1048572 0 -3`)
	f.Fuzz(func(t *testing.T, input string) {
		swaps, err := parseSwaps(strings.NewReader(input))
		if err != nil {
			return
		}
		var b strings.Builder
		b.WriteString(swapsHeader)
		for _, s := range swaps {
			if s.kind == "" || strings.ContainsAny(s.kind, " \t\n") {
				t.Fatalf("bad type %q", s.kind)
			}
			b.WriteString(escapeOctal(s.path) + "\t" + s.kind + "\t0\t0\t-2\n")
		}
		again, err := parseSwaps(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("re-parsing %q: %v", b.String(), err)
		}
		if !reflect.DeepEqual(swaps, again) {
			t.Fatalf("round trip changed the swaps:\n%+v\n%+v", swaps, again)
		}
	})
}
