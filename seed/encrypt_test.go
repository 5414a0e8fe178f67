package seed_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"filippo.io/age"

	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/seal"
	"github.com/seedship/seedship/seed"
)

// encSmall is small (24 chunks of 64 KiB: zero, random and text ones)
// encrypted for a new identity.
func encSmall(t testing.TB) (testImage, age.Identity) {
	return buildEncrypted(t, testSource(24*65536+777, 65536, 1), 65536, 256<<10, nil)
}

// encParity is withParity encrypted for a new identity.
func encParity(t testing.TB) (testImage, age.Identity) {
	return buildEncrypted(t, testSource(40*65536+333, 65536, 2), 65536, 128<<10, &format.Geometry{K: 2, M: 1, RowSize: 4096})
}

// resealManifest stores mb, changed, as manifest.ssm and every copy with
// its SHA-256 trailer made right again, as a crafted image would have:
// only the MAC (keyed trailer) can tell.
func resealManifest(t testing.TB, ti testImage, edit func(b []byte)) {
	t.Helper()
	b := bytes.Clone(ti.mb)
	edit(b)
	body := len(b) - 72
	h := sha256.Sum256(b[:body])
	copy(b[body:], h[:])
	if _, err := format.DecodeManifest(b); err != nil {
		t.Fatalf("the crafted manifest does not decode: %v", err)
	}
	for _, k := range append(ti.m.CopyKeys(), format.ManifestKey) {
		ti.st.SetObject(k, b)
	}
}

func TestUnlock(t *testing.T) {
	other, _ := newIdentity(t)
	cases := []struct {
		name   string
		ids    func(right age.Identity) []age.Identity
		tamper func(t testing.TB, ti testImage)
		want   error // nil: unlocks
	}{
		{"right identity", func(r age.Identity) []age.Identity { return []age.Identity{r} }, nil, nil},
		{"right one among others", func(r age.Identity) []age.Identity { return []age.Identity{other, r} }, nil, nil},
		{"wrong identity", func(age.Identity) []age.Identity { return []age.Identity{other} }, nil, format.ErrNoKey},
		{"no identity", func(age.Identity) []age.Identity { return nil }, nil, format.ErrNoKey},
		{"tampered manifest", func(r age.Identity) []age.Identity { return []age.Identity{r} }, func(t testing.TB, ti testImage) {
			// The last byte of the segment table (an index hash),
			// changed with the SHA-256 trailer made to agree.
			resealManifest(t, ti, func(b []byte) { b[len(b)-73] ^= 0x01 })
		}, format.ErrChecksum},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ti, right := encSmall(t)
			if tc.tamper != nil {
				tc.tamper(t, ti)
			}
			im := open(t, ti.st)
			if !im.Encrypted() || !im.Locked() {
				t.Fatal("an encrypted image opened without a key is not locked")
			}
			if im.Manifest().Header.SHA256 != "" || im.Manifest().Header.Source.Path != "" {
				t.Fatal("the sealed header fields are readable without the key")
			}
			err := im.Unlock(tc.ids(right))
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("Unlock: %v, want %v", err, tc.want)
			}
			if tc.want == nil {
				if im.Locked() || im.Manifest().Header.SHA256 != ti.m.Header.SHA256 || im.Manifest().Header.Source.Path != "src" {
					t.Fatalf("unlocked: locked %v, sha256 %q", im.Locked(), im.Manifest().Header.SHA256)
				}
				return
			}
			if !im.Locked() {
				t.Fatal("a failed Unlock left the image unlocked")
			}
			if errors.Is(tc.want, format.ErrNoKey) == format.IsDamage(err) {
				t.Fatalf("Unlock: %v: a missing key must be bad input, a failing MAC damage", err)
			}
			if bytes.ContainsRune([]byte(err.Error()), '\n') {
				t.Fatalf("Unlock error is not one line: %q", err)
			}
		})
	}
	// A plain image has nothing to unlock.
	ti := small(t)
	im := open(t, ti.st)
	if err := im.Unlock(nil); err != nil || im.Locked() || im.Encrypted() {
		t.Fatalf("Unlock of a plain image: %v", err)
	}
}

// TestLockedRefusesToOpen: an encrypted image that was not unlocked
// hands out no chunk: every way to ask for one fails with ErrNoKey before
// anything is decoded.
func TestLockedRefusesToOpen(t *testing.T) {
	ti, _ := encParity(t)
	im := open(t, ti.st)
	ctx := context.Background()
	stored := slices.IndexFunc(ti.m.Chunks, func(c format.ChunkEntry) bool { return c.Kind == format.KindStored })
	zero := slices.IndexFunc(ti.m.Chunks, func(c format.ChunkEntry) bool { return c.Kind == format.KindZero })
	if _, err := im.Chunk(ctx, uint64(stored), nil); !errors.Is(err, format.ErrNoKey) || format.IsDamage(err) {
		t.Errorf("Chunk: %v, want ErrNoKey", err)
	}
	if _, err := im.Chunk(ctx, uint64(zero), nil); !errors.Is(err, format.ErrNoKey) {
		t.Errorf("Chunk of a zero chunk: %v, want ErrNoKey (even its zeros are not handed out unchecked)", err)
	}
	onChunk := func(uint64, []byte) error { t.Error("a chunk was handed out"); return nil }
	for name, opts := range map[string]seed.ReadOptions{
		"OnChunk": {OnChunk: onChunk},
		"Deep":    {Deep: true},
	} {
		if _, err := im.Read(ctx, opts); !errors.Is(err, format.ErrNoKey) {
			t.Errorf("Read with %s: %v, want ErrNoKey", name, err)
		}
	}
	if _, err := im.Rebuild(ctx, []seed.Damage{{IsChunk: true, Chunk: uint64(stored)}}, onChunk); !errors.Is(err, format.ErrNoKey) {
		t.Errorf("Rebuild: %v, want ErrNoKey", err)
	}
	if _, err := im.Read(ctx, seed.ReadOptions{Transport: true, Deep: true}); err == nil {
		t.Error("Read with Transport and Deep: no error")
	}
}

// TestTransportRead: a transport read of intact images, plain and
// encrypted, passes without opening a chunk, and says so; a deep read
// of the same images opens every chunk and checks the stored digests on
// the way.
func TestTransportRead(t *testing.T) {
	type image struct {
		ti testImage
		id age.Identity
	}
	images := map[string]func() image{
		"plain":            func() image { return image{ti: small(t)} },
		"plain parity":     func() image { return image{ti: withParity(t)} },
		"encrypted":        func() image { ti, id := encSmall(t); return image{ti, id} },
		"encrypted parity": func() image { ti, id := encParity(t); return image{ti, id} },
	}
	for name, mk := range images {
		t.Run(name, func(t *testing.T) {
			img := mk()
			im := open(t, img.ti.st)
			ctx := context.Background()
			indexes, err := im.CheckParity(ctx, func(d seed.Damage) { t.Errorf("parity damage: %v", d) })
			if err != nil {
				t.Fatal(err)
			}
			var stored uint64
			var storedBytes, frameBytes int64
			for i, c := range img.ti.m.Chunks {
				if c.Kind == format.KindStored {
					_, n := img.ti.m.ChunkRange(uint64(i))
					stored, storedBytes, frameBytes = stored+1, storedBytes+n, frameBytes+c.FrameLen()
				}
			}
			// Transport: asked for, or, for a locked image, by default.
			for _, opts := range []seed.ReadOptions{{Transport: true}, {}} {
				if !im.Locked() && !opts.Transport {
					continue
				}
				opts.Workers, opts.Parity = 2, indexes
				opts.OnDamage = func(d seed.Damage) error { t.Errorf("damage: %v", d); return nil }
				stats, err := im.Read(ctx, opts)
				if err != nil || !stats.Transport || stats.ChunksOK != stored || stats.StoredChecked != stored || stats.BytesChecked != storedBytes || stats.StoredBytes != frameBytes {
					t.Fatalf("transport read (%+v): stats %+v, err %v; want %d chunks, %d bytes", opts.Transport, stats, err, stored, storedBytes)
				}
			}
			if err := im.Unlock([]age.Identity{img.id}); img.id != nil && err != nil {
				t.Fatal(err)
			}
			out, damage, err := readAll(t, im, seed.ReadOptions{Workers: 2, Parity: indexes})
			if err != nil || len(damage) != 0 || !bytes.Equal(out, img.ti.src) {
				t.Fatalf("deep read: %v, damage %v, equal %v", err, damage, bytes.Equal(out, img.ti.src))
			}
			stats, err := im.Read(ctx, seed.ReadOptions{Workers: 2})
			// A deep read opens every chunk: it does not hash the stored
			// bytes again (their chunk hash proves them).
			if err != nil || stats.Transport || stats.ChunksOK != stored || stats.StoredChecked != 0 {
				t.Fatalf("deep read stats %+v: %v", stats, err)
			}
		})
	}
}

// payloadOffsets returns positions in a payload of n bytes to change:
// its ends, a sealed payload's nonce, ciphertext and tag, and a spread of
// bytes between them.
func payloadOffsets(n int64) []int64 {
	offs := []int64{0, 1, 11, 12, 13, n / 3, n / 2, n - 17, n - 16, n - 1}
	for o := int64(7); o < n; o += n/7 + 1 {
		offs = append(offs, o)
	}
	return offs
}

// TestFlippedBitLocated flips one bit of a stored chunk's payload (or
// frame header) at many places, in plain and encrypted images, and reads
// them by transport and deep reads: each finds exactly that chunk
// damaged, with its source byte range and its frame's place in its
// segment.
func TestFlippedBitLocated(t *testing.T) {
	type mode struct {
		name      string
		encrypted bool
		transport bool
	}
	modes := []mode{{"plain transport", false, true}, {"plain deep", false, false},
		{"encrypted transport", true, true}, {"encrypted deep", true, false}}
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			var ti testImage
			var id age.Identity
			if md.encrypted {
				ti, id = encSmall(t)
			} else {
				ti = small(t)
			}
			orig := map[string][]byte{}
			for _, sid := range ti.m.SegmentIDs() {
				b, _ := ti.st.Object(sid.Key())
				orig[sid.Key()] = bytes.Clone(b)
			}
			im := open(t, ti.st)
			if md.encrypted && !md.transport {
				if err := im.Unlock([]age.Identity{id}); err != nil {
					t.Fatal(err)
				}
			}
			for _, i := range []uint64{1, 2, 22} { // a raw chunk, a compressed one, the last
				c := ti.m.Chunks[i]
				if c.Kind != format.KindStored {
					t.Fatalf("chunk %d is not stored", i)
				}
				key := format.DataID(c.Segment).Key()
				var offs []int64
				for _, o := range payloadOffsets(int64(c.PayloadLen)) {
					offs = append(offs, c.Offset+format.FrameHeaderSize+o)
				}
				offs = append(offs, c.Offset, c.Offset+8, c.Offset+format.FrameHeaderSize-1)
				for _, at := range offs {
					b := bytes.Clone(orig[key])
					b[at] ^= 0x04
					ti.st.SetObject(key, b)
					_, damage, err := readAll(t, im, seed.ReadOptions{Workers: 2, Transport: md.transport})
					if err != nil {
						t.Fatal(err)
					}
					off, length := ti.m.ChunkRange(i)
					if len(damage) != 1 || !damage[0].IsChunk || damage[0].Chunk != i || damage[0].Offset != off || damage[0].Length != length ||
						damage[0].Key != key || damage[0].FrameOffset != c.Offset || damage[0].FrameLength != c.FrameLen() || !format.IsDamage(damage[0].Err) {
						t.Fatalf("chunk %d, byte %d of %s flipped: damage %v", i, at, key, damage)
					}
					// Only this frame, by a ranged read: hashed by a worker.
					_, damage, err = readAll(t, im, seed.ReadOptions{Workers: 2, Transport: md.transport, Chunks: []uint64{i - 1, i}})
					if err != nil || len(damage) != 1 || damage[0].Chunk != i || !format.IsDamage(damage[0].Err) {
						t.Fatalf("chunk %d, byte %d of %s flipped, ranged read: %v, damage %v", i, at, key, err, damage)
					}
					if err := im.CheckStream(context.Background(), format.DataID(c.Segment), bytes.NewReader(b), nil); !format.IsDamage(err) {
						t.Fatalf("chunk %d, byte %d of %s flipped: CheckStream %v, want damage", i, at, key, err)
					}
				}
				ti.st.SetObject(key, orig[key])
			}
		})
	}
}

// TestRepairWithoutKey: a flipped bit in an encrypted image with parity
// is found by a transport read and its segment rebuilt from parity
// without the key, checked against its stored digests as it streams;
// the rebuilt segment is the original.
func TestRepairWithoutKey(t *testing.T) {
	ti, id := encParity(t)
	ctx := context.Background()
	i := uint64(4)
	c := ti.m.Chunks[i]
	key := format.DataID(c.Segment).Key()
	orig, _ := ti.st.Object(key)
	orig = bytes.Clone(orig)
	flip(t, ti.st, key, c.Offset+format.FrameHeaderSize+int64(c.PayloadLen)/2)
	im := open(t, ti.st)
	_, damage, err := readAll(t, im, seed.ReadOptions{Workers: 2, Transport: true})
	if err != nil || len(damage) != 1 || damage[0].Chunk != i {
		t.Fatalf("transport read: %v, damage %v", err, damage)
	}
	sinks := map[format.SegmentID]*bufSink{}
	sts, err := im.RebuildSegments(ctx, damage, func(sid format.SegmentID, size int64) seed.SegmentSink {
		sinks[sid] = &bufSink{}
		return sinks[sid]
	})
	if err != nil || len(sts) != 1 || !sts[0].Repairable {
		t.Fatalf("rebuild segments: %v %+v", err, sts)
	}
	if s := sinks[format.DataID(c.Segment)]; s == nil || !s.closed || !bytes.Equal(s.Bytes(), orig) {
		t.Fatalf("rebuilt %s differs from the original", key)
	}
	// With the key, the chunk itself is rebuilt and opened.
	if err := im.Unlock([]age.Identity{id}); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	_, err = im.Rebuild(ctx, damage, func(j uint64, raw []byte) error {
		off, n := ti.m.ChunkRange(j)
		if !bytes.Equal(raw, ti.src[off:off+n]) {
			t.Errorf("chunk %d rebuilt wrong", j)
		}
		got = append(got, j)
		return nil
	})
	if err != nil || !slices.Equal(got, []uint64{i}) {
		t.Fatalf("rebuild: %v, got %v", err, got)
	}
}

// TestRebuiltSegmentChecked: a rebuilt segment that is not what was
// written is abandoned, not stored, and its stripe reported beyond
// repair. A parity row is changed by a pattern that keeps its CRC-32C
// (the only per-row check a rebuild has), so the rebuilt data segment
// differs from the original in a frame: only the rebuilt segment's own
// check (stored digests, chunk hashes) can tell.
func TestRebuiltSegmentChecked(t *testing.T) {
	// 3+1 parity is the XOR of the data shards, so a change to a parity
	// row is the same change to the rebuilt data row.
	ti := build(t, testSource(40*65536+333, 65536, 2), 65536, 128<<10, &format.Geometry{K: 3, M: 1, RowSize: 4096})
	ctx := context.Background()
	g, _ := ti.m.Geometry()
	seg := format.DataID(0)
	stripe, _ := g.Stripe(seg)
	pkey := format.ParityID(g.ParityNumber(stripe, 0)).Key()
	c := ti.m.Chunks[im0Chunk(t, ti, 0)]
	at := c.Offset + format.FrameHeaderSize + 40 // in the first frame's payload
	p, _ := ti.st.Object(pkey)
	p = bytes.Clone(p)
	row := int(at / int64(g.RowSize))
	rowStart := format.SegmentHeaderSize + int64(row*g.RowSize)
	before := format.RowCRC(0, p[rowStart:rowStart+int64(g.RowSize)])
	for k, x := range crcNeutral(g.RowSize, int(at%int64(g.RowSize))) {
		p[rowStart+int64(k)] ^= x
	}
	if format.RowCRC(0, p[rowStart:rowStart+int64(g.RowSize)]) != before {
		t.Fatal("the pattern changes the row's CRC")
	}
	ti.st.SetObject(pkey, p)
	_ = ti.st.Delete(ctx, seg.Key())
	im := open(t, ti.st)
	damage := []seed.Damage{{Key: seg.Key(), Err: &format.SegmentError{ID: seg, Err: format.ErrMissing}}}
	sinks := map[format.SegmentID]*bufSink{}
	sts, err := im.RebuildSegments(ctx, damage, func(sid format.SegmentID, size int64) seed.SegmentSink {
		sinks[sid] = &bufSink{}
		return sinks[sid]
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := sinks[seg]; s == nil || s.closed {
		t.Fatalf("a segment rebuilt from a changed parity row was stored (statuses %+v)", sts)
	}
	if len(sts) != 1 || sts[0].Repairable || !format.IsDamage(sts[0].Err) {
		t.Fatalf("statuses %+v: want stripe %d not repairable, with the damage found", sts, stripe)
	}
}

// im0Chunk returns the first stored chunk of data segment n.
func im0Chunk(t testing.TB, ti testImage, n uint32) uint64 {
	t.Helper()
	for i, c := range ti.m.Chunks {
		if c.Kind == format.KindStored && c.Segment == n {
			return uint64(i)
		}
	}
	t.Fatalf("segment %d holds no chunk", n)
	return 0
}

// crcNeutral returns a non-zero pattern of up to 5 bytes that, XORed into
// a row of rowSize bytes at offset at, leaves its CRC-32C as it was: the
// CRC is linear in the bits changed, and 40 bits give 40 vectors in a
// 32-bit space, so some of them sum to zero.
func crcNeutral(rowSize, at int) []byte {
	at = min(at, rowSize-5)
	zero := make([]byte, rowSize)
	base := format.RowCRC(0, zero)
	type vec struct {
		d    uint32
		bits uint64 // which of the 40 bits make it
	}
	var pivots [32]*vec
	for k := range 40 {
		row := make([]byte, rowSize)
		row[at+k/8] = 1 << (k % 8)
		v := &vec{d: format.RowCRC(0, row) ^ base, bits: 1 << k}
		for b := 31; b >= 0 && v.d != 0; b-- {
			if v.d&(1<<b) == 0 {
				continue
			}
			if pivots[b] == nil {
				pivots[b] = v
				break
			}
			v.d ^= pivots[b].d
			v.bits ^= pivots[b].bits
		}
		if v.d == 0 {
			out := make([]byte, rowSize)
			for k := range 40 {
				if v.bits&(1<<k) != 0 {
					out[at+k/8] |= 1 << (k % 8)
				}
			}
			return out
		}
	}
	panic("no CRC-neutral pattern in 40 bits")
}

// TestSwappedPayloads swaps two chunks' sealed payloads in an encrypted
// image, or splices in a payload of another image encrypted under the
// same root key, and fixes up everything a keyless check sees (stored
// digests, index hashes, the manifest and its MAC, made with the image's
// keys): a transport read cannot tell, a deep read finds the chunks
// damaged, because each payload is bound to its image and chunk index.
func TestSwappedPayloads(t *testing.T) {
	random := func(seedv uint64) []byte {
		r := rand.New(rand.NewPCG(seedv, 4))
		src := make([]byte, 12*65536)
		for k := range src {
			src[k] = byte(r.Uint32())
		}
		return src
	}
	i, j := uint64(2), uint64(9) // raw (random) chunks: payloads of the same length
	cases := []struct {
		name  string
		bad   []uint64
		graft func(t *testing.T, ti testImage, root seal.RootKey, enc *format.Encryption, b []byte)
	}{
		{"swapped", []uint64{i, j}, func(t *testing.T, ti testImage, _ seal.RootKey, _ *format.Encryption, b []byte) {
			ci, cj := ti.m.Chunks[i], ti.m.Chunks[j]
			pi := b[ci.Offset+format.FrameHeaderSize : ci.Offset+ci.FrameLen()]
			pj := b[cj.Offset+format.FrameHeaderSize : cj.Offset+cj.FrameLen()]
			tmp := bytes.Clone(pi)
			copy(pi, pj)
			copy(pj, tmp)
		}},
		{"spliced from another image", []uint64{i}, func(t *testing.T, ti testImage, root seal.RootKey, enc *format.Encryption, b []byte) {
			src := random(5)
			keys, err := seal.DeriveKeys(root, imageID(src))
			if err != nil {
				t.Fatal(err)
			}
			other := buildImage(t, src, 65536, 1<<20, nil, &encryption{root: root, enc: enc, keys: keys})
			ci, oi := ti.m.Chunks[i], other.m.Chunks[i]
			ob, _ := other.st.Object(format.DataID(oi.Segment).Key())
			copy(b[ci.Offset+format.FrameHeaderSize:ci.Offset+ci.FrameLen()], ob[oi.Offset+format.FrameHeaderSize:oi.Offset+oi.FrameLen()])
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idn, r := newIdentity(t)
			root := seal.NewRootKey()
			enc, err := format.NewEncryption(root, []seal.Recipient{r}, "")
			if err != nil {
				t.Fatal(err)
			}
			src := random(3)
			keys, err := seal.DeriveKeys(root, imageID(src))
			if err != nil {
				t.Fatal(err)
			}
			ti := buildImage(t, src, 65536, 1<<20, nil, &encryption{root: root, enc: enc, keys: keys})
			ci, cj := ti.m.Chunks[i], ti.m.Chunks[j]
			if ci.PayloadLen != cj.PayloadLen || ci.Segment != cj.Segment || !ci.Codec.Sealed() {
				t.Fatalf("chunks %d and %d: %+v %+v", i, j, ci, cj)
			}
			key := format.DataID(ci.Segment).Key()
			b, _ := ti.st.Object(key)
			b = bytes.Clone(b)
			tc.graft(t, ti, root, enc, b)
			ti.st.SetObject(key, b)
			fixStored(t, ti, ci.Segment)

			im := open(t, ti.st)
			_, damage, err := readAll(t, im, seed.ReadOptions{Workers: 2})
			if err != nil || len(damage) != 0 {
				t.Fatalf("transport read of the fixed-up image: %v, damage %v (the test did not fix it up)", err, damage)
			}
			if err := im.Unlock([]age.Identity{idn}); err != nil {
				t.Fatalf("Unlock: %v (the manifest was not MACed again)", err)
			}
			_, damage, err = readAll(t, im, seed.ReadOptions{Workers: 2})
			if err != nil {
				t.Fatal(err)
			}
			seed.SortDamage(damage)
			var got []uint64
			for _, d := range damage {
				got = append(got, d.Chunk)
				off, n := ti.m.ChunkRange(d.Chunk)
				if !d.IsChunk || d.Offset != off || d.Length != n || !errors.Is(d.Err, format.ErrChecksum) || !errors.Is(d.Err, seal.ErrAuthentication) {
					t.Errorf("damage %v: want chunk damage failing authentication", d)
				}
			}
			if !slices.Equal(got, tc.bad) {
				t.Fatalf("deep read: damage %v, want chunks %v", damage, tc.bad)
			}
			if _, err := im.Chunk(context.Background(), i, nil); !errors.Is(err, seal.ErrAuthentication) {
				t.Fatalf("Chunk(%d): %v, want damage failing authentication", i, err)
			}
			if err := im.CheckStream(context.Background(), format.DataID(ci.Segment), bytes.NewReader(b), nil); !errors.Is(err, seal.ErrAuthentication) {
				t.Fatalf("CheckStream: %v, want damage failing authentication", err)
			}
		})
	}
}

// fixStored writes the stored digests of data segment n's frames as they
// now are into its index, and makes the footer and the manifest (sealed
// and MACed again with the writer's keys) agree.
func fixStored(t testing.TB, ti testImage, n uint32) {
	t.Helper()
	key := format.DataID(n).Key()
	b, _ := ti.st.Object(key)
	id, _ := ti.m.ImageID()
	_, entries, err := format.ReadSummary(bytes.NewReader(b), int64(len(b)), format.DataID(n), id)
	if err != nil {
		t.Fatal(err)
	}
	indexLen := int64(0)
	for _, e := range entries {
		indexLen += 92 + int64(8*len(e.Blocks))
	}
	indexOffset := int64(len(b)) - format.FooterSize - indexLen
	at := indexOffset
	for _, e := range entries {
		frame := b[e.Offset : e.Offset+format.FrameHeaderSize+int64(e.PayloadLen)]
		d := format.FrameDigest(frame[:format.FrameHeaderSize], frame[format.FrameHeaderSize:])
		copy(b[at+60:], d[:])
		at += 92 + int64(8*len(e.Blocks))
	}
	h := sha256.Sum256(b[indexOffset : indexOffset+indexLen])
	copy(b[len(b)-format.FooterSize+24:], h[:])
	ti.st.SetObject(key, b)
	for k := range ti.m.Segments {
		if ti.m.Segments[k].Number == n {
			ti.m.Segments[k].IndexHash = h
		}
	}
	mb, err := ti.m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range append(ti.m.CopyKeys(), format.ManifestKey) {
		ti.st.SetObject(k, mb)
	}
}

// TestStoredDigestChecked: a frame's stored digest in its index changed
// (with the index hash and manifest made to agree) is found by a
// transport read, a single chunk fetch and a segment copy; a deep read
// checks the chunk itself against its chunk hash instead, and passes.
func TestStoredDigestChecked(t *testing.T) {
	for _, transport := range []bool{true, false} {
		ti := small(t)
		i := uint64(5)
		c := ti.m.Chunks[i]
		craftIndex(t, ti, c.Segment, i, 60)
		im := open(t, ti.st)
		var mu sync.Mutex
		var damage []seed.Damage
		stats, err := im.Read(context.Background(), seed.ReadOptions{Workers: 2, Transport: transport,
			OnDamage: func(d seed.Damage) error { mu.Lock(); damage = append(damage, d); mu.Unlock(); return nil }})
		switch {
		case transport && (err != nil || len(damage) != 1 || damage[0].Chunk != i || !errors.Is(damage[0].Err, format.ErrChecksum)):
			t.Fatalf("transport read: %v, damage %v", err, damage)
		case !transport && (err != nil || len(damage) != 0 || stats.ChunksOK == 0):
			// A deep read checks the chunk itself, which is intact: the
			// forged stored digest is the transport check's to find.
			t.Fatalf("deep read: %v, damage %v", err, damage)
		}
		if stats.Transport != transport {
			t.Fatalf("stats %+v", stats)
		}
		if _, err := im.Chunk(context.Background(), i, nil); !format.IsDamage(err) {
			t.Fatalf("Chunk(%d): %v, want damage", i, err)
		}
		if err := im.CopySegment(context.Background(), format.DataID(c.Segment), nil); !format.IsDamage(err) {
			t.Fatalf("CopySegment: %v, want damage", err)
		}
	}
}

// TestTransportDamagedIndex: without its segment's index a chunk's
// stored bytes cannot be checked: a transport read reports every chunk
// of that segment, a deep read only the index.
func TestTransportDamagedIndex(t *testing.T) {
	ti := small(t)
	n := uint32(1)
	key := format.DataID(n).Key()
	flip(t, ti.st, key, -format.FooterSize-3) // inside the index
	im := open(t, ti.st)
	_, damage, err := readAll(t, im, seed.ReadOptions{Workers: 2, Transport: true})
	if err != nil {
		t.Fatal(err)
	}
	var chunks []uint64
	segment := false
	for _, d := range damage {
		if d.IsChunk {
			chunks = append(chunks, d.Chunk)
		} else if d.Key == key {
			segment = true
		}
	}
	slices.Sort(chunks)
	if !segment || !slices.Equal(chunks, im.SegmentChunks(n)) {
		t.Fatalf("transport read: damage %v, want %s and chunks %v", damage, key, im.SegmentChunks(n))
	}
	_, damage, err = readAll(t, im, seed.ReadOptions{Workers: 2})
	if err != nil || len(damage) != 1 || damage[0].IsChunk {
		t.Fatalf("deep read: %v, damage %v, want the index only", err, damage)
	}
}
