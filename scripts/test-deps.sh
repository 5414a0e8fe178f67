#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine with Go:
# e2fsprogs (mkfs.ext4 -d, e2fsck), util-linux (losetup), zstd and openssl
# (benchmark peers), rclone (a second S3 client for interop tests), and the
# versitygw S3 server (tests start it themselves on 127.0.0.1).
# Idempotent: it installs only what is missing.
set -euo pipefail

need=()
for pair in mkfs.ext4:e2fsprogs e2fsck:e2fsprogs losetup:mount cmp:diffutils zstd:zstd openssl:openssl rclone:rclone; do
	cmd=${pair%%:*} pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "test-deps: missing ${need[*]}: install them (sudo apt-get install ${need[*]}) and run again" >&2
		exit 1
	fi
	echo "test-deps: installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

gobin=$(go env GOPATH)/bin
if ! [ -x "$gobin/versitygw" ] && ! command -v versitygw >/dev/null 2>&1; then
	echo "test-deps: installing versitygw v1.8.0 (go install; takes a few minutes the first time)"
	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
echo "test-deps: ok"
