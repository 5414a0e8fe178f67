// Package s3 is the [store.Store] for an S3-compatible bucket (Amazon S3,
// MinIO, versitygw, Ceph RGW, ...), built on minio-go v7.
//
// # What it owns
//
//   - [Config]: where the bucket is and how to authenticate, filled from a
//     "s3://bucket/prefix" URL ([ParseURL]) and the AWS environment
//     ([ConfigFromEnv]).
//   - [New]: connects, and checks before returning that the endpoint answers,
//     the credentials work and the bucket exists, so that the CLI can exit 2
//     before it reads any source data.
//   - The key layout: key k is the object prefix + "/" + k, so a prefix
//     copied with "aws s3 sync" or rclone into a directory is the same tree
//     that store/dir writes.
//   - Translating minio-go errors at the boundary (as kopia's translateError
//     does): a missing object wraps [store.ErrNotExist]; bad credentials,
//     access denied and a missing bucket wrap [store.ErrPermanent]; 5xx
//     replies, resets and timeouts stay plain (transient) errors.
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
