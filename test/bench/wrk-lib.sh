# Shared by the wrk load scripts in test/bench (source it; it runs nothing).
# They pin the server to core 0 and wrk to the other cores, and measure
# each site by requests/s and by the server's CPU time per request.

# pin_cores sets server_pin and client_pin (taskset prefixes) and, with
# two cores or more, GOMAXPROCS=1 for the server, so the load generator
# does not steal the server's CPU and runs compare like with like.
pin_cores() {
	server_pin=() client_pin=()
	if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
		server_pin=(taskset -c 0) client_pin=(taskset -c 1-$(($(nproc) - 1)))
		export GOMAXPROCS=1
	fi
}

# wrk_run url [save-to]: drives url with wrk for $duration over $conns
# connections and prints "requests/s µs-of-server-CPU-per-request" for the
# server whose pid is $pid. The CPU time does not depend on how much of the
# machine the server got, so it compares sites even when other load, or
# wrk itself, keeps the server from saturating its core.
wrk_run() {
	local c0 c1 out ticks
	ticks=$(getconf CLK_TCK)
	c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	out=$("${client_pin[@]}" wrk -t1 -c"$conns" -d"$duration" --latency "$1")
	c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
	if [ -n "${2:-}" ]; then echo "$out" >"$2"; fi
	if grep -q 'Non-2xx' <<<"$out"; then
		echo "$1 answered some requests with an error status, so its figures are not comparable: $(grep 'Non-2xx' <<<"$out")" >&2
		return 1
	fi
	awk -v c="$((c1 - c0))" -v t="$ticks" '
		/Requests\/sec/ { rps = $2 }
		/requests in/ { n = $1 }
		END { printf "%s %.2f\n", rps, c * 1e6 / t / n }' <<<"$out"
}

# best a b: the higher requests/s of two wrk_run results.
best() { printf '%s\n%s\n' "${1% *}" "${2% *}" | sort -g | tail -1; }
# least a b: the lower CPU time per request of two wrk_run results.
least() { printf '%s\n%s\n' "${1#* }" "${2#* }" | sort -g | head -1; }
