#!/usr/bin/env bash
# pgo.sh: regenerate cmd/loadgen/default.pgo, the CPU profile go build
# optimizes loadgen with (profile-guided optimization: it inlines and lays out
# the hot paths the profile shows; what loadgen does is unchanged).
#
# The profile is loadgen's own (-cpuprofile) over the loads bench's calibration
# and the default comparison put on it, against the C peer cepoll: echo closed
# loop at 100 and 1000 connections, rpc at 100, and an open loop at 100. The
# server is pinned to CPU 0 and loadgen to CPU 1 where there are two.
#
# Usage: scripts/pgo.sh   (make pgo: builds first). BIN overrides bin/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
for b in "$BIN/cepoll" "$BIN/loadgen"; do
	[ -x "$b" ] || { echo "pgo.sh: $b not built (make build)" >&2; exit 2; }
done
srvcpu=() clicpu=()
if [ "$(nproc)" -ge 2 ]; then srvcpu=(taskset -c 0) clicpu=(-client-cpus 1); fi
tmp=$(mktemp -d)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"${srvcpu[@]}" "$BIN/cepoll" -addr 127.0.0.1:0 >"$tmp/cepoll.out" &
srv=$!
for _ in $(seq 50); do [ -s "$tmp/cepoll.out" ] && break; sleep 0.1; done
addr=$(awk 'NR == 1 {print $3}' "$tmp/cepoll.out")
[ -n "$addr" ] || { echo "pgo.sh: cepoll did not say its address" >&2; exit 1; }
i=0
while read -r load; do
	i=$((i + 1))
	echo ">> loadgen -addr $addr $load -cpuprofile $tmp/$i.pprof"
	# shellcheck disable=SC2086 # $load is flags
	"$BIN/loadgen" -addr "$addr" $load "${clicpu[@]}" -warmup 500ms -d 5s -kernel-counts=false -q \
		-cpuprofile "$tmp/$i.pprof" -o "$tmp/$i.json" >/dev/null
done <<'LOADS'
-proto echo -c 100
-proto echo -c 1000
-proto rpc -c 100
-proto echo -c 100 -rate 50000
LOADS
go tool pprof -proto "$tmp"/*.pprof >"$tmp/merged.pgo"
mv "$tmp/merged.pgo" cmd/loadgen/default.pgo
echo ">> cmd/loadgen/default.pgo: $(wc -c <cmd/loadgen/default.pgo) bytes; make build rebuilds loadgen with it"
