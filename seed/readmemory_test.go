package seed

import (
	"testing"

	"github.com/seedship/seedship/format"
)

// TestReadFitsMemory: for every chunk size, however many workers and
// readers are asked for, a Read's buffers fit ReadMemory with at least one
// worker and one reader, and the default chunk size keeps what a 2-CPU
// machine and a directory ask for.
func TestReadFitsMemory(t *testing.T) {
	for chunk := format.MinChunkSize; chunk <= format.MaxChunkSize; chunk *= 2 {
		for _, asked := range [][2]int{{1, 1}, {2, 2}, {16, 4}, {64, 12}, {1 << 10, 64}} {
			w, r := fitRead(chunk, asked[0], asked[1])
			if w < 1 || r < 1 || w > asked[0] || r > asked[1] {
				t.Errorf("chunk %d, asked %v: %d workers, %d readers", chunk, asked, w, r)
			}
			if cost := readCost(chunk, w, r); cost > ReadMemory {
				t.Errorf("chunk %d, asked %v: %d workers, %d readers hold %d MiB, over %d MiB", chunk, asked, w, r, cost>>20, ReadMemory>>20)
			}
		}
	}
	if w, r := fitRead(format.DefaultChunkSize, 2, 2); w != 2 || r != 2 {
		t.Errorf("default chunk size, 2 workers and 2 readers asked: got %d and %d", w, r)
	}
}
