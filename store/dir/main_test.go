package dir

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestMain doubles as the lock-holding child of TestLockReleasedWhenHolderDies.
func TestMain(m *testing.M) {
	if root := os.Getenv("SEEDSHIP_LOCK_HOLDER"); root != "" {
		s, err := Open(root)
		if err == nil {
			_, err = s.Lock(context.Background(), "child holder")
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Print("locked")
		time.Sleep(time.Minute) // until killed
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func execHolder(ctx context.Context, exe, root string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "SEEDSHIP_LOCK_HOLDER="+root)
	cmd.Stderr = os.Stderr
	return cmd
}
