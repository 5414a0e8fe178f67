package sign

import (
	"testing"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/s3"
	"github.com/seedship/seedship/store/s3/s3test"
)

// TestMain stops the versitygw that s3test.Server may start.
func TestMain(m *testing.M) { s3test.Main(m) }

// TestStoredSignaturesS3: the same checks on a real S3 service (a missing
// object is ErrUnsigned there too, a large one is cut off).
func TestStoredSignaturesS3(t *testing.T) {
	srv := s3test.Server(t)
	checkStoredSignatures(t, func() store.Store {
		st, err := s3.New(t.Context(), s3.Config{Bucket: srv.NewBucket(t), Prefix: "img", Endpoint: srv.Endpoint,
			Region: srv.Region, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, PartSize: s3.MinPartSize})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}
