package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"testing"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"
)

// The benchmarks behind spec §11's choices (run them with -cpu 1 for
// per-core figures; bench/seal_test.go compares with openssl):
//
//	go test -run '^$' -bench . -cpu 1 -count 5 ./seal/

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// BenchmarkAEAD compares the two AEADs the issue allows on an 8 MiB
// payload (a raw chunk) and a 2 MiB one (a typical compressed chunk).
func BenchmarkAEAD(b *testing.B) {
	key := randomBytes(32)
	block, err := aes.NewCipher(key)
	if err != nil {
		b.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	chacha, err := chacha20poly1305.New(key)
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []struct {
		name string
		n    int
	}{{"8MiB", 8 << 20}, {"2MiB", 2 << 20}} {
		pt := randomBytes(size.n)
		ad := make([]byte, ChunkADSize)
		for _, a := range []struct {
			name string
			aead cipher.AEAD
		}{{"AES-256-GCM", gcm}, {"ChaCha20-Poly1305", chacha}} {
			nonce := make([]byte, NonceSize)
			sealed := a.aead.Seal(nil, nonce, pt, ad)
			dst := make([]byte, 0, len(sealed))
			b.Run(a.name+"/seal/"+size.name, func(b *testing.B) {
				b.SetBytes(int64(size.n))
				for b.Loop() {
					dst = a.aead.Seal(dst[:0], nonce, pt, ad)
				}
			})
			b.Run(a.name+"/open/"+size.name, func(b *testing.B) {
				b.SetBytes(int64(size.n))
				for b.Loop() {
					if _, err := a.aead.Open(dst[:0], nonce, sealed, ad); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkBlockDigest is the cost per 64 KiB block of today's SHA-256,
// of HMAC-SHA-256 and of keyed BLAKE3 (with and without the 12-byte
// position suffix of spec §11.4).
func BenchmarkBlockDigest(b *testing.B) {
	blk := randomBytes(BlockSize)
	key := randomBytes(32)
	pos := make([]byte, 12)
	b.Run("SHA-256", func(b *testing.B) {
		b.SetBytes(BlockSize)
		for b.Loop() {
			sha256.Sum256(blk)
		}
	})
	b.Run("HMAC-SHA-256", func(b *testing.B) {
		b.SetBytes(BlockSize)
		m := hmac.New(sha256.New, key)
		var out []byte
		for b.Loop() {
			m.Reset()
			m.Write(blk)
			m.Write(pos)
			out = m.Sum(out[:0])
		}
	})
	h, err := blake3.NewKeyed(key)
	if err != nil {
		b.Fatal(err)
	}
	var out [32]byte
	b.Run("BLAKE3-keyed", func(b *testing.B) {
		b.SetBytes(BlockSize)
		for b.Loop() {
			h.Reset()
			_, _ = h.Write(blk) // never fails
			_, _ = h.Write(pos)
			h.Sum(out[:0])
		}
	})
	b.Run("BLAKE3-keyed-no-position", func(b *testing.B) {
		b.SetBytes(BlockSize)
		for b.Loop() {
			h.Reset()
			_, _ = h.Write(blk) // never fails
			h.Sum(out[:0])
		}
	})
}

// BenchmarkChunkDigest is the one-pass chunk tree over an 8 MiB chunk:
// today's sha256-tree, the same shape with HMAC-SHA-256, and the
// Digester (keyed BLAKE3).
func BenchmarkChunkDigest(b *testing.B) {
	chunk := randomBytes(8 << 20)
	blocks := make([][BlockDigestLen]byte, len(chunk)/BlockSize)
	key := randomBytes(32)
	b.Run("sha256-tree", func(b *testing.B) {
		b.SetBytes(int64(len(chunk)))
		for b.Loop() {
			sha256Tree(chunk, blocks)
		}
	})
	b.Run("hmac-sha256-tree", func(b *testing.B) {
		b.SetBytes(int64(len(chunk)))
		for b.Loop() {
			hmacTree(key, chunk, 0, blocks)
		}
	})
	d := testKeys(b, NewRootKey(), 1).NewDigester()
	b.Run("blake3-keyed-tree", func(b *testing.B) {
		b.SetBytes(int64(len(chunk)))
		for b.Loop() {
			d.Chunk(chunk, 0, blocks)
		}
	})
}

// BenchmarkStoredDigest is the cost of a digest of stored (compressed,
// maybe encrypted, so random-looking) bytes, per 8 MiB: the candidates
// for spec §11.7.
func BenchmarkStoredDigest(b *testing.B) {
	buf := randomBytes(8 << 20)
	b.Run("SHA-256", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			sha256.Sum256(buf)
		}
	})
	b.Run("BLAKE3", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		for b.Loop() {
			blake3.Sum256(buf)
		}
	})
}

// sha256Tree is format's "sha256-tree" (spec §3), for comparison.
func sha256Tree(raw []byte, blocks [][BlockDigestLen]byte) [32]byte {
	var sums [maxBlocks * 32]byte
	n := 0
	for off := 0; off < len(raw); off += BlockSize {
		d := sha256.Sum256(raw[off:min(off+BlockSize, len(raw))])
		copy(sums[n*32:], d[:])
		copy(blocks[n][:], d[:BlockDigestLen])
		n++
	}
	return sha256.Sum256(sums[:n*32])
}

// hmacTree is the same shape keyed with HMAC-SHA-256 (the alternative
// the issue names), for comparison.
func hmacTree(key, raw []byte, index uint64, blocks [][BlockDigestLen]byte) [32]byte {
	var sums [maxBlocks * 32]byte
	m := hmac.New(sha256.New, key)
	pos := le64(index)
	n := 0
	for off := 0; off < len(raw); off += BlockSize {
		m.Reset()
		m.Write(raw[off:min(off+BlockSize, len(raw))])
		m.Write(append(pos, byte(n), byte(n>>8), 0, 0))
		m.Sum(sums[n*32 : n*32])
		copy(blocks[n][:], sums[n*32:n*32+BlockDigestLen])
		n++
	}
	m.Reset()
	m.Write(sums[:n*32])
	return [32]byte(m.Sum(nil))
}
