#!/usr/bin/env bats
# Argument parsing, validation and the dry-run plan of deploy/install.sh.
# TestInstallScriptBats (deploy/install_test.go) runs this file; by hand:
#     bats deploy/testdata/install.bats
# Every run is a dry run against a fake host under --root (os-release,
# meminfo, listening sockets), so nothing here touches the machine.

setup() {
	script="$BATS_TEST_DIRNAME/../install.sh"
	host="$BATS_TEST_TMPDIR/host"
	mkdir -p "$host/etc" "$host/proc/net"
	fake_os debian 'Debian GNU/Linux 12 (bookworm)'
	printf 'MemTotal:        1003456 kB\n' >"$host/proc/meminfo"
	listening # nothing listens
	# A stand-in binary: the script only asks it for its version in a dry run.
	bin="$BATS_TEST_TMPDIR/cairn-caddy"
	printf '#!/bin/sh\necho v2.11.9-test\n' >"$bin"
	chmod +x "$bin"
}

fake_os() {
	printf 'PRETTY_NAME="%s"\nID=%s\n' "$2" "$1" >"$host/etc/os-release"
	if [ -n "${3:-}" ]; then printf 'ID_LIKE="%s"\n' "$3" >>"$host/etc/os-release"; fi
}

# listening PORT...: the fake host's listening TCP sockets.
listening() {
	printf '  sl  local_address rem_address   st\n' >"$host/proc/net/tcp"
	printf '  sl  local_address rem_address   st\n' >"$host/proc/net/tcp6"
	for p in "$@"; do
		printf '   0: 00000000:%04X 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1 1\n' "$p" >>"$host/proc/net/tcp"
	done
}

# dry ARGS...: a dry run on the fake host.
dry() {
	run sh "$script" --dry-run --yes --root "$host" "$@"
}

# plan_steps: the step names of the plan in $output, one line.
plan_steps() {
	printf '%s\n' "$output" | awk '$1 == "plan" { printf "%s ", $2 }'
}

@test "--help lists the options and exits 0" {
	run sh "$script" --help
	[ "$status" -eq 0 ]
	[[ "$output" == *"--config FILE"* ]]
	[[ "$output" == *"--uninstall"* ]]
	[[ "$output" == *"--dry-run"* ]]
}

@test "an unknown option is a usage error naming it" {
	run sh "$script" --frobnicate
	[ "$status" -eq 2 ]
	[[ "$output" == *"unknown option --frobnicate"* ]]
}

@test "a flag without its value is a usage error" {
	run sh "$script" --domain
	[ "$status" -eq 2 ]
	[[ "$output" == *"--domain needs a value"* ]]
}

@test "bad answers are refused with the reason, as flags" {
	while IFS='|' read -r flag value reason; do
		run sh "$script" --dry-run --yes --root "$host" --binary "$bin" --domain chat.example.com "$flag" "$value"
		if [ "$status" -ne 2 ] || [[ "$output" != *"$reason"* ]]; then
			echo "$flag '$value': status $status, output: $output"
			return 1
		fi
	done <<'EOF'
--domain|chat|a public host name has a dot
--domain|Chat.Example.com|not a host name
--domain|-bad.example.com|not a host name
--domain|chat.example.com; rm -rf /|not a host name
--email|admin@|not an email address
--email|admin example.com|not an email address
--database|mysql://db/cairn|want sqlite, local, or a postgres://
--database|postgres://u:it's@db/x|no quote
--redis|http://cache:6379|want none, local, or a redis://
--memory-limit|12K|want none, or a size
--memory-limit|100M|below 256M
--cpu-limit|0|want none, or a number of CPUs
--cpu-limit|0.05|want none, or a number of CPUs
--cpu-limit|lots|want none, or a number of CPUs
--operator-token|short|want generate, none, or a token of 32
--http-port|0|want a port number
--https-port|70000|want a port number
--metrics-addr|9180|want host:port
--service|Bad Name|want a lower-case name
--user|root;id|want a lower-case name
--etc-dir|etc/cairn|want an absolute path
--data-dir|/|not the root directory
--etc-dir|/etc|the path must contain 'cairn'
--data-dir|/var/lib|the path must contain 'cairn'
--mode|kubernetes|want native or compose
--init|upstart|want auto, systemd or direct
--binary|/nonexistent/cairn-caddy|no such file
EOF
}

@test "good answers are accepted" {
	dry --binary "$bin" --domain chat.example.com --email ops@example.com \
		--database 'postgres://cairn:s3cret@db.internal:5432/cairn?sslmode=require' \
		--redis rediss://cache.internal:6380/0 --memory-limit 768M --cpu-limit 1.5 \
		--operator-token "$(printf 'a%.0s' $(seq 40))" --http-port 8080 --https-port 8443
	[ "$status" -eq 0 ]
	[[ "$output" == *"MemoryMax=768M CPUQuota=150%"* ]]
}

@test "no domain without a wizard is a usage error saying where to give it" {
	run sh "$script" --dry-run --yes --root "$host" --binary "$bin"
	[ "$status" -eq 2 ]
	[[ "$output" == *"no domain: give --domain, domain: in --config, or CAIRN_DOMAIN in --env"* ]]
}

@test "the defaults' plan on a host without systemd: native, direct start, default paths" {
	dry --binary "$bin" --domain chat.example.com
	[ "$status" -eq 0 ]
	[ "$(plan_steps)" = "user dirs stage unit env token caddyfile validate binary start health health.public " ]
	[[ "$output" == *"plan  user             create the system user cairn (home /var/lib/cairn, no login shell)"* ]]
	[[ "$output" == *"make sure of /etc/cairn (0750 root:cairn) and /var/lib/cairn (0700 cairn)"* ]]
	[[ "$output" == *"install /usr/local/bin/cairn-caddy (v2.11.9-test)"* ]]
	[[ "$output" == *"write /etc/systemd/system/cairn-caddy.service"* ]]
	[[ "$output" == *"write /etc/cairn/cairn.env (0600, owner cairn): domain chat.example.com, embedded SQLite"* ]]
	[[ "$output" == *"write the operator token to /etc/cairn/operator-token (0600 root)"* ]]
	[[ "$output" == *"write /etc/cairn/Caddyfile"* ]]
	[[ "$output" == *"start cairn-caddy directly as cairn"*"pidfile /run/cairn-caddy.pid"* ]]
	[[ "$output" == *"http://127.0.0.1:9180/metrics"* ]]
	[[ "$output" == *"check https://chat.example.com:443/xrpc/_health"* ]]
	[[ "$output" == *"warn  check.init       PID 1 is not systemd"* ]]
	[[ "$output" == *"Dry run: nothing was changed."* ]]
}

@test "the defaults' plan under systemd enables and starts the unit" {
	mkdir -p "$host/run/systemd/system"
	dry --binary "$bin" --domain chat.example.com
	[ "$status" -eq 0 ]
	[[ "$output" == *"ok    check.init       systemd runs the service cairn-caddy"* ]]
	[[ "$output" == *"enable and (re)start cairn-caddy with systemd (/etc/systemd/system/cairn-caddy.service)"* ]]
}

@test "each supported OS passes and another is refused by name" {
	for os in 'debian|Debian GNU/Linux 12|' 'ubuntu|Ubuntu 24.04 LTS|debian' 'fedora|Fedora Linux 41|' 'rocky|Rocky Linux 9|rhel centos fedora'; do
		IFS='|' read -r id name like <<<"$os"
		fake_os "$id" "$name" "$like"
		dry --binary "$bin" --domain chat.example.com
		[ "$status" -eq 0 ] || { echo "$os: $output"; return 1; }
	done
	fake_os arch 'Arch Linux'
	dry --binary "$bin" --domain chat.example.com
	[ "$status" -eq 1 ]
	[[ "$output" == *"fail  check.os         Arch Linux (arch) is not supported: use Debian, Ubuntu or Fedora"* ]]
	[[ "$output" == *"a real run would stop here"* ]]
}

@test "busy ports are named with how to find and move them" {
	listening 80 443 9180
	dry --binary "$bin" --domain chat.example.com
	[ "$status" -eq 1 ]
	[[ "$output" == *"fail  check.port       port 80 is in use by another program (ss -ltnp 'sport = :80' names it)"* ]]
	[[ "$output" == *"port 443 is in use"* ]]
	[[ "$output" == *"port 9180 is in use"* ]]
	[[ "$output" == *"ok    check.port       port 2019 is free"* ]]
	# Moved ports are checked instead.
	dry --binary "$bin" --domain chat.example.com --http-port 8080 --https-port 8443 --metrics-addr 127.0.0.1:9181
	[ "$status" -eq 0 ]
}

@test "too little memory, and a limit above the host's memory, fail the check" {
	printf 'MemTotal:        262144 kB\n' >"$host/proc/meminfo"
	dry --binary "$bin" --domain chat.example.com
	[ "$status" -eq 1 ]
	[[ "$output" == *"fail  check.memory     256 MB of memory: cairn needs at least 400 MB"* ]]
	printf 'MemTotal:        1003456 kB\n' >"$host/proc/meminfo"
	dry --binary "$bin" --domain chat.example.com --memory-limit 2G
	[ "$status" -eq 1 ]
	[[ "$output" == *"memory limit 2G is more than this host's 979 MB"* ]]
}

@test "--force carries on past a failed check" {
	listening 80
	dry --binary "$bin" --domain chat.example.com --force
	[ "$status" -eq 0 ]
	[[ "$output" == *"1 check(s) failed; continuing because of --force"* ]]
}

@test "a missing or foreign binary is named" {
	dry --domain chat.example.com --bin-dir "$BATS_TEST_TMPDIR/bin"
	[ "$status" -eq 1 ]
	[[ "$output" == *"no binary: give --binary FILE"* ]]
	printf '#!/bin/sh\nexit 1\n' >"$BATS_TEST_TMPDIR/other"
	chmod +x "$BATS_TEST_TMPDIR/other"
	dry --domain chat.example.com --binary "$BATS_TEST_TMPDIR/other"
	[ "$status" -eq 1 ]
	[[ "$output" == *"does not run here"* ]]
}

@test "--config answers in key: value lines; flags override them" {
	cat >"$BATS_TEST_TMPDIR/cairn.yml" <<EOF
# comment
domain: chat.example.org
email: "ops@example.org"
database: sqlite
memory_limit: 768M
cpu_limit: 1
etc_dir: /srv/cairn/etc
binary: $bin
EOF
	dry --config "$BATS_TEST_TMPDIR/cairn.yml"
	[ "$status" -eq 0 ]
	[[ "$output" == *"write /srv/cairn/etc/cairn.env (0600, owner cairn): domain chat.example.org"* ]]
	[[ "$output" == *"MemoryMax=768M CPUQuota=100%"* ]]
	dry --config "$BATS_TEST_TMPDIR/cairn.yml" --domain override.example.org
	[[ "$output" == *"domain override.example.org"* ]]
}

# refused FLAG NAME CONTENT MESSAGE: a file NAME holding CONTENT, given
# with FLAG, is a usage error with MESSAGE.
refused() {
	printf '%b' "$3" >"$BATS_TEST_TMPDIR/$2"
	run sh "$script" --dry-run --domain chat.example.net "$1" "$BATS_TEST_TMPDIR/$2"
	[ "$status" -eq 2 ] || { echo "$2: status $status: $output"; return 1; }
	[[ "$output" == *"$4"* ]] || { echo "$2: want '$4' in: $output"; return 1; }
}

@test "--config errors name the file, line and key" {
	refused --config bad.yml 'domain: chat.example.org\ncolour: blue\n' "bad.yml:2: unknown key 'colour'"
	refused --config bad.yml 'domain: chat\n' "bad.yml:1: domain 'chat': a public host name has a dot"
	refused --config bad.yml 'just words\n' "bad.yml:1: want 'key: value'"
}

@test "--env answers from CAIRN_ variables and carries the others" {
	cat >"$BATS_TEST_TMPDIR/cairn.env" <<'EOF'
CAIRN_DOMAIN=chat.example.net
export CAIRN_DATABASE_URL='postgres://cairn:pw@db:5432/cairn'
CAIRN_LOG_LEVEL=info
EOF
	dry --env "$BATS_TEST_TMPDIR/cairn.env" --binary "$bin"
	[ "$status" -eq 0 ]
	[[ "$output" == *"domain chat.example.net, database postgres://cairn:***@db:5432/cairn, +1 variable(s) from --env"* ]]
	# The password is never printed.
	[[ "$output" != *"cairn:pw@"* ]]
	refused --env bad.env 'CAIRN_REDIS_URL=memcached://x\n' "bad.env:1: redis 'memcached://x': want none, local, or a redis://"
	refused --env bad.env 'not an assignment\n' "bad.env:1: want KEY=VALUE"
	refused --env bad.env "CAIRN_LOG_LEVEL=it's\n" "bad.env:1: CAIRN_LOG_LEVEL: no quote"
}

@test "local PostgreSQL and Redis are installed steps of the plan" {
	dry --binary "$bin" --domain chat.example.com --database local --redis local
	[ "$status" -eq 0 ]
	[ "$(plan_steps)" = "user dirs stage unit postgres redis env token caddyfile validate binary start health health.public " ]
	[[ "$output" == *"install PostgreSQL here and create the role and database cairn"* ]]
	[[ "$output" == *"redis redis://127.0.0.1:6379/0"* ]]
	# The generated database password is not printed either.
	[[ "$output" == *"database postgres://cairn:***@127.0.0.1:5432/cairn"* ]]
}

@test "a package install leaves the unit, Caddyfile and user to the package" {
	touch "$BATS_TEST_TMPDIR/cairn-caddy_1.0.0_amd64.deb"
	dry --package "$BATS_TEST_TMPDIR/cairn-caddy_1.0.0_amd64.deb" --domain chat.example.com
	[ "$status" -eq 0 ]
	[ "$(plan_steps)" = "package env token validate start health health.public " ]
	run sh "$script" --dry-run --yes --root "$host" --package "$BATS_TEST_TMPDIR/cairn-caddy_1.0.0_amd64.deb" --binary "$bin" --domain chat.example.com
	[ "$status" -eq 2 ]
	[[ "$output" == *"--binary and --package: give one"* ]]
}

@test "re-running on an installed host upgrades the binary and keeps the configuration" {
	etc="$BATS_TEST_TMPDIR/etc-cairn"
	bindir="$BATS_TEST_TMPDIR/bin"
	mkdir -p "$etc" "$bindir"
	printf "CAIRN_DOMAIN='chat.example.com'\nCAIRN_HTTPS_PORT='8443'\n" >"$etc/cairn.env"
	printf '#!/bin/sh\necho v2.11.8-old\n' >"$bindir/cairn-caddy"
	chmod +x "$bindir/cairn-caddy"
	# No domain is needed: the installed one is kept.
	dry --binary "$bin" --etc-dir "$etc" --bin-dir "$bindir"
	[ "$status" -eq 0 ]
	[[ "$output" == *"upgrade $bindir/cairn-caddy: v2.11.8-old -> v2.11.9-test (the old one kept as cairn-caddy.previous)"* ]]
	[[ "$output" == *"ok    config           keeping $etc/cairn.env and the Caddyfile (upgrade)"* ]]
	[[ "$output" == *"check https://chat.example.com:8443/xrpc/_health"* ]]
	# The new binary checks the configuration and the schema before it
	# replaces the old one.
	[[ "$(plan_steps)" == *"dirs stage unit caddyfile validate migrations binary start health health.public " ]]
	# Without --binary, the installed binary is re-installed (a repair).
	dry --etc-dir "$etc" --bin-dir "$bindir"
	[ "$status" -eq 0 ]
}

@test "--uninstall keeps data and configuration; --purge removes them" {
	etc="$BATS_TEST_TMPDIR/etc-cairn"
	data="$BATS_TEST_TMPDIR/data-cairn"
	bindir="$BATS_TEST_TMPDIR/bin"
	mkdir -p "$etc" "$data" "$bindir"
	touch "$bindir/cairn-caddy"
	dry --uninstall --etc-dir "$etc" --data-dir "$data" --bin-dir "$bindir"
	[ "$status" -eq 0 ]
	[[ "$output" == *"plan  binary           remove $bindir/cairn-caddy"* ]]
	[[ "$output" == *"skip  config           kept $etc (configuration; --purge removes it)"* ]]
	[[ "$output" == *"skip  data             kept $data (database, keys, certificates; --purge removes it)"* ]]
	[[ "$output" != *"plan  data"* ]]
	dry --uninstall --purge --etc-dir "$etc" --data-dir "$data" --bin-dir "$bindir"
	[ "$status" -eq 0 ]
	[[ "$output" == *"plan  config           remove $etc (configuration and secrets)"* ]]
	[[ "$output" == *"plan  data             remove $data (database, keys, certificates)"* ]]
	# A PostgreSQL database the script created is not dropped, only named.
	printf "CAIRN_DATABASE_URL='postgres://cairn:pw@127.0.0.1:5432/cairn?sslmode=disable'\n" >"$etc/cairn.env"
	dry --uninstall --purge --etc-dir "$etc" --data-dir "$data" --bin-dir "$bindir"
	[[ "$output" == *"the local PostgreSQL database cairn is kept: runuser -u postgres -- dropdb cairn"* ]]
	[[ "$output" != *"pw@"* ]]
}

@test "--purge needs --uninstall; --root needs --dry-run" {
	run sh "$script" --purge
	[ "$status" -eq 2 ]
	[[ "$output" == *"--purge goes with --uninstall"* ]]
	run sh "$script" --root /tmp --domain chat.example.com
	[ "$status" -eq 2 ]
	[[ "$output" == *"--root is for dry runs"* ]]
}

@test "Compose mode writes .env and runs docker compose, or says Docker is missing" {
	printf 'services: {}\n' >"$BATS_TEST_TMPDIR/compose.yml"
	PATH="$BATS_TEST_TMPDIR/nodocker:/usr/bin:/bin:/usr/sbin:/sbin"
	dry --mode compose --compose-file "$BATS_TEST_TMPDIR/compose.yml" --domain chat.example.com
	if command -v docker >/dev/null; then skip "docker is installed here"; fi
	[ "$status" -eq 1 ]
	[[ "$output" == *"fail  check.docker     Docker is missing: install docker.io and docker-compose-v2"* ]]
	[ "$(plan_steps)" = "env token compose start " ]
	[[ "$output" == *"write /etc/cairn/.env (0600 root): domain chat.example.com"* ]]
	[[ "$output" == *"docker compose up -d --wait"* ]]
}

@test "--json: every step and the summary are JSON objects, errors too" {
	dry --binary "$bin" --domain chat.example.com --json
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == '{"message_type":"step","step":"check.os","result":"ok","message":"Debian GNU/Linux 12 (bookworm)"}' ]]
	[[ "${lines[-1]}" == '{"message_type":"summary","result":"planned","mode":"native","service":"cairn-caddy","checks":"passed"}' ]]
	for l in "${lines[@]}"; do [[ "$l" == '{"message_type":'*'}' ]] || { echo "not JSON: $l"; return 1; }; done
	run sh "$script" --json --domain 'bad"name'
	[ "$status" -eq 2 ]
	[[ "$output" == '{"message_type":"error","error":"--domain: domain '"'"'bad\"name'"'"': a public host name has a dot'*'"exit_code":2}' ]]
}
