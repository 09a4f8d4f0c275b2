#!/usr/bin/env bash
# Edge pipeline load comparison: one cairn-caddy serving the same `respond`
# route several times, driven by wrk on loopback:
#   plain      `respond "ok"`;
#   pipeline   the issue's comparison: behind cairn_request_id,
#              cairn_security_headers and cairn_rate_limit, zoned as the
#              issue's example (ip for every request; send, by DID, for
#              sendMessage only), limits high enough never to refuse;
#   full       what Caddyfile.example puts in front of the API: the same
#              plus cairn_xrpc_metrics, with a DID zone on every XRPC call;
#   headers    `respond "ok"` with the pipeline's response headers written
#              by Caddy's own `header` directive, byte for byte.
# Target: the pipeline keeps at least 90% of plain throughput.
#
# Besides requests/s, it reports the server's CPU time per request (from
# /proc), which other load on the machine does not distort the way it
# distorts requests/s; the ratios of those are the throughput ratios of a
# server that has its core to itself.
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
	cairn_security_headers
	cairn_rate_limit {
		backend memory
		zone ip {
			key   ip
			rate  1000000/1s
		}
		zone send {
			key   did
			rate  1000000/1s
			match nsid blue.catbird.mls.sendMessage
		}
	}
	respond "ok"
}
http://127.0.0.1:27083 {
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
http://127.0.0.1:27082 {
	header {
		-Server
		Cache-Control "no-store"
		Content-Security-Policy "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self' wss:"
		Permissions-Policy "camera=(), microphone=(), geolocation=()"
		Ratelimit-Limit "1000000"
		Ratelimit-Remaining "999999"
		Ratelimit-Reset "1"
		Referrer-Policy "strict-origin-when-cross-origin"
		Strict-Transport-Security "max-age=31536000; includeSubDomains"
		X-Content-Type-Options "nosniff"
		X-Frame-Options "DENY"
		X-Request-Id "01a208eb-875b-79d6-a217-06374d5c9d9d"
	}
	respond "ok"
}
CADDY

# shellcheck source=test/bench/wrk-lib.sh
. test/bench/wrk-lib.sh
pin_cores
HOME=$work XDG_DATA_HOME=$work/data "${server_pin[@]}" "$work/cairn-caddy" run --config "$work/Caddyfile" --adapter caddyfile >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:27080/ >/dev/null 2>&1 && break; sleep 0.1; done

path=/xrpc/blue.catbird.mls.getConvos
run() { wrk_run "http://127.0.0.1:$1$path" "$work/wrk-$1"; }
# Warm up, then measure each site twice, interleaved, and keep the best.
for port in 27080 27081 27083 27082; do "${client_pin[@]}" wrk -t1 -c"$conns" -d2s "http://127.0.0.1:$port$path" >/dev/null; done
p1=$(run 27080); f1=$(run 27081); x1=$(run 27083); h1=$(run 27082)
p2=$(run 27080); f2=$(run 27081); x2=$(run 27083); h2=$(run 27082)
plain=$(best "$p1" "$p2"); pipe=$(best "$f1" "$f2"); full=$(best "$x1" "$x2"); hdrs=$(best "$h1" "$h2")
plain_cpu=$(least "$p1" "$p2"); pipe_cpu=$(least "$f1" "$f2"); full_cpu=$(least "$x1" "$x2"); hdrs_cpu=$(least "$h1" "$h2")
p99() { awk '/ 99%/ {print $2}' "$work/wrk-$1"; }

echo
echo "edge pipeline benchmark ($duration, $conns connections, $(nproc) cores${server_pin:+; server pinned to core 0, wrk to the rest})"
printf '  %-40s %10s   %-12s %s\n' "" "req/s" "p99" "server CPU/request"
printf '  %-40s %10.0f   %-12s %6.1f µs\n' "plain respond" "$plain" "$(p99 27080)" "$plain_cpu"
printf '  %-40s %10.0f   %-12s %6.1f µs\n' "pipeline (request_id, headers, limit)" "$pipe" "$(p99 27081)" "$pipe_cpu"
printf '  %-40s %10.0f   %-12s %6.1f µs\n' "full (+ xrpc_metrics, DID zone on all)" "$full" "$(p99 27083)" "$full_cpu"
printf '  %-40s %10.0f   %-12s %6.1f µs\n' "respond + same headers by \`header\`" "$hdrs" "$(p99 27082)" "$hdrs_cpu"
awk -v p="$plain" -v f="$pipe" -v x="$full" -v h="$hdrs" -v pc="$plain_cpu" -v fc="$pipe_cpu" -v xc="$full_cpu" -v hc="$hdrs_cpu" 'BEGIN {
	printf "  pipeline / plain                         %10.1f%%   (target >= 90%%)\n", 100*f/p
	printf "  full / plain                             %10.1f%%\n", 100*x/p
	printf "  by server CPU/request: pipeline / plain %.1f%%, full / plain %.1f%%, same headers by `header` / plain %.1f%%\n", 100*pc/fc, 100*pc/xc, 100*pc/hc
	printf "  (the throughput one saturated core would give; the pipeline costs %.1f µs a request over plain)\n", fc-pc
}'
