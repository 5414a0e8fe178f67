package s3test

import (
	"os/exec"
	"syscall"
)

// setPdeathsig has the kernel kill the server when the test binary dies
// without running Stop (a panic or a timeout).
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
