//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/seedship/seedship/store/s3/s3test"
)

// s3Floor is the floor for s3_capture_vs_dir and s3_restore_vs_dir:
// to or from a local S3 server, at least 70% of the directory speed.
const s3Floor = 0.70

const s3Bucket = "bench"

// s3Server is a versitygw (posix backend) that the benchmark started on
// 127.0.0.1, with its files under the bench directory.
type s3Server struct {
	svc  *s3test.Service
	root string // posix backend root: <root>/<bucket>/<key>
	mc   *minio.Client
	env  []string // environment of seedship commands: AWS_* for this server only
}

// findVersitygw looks where s3test and scripts/s3server.sh look.
func findVersitygw() (string, error) {
	if p := os.Getenv(s3test.EnvVersitygw); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	for _, v := range []string{"GOBIN", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil || len(bytes.TrimSpace(out)) == 0 {
			continue
		}
		for _, d := range filepath.SplitList(strings.TrimSpace(string(out))) {
			if v == "GOPATH" {
				d = filepath.Join(d, "bin")
			}
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("versitygw is not on PATH or in %s; install it with scripts/s3server.sh install (or set %s)",
		strings.Join(dirs, ", "), s3test.EnvVersitygw)
}

// startS3 starts versitygw with its posix root in w and stops it (and
// removes its files) when b ends.
func startS3(b *testing.B, w string) *s3Server {
	b.Helper()
	bin, err := findVersitygw()
	if err != nil {
		b.Skip(err)
	}
	var errs []error
	for range 3 { // a free port may be taken between probing and binding
		s, err := tryStartS3(b, bin, w)
		if err == nil {
			return s
		}
		errs = append(errs, err)
	}
	b.Fatal(errors.Join(errs...))
	return nil
}

func tryStartS3(b *testing.B, bin, w string) (*s3Server, error) {
	dir := filepath.Join(w, "versitygw")
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logPath := filepath.Join(dir, "versitygw.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin,
		"--access", s3test.TestAccessKey, "--secret", s3test.TestSecretKey,
		"--region", s3test.DefaultRegion, "--port", addr, "--quiet",
		"posix", root)
	cmd.Stdout, cmd.Stderr = logf, logf
	for _, kv := range os.Environ() { // not the gateway's own settings from this shell
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "VGW_") && !strings.HasPrefix(k, "ROOT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the benchmark
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		// Wait for the exit and leave its result for a later stop.
		exited <- <-exited
	}
	fail := func(why string) (*s3Server, error) {
		stop()
		log, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("versitygw on %s %s; its output: %s", addr, why, bytes.TrimSpace(log))
	}
	endpoint := "http://" + addr
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-exited:
			exited <- err
			return fail(fmt.Sprintf("exited: %v", err))
		default:
		}
		if resp, err := client.Get(endpoint + "/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return fail("did not answer within 20s")
		}
	}
	b.Cleanup(func() {
		stop()
		if !cfg.keep {
			os.RemoveAll(dir)
		}
	})
	s := &s3Server{
		svc:  &s3test.Service{Endpoint: endpoint, AccessKey: s3test.TestAccessKey, SecretKey: s3test.TestSecretKey, Region: s3test.DefaultRegion},
		root: root,
	}
	s.mc = s.svc.Client(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.mc.MakeBucket(ctx, s3Bucket, minio.MakeBucketOptions{Region: s.svc.Region}); err != nil {
		b.Fatalf("creating bucket %s: %v", s3Bucket, err)
	}
	// The seedship commands get this server's credentials and endpoint and
	// no other AWS_* setting (AWS_CA_BUNDLE, AWS_PROFILE, …) of this shell.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "AWS_") {
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env, "AWS_ACCESS_KEY_ID="+s.svc.AccessKey, "AWS_SECRET_ACCESS_KEY="+s.svc.SecretKey,
		"AWS_REGION="+s.svc.Region, "AWS_ENDPOINT_URL="+endpoint)
	return s, nil
}

func (s *s3Server) url(prefix string) string { return "s3://" + s3Bucket + "/" + prefix }

// clear removes every object under prefix.
func (s *s3Server) clear(b *testing.B, prefix string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for o := range s.mc.ListObjects(ctx, s3Bucket, minio.ListObjectsOptions{Prefix: prefix + "/", Recursive: true}) {
		if o.Err != nil {
			b.Fatalf("listing %s: %v", s.url(prefix), o.Err)
		}
		if err := s.mc.RemoveObject(ctx, s3Bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			b.Fatalf("removing s3://%s/%s: %v", s3Bucket, o.Key, err)
		}
	}
}

// BenchmarkS3 measures capture to and restore from a local S3 server
// (versitygw, posix backend, on the bench directory's disk) against the
// same commands with a local directory.
func BenchmarkS3(b *testing.B) {
	c := setup(b)
	img := c.image(b, c.sizeMiB)
	size := fileSize(b, img)
	c.needSpace(b, 3*size)
	w := c.scratch(b, fmt.Sprintf("s3-%dMiB", c.sizeMiB))
	s := startS3(b, w)
	seed := filepath.Join(w, "seed")
	target, s3Target := filepath.Join(w, "target"), filepath.Join(w, "target-s3")
	round := 0 // the S3 image is at s3://bench/run-<round>
	prefix := func() string { return fmt.Sprintf("run-%d", round) }
	var lines []string

	var s3Info, dirInfo captureJSON
	captureS3 := func(b *testing.B) run {
		if round > 0 {
			s.clear(b, prefix()) // the previous round's image
		}
		round++
		r := exeEnv(b, s.env, c.captureArgv(true, img, s.url(prefix()))...)
		if err := json.Unmarshal(r.stdout, &s3Info); err != nil {
			b.Fatalf("capture --json: %v\n%s", err, r.stdout)
		}
		return r
	}
	captureDir := func(b *testing.B) run {
		r := exeEnv(b, s.env, c.captureArgv(true, img, seed)...)
		if err := json.Unmarshal(r.stdout, &dirInfo); err != nil {
			b.Fatalf("capture --json: %v\n%s", err, r.stdout)
		}
		return r
	}

	b.Run("capture", func(b *testing.B) {
		warm(b, img)
		p := &pair{op: "s3 capture", bytes: size, oursName: "s3", peerName: "dir", floor: s3Floor}
		p.rounds(b, c,
			func(ours bool) {
				if !ours {
					os.RemoveAll(seed)
				}
			},
			func() run { return captureS3(b) },
			func() run { return captureDir(b) })
		if s3Info.SHA256 != dirInfo.SHA256 || s3Info.StoredBytes != dirInfo.StoredBytes {
			b.Fatalf("s3 and dir captures differ: sha256 %s vs %s, stored %d vs %d bytes",
				s3Info.SHA256, dirInfo.SHA256, s3Info.StoredBytes, dirInfo.StoredBytes)
		}
		in := c.info(b, s.env, s.url(prefix()))
		if in.SHA256 != dirInfo.SHA256 {
			b.Fatalf("info --json %s: sha256 %s, capture said %s", s.url(prefix()), in.SHA256, dirInfo.SHA256)
		}
		p.reportVs(b, "s3_capture_vs_dir", "s3_capture", "dir_capture")
		lines = append(lines, p.String(),
			fmt.Sprintf("s3 capture: each round a fresh prefix (the previous one deleted, untimed); %d segments, %d stored bytes, same SHA-256 as the dir capture",
				in.Segments, in.StoredBytes))
	})

	b.Run("restore", func(b *testing.B) {
		if round == 0 {
			captureS3(b)
		}
		if _, err := os.Stat(filepath.Join(seed, "manifest.ssm")); err != nil {
			os.RemoveAll(seed)
			captureDir(b)
		}
		warmDir(b, seed)
		warmDir(b, filepath.Join(s.root, s3Bucket, prefix()))
		p := &pair{op: "s3 restore", bytes: size, oursName: "s3", peerName: "dir", floor: s3Floor}
		p.rounds(b, c,
			func(ours bool) {
				if ours {
					os.Remove(s3Target)
				} else {
					os.Remove(target)
				}
			},
			func() run { return exeEnv(b, s.env, c.bin, "restore", "--quiet", s.url(prefix()), s3Target) },
			func() run { return exeEnv(b, s.env, c.bin, "restore", "--quiet", seed, target) })
		for _, t := range []string{s3Target, target} {
			if err := exec.Command("cmp", "-s", img, t).Run(); err != nil {
				b.Fatalf("restored %s differs from %s: %v", t, img, err)
			}
		}
		p.reportVs(b, "s3_restore_vs_dir", "s3_restore", "dir_restore")
		lines = append(lines, p.String(),
			"s3 restore: both restored files are byte-identical to the source image (cmp)")
		os.Remove(s3Target)
		os.Remove(target)
	})

	var out strings.Builder
	fmt.Fprintf(&out, "\n=== seedship with S3 (versitygw posix on 127.0.0.1, same disk) vs a local directory: %d MiB realistic ext4 image (seed %s), capture %s, %d rounds, medians; ratio = dir time / s3 time (>= %.2f: s3 at least 70%% of dir speed); %d CPUs\n",
		c.sizeMiB, c.seed, c.compression(b, seed), c.rounds, s3Floor, runtime.NumCPU())
	for _, l := range lines {
		fmt.Fprintln(&out, l)
	}
	fmt.Print(out.String())
}
