//go:build bench

package bench

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"

	"github.com/seedship/seedship/engine"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
)

// sealPiece is how the stored bytes are cut for the parallel passes: a
// typical compressed frame of an 8 MiB chunk (27% of it).
const sealPiece = 2 * mib

// BenchmarkSeal measures the costs behind issue 10's choices (spec §11)
// on the realistic image, against `openssl dgst -sha256` of the raw image
// in the same run (alternating, c.rounds rounds, medians):
//
//   - raw passes (one core), what capture hashes: today's sha256-tree
//     (format.ChunkHash), the same shape keyed with HMAC-SHA-256, and
//     seal's keyed BLAKE3 tree; and capture's whole per-chunk encode
//     (format.ChunkCodec.EncodeAt: hash, filter, zstd -3), from which it
//     projects an encrypted capture's CPU;
//   - stored passes over the data segments an unencrypted capture of the
//     image wrote (about a quarter of the raw bytes), what keyless verify
//     (10.2) would hash: SHA-256 and BLAKE3, one core and all cores, cut
//     in 2 MiB pieces as frames are;
//   - AES-256-GCM and ChaCha20-Poly1305 sealing the stored bytes, what an
//     encrypted capture adds (one core).
//
// Each pass reads its file(s) from the page cache in 8 MiB reads, as the
// tools do. "x openssl" is openssl's time on the raw image divided by the
// pass's time: for the stored passes, the projected speed of keyless
// verify relative to `openssl dgst -sha256` of the raw device (hashing
// only; the issue asks for 4x).
//
//	SEEDSHIP_BENCH_SIZE_MIB=1024 go test -tags bench -run '^$' -bench Seal -benchtime 1x ./bench/
func BenchmarkSeal(b *testing.B) {
	c := setup(b)
	img := c.image(b, c.sizeMiB)
	raw := fileSize(b, img)
	w := c.scratch(b, "seal")
	c.needSpace(b, raw/2)
	dst := filepath.Join(w, "image")
	exe(b, c.captureArgv(false, img, dst)...)
	segs, err := filepath.Glob(filepath.Join(dst, "data", "*.seg"))
	if err != nil || len(segs) == 0 {
		b.Fatalf("no data segments in %s: %v", dst, err)
	}
	var stored int64
	for _, s := range segs {
		stored += fileSize(b, s)
	}
	warm(b, img)
	warmDir(b, dst)

	root := seal.NewRootKey()
	keys, err := seal.DeriveKeys(root, [16]byte{1})
	if err != nil {
		b.Fatal(err)
	}
	hkey := make([]byte, 32)
	gcmBlock, err := aes.NewCipher(hkey)
	if err != nil {
		b.Fatal(err)
	}
	gcm, err := cipher.NewGCM(gcmBlock)
	if err != nil {
		b.Fatal(err)
	}
	chacha, err := chacha20poly1305.New(hkey)
	if err != nil {
		b.Fatal(err)
	}
	procs := runtime.GOMAXPROCS(0)
	codec, err := format.NewChunkCodec(engine.DefaultLevel, 1, 8*mib)
	if err != nil {
		b.Fatal(err)
	}
	defer codec.Close()
	encodeOut := make([]byte, 0, 8*mib)

	type pass struct {
		name  string
		bytes int64 // bytes it processes
		run   func() error
		times []time.Duration
	}
	blocks := make([]format.BlockDigest, 1024)
	sblocks := make([][seal.BlockDigestLen]byte, 1024)
	digester := keys.NewDigester()
	passes := []*pass{
		{name: "openssl dgst -sha256 (raw)", bytes: raw, run: func() error { exe(b, "openssl", "dgst", "-sha256", img); return nil }},
		{name: "raw sha256-tree (today, format.ChunkHash)", bytes: raw, run: func() error {
			return eachChunk(img, func(i uint64, p []byte) { format.ChunkHash(p, blocks) })
		}},
		{name: "raw capture encode (sha256-tree + x86 filter + zstd -3, format.ChunkCodec)", bytes: raw, run: func() error {
			return eachChunk(img, func(i uint64, p []byte) { codec.EncodeAt(i, p, encodeOut, blocks) })
		}},
		{name: "raw hmac-sha256-tree", bytes: raw, run: func() error {
			return eachChunk(img, func(i uint64, p []byte) { hmacTree(hkey, p, i, sblocks) })
		}},
		{name: "raw blake3-keyed-tree (seal.Digester)", bytes: raw, run: func() error {
			return eachChunk(img, func(i uint64, p []byte) { digester.Chunk(p, i, sblocks) })
		}},
		{name: "stored SHA-256, 1 core", bytes: stored, run: func() error {
			return eachPiece(segs, 1, func(p []byte) { sha256.Sum256(p) })
		}},
		{name: "stored BLAKE3, 1 core", bytes: stored, run: func() error {
			return eachPiece(segs, 1, func(p []byte) { blake3.Sum256(p) })
		}},
		{name: fmt.Sprintf("stored SHA-256, %d cores", procs), bytes: stored, run: func() error {
			return eachPiece(segs, procs, func(p []byte) { sha256.Sum256(p) })
		}},
		{name: fmt.Sprintf("stored BLAKE3, %d cores", procs), bytes: stored, run: func() error {
			return eachPiece(segs, procs, func(p []byte) { blake3.Sum256(p) })
		}},
		{name: "stored AES-256-GCM seal, 1 core", bytes: stored, run: func() error {
			out := make([]byte, 0, sealPiece+seal.Overhead)
			nonce := make([]byte, seal.NonceSize)
			return eachPiece(segs, 1, func(p []byte) { out = gcm.Seal(out[:0], nonce, p, nil) })
		}},
		{name: "stored ChaCha20-Poly1305 seal, 1 core", bytes: stored, run: func() error {
			out := make([]byte, 0, sealPiece+seal.Overhead)
			nonce := make([]byte, seal.NonceSize)
			return eachPiece(segs, 1, func(p []byte) { out = chacha.Seal(out[:0], nonce, p, nil) })
		}},
	}
	for round := range c.rounds {
		order := slices.Clone(passes)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, p := range order {
			start := time.Now()
			if err := p.run(); err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			p.times = append(p.times, time.Since(start))
		}
	}
	ssl := median(passes[0].times)
	fmt.Printf("\nBenchmarkSeal: raw %d MiB, stored %d MiB (%.1f%% of raw) in %d data segments, %d rounds, GOMAXPROCS %d\n",
		raw/mib, stored/mib, 100*float64(stored)/float64(raw), len(segs), c.rounds, procs)
	fmt.Printf("| pass | bytes | median | MB/s | x openssl (raw) |\n|---|---|---|---|---|\n")
	for _, p := range passes {
		d := median(p.times)
		fmt.Printf("| %s | %d MiB | %s | %.0f | %.2f |\n", p.name, p.bytes/mib, d.Round(time.Millisecond), mbps(p.bytes, d), ssl.Seconds()/d.Seconds())
	}
	fmt.Printf("(MB/s is of the bytes the pass processes; x openssl = openssl's time on the raw image / the pass's time)\n")
	b.ReportMetric(float64(ssl.Nanoseconds()), "ns/op")
	b.ReportMetric(100*float64(stored)/float64(raw), "stored_%_of_raw")
	med := func(i int) float64 { return median(passes[i].times).Seconds() }
	// An encrypted capture does the plaintext one's work with the
	// sha256-tree replaced by the keyed BLAKE3 tree, plus sealing the
	// stored bytes: the CPU projection of issue 10's "within 10%".
	plainCPU, sealedCPU := med(2), med(2)-med(1)+med(4)+med(9)
	fmt.Printf("projected capture CPU, one core: plaintext %.2fs, encrypted %.2fs (encode - sha256-tree + blake3-keyed-tree + AES-256-GCM of the stored bytes): %+.1f%%\n",
		plainCPU, sealedCPU, 100*(sealedCPU/plainCPU-1))
	b.ReportMetric(ssl.Seconds()/med(4), "blake3_keyed_tree_x_openssl")
	b.ReportMetric(med(1)/med(4), "blake3_keyed_tree_x_sha256_tree")
	b.ReportMetric(ssl.Seconds()/med(8), "stored_blake3_x_openssl")
	b.ReportMetric(ssl.Seconds()/med(7), "stored_sha256_x_openssl")
	b.ReportMetric(100*(sealedCPU/plainCPU-1), "encrypted_capture_cpu_%")
}

// eachChunk calls fn with each 8 MiB chunk of the file at path, in order.
func eachChunk(path string, fn func(i uint64, p []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 8*mib)
	for i := uint64(0); ; i++ {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			fn(i, buf[:n])
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// eachPiece calls fn with every sealPiece bytes of the files, spread over
// workers goroutines, each reading its own pieces with ReadAt.
func eachPiece(paths []string, workers int, fn func(p []byte)) error {
	type piece struct {
		f   *os.File
		off int64
		n   int
	}
	var pieces []piece
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		for off := int64(0); off < fi.Size(); off += sealPiece {
			pieces = append(pieces, piece{f, off, int(min(sealPiece, fi.Size()-off))})
		}
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		first  error
		next   int
		nextMu sync.Mutex
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, sealPiece)
			for {
				nextMu.Lock()
				i := next
				next++
				nextMu.Unlock()
				if i >= len(pieces) {
					return
				}
				p := pieces[i]
				if _, err := p.f.ReadAt(buf[:p.n], p.off); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
				fn(buf[:p.n])
			}
		}()
	}
	wg.Wait()
	return first
}

// hmacTree is the chunk tree of spec §3 keyed with HMAC-SHA-256 and the
// block position bound as in spec §11.4: the alternative to keyed BLAKE3
// the issue names.
func hmacTree(key, raw []byte, index uint64, blocks [][seal.BlockDigestLen]byte) [32]byte {
	var sums [1024 * 32]byte
	var pos [12]byte
	binary.LittleEndian.PutUint64(pos[:8], index)
	m := hmac.New(sha256.New, key)
	n := 0
	for off := 0; off < len(raw); off += seal.BlockSize {
		binary.LittleEndian.PutUint32(pos[8:], uint32(n))
		m.Reset()
		m.Write(raw[off:min(off+seal.BlockSize, len(raw))])
		m.Write(pos[:])
		m.Sum(sums[n*32 : n*32])
		copy(blocks[n][:], sums[n*32:n*32+seal.BlockDigestLen])
		n++
	}
	m.Reset()
	m.Write(sums[:n*32])
	return [32]byte(m.Sum(nil))
}
