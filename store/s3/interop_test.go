package s3_test

import (
	"bytes"
	"context"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/s3"
	"github.com/seedship/seedship/store/s3/s3test"
)

// A second S3 client reads what the store wrote, and the store reads what
// the client wrote: the same tree of relative paths on both sides.
type client struct {
	name string
	// download copies the whole prefix into dir; upload copies dir to it.
	download, upload func(srv *s3test.Service, bucket, prefix, dir string) *exec.Cmd
}

var clients = []client{
	{
		name: "aws",
		download: func(srv *s3test.Service, bucket, prefix, dir string) *exec.Cmd {
			return exec.Command("aws", "--endpoint-url", srv.Endpoint, "s3", "sync", "--no-progress", "s3://"+bucket+"/"+prefix, dir)
		},
		upload: func(srv *s3test.Service, bucket, prefix, dir string) *exec.Cmd {
			return exec.Command("aws", "--endpoint-url", srv.Endpoint, "s3", "sync", "--no-progress", dir, "s3://"+bucket+"/"+prefix)
		},
	},
	{
		name: "rclone",
		download: func(srv *s3test.Service, bucket, prefix, dir string) *exec.Cmd {
			return exec.Command("rclone", "copy", rcloneRemote(srv)+bucket+"/"+prefix, dir)
		},
		upload: func(srv *s3test.Service, bucket, prefix, dir string) *exec.Cmd {
			return exec.Command("rclone", "copy", dir, rcloneRemote(srv)+bucket+"/"+prefix)
		},
	},
}

func rcloneRemote(srv *s3test.Service) string {
	return ":s3,provider=Other,env_auth=false,endpoint='" + srv.Endpoint + "',access_key_id=" + srv.AccessKey +
		",secret_access_key=" + srv.SecretKey + ",region=" + srv.Region + ":"
}

// childEnv is the environment for a second client: none of the caller's
// AWS or rclone settings (these machines export AWS_CA_BUNDLE, which such
// clients may fail to load), only the test server's credentials.
func childEnv(t *testing.T, srv *s3test.Service) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "RCLONE_") {
			continue
		}
		env = append(env, kv)
	}
	none := filepath.Join(t.TempDir(), "none")
	return append(env,
		"AWS_ACCESS_KEY_ID="+srv.AccessKey,
		"AWS_SECRET_ACCESS_KEY="+srv.SecretKey,
		"AWS_DEFAULT_REGION="+srv.Region,
		"AWS_CONFIG_FILE="+none,
		"AWS_SHARED_CREDENTIALS_FILE="+none,
		"AWS_EC2_METADATA_DISABLED=true",
		"RCLONE_CONFIG="+none,
	)
}

func run(t *testing.T, cmd *exec.Cmd, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	c.Env = env
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

func TestInterop(t *testing.T) {
	var found []client
	for _, c := range clients {
		if _, err := exec.LookPath(c.name); err == nil {
			found = append(found, c)
		}
	}
	if len(found) == 0 {
		s3test.SkipOrFail(t, "no second S3 client (aws or rclone) on PATH; install awscli or rclone for the interoperability test")
	}
	objects := map[string][]byte{
		"manifest.ssm":       data(1234, 1),
		"label.json":         data(0, 2),
		"data/00000000.seg":  data(300<<10, 3),
		"data/00000001.seg":  data(2*s3.MinPartSize+77, 4), // multipart
		"data/sub/deep/file": data(10, 5),
	}
	for _, c := range found {
		t.Run(c.name, func(t *testing.T) {
			srv := s3test.Server(t)
			cfg := config(t, srv, srv.Endpoint, "images/host-1")
			s := open(t, cfg)
			for key, b := range objects {
				if err := s.Put(t.Context(), key, onlyReader{bytes.NewReader(b)}, int64(len(b))); err != nil {
					t.Fatal(err)
				}
			}
			env := childEnv(t, srv)

			dir := t.TempDir()
			run(t, c.download(srv, cfg.Bucket, cfg.Prefix, dir), env)
			got := map[string][]byte{}
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				got[filepath.ToSlash(rel)], err = os.ReadFile(p)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			compare(t, c.name+" download", got, objects)

			// And back: the client uploads the tree under a new prefix,
			// which the store lists and reads.
			cfg2 := cfg
			cfg2.Prefix = "copied"
			run(t, c.upload(srv, cfg.Bucket, cfg2.Prefix, dir), env)
			s2 := open(t, cfg2)
			got = map[string][]byte{}
			err = s2.List(t.Context(), "", func(i store.Info) error {
				got[i.Key] = readAll(t, s2, i.Key, 0, -1)
				if int64(len(got[i.Key])) != i.Size {
					t.Errorf("List says %s has %d bytes, Get returned %d", i.Key, i.Size, len(got[i.Key]))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			compare(t, c.name+" upload", got, objects)
		})
	}
}

func compare(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	gk := slices.Sorted(maps.Keys(got))
	wk := slices.Sorted(maps.Keys(want))
	if !slices.Equal(gk, wk) {
		t.Fatalf("%s: keys %q, want %q", what, gk, wk)
	}
	for k, b := range want {
		if !bytes.Equal(got[k], b) {
			t.Errorf("%s: %s differs (%d bytes, want %d)", what, k, len(got[k]), len(b))
		}
	}
}
