package main

import (
	"os"
	"testing"

	"github.com/seedship/seedship/store/s3/s3test"
)

// execMainEnv, set to "1" in the environment of a re-executed test binary,
// makes it run the real main() on its arguments instead of the tests: the
// S3 tests use it to run seedship as a separate process that they can kill
// with SIGKILL mid-upload.
const execMainEnv = "SEEDSHIP_TEST_EXEC_MAIN"

// TestMain runs main() when re-executed as the seedship binary; otherwise
// it runs the tests and stops the versitygw that s3test.Server may start.
func TestMain(m *testing.M) {
	if os.Getenv(execMainEnv) == "1" {
		main() // exits
		return
	}
	s3test.Main(m)
}
