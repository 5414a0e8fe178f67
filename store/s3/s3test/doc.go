// Package s3test holds test helpers for S3 stores: [Server] gives a test a
// real S3 service (an endpoint from the environment, or a versitygw process
// that it starts for the test binary) and [NewProxy] puts a programmable
// fault-injecting HTTP proxy between a client and that service.
//
// It is for tests only: nothing outside _test.go files may import it. It
// imports minio-go to create and empty buckets, and must not import package
// format or the store implementations (store/s3 tests import it, so it would
// be a cycle).
//
// # Where the server comes from
//
// When SEEDSHIP_TEST_S3_ENDPOINT, SEEDSHIP_TEST_S3_ACCESS_KEY and
// SEEDSHIP_TEST_S3_SECRET_KEY are set (scripts/s3server.sh env prints them),
// tests use that service. Otherwise the first call to [Server] starts
// versitygw (found on PATH, in $GOBIN or in $(go env GOPATH)/bin) on a free
// port of 127.0.0.1 with a posix backend in a temporary directory; [Main]
// stops it when the test binary ends. When neither is available the test is
// skipped, or fails when SEEDSHIP_TEST_DISALLOW_SKIP=1 (as CI sets it).
// Install versitygw with
//
//	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
//
// or scripts/s3server.sh install.
package s3test
