// Package s3 is the [store.Store] for an S3-compatible bucket (Amazon S3,
// MinIO, versitygw, Ceph RGW, ...), built on minio-go v7.
//
// # What it owns
//
//   - [Config]: where the bucket is and how to authenticate, filled from a
//     "s3://bucket/prefix" URL ([ParseURL], strict: a URL that would store
//     the image anywhere but where it says is refused) and the AWS
//     environment ([ConfigFromEnv]).
//   - [New]: connects, and checks before returning that the endpoint answers,
//     the credentials work and the bucket exists, so that the CLI can exit 2
//     before it reads any source data.
//   - The key layout: key k is the object prefix + "/" + k, so a prefix
//     copied with "aws s3 sync" or rclone into a directory is the same tree
//     that store/dir writes.
//   - Translating minio-go errors at the boundary (as kopia's translateError
//     does): a missing object wraps [store.ErrNotExist]; bad credentials,
//     access denied and a missing bucket wrap [store.ErrPermanent]; a full
//     server (507, XMinioStorageFull, QuotaExceeded) wraps
//     [store.ErrNoSpace]; 5xx replies, resets, timeouts and stalls stay
//     plain (transient) errors.
//
// # Nothing hangs
//
// Every transfer has a stall timeout (Config.StallTimeout, 30 s by
// default): a response body that delivers no byte for that long, or a
// request body the connection stops taking, is aborted with a transient
// error wrapping [ErrStalled], so store/retry resumes a stalled GET from the
// byte it reached and a part is sent again. The wait for response headers
// is bounded separately (one minute).
//
// # Writer lock
//
// [Store.Lock] writes the object [store.LockKey] under the prefix with a
// conditional PUT (If-None-Match: *), keeps it fresh every 20 s and treats
// one not refreshed for 2 minutes (by the server's clock, read from its
// Date headers) as the lock of a dead writer, which is taken over with a
// PUT conditional on its ETag. Whether the server honours If-None-Match is
// checked for real on every Lock; where it does not, Lock fails with
// [store.ErrNoLock]. The lock object is not a key: List skips it and the
// other methods refuse it.
//
// # What it does not do
//
// It does not retry and does not limit bandwidth: those are the wrappers in
// store/retry and store/ratelimit. The minio-go client is built with its own
// retries switched off (MaxRetries 1) so that the two layers do not multiply;
// the one exception is a part of a multipart upload, which is retried a few
// times from its in-memory buffer because re-sending the whole object would
// waste every part already uploaded (see [Store.Put]).
//
// It must not import package format: it moves opaque bytes.
//
// # Integrity
//
// Every PUT and every part of a multipart upload carries an
// x-amz-checksum-crc32c header (the S3 checksum headers), which the server
// checks before it stores the bytes (AWS, MinIO and versitygw all do; a
// mismatch is BadDigest, retried from the buffer). CRC-32C runs in hardware,
// where Content-MD5 cost a tenth of a capture's CPU; with the checksum in
// place the payload is sent unsigned (UNSIGNED-PAYLOAD), as minio-go does
// over TLS anyway. Reads are length-checked: a
// body shorter than the range asked for is io.ErrUnexpectedEOF, never a
// silent short read.
package s3
