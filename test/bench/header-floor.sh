#!/usr/bin/env bash
# The floor under test/bench/edge.sh: what the edge pipeline's response
# headers cost a bare net/http server, with no Caddy and no cairn code.
# Both servers share one process pinned to core 0 (GOMAXPROCS=1); wrk runs
# on core 1. The two are measured in interleaved rounds (the order swapped
# every round); it prints each round's requests/s and the process's CPU
# time per request, then the median over the rounds of each round's ratio
# and difference, with their spread: on a shared machine one site's best
# against the other's best moves the ratio by several points.
#
#   test/bench/header-floor.sh [duration] [connections] [rounds]   (defaults: 8s 64 6)
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-8s}
conns=${2:-64}
rounds=${3:-6}
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
echo "bare net/http, the pipeline's headers vs none ($duration, $conns connections, $rounds rounds, load average $(cut -d' ' -f1-3 /proc/loadavg))"
: >"$work/rounds"
for r in $(seq 1 "$rounds"); do
	if ((r % 2)); then p=$(run 28080); h=$(run 28082); else h=$(run 28082); p=$(run 28080); fi
	echo "$r $p $h" | tee -a "$work/rounds" | awk '{ printf "  round %d: plain %8.0f req/s %6.2f µs CPU; headers %8.0f req/s %6.2f µs CPU\n", $1, $2, $3, $4, $5 }'
done
# median and spread of the per-round figures: req/s ratio, CPU ratio, CPU difference
sort_col() { awk "{ print $1 }" "$work/rounds" | sort -g; }
median() { awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
spread() { awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.1f–%.1f", lo, hi }'; }
# shellcheck disable=SC2016 # awk expressions, expanded by awk
for stat in '100 * $4 / $2' '100 * $3 / $5' '$5 - $3'; do
	col=$(sort_col "$stat")
	printf '%s %s\n' "$(median <<<"$col")" "$(spread <<<"$col")"
done | awk 'NR == 1 { printf "  headers / plain by req/s: median %.1f%% (rounds %s%%)\n", $1, $2 }
	NR == 2 { printf "  headers / plain by CPU per request: median %.1f%% (rounds %s%%)\n", $1, $2 }
	NR == 3 { printf "  the headers cost a median %.2f µs of CPU a request (rounds %s µs)\n", $1, $2 }'
echo "  load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
