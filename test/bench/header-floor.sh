#!/usr/bin/env bash
# The floor under test/bench/edge.sh: what the edge pipeline's response
# headers cost a bare net/http server, with no Caddy and no cairn code.
# Both servers share one process pinned to core 0 (GOMAXPROCS=1); wrk runs
# on core 1. Each server is measured twice, interleaved; it prints
# requests/s and the process's CPU time per request.
#
#   test/bench/header-floor.sh [duration] [connections]     (defaults: 8s 64)
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-8s}
conns=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/headerfloor" ./test/bench/headerfloor
# shellcheck source=test/bench/wrk-lib.sh
. test/bench/wrk-lib.sh
pin_cores
"${server_pin[@]}" "$work/headerfloor" &
pid=$!
for _ in $(seq 1 50); do curl -fs http://127.0.0.1:28082/ >/dev/null 2>&1 && break; sleep 0.1; done
run() { wrk_run "http://127.0.0.1:$1/xrpc/blue.catbird.mls.getConvos"; }
for port in 28080 28082; do "${client_pin[@]}" wrk -t1 -c"$conns" -d2s "http://127.0.0.1:$port/" >/dev/null; done
p1=$(run 28080); h1=$(run 28082); p2=$(run 28080); h2=$(run 28082)
echo "bare net/http, the pipeline's headers vs none ($duration, $conns connections)"
awk -v p="$(best "$p1" "$p2")" -v h="$(best "$h1" "$h2")" -v pc="$(least "$p1" "$p2")" -v hc="$(least "$h1" "$h2")" 'BEGIN {
	printf "  %-26s %10.0f req/s %8.1f µs CPU/request\n", "plain \"ok\"", p, pc
	printf "  %-26s %10.0f req/s %8.1f µs CPU/request\n", "\"ok\" + pipeline headers", h, hc
	printf "  headers / plain: %.1f%% by req/s, %.1f%% by CPU/request; the headers cost %.1f µs a request\n", 100*h/p, 100*pc/hc, hc-pc
}'
