package engine

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/seedship/seedship/format"
)

// TestResumeCompareMemory: comparing a target that differs in every chunk
// with the image (restore --resume) allocates a fixed set of buffers and
// one bit per chunk, not a finding per differing chunk.
func TestResumeCompareMemory(t *testing.T) {
	const chunk = format.MinChunkSize
	perChunk := func(n int) (allocated uint64) {
		m := &format.Manifest{Header: format.Header{Size: int64(n) * chunk, ChunkSize: chunk}, Chunks: make([]format.ChunkEntry, n)}
		for i := range m.Chunks {
			m.Chunks[i] = format.ChunkEntry{Kind: format.KindStored, Hash: format.Hash{1}}
		}
		path := filepath.Join(t.TempDir(), "target.img")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(m.Header.Size); err != nil { // reads as zeros: differs everywhere
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		differ, err := chunksThatDiffer(context.Background(), m, &restoreTarget{path: path, f: f}, 2)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if !differ.has(uint64(i)) {
				t.Fatalf("chunk %d of a target that differs everywhere was found equal", i)
			}
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := perChunk(1024), perChunk(8192)
	growth := float64(int64(large)-int64(small)) / (8192 - 1024)
	t.Logf("allocated %d KiB for 1024 chunks, %d KiB for 8192: %.1f bytes per more chunk", small>>10, large>>10, growth)
	if growth > 8 {
		t.Errorf("the comparison allocates %.1f bytes per differing chunk, want a bit or so", growth)
	}
}

// TestCaptureFitsBudget: every combination of options that capture
// accepts holds, with the smallest pipeline at least, its parity
// accumulators, chunk buffers and upload parts within memoryBudget; and
// the pipeline it sizes fits what the parity leaves. (--parity 10+2
// --chunk-size 64MiB --segment-size 31MiB was accepted, and went to 600 MB.)
func TestCaptureFitsBudget(t *testing.T) {
	for chunk := format.MinChunkSize; chunk <= format.MaxChunkSize; chunk *= 2 {
		for _, level := range []int{-1, DefaultLevel} {
			for _, m := range []int{0, 1, 2, 4, 8} {
				for _, seg := range []int64{format.MinSegmentSize, 1 << 20, 23 << 20, 31 << 20, 64 << 20, 1 << 30} {
					for _, workers := range []int{1, 2, MaxWorkers} {
						o := CaptureOptions{ChunkSize: chunk, Level: level, SegmentSize: seg, Workers: workers}
						if m > 0 {
							o.Parity = &format.Geometry{K: 10, M: m}
						}
						if o.Validate() != nil {
							continue
						}
						parity := int64(0)
						if m > 0 {
							parity = int64(m) * format.ParityShardSize(seg, chunk)
						}
						compress := level > 0
						s := shapeFor(chunk, workers, compress, o.pipelineBudget())
						total := parity + pipelineCost(chunk, s, compress) + uploadMemory
						if total > memoryBudget {
							t.Errorf("--chunk-size %d --level %d --parity 10+%d --segment-size %d --workers %d accepted, holding %d MiB (shape %+v), over %d MiB",
								chunk, level, m, seg, workers, total>>20, s, memoryBudget>>20)
						}
					}
				}
			}
		}
	}
}
