package s3_test

import (
	"testing"

	"github.com/seedship/seedship/store/s3/s3test"
)

// TestMain stops the versitygw that s3test.Server may start.
func TestMain(m *testing.M) { s3test.Main(m) }
