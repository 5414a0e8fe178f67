//go:build !race

// The race detector makes sync.Pool drop what is put back, on purpose:
// allocations cannot be measured under it.

package format

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/seedship/seedship/seal"
)

// TestSealedCodecAllocations: in steady state, sealing and opening reuse
// the codec's pooled scratch buffers and the caller's dst: they allocate
// no chunk-sized buffer per chunk beyond what the same codec without keys
// allocates (zstd itself allocates for some incompressible input).
func TestSealedCodecAllocations(t *testing.T) {
	const chunk = 1 << 20
	k := testKeys(t, vectorRoot, vectorImageID)
	src := testSource(3*chunk, chunk, 4)
	perChunk := func(level int, keys *seal.Keys, raw []byte) uint64 {
		c, _ := NewChunkCodec(level, 1, chunk)
		defer c.Close()
		if keys != nil {
			c.SetKeys(keys)
		}
		blocks := make([]BlockDigest, NumBlocks(chunk))
		dst := make([]byte, 0, chunk+chunk/64+4096)
		out := make([]byte, 0, chunk)
		ec := c.EncodeAt(1, raw, dst, blocks)
		payload := bytes.Clone(ec.Payload)
		round := func() {
			e := c.EncodeAt(1, raw, dst, blocks)
			if _, err := c.DecodeAt(1, e.Codec, payload, chunk, e.Hash, out, nil); err != nil {
				t.Fatal(err)
			}
		}
		round() // the first use fills the pools
		// A collection empties sync.Pools, by design, and a goroutine
		// moved to another P may miss a buffer in the first P's private
		// slot once; what is measured is what the codec itself allocates
		// chunk after chunk.
		defer debug.SetGCPercent(debug.SetGCPercent(-1))
		const rounds = 32
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range rounds {
			round()
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / rounds
	}
	for _, tc := range []struct {
		name  string
		level int
		raw   []byte
	}{
		{"zstd", 3, src[2*chunk:]},
		{"raw", 0, src[2*chunk:]},
		{"incompressible", 3, src[chunk : 2*chunk]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, keyed := perChunk(tc.level, nil, tc.raw), perChunk(tc.level, k, tc.raw)
			if keyed > plain+chunk/8 {
				t.Fatalf("%d bytes allocated per sealed chunk of %d, %d without keys", keyed, chunk, plain)
			}
		})
	}
}
