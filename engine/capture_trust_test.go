package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/seedship/seedship/device"
	"github.com/seedship/seedship/device/devicetest"
	"github.com/seedship/seedship/format"
	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/dir"
	"github.com/seedship/seedship/store/storetest/memstore"
)

// trustOpts are small options so that a few MiB make several segments.
func trustOpts() CaptureOptions {
	return CaptureOptions{ChunkSize: 256 << 10, SegmentSize: 1 << 20, Workers: 2}
}

func captureFile(ctx context.Context, t *testing.T, path string, st store.Store, o CaptureOptions) (*CaptureResult, error) {
	t.Helper()
	src, err := OpenSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	return Capture(ctx, src, st, o)
}

// interrupted leaves in a new directory a capture of srcPath cancelled
// after n segments were checkpointed.
func interrupted(t *testing.T, srcPath string, n int32, o CaptureOptions) (string, store.Store) {
	t.Helper()
	d := filepath.Join(t.TempDir(), "img")
	st, err := dir.New(d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err = captureFile(ctx, t, srcPath, &cancelAfter{Store: st, n: n, cancel: cancel}, o)
	if !errors.Is(err, context.Canceled) || KindOf(err) != KindInterrupted {
		t.Fatalf("interrupted capture: %v (kind %v), want context.Canceled", err, KindOf(err))
	}
	return d, st
}

func resumeOpts() CaptureOptions { return CaptureOptions{Resume: true, Workers: 2} }

// TestResumeRefusesOtherSourceOfSameSize: the captured part of the source
// is read again and must match what is stored.
func TestResumeRefusesOtherSourceOfSameSize(t *testing.T) {
	size := 8 << 20
	srcPath := mixedSource(t, size)
	_, img := interrupted(t, srcPath, 2, trustOpts())

	other := filepath.Join(t.TempDir(), "other.img")
	b, _ := os.ReadFile(srcPath)
	b[300<<10] ^= 1 // one bit, in chunk 1, which is already stored
	if err := os.WriteFile(other, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := captureFile(context.Background(), t, other, img, resumeOpts())
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "differs") || !strings.Contains(err.Error(), "chunk 1") {
		t.Fatalf("resume from another source of the same size: %v, want bad input naming the differing chunk", err)
	}
	// The refused resume changed nothing: the same source still resumes.
	res, err := captureFile(context.Background(), t, srcPath, img, resumeOpts())
	if err != nil {
		t.Fatal(err)
	}
	if res.RehashedBytes == 0 || res.RehashedBytes != res.ResumedAt {
		t.Fatalf("resume re-hashed %d bytes, resumed at %d", res.RehashedBytes, res.ResumedAt)
	}
	checkImageOf(t, img, srcPath)
}

// checkImageOf restores img and compares it with the source file.
func checkImageOf(t *testing.T, img store.Store, srcPath string) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "restored.img")
	if _, err := Restore(context.Background(), img, target, RestoreOptions{Workers: 2}); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(srcPath)
	got, _ := os.ReadFile(target)
	if !bytes.Equal(got, want) {
		t.Fatal("restored image differs from the source")
	}
}

// reseal rewrites the checkpoint in d after edit, with a valid seal: what
// someone with write access could do, or a bug.
func reseal(t *testing.T, d string, edit func(*format.Checkpoint)) {
	t.Helper()
	p := filepath.Join(d, CheckpointKey)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := format.ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	edit(ck)
	if b, err = ck.Marshal(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestResumeRefusesBadCheckpoint: a damaged, edited or foreign checkpoint
// is refused before anything is written, and an absurd count neither
// grows memory nor hangs.
func TestResumeRefusesBadCheckpoint(t *testing.T) {
	srcPath := mixedSource(t, 8<<20)
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, d string)
		want string
	}{
		{"bit flip", func(t *testing.T, d string) {
			p := filepath.Join(d, CheckpointKey)
			b, _ := os.ReadFile(p)
			i := bytes.Index(b, []byte(`"chunks":`)) + len(`"chunks":`)
			b[i]++
			noErr(t, os.WriteFile(p, b, 0o600))
		}, "seal"},
		{"unsealed version 1", func(t *testing.T, d string) {
			noErr(t, os.WriteFile(filepath.Join(d, CheckpointKey), []byte(`{"format":"seedship-checkpoint","version":1}`), 0o600))
		}, "version"},
		{"more chunks than stored", func(t *testing.T, d string) {
			// Chunks past the last stored one are taken for zero chunks
			// only if the source proves them zero: here it does not.
			reseal(t, d, func(ck *format.Checkpoint) { ck.Chunks += 3 })
		}, "differs from the one the interrupted capture read"},
		{"absurd chunk count", func(t *testing.T, d string) {
			reseal(t, d, func(ck *format.Checkpoint) { ck.Chunks = 1 << 60 })
		}, "chunks"},
		{"absurd segment count", func(t *testing.T, d string) {
			reseal(t, d, func(ck *format.Checkpoint) { ck.Segments = 1 << 31 })
		}, "segments"},
		{"fewer segments", func(t *testing.T, d string) {
			reseal(t, d, func(ck *format.Checkpoint) { ck.Segments-- })
		}, "not the ones capture.ckpt was written for"},
		{"another image", func(t *testing.T, d string) {
			reseal(t, d, func(ck *format.Checkpoint) { ck.ImageID[0] ^= 0xff })
		}, "of image"},
		{"stored digest", func(t *testing.T, d string) {
			reseal(t, d, func(ck *format.Checkpoint) { ck.Stored[0] ^= 1 })
		}, "not the ones"},
		{"hash state", func(t *testing.T, d string) {
			reseal(t, d, func(ck *format.Checkpoint) { ck.SHA256State[len(ck.SHA256State)-20] ^= 1 })
		}, "hash state"},
		{"segment replaced", func(t *testing.T, d string) {
			// A segment of another capture of the same source and
			// image ID: same header, other index (stored raw).
			o := trustOpts()
			o.Level, o.imageID = -1, &[16]byte{1}
			other := filepath.Join(t.TempDir(), "other")
			st, _ := dir.New(other)
			if _, err := captureFile(context.Background(), t, srcPath, st, o); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(other, format.DataID(1).Key()))
			noErr(t, err)
			noErr(t, os.WriteFile(filepath.Join(d, format.DataID(1).Key()), b, 0o600))
		}, "cannot resume|not the ones|stored segments end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := trustOpts()
			o.imageID = &[16]byte{1}
			d, img := interrupted(t, srcPath, 2, o)
			tc.edit(t, d)
			before := treeDigest(t, d)
			var ms0, ms1 runtime.MemStats
			runtime.ReadMemStats(&ms0)
			_, err := captureFile(context.Background(), t, srcPath, img, resumeOpts())
			runtime.ReadMemStats(&ms1)
			if !errors.Is(err, ErrBadInput) || !regexp.MustCompile(tc.want).MatchString(err.Error()) {
				t.Fatalf("resume: %v, want bad input mentioning %q", err, tc.want)
			}
			if grew := ms1.TotalAlloc - ms0.TotalAlloc; grew > 64<<20 {
				t.Errorf("the refused resume allocated %d MiB", grew>>20)
			}
			if after := treeDigest(t, d); after != before {
				t.Error("the refused resume changed the destination")
			}
		})
	}
}

// treeDigest summarises the files under d (names and contents).
func treeDigest(t *testing.T, d string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		b.WriteString(p + "\x00" + string(data) + "\x00")
		return err
	})
	noErr(t, err)
	return b.String()
}

// noErr stops the test on an error of its own setup.
func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// killAfterFirstSegment fails every Put once the first data segment is
// stored, as a process killed right then would stop.
type killAfterFirstSegment struct {
	store.Store
	cancel context.CancelFunc
	dead   atomic.Bool
}

func (k *killAfterFirstSegment) Unwrap() store.Store { return k.Store }

func (k *killAfterFirstSegment) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if k.dead.Load() {
		_, _ = io.Copy(io.Discard, r) // as a writer would, until it learns of the failure
		return context.Canceled
	}
	err := k.Store.Put(ctx, key, r, size)
	if err == nil && key == format.DataID(0).Key() {
		k.dead.Store(true)
		k.cancel()
	}
	return err
}

// TestResumeKilledBeforeFirstSegmentCheckpoint: a checkpoint exists from
// before the first segment is stored, so a capture killed between storing
// its first segment and checkpointing it resumes.
func TestResumeKilledBeforeFirstSegmentCheckpoint(t *testing.T) {
	srcPath := mixedSource(t, 6<<20+4321)
	d := filepath.Join(t.TempDir(), "img")
	img, _ := dir.New(d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := captureFile(ctx, t, srcPath, &killAfterFirstSegment{Store: img, cancel: cancel}, trustOpts())
	if KindOf(err) != KindInterrupted {
		t.Fatalf("killed capture: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d, format.DataID(0).Key())); err != nil {
		t.Fatalf("the first segment was not stored: %v", err)
	}
	res, err := captureFile(context.Background(), t, srcPath, img, resumeOpts())
	if err != nil {
		t.Fatalf("resume after a kill before the first segment's checkpoint: %v", err)
	}
	if res.ResumedAt != 0 {
		t.Errorf("resumed at %d, want 0 (no segment was checkpointed)", res.ResumedAt)
	}
	checkImageOf(t, img, srcPath)
}

// TestResumeRemovesSegmentsPastCheckpoint: a segment stored after the
// last checkpoint is not kept as if it belonged to the resumed run.
func TestResumeRemovesSegmentsPastCheckpoint(t *testing.T) {
	srcPath := mixedSource(t, 8<<20)
	d, img := interrupted(t, srcPath, 1, trustOpts())
	stray := filepath.Join(d, format.DataID(40).Key())
	if err := os.WriteFile(stray, []byte("left by a killed run"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := captureFile(context.Background(), t, srcPath, img, resumeOpts()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("segment past the checkpoint kept: %v", err)
	}
	checkImageOf(t, img, srcPath)
}

// TestCaptureRefusesChangedFile: a regular file written during capture is
// refused (runtime error, no manifest, not resumable) unless allowed.
func TestCaptureRefusesChangedFile(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(map[bool]string{false: "refused", true: "allow in use"}[allow], func(t *testing.T) {
			srcPath := mixedSource(t, 8<<20)
			d := filepath.Join(t.TempDir(), "img")
			img, _ := dir.New(d)
			src, err := OpenSourceWith(srcPath, allow)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			var once sync.Once
			o := trustOpts()
			o.Progress = func(p Progress) {
				if p.Done > 0 {
					once.Do(func() {
						f, err := os.OpenFile(srcPath, os.O_WRONLY, 0)
						if err == nil {
							_, err = f.WriteAt([]byte("changed"), 10)
							f.Close()
						}
						if err != nil {
							t.Error(err)
						}
					})
				}
			}
			res, err := Capture(context.Background(), src, img, o)
			if allow {
				if err != nil {
					t.Fatalf("--allow-in-use capture of a changing file: %v", err)
				}
				if !res.Manifest.Header.Source.InUse {
					t.Error("the manifest does not record --allow-in-use")
				}
				return
			}
			if !errors.Is(err, device.ErrSourceChanged) || KindOf(err) != KindRuntime ||
				!strings.Contains(err.Error(), "snapshot") || !strings.Contains(err.Error(), "--allow-in-use") {
				t.Fatalf("capture of a changing file: %v (kind %v), want a runtime error naming snapshot and --allow-in-use", err, KindOf(err))
			}
			for _, key := range []string{format.ManifestKey, CheckpointKey} {
				if _, err := os.Stat(filepath.Join(d, key)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left after a refused capture", key)
				}
			}
		})
	}
}

// TestCaptureHoldsDeviceExclusively: a block device is held with O_EXCL
// for the whole capture (mount fails), and a write to it during capture
// is refused at the end.
func TestCaptureHoldsDeviceExclusively(t *testing.T) {
	devicetest.RequireLoop(t)
	imgFile := devicetest.Image(t, 32<<20)
	loop := devicetest.Attach(t, imgFile)
	devicetest.Mkfs(t, "ext4", loop)
	mnt := t.TempDir()
	for _, write := range []bool{false, true} {
		t.Run(map[bool]string{false: "mount refused", true: "write refused"}[write], func(t *testing.T) {
			src, err := OpenSource(loop)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			img, _ := dir.New(filepath.Join(t.TempDir(), "img"))
			var once sync.Once
			var mountErr error
			o := trustOpts()
			o.Progress = func(p Progress) {
				if p.Done == 0 {
					return
				}
				once.Do(func() {
					if write {
						f, err := os.OpenFile(loop, os.O_WRONLY, 0)
						if err != nil {
							t.Errorf("open for writing: %v", err)
							return
						}
						// Not synced: the check must see it in the page cache.
						if _, err := f.WriteAt(bytes.Repeat([]byte{0xAA}, 4096), 30<<20); err != nil {
							t.Error(err)
						}
						if err := f.Close(); err != nil {
							t.Error(err)
						}
						return
					}
					out, err := exec.Command("mount", loop, mnt).CombinedOutput()
					if err == nil {
						_ = exec.Command("umount", mnt).Run() // best effort: the test fails anyway
						mountErr = errors.New("mount succeeded during capture")
					} else {
						t.Logf("mount during capture failed, as it must: %s", bytes.TrimSpace(out))
					}
				})
			}
			_, err = Capture(context.Background(), src, img, o)
			if mountErr != nil {
				t.Fatal(mountErr)
			}
			if write {
				if !errors.Is(err, device.ErrSourceChanged) || !strings.Contains(err.Error(), "written") {
					t.Fatalf("capture of a device written meanwhile: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
	// Released at the end: mounting works again.
	devicetest.Mount(t, loop)
}

// TestCaptureOneWriter: a capture (fresh or resumed) into a destination
// whose writer lock is held is refused as bad input and writes nothing.
func TestCaptureOneWriter(t *testing.T) {
	srcPath := mixedSource(t, 4<<20)
	newDir := func(t *testing.T) (store.Store, string) {
		d := filepath.Join(t.TempDir(), "img")
		st, err := dir.New(d)
		if err != nil {
			t.Fatal(err)
		}
		return st, d
	}
	for _, tc := range []struct {
		name   string
		dst    func(t *testing.T) (store.Store, string)
		resume bool
	}{
		{"memory store", func(*testing.T) (store.Store, string) { return memstore.New(), "" }, false},
		{"directory", newDir, false},
		{"directory, resume", func(t *testing.T) (store.Store, string) {
			d, st := interrupted(t, srcPath, 1, trustOpts())
			return st, d
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, d := tc.dst(t)
			unlock, err := store.Lock(context.Background(), st, "the first capture")
			if err != nil {
				t.Fatal(err)
			}
			before := ""
			if d != "" {
				before = treeDigest(t, d)
			}
			o := trustOpts()
			if tc.resume {
				o = resumeOpts()
			}
			_, err = captureFile(context.Background(), t, srcPath, st, o)
			if !errors.Is(err, ErrBadInput) || !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "the first capture") {
				t.Fatalf("second writer: %v, want bad input naming the holder", err)
			}
			if d != "" && treeDigest(t, d) != before {
				t.Error("the refused capture changed the destination")
			}
			noErr(t, unlock(context.Background()))
			if _, err := captureFile(context.Background(), t, srcPath, st, o); err != nil {
				t.Fatalf("capture after the lock was released: %v", err)
			}
		})
	}
}

// failPuts fails Puts of keys for which fail says so.
type failPuts struct {
	store.Store
	fail func(key string) error
}

func (f *failPuts) Unwrap() store.Store { return f.Store }

func (f *failPuts) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := f.fail(key); err != nil {
		_, _ = io.Copy(io.Discard, r) // as a writer would, until it learns of the failure
		return err
	}
	return f.Store.Put(ctx, key, r, size)
}

// TestCaptureErrorKinds: a failure before anything is written is bad
// input; after, resumable (whatever the store calls it); cancelled,
// interrupted.
func TestCaptureErrorKinds(t *testing.T) {
	srcPath := mixedSource(t, 6<<20)
	full := fmt.Errorf("dir: put x: no space left on device: %w", store.ErrNoSpace)
	denied := fmt.Errorf("s3: put x: access denied: %w", store.ErrPermanent)
	after := func(n uint32, err error) func(string) error {
		return func(key string) error {
			if key == format.DataID(n).Key() {
				return err
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name string
		fail func(key string) error
		want Kind
	}{
		{"denied, nothing written", func(string) error { return denied }, KindBadInput},
		{"full, nothing written", func(string) error { return full }, KindBadInput},
		{"full after a segment", after(2, full), KindResumable},
		{"denied after a segment", after(2, denied), KindResumable},
		{"link dropped after a segment", after(1, errors.New("connection reset by peer")), KindResumable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, _ := dir.New(filepath.Join(t.TempDir(), "img"))
			_, err := captureFile(context.Background(), t, srcPath, &failPuts{Store: img, fail: tc.fail}, trustOpts())
			if KindOf(err) != tc.want {
				t.Fatalf("%v: kind %v, want %v", err, KindOf(err), tc.want)
			}
			if tc.want == KindResumable {
				if _, err := captureFile(context.Background(), t, srcPath, img, resumeOpts()); err != nil {
					t.Fatalf("resume after the failure: %v", err)
				}
			}
		})
	}
}

// TestCaptureENOSPC fills a real small filesystem: the capture had
// written, so it is resumable (exit 1 with the resume hint), not bad input.
func TestCaptureENOSPC(t *testing.T) {
	devicetest.RequireLoop(t)
	small := devicetest.Image(t, 8<<20)
	loop := devicetest.Attach(t, small)
	devicetest.Mkfs(t, "ext4", loop)
	mnt := devicetest.Mount(t, loop)
	srcPath := filepath.Join(t.TempDir(), "random.img")
	b := make([]byte, 12<<20)
	for i := range b {
		b[i] = byte(i*2654435761>>13) ^ byte(i>>7)
	}
	noErr(t, os.WriteFile(srcPath, b, 0o600))
	img, err := dir.New(filepath.Join(mnt, "img"))
	if err != nil {
		t.Fatal(err)
	}
	o := trustOpts()
	o.Level = -1
	_, err = captureFile(context.Background(), t, srcPath, img, o)
	if KindOf(err) != KindResumable || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("capture onto a full filesystem: %v (kind %v), want resumable", err, KindOf(err))
	}
}

// TestCaptureParityAdvice: the advice of a refused --parity names sizes
// that are accepted.
func TestCaptureParityAdvice(t *testing.T) {
	sizeRe := `(\d+)(MiB|KiB)`
	for _, tc := range []struct {
		k, m  int
		chunk int
	}{{10, 4, 0}, {10, 8, 0}, {2, 2, 64 << 20}, {4, 4, 64 << 20}, {20, 20, 1 << 20}, {10, 200, 0}} {
		o := CaptureOptions{Parity: &format.Geometry{K: tc.k, M: tc.m}, ChunkSize: tc.chunk}
		err := o.Validate()
		if err == nil {
			// A default segment size only a little too large shrinks
			// instead; then it must fit.
			if o.SegmentSize >= format.DefaultParitySegmentSize || o.SegmentSize < format.DefaultParitySegmentSize/2 {
				t.Fatalf("--parity %d+%d: accepted with segment size %d, want refused or shrunk by at most half", tc.k, tc.m, o.SegmentSize)
			}
			fixed := CaptureOptions{Parity: &format.Geometry{K: tc.k, M: tc.m}, ChunkSize: tc.chunk, SegmentSize: o.SegmentSize}
			if err := fixed.Validate(); err != nil {
				t.Errorf("--parity %d+%d with the shrunk segment size %d: %v", tc.k, tc.m, o.SegmentSize, err)
			}
			continue
		}
		if !errors.Is(err, ErrBadInput) {
			t.Fatalf("--parity %d+%d: %v, want refused", tc.k, tc.m, err)
		}
		msg := err.Error()
		m := regexp.MustCompile(`--segment-size ` + sizeRe + ` or smaller`).FindStringSubmatch(msg)
		if m == nil {
			t.Fatalf("--parity %d+%d: advice names no segment size: %v", tc.k, tc.m, err)
		}
		o = CaptureOptions{Parity: &format.Geometry{K: tc.k, M: tc.m}, ChunkSize: tc.chunk, SegmentSize: parseAdvice(m)}
		if c := regexp.MustCompile(`use --chunk-size ` + sizeRe).FindStringSubmatch(msg); c != nil {
			o.ChunkSize = int(parseAdvice(c))
		}
		if err := o.Validate(); err != nil {
			t.Errorf("--parity %d+%d following the advice (%s): %v", tc.k, tc.m, msg, err)
		}
	}
}

func parseAdvice(m []string) int64 {
	var n int64
	for _, c := range m[1] {
		n = n*10 + int64(c-'0')
	}
	if m[2] == "KiB" {
		return n << 10
	}
	return n << 20
}

// TestCaptureWorkersAndMemory: --workers is bounded, and the pipeline's
// buffers fit the memory bound for every chunk size.
func TestCaptureWorkersAndMemory(t *testing.T) {
	for _, w := range []int{-5, MaxWorkers + 1, 1 << 20} {
		o := CaptureOptions{Workers: w}
		if err := o.Validate(); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "--workers") {
			t.Errorf("--workers %d: %v, want refused", w, err)
		}
	}
	for chunk := format.MinChunkSize; chunk <= format.MaxChunkSize; chunk *= 2 {
		for _, w := range []int{1, 2, 16, MaxWorkers} {
			s := shapeFor(chunk, w, true, captureMemory)
			cost := int64(s.jobs)*int64(2*chunk+chunk/64) + int64(s.workers)*2*int64(chunk)
			if s.workers < 1 || s.jobs < 1 || s.workers > w {
				t.Errorf("chunk %d, %d workers: shape %+v", chunk, w, s)
			}
			if cost > captureMemory && (s.workers > 1 || s.jobs > 2) {
				t.Errorf("chunk %d, %d workers: shape %+v needs %d MiB", chunk, w, s, cost>>20)
			}
		}
	}
}

// TestResumeStopsWhenCancelled: the re-hash of a resumed capture stops
// promptly when cancelled (SIGINT, SIGTERM) and leaves the destination
// resumable.
func TestResumeStopsWhenCancelled(t *testing.T) {
	srcPath := mixedSource(t, 16<<20)
	o := trustOpts()
	o.ChunkSize = 64 << 10
	d, img := interrupted(t, srcPath, 3, o)
	before := treeDigest(t, d)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := resumeOpts()
	r.Progress = func(p Progress) {
		if p.Done > 0 {
			cancel()
		}
	}
	res, err := captureFile(ctx, t, srcPath, img, r)
	if KindOf(err) != KindInterrupted {
		t.Fatalf("cancelled resume: %v (kind %v)", err, KindOf(err))
	}
	if res != nil {
		t.Fatal("a cancelled resume returned a result")
	}
	if treeDigest(t, d) != before {
		t.Error("a resume cancelled while re-hashing changed the destination")
	}
	if _, err := captureFile(context.Background(), t, srcPath, img, resumeOpts()); err != nil {
		t.Fatal(err)
	}
	checkImageOf(t, img, srcPath)
}

// TestCaptureChunkTableBound: a chunk size that would make the chunk table
// of the source too large for memory is refused, naming one that fits.
func TestCaptureChunkTableBound(t *testing.T) {
	for _, tc := range []struct {
		size  int64
		chunk int
		want  string // "" when accepted
	}{
		{1 << 40, 8 << 20, ""},
		{4 << 40, 64 << 10, "use --chunk-size 2MiB or larger"},
		{64 << 40, 8 << 20, "use --chunk-size 32MiB or larger"},
		{1 << 60, 64 << 20, "even at --chunk-size 64MiB"},
	} {
		err := checkChunkTable(tc.size, tc.chunk)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%d bytes at chunk %d: %v", tc.size, tc.chunk, err)
			}
			continue
		}
		if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%d bytes at chunk %d: %v, want %q", tc.size, tc.chunk, err, tc.want)
		}
	}
}

// noLocker hides the lock of the store it wraps, as a store that cannot
// lock (an S3 server without conditional writes) has none.
type noLocker struct{ store.Store }

// TestCaptureNeedsLock: a destination that cannot hold a writer lock is
// refused as bad input, with nothing written.
func TestCaptureNeedsLock(t *testing.T) {
	srcPath := mixedSource(t, 1<<20)
	st := memstore.New()
	_, err := captureFile(context.Background(), t, srcPath, noLocker{st}, trustOpts())
	if !errors.Is(err, ErrBadInput) || !errors.Is(err, store.ErrNoLock) || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("capture into a store without a lock: %v, want bad input naming the lock", err)
	}
	if err := st.List(context.Background(), "", func(i store.Info) error { return errors.New("wrote " + i.Key) }); err != nil {
		t.Fatal(err)
	}
}

// TestResumeAfterLastCheckpointTrailingZeros: a capture that stored every
// segment and wrote its last checkpoint but failed before its manifest
// resumes, though its source ends in zero chunks that no segment holds
// (the soak test found the resume refused, "stored segments end at chunk
// N", in this case).
func TestResumeAfterLastCheckpointTrailingZeros(t *testing.T) {
	srcPath := mixedSource(t, 3<<20)
	f, err := os.OpenFile(srcPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(6 << 20); err != nil { // 3 MiB of zeros at the end
		t.Fatal(err)
	}
	f.Close()
	for _, tc := range []struct {
		name   string
		parity *format.Geometry
	}{{"plain", nil}, {"parity 2+1", &format.Geometry{K: 2, M: 1}}} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memstore.New()
			faulty := memstore.NewFaulty(mem)
			faulty.Add(memstore.Rule{Op: memstore.OpPut, Key: format.ManifestKey, Kind: memstore.Fail})
			o := trustOpts()
			o.Parity = tc.parity
			if _, err := captureFile(context.Background(), t, srcPath, faulty, o); err == nil {
				t.Fatal("capture succeeded though its manifest could not be stored")
			}
			if _, ok := mem.Object(CheckpointKey); !ok {
				t.Fatal("no checkpoint left to resume from")
			}
			faulty.Reset()
			if _, err := captureFile(context.Background(), t, srcPath, faulty, resumeOpts()); err != nil {
				t.Fatalf("resume after the last checkpoint: %v", err)
			}
			checkImageOf(t, mem, srcPath)
		})
	}
}
