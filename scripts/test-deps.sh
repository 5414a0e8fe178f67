#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine with Go:
# e2fsprogs (mkfs.ext4 -d, e2fsck), util-linux (losetup), zstd and openssl
# (benchmark peers), ssh-keygen from openssh-client (signature interop),
# age-keygen and age from age (keys for encrypted seeds, and unwrapping their
# keys independently), rclone (a second S3 client for interop tests), the
# versitygw S3 server (tests start it themselves on 127.0.0.1), and
# golangci-lint (make lint).
# Idempotent: it installs only what is missing, so it is fast when all is there.
#
#   scripts/test-deps.sh                  everything
#   scripts/test-deps.sh golangci-lint    only golangci-lint (make lint)
set -euo pipefail

GOLANGCI_LINT_VERSION=2.15.0

gobin=$(go env GOBIN)
[ -n "$gobin" ] || gobin=$(go env GOPATH | cut -d: -f1)/bin

# golangci-lint at exactly the pinned version: another version may report
# other findings, so one on PATH is not enough.
install_golangci_lint() {
	if "$gobin/golangci-lint" version 2>/dev/null | grep -q "version $GOLANGCI_LINT_VERSION "; then
		return 0
	fi
	echo "test-deps: installing golangci-lint v$GOLANGCI_LINT_VERSION (go install; takes a few minutes the first time)"
	go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$GOLANGCI_LINT_VERSION"
}

case ${1:-} in
'') ;;
golangci-lint) install_golangci_lint; exit 0 ;;
*) echo "usage: $0 [golangci-lint]" >&2; exit 2 ;;
esac

need=()
for pair in mkfs.ext4:e2fsprogs e2fsck:e2fsprogs losetup:mount cmp:diffutils zstd:zstd openssl:openssl ssh-keygen:openssh-client age-keygen:age rclone:rclone; do
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

if ! [ -x "$gobin/versitygw" ] && ! command -v versitygw >/dev/null 2>&1; then
	echo "test-deps: installing versitygw v1.8.0 (go install; takes a few minutes the first time)"
	go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
install_golangci_lint
echo "test-deps: ok"
