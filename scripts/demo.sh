#!/usr/bin/env bash
# demo.sh [WORKDIR]: the whole seedship job on a local default, no S3 needed.
# Makes a sample 256 MiB ext4 disk image with real files, captures it into a
# local directory image, shows it, verifies it, restores it onto a new
# "target disk" file, and proves the target is the same disk: cmp, e2fsck,
# and seedship's own block-for-block check.
set -euo pipefail
cd "$(dirname "$0")/.."
PATH=$PATH:/usr/sbin:/sbin
WORK=${1:-/var/tmp/seedship-demo}
BIN=${SEEDSHIP:-bin/seedship}
SIZE_MIB=${DEMO_SIZE_MIB:-256}

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

[ -x "$BIN" ] || { echo "demo: $BIN missing: run 'make build' first" >&2; exit 1; }
for c in mkfs.ext4 e2fsck cmp sha256sum; do
	command -v "$c" >/dev/null || { echo "demo: $c not found: sudo apt-get install e2fsprogs diffutils coreutils" >&2; exit 1; }
done
rm -rf "$WORK"
mkdir -p "$WORK"
SRC=$WORK/source-disk.img
IMG=$WORK/seed
TGT=$WORK/target-disk.img

step "1. a sample source disk: ${SIZE_MIB} MiB ext4, about half full of text, binaries and random data"
./scripts/mkimage.sh "$SRC" "$SIZE_MIB" demo
ls -l "$SRC"

step "2. capture the source disk into a seed image (a local directory)"
run "$BIN" capture "$SRC" "$IMG"
du -sh "$IMG"; ls -R "$IMG" | head -n 8

step "3. what the image holds"
run "$BIN" info "$IMG"

step "4. verify every chunk of the image (as at the target site, after transport)"
run "$BIN" verify "$IMG"

step "5. restore onto the target disk"
run "$BIN" restore "$IMG" "$TGT"

step "6. prove the target is the source, block for block"
run cmp "$SRC" "$TGT" && echo "cmp: identical"
run e2fsck -fn "$TGT"
run "$BIN" verify --device "$TGT" "$IMG"
echo "source sha256: $(sha256sum < "$SRC" | cut -d' ' -f1)"
echo "target sha256: $(sha256sum < "$TGT" | cut -d' ' -f1)"

step "done: the target is ready for the replication product's partial resync"
echo "files are in $WORK (remove with: rm -rf $WORK)"
