#!/usr/bin/env bash
# mkimage.sh OUT SIZE_MIB [SEED]
#
# Makes a realistic ext4 image file OUT of SIZE_MIB MiB, about half full, for
# benchmarks and tests. The used space is roughly one third each of:
#   text      documentation from /usr/share/doc (gzipped files decompressed)
#             and /usr/share/common-licenses, plus generated log-like lines;
#   binaries  executables and libraries from /usr/bin and
#             /usr/lib/x86_64-linux-gnu (or /usr/lib);
#   random    incompressible files from a seeded AES-CTR stream.
# The rest of the image is free space: zeros, as on a freshly made file
# system. Files are picked in an order derived from SEED (default 1), file
# times, the UUID and the directory hash seed are fixed, so the same SEED on
# the same host gives the same image bytes. The staging directory is made
# next to OUT and removed on exit; it needs about SIZE_MIB/2 MiB free there.
# Needs mkfs.ext4 and debugfs (e2fsprogs >= 1.43, for -d), openssl, awk and
# coreutils; root is not required. Takes about 3 s for 64 MiB, 25 s for
# 1 GiB and about a minute for 4 GiB on a small VM.
set -euo pipefail

usage() { echo "usage: $0 OUT SIZE_MIB [SEED]" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
OUT=$1
SIZE_MIB=$2
SEED=${3:-1}
case $SIZE_MIB in '' | *[!0-9]*) usage ;; esac
[ "$SIZE_MIB" -ge 16 ] || { echo "$0: SIZE_MIB must be at least 16" >&2; exit 2; }
case $SEED in '' | *[!A-Za-z0-9._-]*) echo "$0: SEED must be [A-Za-z0-9._-]+" >&2; exit 2; esac

PATH=$PATH:/usr/sbin:/sbin
for c in mkfs.ext4 debugfs openssl awk shuf truncate zcat; do
	command -v "$c" >/dev/null || { echo "$0: $c not found" >&2; exit 1; }
done
export LC_ALL=C

MIB=$((1024 * 1024))
SIZE=$((SIZE_MIB * MIB))
USED=$((SIZE / 2))
THIRD=$((USED / 3))
# Biggest single binary copied: keeps a few huge libraries (LLVM, node)
# from being most of the binary share of a small image.
MAXBIN=$((THIRD / 4 < 64 * MIB ? THIRD / 4 : 64 * MIB))

outdir=$(dirname -- "$OUT")
mkdir -p -- "$outdir"
WORK=$(mktemp -d "$outdir/.mkimage.XXXXXX")
STAGE=$WORK/stage
mkdir "$STAGE"
TMPOUT="$OUT.tmp.$$"
cleanup() { rm -rf -- "$WORK" "$TMPOUT"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# stream LABEL BYTES: BYTES of deterministic pseudo-random data for SEED.
stream() {
	head -c "$2" /dev/zero | openssl enc -aes-128-ctr -pbkdf2 -iter 1 -nosalt -pass "pass:seedship-$SEED-$1"
}
# shuffled LABEL: stdin lines in a SEED-determined order.
shuffled() {
	stream "$1" $((4 * MIB)) >"$WORK/random-$1"
	sort | shuf --random-source="$WORK/random-$1"
}

# fill KIND DEST BUDGET: copy the files named on stdin under DEST (keeping
# their paths), skipping any that would overflow BUDGET bytes, until less
# than 4 KiB of it is left. Prints the bytes copied. KIND gz decompresses
# *.gz files and goes through the list once; KIND plain repeats the list
# into DEST/copy-N when it runs out.
fill() {
	local kind=$1 dest=$2 budget=$3 total=0 round=0 added f d size list
	list=$(cat)
	[ -n "$list" ] || { echo 0; return; }
	while [ $((budget - total)) -ge 4096 ]; do
		added=0
		d=$dest
		[ $round -eq 0 ] || d="$dest/copy-$round"
		while IFS= read -r f; do
			[ $((budget - total)) -ge 4096 ] || break
			local to="$d$f"
			[ "$kind" = gz ] && to=${to%.gz}
			mkdir -p -- "$(dirname -- "$to")"
			if [ "$kind" = gz ] && [ "${f%.gz}" != "$f" ]; then
				zcat -- "$f" >"$to" 2>/dev/null || { rm -f -- "$to"; continue; }
			else
				cp -- "$f" "$to" 2>/dev/null || { rm -f -- "$to"; continue; }
			fi
			size=$(stat -c %s -- "$to")
			if [ $((total + size)) -gt "$budget" ]; then
				rm -f -- "$to"
				continue
			fi
			total=$((total + size))
			added=$((added + size))
		done <<<"$list"
		[ $added -gt 0 ] && [ "$kind" != gz ] || break
		round=$((round + 1))
	done
	echo "$total"
}

# --- text: documentation (at most 2/3 of the text share), then logs -------
mkdir -p "$STAGE/usr/share" "$STAGE/var/log"
docs=0
if [ -d /usr/share/doc ] || [ -d /usr/share/common-licenses ]; then
	docs=$(find /usr/share/doc /usr/share/common-licenses -type f -size -4M 2>/dev/null |
		shuffled docs | fill gz "$STAGE" $((THIRD * 2 / 3)))
fi
logbytes=$((THIRD - docs))
nlogs=$(((logbytes + 32 * MIB - 1) / (32 * MIB)))
i=0
while [ $i -lt $nlogs ]; do
	n=$((logbytes / nlogs))
	awk -v seed="$(printf '%s' "$SEED-$i" | cksum | cut -d' ' -f1)" -v bytes="$n" -v t0=$((1704067200 + i * 86400)) '
	BEGIN {
		srand(seed)
		split("INFO INFO INFO INFO DEBUG DEBUG WARN ERROR", lv, " ")
		split("nginx sshd kernel systemd cron postgres app-worker haproxy dockerd kubelet", svc, " ")
		split("GET GET GET POST PUT DELETE", meth, " ")
		split("/api/v1/items /api/v1/users /login /static/app.js /healthz /api/v2/orders /metrics /index.html", path, " ")
		split("200 200 200 200 201 204 301 304 400 403 404 500 503", code, " ")
		split("connection established;session closed for user;accepted publickey for;queue depth exceeded threshold;checkpoint complete: wrote buffers;retrying request after timeout;cache miss for key;started job;finished job in", msg, ";")
		t = t0; n = 0
		while (n < bytes) {
			t += int(rand() * 3)
			s = svc[int(rand() * 10) + 1]
			ts = strftime("%Y-%m-%dT%H:%M:%SZ", t, 1)
			if (s == "nginx" || s == "haproxy")
				line = sprintf("%s host-%02d %s[%d]: 10.%d.%d.%d - - \"%s %s/%d HTTP/1.1\" %s %d %.3f \"Mozilla/5.0 (X11; Linux x86_64)\"",
					ts, int(rand()*16), s, 1000+int(rand()*30000), int(rand()*256), int(rand()*256), int(rand()*256),
					meth[int(rand()*6)+1], path[int(rand()*8)+1], int(rand()*100000), code[int(rand()*13)+1], int(rand()*200000), rand()*2)
			else
				line = sprintf("%s host-%02d %s[%d]: %s %s %x id=%08x dur=%dms",
					ts, int(rand()*16), s, 1000+int(rand()*30000), lv[int(rand()*8)+1], msg[int(rand()*9)+1],
					int(rand()*1000000), int(rand()*4294967295), int(rand()*5000))
			if (n + length(line) + 1 > bytes) break
			print line
			n += length(line) + 1
		}
	}' >"$STAGE/var/log/app-$i.log"
	i=$((i + 1))
done

# --- binaries -------------------------------------------------------------
libdir=/usr/lib/x86_64-linux-gnu
[ -d "$libdir" ] || libdir=/usr/lib
bins=$(find /usr/bin "$libdir" -type f -size +0 -size -$((MAXBIN / 1024 + 1))k 2>/dev/null |
	shuffled bins | fill plain "$STAGE" "$THIRD")

# --- random ---------------------------------------------------------------
mkdir -p "$STAGE/srv/blobs"
left=$THIRD
i=0
sizes=(1 24 3 64 8 16 2 48 32 5)
while [ "$left" -gt 0 ]; do
	n=$((sizes[i % ${#sizes[@]}] * MIB))
	[ "$n" -le "$left" ] || n=$left
	stream "blob-$i" "$n" >"$STAGE/srv/blobs/blob-$(printf %04d $i).bin"
	left=$((left - n))
	i=$((i + 1))
done

# --- the file system -------------------------------------------------------
# Fixed times, UUID and hash seed make the image a function of SEED.
find "$STAGE" -exec touch -h -d @1704067200 {} +
uuid=$(printf '%s' "seedship-$SEED" | openssl dgst -sha256 -r | cut -c1-32 |
	sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12})$/\1-\2-\3-\4-\5/')
inodes=$(find "$STAGE" | wc -l)
extra=()
# mke2fs picks the inode count from the size; a small image packed with
# small files may need more.
if [ $((inodes * 2 + 256)) -gt $((SIZE / 16384)) ]; then
	extra=(-N $((inodes * 2 + 256)))
fi
rm -f -- "$TMPOUT"
truncate -s "$SIZE" -- "$TMPOUT"
E2FSPROGS_FAKE_TIME=1704067200 mkfs.ext4 -q -F -U "$uuid" -E "hash_seed=$uuid" -L seedship-sample \
	"${extra[@]}" -d "$STAGE" -- "$TMPOUT" "${SIZE_MIB}M"
# mke2fs copies each file's atime and ctime, which reading and touching the
# staging files set to now: pin them too.
{
	echo 'sif / atime @1704067200'
	echo 'sif / ctime @1704067200'
	find "$STAGE" -mindepth 1 -printf '/%P\n' | grep -v '"' |
		awk '{ printf "sif \"%s\" atime @1704067200\nsif \"%s\" ctime @1704067200\n", $0, $0 }'
} >"$WORK/times.cmd"
E2FSPROGS_FAKE_TIME=1704067200 debugfs -w -f "$WORK/times.cmd" "$TMPOUT" >/dev/null 2>"$WORK/debugfs.err" ||
	{ cat "$WORK/debugfs.err" >&2; exit 1; }
# debugfs exits 0 even when a command fails; a time left unpinned only costs
# repeatability, so warn.
if grep -v '^debugfs [0-9]' "$WORK/debugfs.err" | head -5 | grep . >&2; then
	echo "$0: warning: some file times were not pinned; the image may not be byte-for-byte repeatable" >&2
fi
mv -f -- "$TMPOUT" "$OUT"
echo "mkimage: $OUT: ${SIZE_MIB} MiB ext4, seed $SEED: text $((docs + logbytes)) B (docs $docs, logs $logbytes), binaries $bins B, random $THIRD B" >&2
