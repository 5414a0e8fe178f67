package s3test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Environment variables read by [Server] and [SkipOrFail].
const (
	EnvEndpoint      = "SEEDSHIP_TEST_S3_ENDPOINT"   // e.g. http://127.0.0.1:7070
	EnvAccessKey     = "SEEDSHIP_TEST_S3_ACCESS_KEY" // access key of that service
	EnvSecretKey     = "SEEDSHIP_TEST_S3_SECRET_KEY" // secret key of that service
	EnvRegion        = "SEEDSHIP_TEST_S3_REGION"     // optional, default us-east-1
	EnvDisallowSkip  = "SEEDSHIP_TEST_DISALLOW_SKIP" // "1": a skip is a failure
	EnvVersitygw     = "SEEDSHIP_VERSITYGW"          // optional path of the versitygw binary
	VersitygwModule  = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"
	DefaultRegion    = "us-east-1"
	versitygwStartup = 20 * time.Second
)

// Fixed credentials of the versitygw that Server starts.
const (
	TestAccessKey = "seedshiptestkey"
	TestSecretKey = "seedshiptestsecret0123456789"
)

// Service is a running S3 service that tests may create buckets in.
type Service struct {
	Endpoint  string // URL: http://host:port
	AccessKey string
	SecretKey string
	Region    string

	proc   *os.Process // the versitygw process Server started, or nil
	exited chan error  // receives its exit once
	dir    string      // its temporary directory
}

var (
	mu       sync.Mutex
	shared   *Service
	startErr error
	tried    bool
	buckets  atomic.Int64
)

// Main runs the tests (m.Run), stops the versitygw that [Server] may have
// started, and exits. Call it from TestMain:
//
//	func TestMain(m *testing.M) { s3test.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop stops the versitygw that [Server] started and removes its files. It
// is safe to call when none was started. [Main] calls it.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if shared != nil && shared.proc != nil {
		_ = shared.proc.Kill()
		_ = reap(shared.exited)
		_ = os.RemoveAll(shared.dir)
	}
	shared, tried, startErr = nil, false, nil
}

// SkipOrFail skips t with the message, or fails it when
// SEEDSHIP_TEST_DISALLOW_SKIP=1.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(EnvDisallowSkip) == "1" {
		t.Fatalf("%s (and %s=1 forbids skipping)", msg, EnvDisallowSkip)
	}
	t.Skip(msg)
}

// Server returns the S3 service for tests: the one the SEEDSHIP_TEST_S3_*
// variables name, or a versitygw that it starts once per test binary (stop
// it with [Main] or [Stop]). With neither, it skips t (see [SkipOrFail]).
func Server(t testing.TB) *Service {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if !tried {
		tried = true
		shared, startErr = start()
	}
	if startErr != nil {
		SkipOrFail(t, "no S3 server for this test: %v", startErr)
	}
	return shared
}

func start() (*Service, error) {
	if ep := os.Getenv(EnvEndpoint); ep != "" {
		s := &Service{Endpoint: ep, AccessKey: os.Getenv(EnvAccessKey), SecretKey: os.Getenv(EnvSecretKey), Region: os.Getenv(EnvRegion)}
		if s.AccessKey == "" || s.SecretKey == "" {
			return nil, fmt.Errorf("%s is set but %s or %s is not", EnvEndpoint, EnvAccessKey, EnvSecretKey)
		}
		if s.Region == "" {
			s.Region = DefaultRegion
		}
		return s, nil
	}
	bin, err := findVersitygw()
	if err != nil {
		return nil, err
	}
	var errs []error
	for range 3 { // a free port may be taken between probing and binding
		s, err := startVersitygw(bin)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
		if errors.Is(err, errExec) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// findVersitygw looks for the binary in SEEDSHIP_VERSITYGW, on PATH, in
// GOBIN and in each GOPATH's bin.
func findVersitygw() (string, error) {
	if p := os.Getenv(EnvVersitygw); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	var dirs []string
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		dirs = append(dirs, gobin)
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	for _, p := range filepath.SplitList(gopath) {
		dirs = append(dirs, filepath.Join(p, "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s unset and versitygw not found on PATH or in %s; install it with 'go install %s' or run scripts/s3server.sh start",
		EnvEndpoint, strings.Join(dirs, ", "), VersitygwModule)
}

// errExec is wrapped when the binary cannot be run at all; trying another
// port would not help.
var errExec = errors.New("cannot run")

func startVersitygw(bin string) (*Service, error) {
	dir, err := os.MkdirTemp("", "seedship-versitygw-")
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin,
		"--access", TestAccessKey, "--secret", TestSecretKey,
		"--region", DefaultRegion, "--port", addr, "--quiet",
		"posix", root)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%w %s: %w", errExec, bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s := &Service{Endpoint: "http://" + addr, AccessKey: TestAccessKey, SecretKey: TestSecretKey, Region: DefaultRegion, dir: dir}
	fail := func(why string) (*Service, error) {
		_ = cmd.Process.Kill()
		_ = reap(exited)
		log, _ := os.ReadFile(filepath.Join(dir, "versitygw.log"))
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("versitygw on %s %s; its output: %s", addr, why, bytes.TrimSpace(log))
	}
	deadline := time.Now().Add(versitygwStartup)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-exited:
			exited <- err
			return fail(fmt.Sprintf("exited: %v", err))
		default:
		}
		if resp, err := client.Get(s.Endpoint + "/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			return fail(fmt.Sprintf("did not answer within %v", versitygwStartup))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.proc, s.exited = cmd.Process, exited
	return s, nil
}

// reap waits for a killed gateway to exit; its exit status only says that
// it was killed.
func reap(exited <-chan error) error { return <-exited }

// cleanEnv is the environment without the gateway's own VGW_* settings and
// root credentials, so that a developer's shell cannot change the server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "VGW_") || strings.HasPrefix(k, "ROOT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Host returns the endpoint's host:port.
func (s *Service) Host() string {
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		return s.Endpoint
	}
	return u.Host
}

// Client returns a minio-go client for the service, for setting up and
// inspecting buckets behind a store's back.
func (s *Service) Client(t testing.TB) *minio.Client {
	t.Helper()
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatalf("s3test: bad endpoint %q: %v", s.Endpoint, err)
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure: u.Scheme == "https",
		Region: s.Region,
	})
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	return c
}

// NewBucket creates a bucket with a fresh name and registers a cleanup that
// empties and removes it.
func (s *Service) NewBucket(t testing.TB) string {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("seedship-test-%d-%d-%s", os.Getpid(), buckets.Add(1), hex.EncodeToString(rnd[:]))
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("s3test: creating bucket %s at %s: %v", name, s.Endpoint, err)
	}
	t.Cleanup(func() { s.removeBucket(t, c, name) })
	return name
}

func (s *Service) removeBucket(t testing.TB, c *minio.Client, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for obj := range c.ListObjects(ctx, name, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Logf("s3test: listing %s for cleanup: %v", name, obj.Err)
			return
		}
		if err := c.RemoveObject(ctx, name, obj.Key, minio.RemoveObjectOptions{}); err != nil {
			t.Logf("s3test: removing %s/%s: %v", name, obj.Key, err)
		}
	}
	for up := range c.ListIncompleteUploads(ctx, name, "", true) {
		if up.Err != nil {
			break
		}
		_ = c.RemoveIncompleteUpload(ctx, name, up.Key)
	}
	if err := c.RemoveBucket(ctx, name); err != nil {
		t.Logf("s3test: removing bucket %s: %v", name, err)
	}
}
