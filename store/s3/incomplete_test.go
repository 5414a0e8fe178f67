package s3_test

import (
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/seedship/seedship/store"
	"github.com/seedship/seedship/store/retry"
	"github.com/seedship/seedship/store/s3/s3test"
)

// TestRemoveIncomplete leaves multipart uploads unfinished, as a killed
// process does, and checks that RemoveIncomplete aborts exactly those under
// the store's prefix, also when reached through a wrapper.
func TestRemoveIncomplete(t *testing.T) {
	srv := s3test.Server(t)
	cfg := config(t, srv, srv.Endpoint, "img/a")
	st := open(t, cfg)
	core := minio.Core{Client: srv.Client(t)}
	for _, key := range []string{"img/a/data/00000001.seg", "img/a/data/00000002.seg", "img/b/data/00000001.seg"} {
		if _, err := core.NewMultipartUpload(t.Context(), cfg.Bucket, key, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	count := func(prefix string) int {
		n := 0
		for u := range core.ListIncompleteUploads(t.Context(), cfg.Bucket, prefix, true) {
			if u.Err != nil {
				t.Fatal(u.Err)
			}
			n++
		}
		return n
	}
	if count("img/a/") != 2 {
		t.Fatalf("setup: %d incomplete uploads under img/a/", count("img/a/"))
	}
	c, ok := store.AsCleaner(retry.New(st, retry.Options{}))
	if !ok {
		t.Fatal("the S3 store behind a retry wrapper is not a store.Cleaner")
	}
	if err := c.RemoveIncomplete(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := count("img/a/"); n != 0 {
		t.Fatalf("%d incomplete uploads left under the prefix", n)
	}
	if n := count("img/b/"); n != 1 {
		t.Fatalf("an upload outside the prefix was touched: %d left, want 1", n)
	}
}
