package engine

// The memory budget: every command sizes its buffers (chunk buffers, zstd
// state, parity accumulators, upload parts, target comparison) to fit
// memoryBudget, so that with the Go runtime, the manifest tables and the
// 400 MiB soft limit cmd/seedship sets, the process stays under 512 MiB
// of RSS for every accepted option. Restore and verify read the image
// within the image reader's own bound, [seed.ReadMemory], which runs fewer
// workers and readers for large chunks.
const memoryBudget = 448 << 20

// captureMemory is the part of memoryBudget a capture's chunk pipeline and
// parity accumulators may hold: the rest is for the uploads.
const captureMemory = memoryBudget - uploadMemory

// uploadMemory is what a capture's uploads hold at most: the S3 part
// buffers of its segment uploads (the CLI sizes parts so that they take
// 64 MiB together) and one more part for a parity segment. Counted for
// every destination, so that options that work for a directory work for
// S3 too.
const uploadMemory = 80 << 20

// pipelineCost is what a chunk pipeline of the given shape holds for
// chunks of chunkSize bytes: per job its raw buffer and, when it
// compresses, its output buffer (room for zstd's worst case); per
// compressing worker the x86-filtered copy of the chunk it compresses and
// its zstd encoder's history, which one chunk fills (the encoder reserves
// two windows, but a frame of one chunk never touches the second, so it
// takes no memory).
func pipelineCost(chunkSize int, s pipelineShape, compress bool) int64 {
	chunk := int64(chunkSize)
	perJob, perWorker := chunk, int64(0)
	if compress {
		perJob += chunk + chunk/64 + 4096
		perWorker = 2 * chunk
	}
	return int64(s.jobs)*perJob + int64(s.workers)*perWorker
}

// minPipeline is the smallest pipeline shape: one worker and one job, so
// that reading, the work and writing take turns. Only the largest chunk
// sizes come down to it; two jobs, which overlap them, fit every other.
var minPipeline = pipelineShape{workers: 1, jobs: 1}

// groupUploadBuffer is what each data segment streamed at once beyond the
// first holds while it uploads: one S3 part buffer, which the CLI sizes
// to at least s3.MinPartSize (5 MiB) when a capture grows several
// segments together (parity stripes, or a width).
const groupUploadBuffer = 5 << 20

// groupUploadMemory is what the uploads of a group of width segments
// hold beyond uploadMemory.
func groupUploadMemory(width int) int64 { return int64(max(width, 1)-1) * groupUploadBuffer }
