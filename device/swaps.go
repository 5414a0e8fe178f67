package device

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// swap is one active swap area from /proc/swaps:
//
//	Filename                                Type            Size            Used            Priority
//	/dev/sdb2                               partition       8388604         0               -2
//	/swap\040file                           file            1048572         0               -3
//
// The kernel escapes space, tab, newline and backslash in the file name as
// octal, so the name ends at the first blank.
type swap struct {
	path string // unescaped
	kind string // "partition" or "file"
}

// parseSwaps parses /proc/swaps. The header line is skipped; any other line
// without at least a name and a type is an error naming its line number.
func parseSwaps(r io.Reader) ([]swap, error) {
	var swaps []swap
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		line = strings.TrimSuffix(line, "\n")
		if strings.TrimSpace(line) != "" && !(n == 1 && strings.HasPrefix(line, "Filename")) {
			name, rest, _ := strings.Cut(strings.ReplaceAll(line, "\t", " "), " ")
			f := strings.Fields(rest)
			if name == "" || len(f) == 0 {
				return nil, fmt.Errorf("device: /proc/swaps line %d: %w: want a file name and a type", n, errMalformed)
			}
			swaps = append(swaps, swap{path: unescapeOctal(name), kind: f[0]})
		}
		if err == io.EOF {
			return swaps, nil
		}
		if err != nil {
			return nil, fmt.Errorf("device: reading /proc/swaps: %w", err)
		}
	}
}
