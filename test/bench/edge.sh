#!/usr/bin/env bash
# Edge pipeline load comparison: one cairn-caddy serving the same `respond`
# route twice — plain, and behind cairn_request_id, cairn_xrpc_metrics,
# cairn_security_headers and cairn_rate_limit (limits high enough never to
# refuse) — driven by wrk on loopback. Prints requests/s of both and the
# ratio. Target: the pipeline keeps at least 90% of plain throughput.
#
#   test/bench/edge.sh [duration] [connections]     (defaults: 10s 64)
#
# Needs wrk (Debian package `wrk`). Traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
duration=${1:-10s}
conns=${2:-64}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; cat "$work/log" >&2 || true; rm -rf "$work"' EXIT
go build -o "$work/cairn-caddy" ./cmd/cairn-caddy

cat > "$work/Caddyfile" <<CADDY
{
	admin 127.0.0.1:27019
	cairn {
		data_dir $work/data
	}
}
http://127.0.0.1:27080 {
	respond "ok"
}
http://127.0.0.1:27081 {
	cairn_request_id
	cairn_xrpc_metrics
	cairn_security_headers
	cairn_rate_limit {
		backend memory
		zone ip {
			key   ip
			rate  1000000/1s
		}
		zone did {
			key   did
			rate  1000000/1s
			match nsid blue.catbird.mls.*
		}
	}
	respond "ok"
}
CADDY

HOME=$work XDG_DATA_HOME=$work/data "$work/cairn-caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:27080/ >/dev/null 2>&1 && break; sleep 0.1; done

path=/xrpc/blue.catbird.mls.getConvos
run() { wrk -t2 -c"$conns" -d"$duration" --latency "http://127.0.0.1:$1$path" | tee "$work/wrk-$1" | awk '/Requests\/sec/ {print $2}'; }
# Warm both up, then measure each twice, alternating, and keep the best.
wrk -t2 -c"$conns" -d2s "http://127.0.0.1:27080$path" >/dev/null
wrk -t2 -c"$conns" -d2s "http://127.0.0.1:27081$path" >/dev/null
p1=$(run 27080); f1=$(run 27081); p2=$(run 27080); f2=$(run 27081)
plain=$(printf '%s\n%s\n' "$p1" "$p2" | sort -g | tail -1)
full=$(printf '%s\n%s\n' "$f1" "$f2" | sort -g | tail -1)
p99() { awk '/ 99%/ {print $2}' "$work/wrk-$1"; }

echo
echo "edge pipeline benchmark ($duration, $conns connections, $(nproc) cores)"
printf '  plain respond           %10.0f req/s   p99 %s\n' "$plain" "$(p99 27080)"
printf '  full cairn pipeline     %10.0f req/s   p99 %s\n' "$full" "$(p99 27081)"
awk -v p="$plain" -v f="$full" 'BEGIN { printf "  ratio                   %10.1f%%   (target >= 90%%)\n", 100*f/p }'
