#!/usr/bin/env bash
# s3server.sh: a local S3 server (versitygw, posix backend) for seedship's tests.
#
#   scripts/s3server.sh install   install versitygw if it is missing
#   scripts/s3server.sh start     install, start on a free 127.0.0.1 port, print the env
#   scripts/s3server.sh env       print the env of the running server, as export lines
#   scripts/s3server.sh status    exit 0 if it runs, 1 if not
#   scripts/s3server.sh stop      stop it and remove its files
#
# Use:  scripts/s3server.sh start >/dev/null && eval "$(scripts/s3server.sh env)"
#       go test ./store/...   # uses SEEDSHIP_TEST_S3_ENDPOINT/_ACCESS_KEY/_SECRET_KEY
#       scripts/s3server.sh stop
#
# Without it, the store/s3 tests start their own versitygw when the binary is on
# PATH or in $(go env GOPATH)/bin, so 'install' is all that CI needs.
# SEEDSHIP_S3_STATE chooses the state directory (default $TMPDIR/seedship-s3server).
set -euo pipefail

VERSION=v1.8.0
MODULE=github.com/versity/versitygw/cmd/versitygw
ACCESS=seedshiptestkey
SECRET=seedshiptestsecret0123456789
REGION=us-east-1
STATE=${SEEDSHIP_S3_STATE:-${TMPDIR:-/tmp}/seedship-s3server}

die() { echo "s3server.sh: $*" >&2; exit 1; }

find_bin() {
	local p
	if p=$(command -v versitygw 2>/dev/null); then echo "$p"; return 0; fi
	for d in "$(go env GOBIN 2>/dev/null)" "$(go env GOPATH 2>/dev/null | cut -d: -f1)/bin"; do
		if [[ -n $d && -x $d/versitygw ]]; then echo "$d/versitygw"; return 0; fi
	done
	return 1
}

install() {
	if find_bin >/dev/null; then return 0; fi
	command -v go >/dev/null || die "go is not installed; cannot build versitygw"
	echo "s3server.sh: installing versitygw $VERSION (a minute or two)" >&2
	go install "$MODULE@$VERSION" >&2
	find_bin >/dev/null || die "go install succeeded but versitygw is not in GOBIN or GOPATH/bin"
}

running() {
	[[ -f $STATE/pid ]] && kill -0 "$(cat "$STATE/pid")" 2>/dev/null
}

port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
	local p
	for p in $(shuf -i 20000-60999 -n 100); do
		if port_free "$p"; then echo "$p"; return 0; fi
	done
	die "found no free port"
}

answers() { # any HTTP answer (versitygw says 403 to an anonymous GET)
	if command -v curl >/dev/null; then
		curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"
	else
		! port_free "$1"
	fi
}

start() {
	if running; then env_lines; return 0; fi
	install
	local bin port
	bin=$(find_bin)
	rm -rf "$STATE"
	mkdir -p "$STATE/root"
	port=$(free_port)
	# setsid: the server outlives this script; stop kills it by its pid.
	env -u ROOT_ACCESS_KEY -u ROOT_SECRET_KEY -u ROOT_ACCESS_KEY_ID -u ROOT_SECRET_ACCESS_KEY \
		setsid "$bin" --access "$ACCESS" --secret "$SECRET" --region "$REGION" \
		--port "127.0.0.1:$port" --quiet posix "$STATE/root" \
		>"$STATE/versitygw.log" 2>&1 </dev/null &
	echo $! >"$STATE/pid"
	local i
	for i in $(seq 200); do
		if answers "$port"; then break; fi
		if ! running; then
			cat "$STATE/versitygw.log" >&2
			die "versitygw exited"
		fi
		sleep 0.1
	done
	answers "$port" || { stop; die "versitygw did not answer on 127.0.0.1:$port within 20 s"; }
	cat >"$STATE/env" <<EOT
export SEEDSHIP_TEST_S3_ENDPOINT=http://127.0.0.1:$port
export SEEDSHIP_TEST_S3_ACCESS_KEY=$ACCESS
export SEEDSHIP_TEST_S3_SECRET_KEY=$SECRET
export SEEDSHIP_TEST_S3_REGION=$REGION
EOT
	env_lines
}

env_lines() {
	running || die "no server is running (run: $0 start)"
	cat "$STATE/env"
}

stop() {
	if [[ -f $STATE/pid ]]; then
		local pid
		pid=$(cat "$STATE/pid")
		if kill "$pid" 2>/dev/null; then
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$pid" 2>/dev/null || true
		fi
	fi
	rm -rf "$STATE"
}

case ${1:-} in
install) install ;;
start) start ;;
env) env_lines ;;
status) running ;;
stop) stop ;;
*) echo "usage: $0 install|start|env|status|stop" >&2; exit 2 ;;
esac
