// Package devicetest gives tests real block devices to work on: loop
// devices over image files, filesystems made on them and mounted. Every
// helper registers its undoing with t.Cleanup (cleanups run in reverse, so
// a mount is undone before its loop device is detached), and skips the test
// with a message saying what is missing when the machine cannot provide the
// part: not root, no loop support, no mkfs.ext4.
//
// Set SEEDSHIP_TEST_REQUIRE_LOOP=1 (make test does, on machines that have them)
// to turn those skips into failures, so a broken runner cannot pass by
// skipping everything.
//
// It is for tests only; non-test code must not import it. It does not
// import package device, so device's own tests can use it.
package devicetest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// DisallowSkipEnv names the environment variable that turns skips of the
// real loop-device tests into failures. `make test` sets it where root and
// /dev/loop-control exist, so a broken loop setup cannot pass as a skip;
// elsewhere the tests skip with a clear message. It is separate from the
// S3 tests' SEEDSHIP_TEST_DISALLOW_SKIP because loop support depends on the
// kernel, the S3 server on the project.
const DisallowSkipEnv = "SEEDSHIP_TEST_REQUIRE_LOOP"

// Skipf skips the test with the formatted message, or fails it when
// [DisallowSkipEnv] is set to a non-empty value.
func Skipf(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(DisallowSkipEnv) != "" {
		t.Fatalf(format+" (skip not allowed: %s is set)", append(args, DisallowSkipEnv)...)
	}
	t.Skipf(format, args...)
}

const needLoop = "needs root and /dev/loop-control: skipping real loop-device test"

// RequireLoop skips the test unless it runs as root on a machine with loop
// device support and losetup.
func RequireLoop(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skipf(t, "%s (running as uid %d)", needLoop, os.Geteuid())
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		Skipf(t, "%s (%v)", needLoop, err)
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		Skipf(t, "%s (losetup not found: install util-linux)", needLoop)
	}
}

// Image creates a sparse file of size bytes in a fresh t.TempDir and
// returns its path.
func Image(t testing.TB, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// Attach binds a free loop device to imagePath with
// "losetup --find --show [losetupArgs...] imagePath", returns the device
// path (such as /dev/loop3), and detaches it when the test ends. Extra
// arguments pass options such as "--sector-size", "4096" or "--read-only".
// It skips the test when the machine has no loop support (see
// [RequireLoop]) and fails it when losetup fails for another reason.
func Attach(t testing.TB, imagePath string, losetupArgs ...string) string {
	t.Helper()
	RequireLoop(t)
	if _, err := os.Stat(imagePath); err != nil {
		t.Fatalf("attaching a loop device: %v", err)
	}
	args := append([]string{"--find", "--show"}, losetupArgs...)
	out, err := run("losetup", append(args, imagePath)...)
	if err != nil {
		if noLoopSupport(err.Error()) {
			Skipf(t, "%s (%v)", needLoop, err)
		}
		t.Fatalf("attaching %s to a loop device: %v", imagePath, err)
	}
	dev := strings.TrimSpace(out)
	t.Cleanup(func() {
		if _, err := run("losetup", "--detach", dev); err != nil {
			t.Errorf("detaching %s: %v", dev, err)
		}
	})
	return dev
}

// noLoopSupport reports whether losetup's complaint means the machine, not
// the test, is at fault.
func noLoopSupport(msg string) bool {
	for _, s := range []string{
		"cannot find an unused loop device",
		"could not find any free loop device",
		"No such device",
		"No such file or directory",
		"Operation not permitted",
		"Permission denied",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// Mkfs makes a filesystem of type fstype (such as "ext4") on dev, which
// may be a block device or an image file, quietly and without asking. It
// skips the test when mkfs.FSTYPE is not installed.
func Mkfs(t testing.TB, fstype, dev string) {
	t.Helper()
	tool := "mkfs." + fstype
	if _, err := exec.LookPath(tool); err != nil {
		Skipf(t, "needs %s: skipping test that mounts a real filesystem", tool)
	}
	args := []string{"-q"}
	if strings.HasPrefix(fstype, "ext") {
		args = append(args, "-F")
	}
	if _, err := run(tool, append(args, dev)...); err != nil {
		t.Fatalf("making %s on %s: %v", fstype, dev, err)
	}
}

// Mount mounts block device dev on a fresh directory under t.TempDir,
// returns the directory, and unmounts it when the test ends (lazily, if a
// plain umount fails, so the temporary directory is never removed through
// a live mount). It skips the test when the kernel refuses to mount
// (a container without CAP_SYS_ADMIN).
func Mount(t testing.TB, dev string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := run("mount", dev, dir); err != nil {
		if strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), "must be superuser") || strings.Contains(err.Error(), "only root") {
			Skipf(t, "needs permission to mount: skipping real mount test (%v)", err)
		}
		t.Fatalf("mounting %s: %v", dev, err)
	}
	t.Cleanup(func() {
		if _, err := run("umount", dir); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
			if _, err := run("umount", "--lazy", dir); err != nil {
				t.Errorf("lazy unmount of %s: %v", dir, err)
			}
		}
	})
	return dir
}

// run runs a command and returns its standard output; the error includes
// the command line and its standard error.
func run(name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Run runs a command for a test and fails the test, showing its standard
// error, if it fails. It returns standard output.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
