#!/bin/sh
# install.sh: install, upgrade or remove cairn-caddy on one Linux host.
#
# Native (the binary or a deb/rpm package, run by systemd) or Docker
# Compose (deploy/docker-compose.prod.yml). Interactive on a terminal, or
# driven by --config/--env/flags; --dry-run prints the plan and changes
# nothing; --json prints one JSON object per step. Re-running it upgrades
# and keeps the configuration. Everything is documented in docs/install.md,
# "Install script"; `install.sh --help` lists the options.
#
# POSIX sh (tested with dash and bash --posix); shellcheck-clean.
set -eu
umask 022

prog=install.sh
script_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

# ---------------------------------------------------------------- defaults

mode=native            # native | compose
action=install         # install | uninstall
binary=''              # --binary FILE
package=''             # --package FILE (.deb or .rpm)
unit_src=''            # --unit FILE (default: systemd/cairn-caddy.service beside this script)
caddyfile_src=''       # --caddyfile FILE (default: ../Caddyfile.example beside this script)
compose_src=''         # --compose-file FILE (default: docker-compose.prod.yml beside this script)
domain=''
email=''
database=sqlite        # sqlite | local | postgres://…
redis=none             # none | local | redis://…
memory_limit=none      # none | 768M | 1G …
cpu_limit=none         # none | 1 | 0.5 …
operator_token=generate # generate | none | a token of 32+ characters
http_port=80
https_port=443
admin_addr=localhost:2019
metrics_addr=127.0.0.1:9180
service=cairn-caddy
user=cairn
etc_dir=/etc/cairn
data_dir=/var/lib/cairn
bin_dir=/usr/local/bin
unit_dir=/etc/systemd/system
run_dir=/run
init=auto              # auto | systemd | direct
health_timeout=60
min_disk_mb=1024
min_memory_mb=400
root=''                # --root DIR: read host facts under DIR (tests; dry runs only)

json=0
dry_run=0
purge=0
force=0
assume_yes=0
config_file=''
env_file=''
failures=0
dry_run_failed=0       # a dry run whose checks failed exits 1 after the plan
extra_env=''           # KEY='value' lines from --env that cairn.env carries as they are
token_hash=''          # CAIRN_OPERATOR_TOKEN_HASH (from --env, or computed)
token_plain=''         # a generated or given token, shown once
new_version=''         # the version the new binary reports
unit_path=''           # the installed unit the service runs by
candidate=''           # the binary being installed, checked before it replaces the old

# ------------------------------------------------------------------ output

# json_string S: S as the inside of a JSON string.
json_string() {
	printf '%s' "$1" | tr -d '\000-\010\013\014\015\016-\037' |
		sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/	/\\t/g' |
		awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
}

# step ID RESULT MESSAGE: report one step. RESULT is ok, warn, fail, plan
# or skip. Text goes to stdout; with --json one NDJSON object per step.
step() {
	if [ "$json" = 1 ]; then
		printf '{"message_type":"step","step":"%s","result":"%s","message":"%s"}\n' \
			"$1" "$2" "$(json_string "$3")"
	else
		printf '%-5s %-16s %s\n' "$2" "$1" "$3"
	fi
	if [ "$2" = fail ]; then failures=$((failures + 1)); fi
	return 0
}

# die MESSAGE [CODE]: one actionable line, then exit (1, or 2 for usage).
die() {
	if [ "$json" = 1 ]; then
		printf '{"message_type":"error","error":"%s","exit_code":%s}\n' "$(json_string "$1")" "${2:-1}"
	else
		printf '%s: %s\n' "$prog" "$1" >&2
	fi
	exit "${2:-1}"
}
usage_error() { die "$1 (see $prog --help)" 2; }

# summary KEY=VALUE...: the final NDJSON object (--json only).
summary() {
	[ "$json" = 1 ] || return 0
	summary_out='{"message_type":"summary"'
	for summary_kv in "$@"; do
		summary_out="$summary_out,\"${summary_kv%%=*}\":\"$(json_string "${summary_kv#*=}")\""
	done
	printf '%s}\n' "$summary_out"
}

# say TEXT: a line for a person (not in --json output).
say() { if [ "$json" = 0 ]; then printf '%s\n' "$1"; fi; }

usage() {
	cat <<'EOF'
Usage: install.sh [options]          install or upgrade cairn-caddy
       install.sh --uninstall [--purge]

Without --config, --env or --yes on a terminal, a wizard asks for the
domain, ACME email, database, Redis, resource limits and operator token.
Re-running upgrades the program and keeps the configuration.

What to install:
  --binary FILE          the cairn-caddy binary (native mode)
  --package FILE         a cairn-caddy .deb or .rpm (native mode)
  --mode native|compose  systemd service (default) or Docker Compose
  --unit FILE            systemd unit template (default: systemd/cairn-caddy.service here)
  --caddyfile FILE       Caddyfile template (default: ../Caddyfile.example here)
  --compose-file FILE    Compose file (default: docker-compose.prod.yml here)

Answers (also keys of --config; see docs/install.md):
  --domain NAME          public host name (localhost for a trial with a local CA)
  --email ADDRESS        ACME account email (optional)
  --database DB          sqlite (default), local (install PostgreSQL here) or postgres://URL
  --redis R              none (default), local (install Redis here) or redis://URL
  --memory-limit SIZE    none (default), or e.g. 768M, 2G
  --cpu-limit CPUS       none (default), or e.g. 1, 0.5
  --operator-token T     generate (default), none, or a token of 32+ characters
  --http-port N --https-port N --admin-addr HOST:PORT --metrics-addr HOST:PORT

Where (the defaults suit a host; tests move them):
  --service NAME --user NAME --etc-dir DIR --data-dir DIR --bin-dir DIR
  --unit-dir DIR --run-dir DIR
  --init auto|systemd|direct   how to run the service (auto: systemd when PID 1 is)

Behaviour:
  --config FILE          answers as "key: value" lines
  --env FILE             KEY=VALUE lines for cairn.env (CAIRN_DOMAIN etc. answer too)
  --yes, -y              never ask; missing answers are an error
  --dry-run              print the checks and the plan; change nothing
  --json                 one JSON object per line for every step and result
  --force                continue although a prerequisite check failed
  --health-timeout SECS  how long to wait for the health check (default 60)
  --uninstall            stop and remove the program; keep data and configuration
  --purge                with --uninstall: remove data, configuration and the user too
  --root DIR             read /etc/os-release and /proc under DIR (tests; dry runs only)
  --help
EOF
}

# ---------------------------------------------------------------- validation

# Each valid_X VALUE returns 0, or sets $why and returns 1.
why=''

# matches VALUE ERE: VALUE (one line) matches the extended regex.
matches() { printf '%s\n' "$1" | grep -Eq "$2"; }

# want VALUE ERE WHY: VALUE matches ERE, or $why is WHY.
want() { matches "$1" "$2" || { why=$3; return 1; }; }

valid_domain() {
	if [ "$1" = localhost ]; then return 0; fi
	if [ ${#1} -gt 253 ]; then why="longer than 253 characters"; return 1; fi
	case $1 in
	*.*) ;;
	*) why="a public host name has a dot (chat.example.com), or use localhost for a trial"; return 1 ;;
	esac
	want "$1" '^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$' "not a host name (lower-case letters, digits, hyphens and dots, like chat.example.com)" || return 1
}

valid_email() {
	if [ -z "$1" ]; then return 0; fi
	want "$1" '^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$' "not an email address (name@example.com), or leave it empty" || return 1
}

# valid_url URL: a URL that cairn.env can carry.
valid_url() {
	valid_env_value "$1" || return 1
	if matches "$1" '[[:space:]]'; then why="a URL has no spaces"; return 1; fi
}

valid_database() {
	case $1 in
	sqlite | local) return 0 ;;
	postgres://*@* | postgresql://*@* | postgres://?* | postgresql://?*) ;;
	*) why="want sqlite, local, or a postgres://user:password@host/db URL"; return 1 ;;
	esac
	valid_url "$1"
}

valid_redis() {
	case $1 in
	none | local) return 0 ;;
	redis://?* | rediss://?*) ;;
	*) why="want none, local, or a redis://host:6379/0 URL"; return 1 ;;
	esac
	valid_url "$1"
}

valid_memory_limit() {
	if [ "$1" = none ]; then return 0; fi
	want "$1" '^[1-9][0-9]*[MG]$' "want none, or a size like 768M or 2G" || return 1
	if [ "$(size_mb "$1")" -lt 256 ]; then why="below 256M the gateway cannot run"; return 1; fi
}

# size_mb 768M|2G: the size in MiB.
size_mb() {
	case $1 in
	*G) echo $((${1%G} * 1024)) ;;
	*M) echo "${1%M}" ;;
	esac
}

valid_cpu_limit() {
	if [ "$1" = none ]; then return 0; fi
	if ! matches "$1" '^([1-9][0-9]*(\.[0-9]{1,2})?|0\.[0-9]{1,2})$' || [ "$(cpu_percent "$1")" -lt 10 ]; then
		why="want none, or a number of CPUs like 1, 0.5 or 2 (at least 0.1)"
		return 1
	fi
}

# cpu_percent 1.5: 150 (systemd's CPUQuota).
cpu_percent() {
	cpu_int=${1%%.*}
	case $1 in
	*.*) cpu_frac=${1#*.}; [ ${#cpu_frac} = 1 ] && cpu_frac="${cpu_frac}0" ;;
	*) cpu_frac=00 ;;
	esac
	echo $((cpu_int * 100 + ${cpu_frac#0}))
}

valid_operator_token() {
	case $1 in
	generate | none) return 0 ;;
	esac
	want "$1" '^[A-Za-z0-9_-]{32,256}$' "want generate, none, or a token of 32 to 256 letters, digits, '-' and '_'" || return 1
}

valid_port() {
	if ! matches "$1" '^[1-9][0-9]{0,4}$' || [ "$1" -gt 65535 ]; then
		why="want a port number from 1 to 65535"
		return 1
	fi
}

valid_addr() {
	case $1 in
	*:*) valid_port "${1##*:}" || { why="want host:port, $why"; return 1; } ;;
	*) why="want host:port (127.0.0.1:9180)"; return 1 ;;
	esac
	if matches "${1%:*}" "[[:space:]'\"\\\\]"; then why="want host:port"; return 1; fi
}

valid_name() {
	want "$1" '^[a-z_][a-z0-9_-]{0,31}$' "want a lower-case name of up to 32 letters, digits, '-' and '_'" || return 1
}

valid_dir() {
	case $1 in
	/*) ;;
	*) why="want an absolute path"; return 1 ;;
	esac
	if matches "$1" "[[:space:]'\"\\\\\$\`]"; then why="no spaces or quotes in paths"; return 1; fi
	if [ "$1" = / ]; then why="not the root directory"; return 1; fi
}

# valid_own_dir DIR: a directory that is cairn's alone, which --purge
# deletes whole: its path must name cairn, so that a slip such as
# --etc-dir /etc cannot delete a system directory.
valid_own_dir() {
	valid_dir "$1" || return 1
	case $1 in
	*cairn*) ;;
	*) why="the path must contain 'cairn' (--purge deletes this directory whole)"; return 1 ;;
	esac
}

# valid_env_value V: V can sit single-quoted in cairn.env, which systemd
# reads and the direct-start fallback sources.
valid_env_value() {
	case $1 in
	*"'"* | *\\*) why="no quote (') or backslash (\\); percent-encode them in URLs"; return 1 ;;
	esac
	if [ "$(printf '%s' "$1" | wc -l)" -gt 0 ]; then why="no line breaks"; return 1; fi
}

valid_mode() { case $1 in native | compose) ;; *) why="want native or compose"; return 1 ;; esac; }
valid_init() { case $1 in auto | systemd | direct) ;; *) why="want auto, systemd or direct"; return 1 ;; esac; }
valid_seconds() { want "$1" '^[1-9][0-9]{0,3}$' "want a number of seconds"; }
valid_file() { [ -f "$1" ] || { why="no such file"; return 1; }; }
valid_any() { return 0; }

# validator KEY: the valid_ function for a key; fails for an unknown key.
validator() {
	case $1 in
	domain | email | database | redis | memory_limit | cpu_limit | operator_token | mode | init) echo "valid_$1" ;;
	http_port | https_port) echo valid_port ;;
	admin_addr | metrics_addr) echo valid_addr ;;
	service | user) echo valid_name ;;
	etc_dir | data_dir) echo valid_own_dir ;;
	bin_dir | unit_dir | run_dir) echo valid_dir ;;
	binary | package | unit | caddyfile | compose_file) echo valid_file ;;
	health_timeout) echo valid_seconds ;;
	*) return 1 ;;
	esac
}

# set_key KEY VALUE WHERE: validate and set one answer; WHERE names its
# source for the error.
set_key() {
	set_key_v=$(validator "$1") || usage_error "$3: unknown key '$1'"
	if ! "$set_key_v" "$2"; then usage_error "$3: $1 '$2': $why"; fi
	case $1 in
	unit) unit_src=$2 ;;
	caddyfile) caddyfile_src=$2 ;;
	compose_file) compose_src=$2 ;;
	*) eval "$1=\$2" ;;
	esac
}

# ------------------------------------------------------------------ inputs

# trim S: S without surrounding blanks and one pair of surrounding quotes.
trim() {
	trim_s=$(printf '%s' "$1" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
	case $trim_s in
	\"*\") trim_s=${trim_s#\"}; trim_s=${trim_s%\"} ;;
	\'*\') trim_s=${trim_s#\'}; trim_s=${trim_s%\'} ;;
	esac
	printf '%s' "$trim_s"
}

# load_config FILE: "key: value" lines; # starts a comment line.
load_config() {
	[ -r "$1" ] || usage_error "--config $1: cannot read it"
	load_n=0
	while IFS= read -r load_line || [ -n "$load_line" ]; do
		load_n=$((load_n + 1))
		case $(trim "$load_line") in '' | '#'*) continue ;; esac
		case $load_line in
		*:*) ;;
		*) usage_error "$1:$load_n: want 'key: value'" ;;
		esac
		load_key=$(trim "${load_line%%:*}")
		load_val=$(trim "${load_line#*:}")
		set_key "$load_key" "$load_val" "$1:$load_n"
	done <"$1"
}

# load_env FILE: KEY=VALUE lines. The CAIRN_ variables the wizard asks
# about answer its questions; every other line goes into cairn.env as it is.
load_env() {
	[ -r "$1" ] || usage_error "--env $1: cannot read it"
	load_n=0
	while IFS= read -r load_line || [ -n "$load_line" ]; do
		load_n=$((load_n + 1))
		case $(trim "$load_line") in '' | '#'*) continue ;; esac
		load_line=$(trim "$load_line")
		load_line=${load_line#export }
		load_key=${load_line%%=*}
		if [ "$load_key" = "$load_line" ] || ! matches "$load_key" '^[A-Za-z_][A-Za-z0-9_]*$'; then
			usage_error "$1:$load_n: want KEY=VALUE"
		fi
		load_val=$(trim "${load_line#*=}")
		case $load_key in
		CAIRN_DOMAIN) set_key domain "$load_val" "$1:$load_n" ;;
		CAIRN_ACME_EMAIL) set_key email "$load_val" "$1:$load_n" ;;
		CAIRN_DATABASE_URL) [ -z "$load_val" ] || set_key database "$load_val" "$1:$load_n" ;;
		CAIRN_REDIS_URL) [ -z "$load_val" ] || set_key redis "$load_val" "$1:$load_n" ;;
		CAIRN_HTTP_PORT) set_key http_port "$load_val" "$1:$load_n" ;;
		CAIRN_HTTPS_PORT) set_key https_port "$load_val" "$1:$load_n" ;;
		CAIRN_ADMIN_ADDR) set_key admin_addr "$load_val" "$1:$load_n" ;;
		CAIRN_METRICS_ADDR) set_key metrics_addr "$load_val" "$1:$load_n" ;;
		CAIRN_OPERATOR_TOKEN_HASH)
			matches "$load_val" '^sha256:[0-9a-f]{64}$' ||
				usage_error "$1:$load_n: CAIRN_OPERATOR_TOKEN_HASH: want sha256:<64 hex digits> (cairn-caddy operator-token)"
			token_hash=$load_val operator_token=none
			;;
		*)
			valid_env_value "$load_val" || usage_error "$1:$load_n: $load_key: $why"
			extra_env="$extra_env$load_key='$load_val'
"
			;;
		esac
	done <"$1"
}

# flag_value NAME ARGC VALUE: the value of --NAME, or a usage error.
need_value() { [ "$2" -ge 2 ] || usage_error "--$1 needs a value"; }

parse_args() {
	while [ $# -gt 0 ]; do
		case $1 in
		--*=*) parse_flag=${1%%=*} parse_val=${1#*=}; shift; set -- "$parse_flag" "$parse_val" "$@" ;;
		esac
		case $1 in
		--help | -h) usage; exit 0 ;;
		--json) json=1 ;;
		--dry-run) dry_run=1 ;;
		--uninstall) action=uninstall ;;
		--purge) purge=1 ;;
		--force) force=1 ;;
		--yes | -y) assume_yes=1 ;;
		--config) need_value "${1#--}" $#; config_file=$2; shift ;;
		--env) need_value "${1#--}" $#; env_file=$2; shift ;;
		--root) need_value "${1#--}" $#; root=$2; shift ;;
		--*)
			parse_key=$(printf '%s' "${1#--}" | tr - _)
			validator "$parse_key" >/dev/null || usage_error "unknown option $1"
			need_value "${1#--}" $#
			set_key "$parse_key" "$2" "$1"
			shift
			;;
		*) usage_error "unexpected argument '$1'" ;;
		esac
		shift
	done
}

# --------------------------------------------------------------- host facts

# os_field NAME: a field of /etc/os-release, unquoted.
os_field() {
	sed -n "s/^$1=//p" "$root/etc/os-release" 2>/dev/null | head -n 1 | sed -e 's/^"//' -e 's/"$//' -e "s/^'//" -e "s/'\$//"
}

# port_listening PORT: a TCP socket listens on PORT (IPv4 or IPv6).
port_listening() {
	port_hex=$(printf '%04X' "$1")
	cat "$root/proc/net/tcp" "$root/proc/net/tcp6" 2>/dev/null |
		awk -v p=":$port_hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }'
}

# use_systemd: whether the service runs under systemd.
use_systemd() {
	case $init in
	systemd) return 0 ;;
	direct) return 1 ;;
	esac
	[ -d "$root/run/systemd/system" ]
}

have() { command -v "$1" >/dev/null 2>&1; }

installed() { [ -f "$etc_dir/cairn.env" ] || [ -f "$etc_dir/.env" ]; }

pidfile() { echo "$run_dir/$service.pid"; }
logfile() { echo "$data_dir/$service.log"; }

# direct_pid: the pid of a directly started service that still runs.
direct_pid() {
	[ -r "$(pidfile)" ] || return 1
	direct_p=$(cat "$(pidfile)")
	case $direct_p in '' | *[!0-9]*) return 1 ;; esac
	[ -d "/proc/$direct_p" ] || return 1
	# The pid must still be our binary, not a recycled pid.
	direct_exe=$(readlink "/proc/$direct_p/exe" 2>/dev/null || true)
	case ${direct_exe% (deleted)} in
	"$bin_dir/cairn-caddy") echo "$direct_p" ;;
	*) return 1 ;;
	esac
}

service_running() {
	if use_systemd && have systemctl; then
		systemctl is-active --quiet "$service" 2>/dev/null && return 0
	fi
	direct_pid >/dev/null
}

# ------------------------------------------------------------------- checks

check_os() {
	os_id=$(os_field ID)
	os_like=$(os_field ID_LIKE)
	os_name=$(os_field PRETTY_NAME)
	if [ -z "$os_id" ]; then
		step check.os fail "no $root/etc/os-release: this script supports Debian, Ubuntu and Fedora"
		return
	fi
	case " $os_id $os_like " in
	*" debian "* | *" ubuntu "* | *" fedora "* | *" rhel "*)
		step check.os ok "$os_name"
		;;
	*) step check.os fail "$os_name ($os_id) is not supported: use Debian, Ubuntu or Fedora, or install by hand (docs/install.md)" ;;
	esac
}

check_root() {
	if [ "$(id -u)" = 0 ]; then
		step check.root ok "running as root"
	elif [ "$dry_run" = 1 ]; then
		step check.root warn "not root: a real run needs root (sudo sh install.sh …)"
	else
		step check.root fail "not root: run it as root (sudo sh install.sh …)"
	fi
}

check_init() {
	if [ "$mode" = compose ]; then
		if have docker && docker compose version >/dev/null 2>&1; then
			step check.docker ok "$(docker compose version 2>/dev/null | head -n 1)"
		elif have docker; then
			step check.docker fail "Docker has no Compose plugin: install docker-compose-plugin (or docker-compose-v2 on Debian/Ubuntu)"
		else
			step check.docker fail "Docker is missing: install docker.io and docker-compose-v2 (Debian/Ubuntu) or moby-engine and docker-compose (Fedora), or use --mode native"
		fi
	elif use_systemd; then
		step check.init ok "systemd runs the service $service"
	else
		if have setpriv; then
			step check.init warn "PID 1 is not systemd: the service is started directly (setpriv, pidfile $(pidfile)) and does not start at boot"
		else
			step check.init fail "PID 1 is not systemd and setpriv (util-linux) is missing: install util-linux or run under systemd"
		fi
	fi
}

check_ports() {
	for check_p in "$http_port" "$https_port" "${admin_addr##*:}" "${metrics_addr##*:}"; do
		if ! port_listening "$check_p"; then
			step check.port ok "port $check_p is free"
		elif [ "$action" = install ] && [ "$dry_run" = 0 ] && installed && service_running; then
			step check.port ok "port $check_p is held by $service, which the upgrade restarts"
		elif [ "$action" = install ] && [ "$dry_run" = 1 ] && installed; then
			step check.port ok "port $check_p is in use (by $service, if it runs: the upgrade restarts it)"
		else
			step check.port fail "port $check_p is in use by another program (ss -ltnp 'sport = :$check_p' names it): stop it, or pick another port (--http-port, --https-port, --admin-addr, --metrics-addr)"
		fi
	done
}

check_disk() {
	disk_dir=$data_dir
	while [ ! -d "$root$disk_dir" ] && [ "$disk_dir" != / ]; do disk_dir=$(dirname "$disk_dir"); done
	disk_mb=$(df -Pk "$root$disk_dir" 2>/dev/null | awk 'NR == 2 { print int($4 / 1024) }')
	if [ -z "$disk_mb" ]; then
		step check.disk warn "could not measure the free space under $disk_dir"
	elif [ "$disk_mb" -lt "$min_disk_mb" ]; then
		step check.disk fail "only $disk_mb MB free under $disk_dir: cairn needs at least $min_disk_mb MB for the program, database and backups"
	else
		step check.disk ok "$disk_mb MB free under $disk_dir"
	fi
}

check_memory() {
	mem_mb=$(awk '/^MemTotal:/ { print int($2 / 1024) }' "$root/proc/meminfo" 2>/dev/null)
	if [ -z "$mem_mb" ]; then
		step check.memory warn "could not read $root/proc/meminfo"
	elif [ "$mem_mb" -lt "$min_memory_mb" ]; then
		step check.memory fail "$mem_mb MB of memory: cairn needs at least $min_memory_mb MB (a 1 GB VPS is enough for a small instance)"
	elif [ "$memory_limit" != none ] && [ "$(size_mb "$memory_limit")" -gt "$mem_mb" ]; then
		step check.memory fail "memory limit $memory_limit is more than this host's $mem_mb MB"
	else
		step check.memory ok "$mem_mb MB"
	fi
}

check_tools() {
	check_missing=''
	check_want='install sed awk grep'
	if [ "$mode" = native ]; then check_want="$check_want useradd groupadd userdel setpriv"; fi
	case $package in
	*.deb) check_want="$check_want dpkg" ;;
	*.rpm) check_want="$check_want rpm" ;;
	esac
	for check_t in $check_want; do have "$check_t" || check_missing="$check_missing $check_t"; done
	if ! have sha256sum && ! have openssl; then check_missing="$check_missing sha256sum"; fi
	if [ -n "$check_missing" ]; then
		step check.tools fail "missing commands:$check_missing (coreutils, passwd or shadow-utils)"
	else
		step check.tools ok "commands present"
	fi
}

check_inputs() {
	if [ "$mode" = compose ]; then
		compose_src=${compose_src:-$script_dir/docker-compose.prod.yml}
		if [ -f "$compose_src" ]; then step check.input ok "Compose file $compose_src"; else step check.input fail "no Compose file at $compose_src: give --compose-file"; fi
		return
	fi
	if [ -n "$package" ]; then
		case $package in
		*.deb | *.rpm) step check.input ok "package $package" ;;
		*) step check.input fail "--package $package: want a .deb or .rpm file" ;;
		esac
		return
	fi
	if [ -z "$binary" ]; then
		if [ -x "$(dirname "$script_dir")/cairn-caddy" ]; then
			binary=$(dirname "$script_dir")/cairn-caddy
		elif installed && [ -x "$bin_dir/cairn-caddy" ]; then
			binary=$bin_dir/cairn-caddy
		fi
	fi
	if [ -z "$binary" ]; then
		step check.input fail "no binary: give --binary FILE (a release's cairn-caddy, or make build-go) or --package FILE"
	elif [ ! -x "$binary" ]; then
		step check.input fail "--binary $binary is not executable (chmod +x it)"
	elif ! new_version=$("$binary" version 2>/dev/null | head -n 1) || [ -z "$new_version" ]; then
		step check.input fail "--binary $binary does not run here ('$binary version' fails): wrong architecture or not cairn-caddy"
	else
		step check.input ok "binary $binary ($new_version)"
	fi
	unit_src=${unit_src:-$script_dir/systemd/cairn-caddy.service}
	caddyfile_src=${caddyfile_src:-$(dirname "$script_dir")/Caddyfile.example}
	[ -f "$unit_src" ] || step check.input fail "no systemd unit template at $unit_src: give --unit"
	[ -f "$caddyfile_src" ] || step check.input fail "no Caddyfile template at $caddyfile_src: give --caddyfile"
}

run_checks() {
	check_os
	check_root
	check_init
	check_tools
	if [ "$action" = install ]; then
		check_inputs
		check_ports
		check_disk
		check_memory
	fi
	if [ "$failures" -gt 0 ]; then
		if [ "$force" = 1 ]; then
			step check.summary warn "$failures check(s) failed; continuing because of --force"
			failures=0
		elif [ "$dry_run" = 1 ]; then
			step check.summary fail "$failures check(s) failed: a real run would stop here"
			dry_run_failed=1
		else
			die "$failures prerequisite check(s) failed (above); fix them, or --force"
		fi
	fi
}

# ------------------------------------------------------------------ wizard

# ask KEY QUESTION DEFAULT: ask until the answer is valid.
ask() {
	ask_v=$(validator "$1")
	while :; do
		if [ -n "$3" ]; then printf '%s [%s]: ' "$2" "$3" >&2; else printf '%s: ' "$2" >&2; fi
		IFS= read -r ask_answer || die "no answer to '$2' (end of input)"
		ask_answer=$(trim "$ask_answer")
		[ -n "$ask_answer" ] || ask_answer=$3
		if [ -z "$ask_answer" ] && [ "$1" != email ]; then
			printf '  an answer is needed\n' >&2
			continue
		fi
		if "$ask_v" "$ask_answer"; then
			eval "$1=\$ask_answer"
			return 0
		fi
		printf '  not valid: %s\n' "$why" >&2
	done
}

wizard() {
	printf 'cairn-caddy installer. Enter takes the [default]; Ctrl-C stops without changing anything.\n\n' >&2
	if have docker && [ -z "$binary$package" ]; then
		ask mode "Install mode: native (systemd) or compose (Docker)" "$mode"
	fi
	ask domain "Domain clients will use (chat.example.com; localhost for a trial)" "$domain"
	ask email "Email for Let's Encrypt (optional)" "$email"
	ask database "Database: sqlite (embedded), local (install PostgreSQL here) or a postgres:// URL" "$database"
	ask redis "Redis: none, local (install Redis here) or a redis:// URL" "$redis"
	ask memory_limit "Memory limit: none or a size (768M, 2G)" "$memory_limit"
	ask cpu_limit "CPU limit: none or CPUs (1, 0.5)" "$cpu_limit"
	ask operator_token "Operator API token: generate, none, or paste a token" "$operator_token"
	printf '\n  domain %s, email %s, database %s, redis %s, memory %s, cpu %s, token %s\n' \
		"$domain" "${email:-none}" "$(redact_url "$database")" "$(redact_url "$redis")" "$memory_limit" "$cpu_limit" \
		"$(case $operator_token in generate | none) echo "$operator_token" ;; *) echo given ;; esac)" >&2
	while :; do
		printf 'Install with these answers? [Y/n]: ' >&2
		IFS= read -r wizard_ok || die "no answer (end of input)"
		case $wizard_ok in
		'' | y | Y | yes) break ;;
		n | N | no) die "stopped; nothing was changed" ;;
		*) printf '  answer y or n\n' >&2 ;;
		esac
	done
}

# redact_url URL: URL without its password, for output.
redact_url() { printf '%s' "$1" | sed 's#^\([a-z]*://[^:/@]*\):[^@]*@#\1:***@#'; }

# ----------------------------------------------------------------- actions

# act ID DESCRIPTION CMD...: in a dry run, report the step as planned;
# otherwise run CMD and report its result (a failure stops the install).
act() {
	act_id=$1 act_desc=$2
	shift 2
	if [ "$dry_run" = 1 ]; then
		step "$act_id" plan "$act_desc"
		return 0
	fi
	if act_out=$("$@" 2>&1); then
		step "$act_id" ok "$act_desc"
	else
		step "$act_id" fail "$act_desc: $(printf '%s' "$act_out" | tail -n 3 | tr '\n' ' ')"
		die "step $act_id failed; the install stopped there (re-run after fixing it)$(rollback_hint "$act_id")"
	fi
}

# rollback_hint STEP: after an upgrade whose new binary does not start,
# how to go back.
rollback_hint() {
	case $1 in
	start | health)
		if [ "${upgrade:-0}" = 1 ] && [ -f "$bin_dir/cairn-caddy.previous" ]; then
			printf '; to go back to the previous binary: sh %s --binary %s' "$0" "$bin_dir/cairn-caddy.previous"
		fi
		;;
	esac
}

random_token() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }
sha256_hex() {
	if have sha256sum; then printf '%s' "$1" | sha256sum | cut -d' ' -f1; else printf '%s' "$1" | openssl dgst -sha256 -r | cut -d' ' -f1; fi
}

# render_env: cairn.env's content (systemd EnvironmentFile syntax, every
# value single-quoted, so the direct-start fallback can source it).
render_env() {
	printf '# cairn-caddy environment, written by install.sh. Every variable is in\n'
	printf '# Caddyfile.example and docs/configuration.md. Edit, then restart the service.\n'
	printf "CAIRN_DOMAIN='%s'\n" "$domain"
	if [ -n "$email" ]; then printf "CAIRN_ACME_EMAIL='%s'\n" "$email"; fi
	case $database in sqlite) ;; *) printf "CAIRN_DATABASE_URL='%s'\n" "$database_url" ;; esac
	case $redis in none) ;; *) printf "CAIRN_REDIS_URL='%s'\n" "$redis_url" ;; esac
	printf "CAIRN_HTTP_PORT='%s'\nCAIRN_HTTPS_PORT='%s'\n" "$http_port" "$https_port"
	printf "CAIRN_ADMIN_ADDR='%s'\nCAIRN_METRICS_ADDR='%s'\nCAIRN_METRICS_BIND='%s'\n" "$admin_addr" "$metrics_addr" "${metrics_addr%:*}"
	if [ -n "$token_hash" ]; then printf "CAIRN_OPERATOR_TOKEN_HASH='%s'\n" "$token_hash"; fi
	if [ "$memory_limit" != none ]; then
		# The Go runtime collects harder as it nears this, below the hard limit.
		printf "GOMEMLIMIT='%sMiB'\n" $(($(size_mb "$memory_limit") * 9 / 10))
	fi
	printf '%s' "$extra_env"
}

# render_unit: the unit template with this install's paths and names.
render_unit() {
	sed -e "s#/usr/local/bin/cairn-caddy#$bin_dir/cairn-caddy#g" \
		-e "s#/etc/cairn/#$etc_dir/#g" \
		-e "s#/var/lib/cairn#$data_dir#g" \
		-e "s#^User=.*#User=$user#" -e "s#^Group=.*#Group=$user#" \
		"$unit_src" | case $data_dir in
	/var/lib/*/* | /var/lib/) cat ;; # systemd's StateDirectory is one level under /var/lib
	/var/lib/*) sed "s#^StateDirectory=.*#StateDirectory=${data_dir#/var/lib/}#" ;;
	*) sed '/^StateDirectory/d' ;;
	esac
}

render_limits() {
	printf '# Resource limits from install.sh (--memory-limit, --cpu-limit).\n[Service]\n'
	if [ "$memory_limit" != none ]; then printf 'MemoryMax=%s\n' "$memory_limit"; fi
	if [ "$cpu_limit" != none ]; then printf 'CPUQuota=%s%%\n' "$(cpu_percent "$cpu_limit")"; fi
}

# write_file PATH MODE OWNER: stdin to PATH, atomically, with MODE and OWNER.
write_file() {
	write_tmp=$(mktemp "$(dirname "$1")/.install.XXXXXX") || return 1
	if cat >"$write_tmp" && chmod "$2" "$write_tmp" && chown "$3" "$write_tmp" && mv -f "$write_tmp" "$1"; then
		return 0
	fi
	rm -f "$write_tmp"
	return 1
}

create_user() {
	getent group "$user" >/dev/null || groupadd --system "$user" || return 1
	useradd --system --gid "$user" --home-dir "$data_dir" --no-create-home \
		--shell "$(command -v nologin || echo /usr/sbin/nologin)" --comment "cairn-caddy service (install.sh)" "$user"
}

make_dirs() {
	install -d -m 0750 -o root -g "$user" "$etc_dir" &&
		install -d -m 0700 -o "$user" -g "$user" "$data_dir" "$data_dir/config" &&
		install -d -m 0755 "$bin_dir" "$run_dir"
}

# stage_binary: the new binary beside the old, as cairn-caddy.new, where
# it checks the configuration and the database before it replaces anything.
stage_binary() { install -m 0755 "$binary" "$bin_dir/cairn-caddy.new"; }

# install_binary: the staged binary renamed over the old one, which stays
# as cairn-caddy.previous for a rollback.
install_binary() {
	if [ -f "$bin_dir/cairn-caddy" ] && ! cmp -s "$bin_dir/cairn-caddy" "$bin_dir/cairn-caddy.new"; then
		cp -p "$bin_dir/cairn-caddy" "$bin_dir/cairn-caddy.previous" || return 1
	fi
	mv -f "$bin_dir/cairn-caddy.new" "$bin_dir/cairn-caddy"
}

install_caddyfile() {
	if [ -f "$etc_dir/Caddyfile" ]; then
		if cmp -s "$caddyfile_src" "$etc_dir/Caddyfile"; then return 0; fi
		install -m 0640 -o root -g "$user" "$caddyfile_src" "$etc_dir/Caddyfile.new"
	else
		install -m 0640 -o root -g "$user" "$caddyfile_src" "$etc_dir/Caddyfile"
	fi
}

install_package() {
	case $package in
	*.deb)
		if have apt-get; then
			# confold: an edited cairn.env or Caddyfile is kept, never asked about.
			# The lock timeout waits out apt runs already going (a fresh
			# VPS's unattended-upgrades) instead of failing at once.
			DEBIAN_FRONTEND=noninteractive apt-get install -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confold \
				"$(cd "$(dirname "$package")" && pwd)/$(basename "$package")"
		else
			dpkg -i --force-confold "$package"
		fi
		;;
	*.rpm) if have dnf; then dnf install -y "$package"; else rpm -Uvh --replacepkgs "$package"; fi ;;
	esac
}

# pkg_install NAME...: install distribution packages.
pkg_install() {
	if have apt-get; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=600 "$@"
	elif have dnf; then
		dnf install -y -q "$@"
	else
		echo "no apt-get or dnf to install $*" >&2
		return 1
	fi
}

setup_local_postgres() {
	if have apt-get; then pkg_install postgresql || return 1; else
		pkg_install postgresql-server || return 1
		[ -f /var/lib/pgsql/data/PG_VERSION ] || postgresql-setup --initdb || return 1
	fi
	if have systemctl && [ -d /run/systemd/system ]; then systemctl enable --now postgresql || return 1; fi
	# The role and database are created once; the password is only in cairn.env.
	if ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$user'" | grep -q 1; then
		runuser -u postgres -- psql -qc "CREATE ROLE \"$user\" LOGIN PASSWORD '$db_password'" || return 1
	fi
	if ! runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$user'" | grep -q 1; then
		runuser -u postgres -- createdb -O "$user" "$user" || return 1
	fi
}

setup_local_redis() {
	if have apt-get; then pkg_install redis-server || return 1; else pkg_install redis || return 1; fi
	if have systemctl && [ -d /run/systemd/system ]; then
		systemctl enable --now redis-server 2>/dev/null || systemctl enable --now redis
	fi
}

validate_config() {
	(service_exec "$candidate" validate --config "$etc_dir/Caddyfile" --adapter caddyfile)
}

# check_migrations: on an upgrade, what the new binary will do to the
# database when it starts; a database it cannot use (migrated by a newer
# binary: a rollback too far) stops the run before the service is touched.
check_migrations() {
	if [ "$dry_run" = 1 ]; then
		step migrations plan "check the database schema with the new binary (cairn-caddy migrate status)"
		return 0
	fi
	# `migrate status` exits 0 on a database it refuses, and says so on a
	# "refused:" line.
	if mig_out=$( (service_exec "$candidate" migrate status --config "$etc_dir/Caddyfile" --adapter caddyfile) 2>&1) &&
		! printf '%s\n' "$mig_out" | grep -q '^refused:'; then
		mig_schema=$(printf '%s\n' "$mig_out" | sed -n 's/^schema: *//p')
		mig_pending=$(printf '%s\n' "$mig_out" | grep -c '^pending:' || true)
		if [ "$mig_pending" -gt 0 ]; then
			step migrations ok "$mig_schema: $mig_pending migration(s) run when it starts (take a backup first if you have none: docs/backup.md)"
		else
			step migrations ok "$mig_schema: up to date"
		fi
		return 0
	fi
	if [ -z "$package" ]; then rm -f "$bin_dir/cairn-caddy.new"; fi
	step migrations fail "$(printf '%s\n' "$mig_out" | sed -n 's/^refused: *//p' | grep . || printf '%s' "$mig_out" | tail -n 2 | tr '\n' ' ')"
	die "the new binary cannot use this database (above); the service was not touched. A rollback past a schema migration needs the backup taken before the upgrade (docs/install.md)"
}

systemd_start() {
	systemctl daemon-reload && systemctl enable "$service" && systemctl restart "$service"
}

# unit_value KEY: the last KEY= line of the installed unit.
unit_value() { sed -n "s/^$1=//p" "$unit_path" | tail -n 1; }

# service_exec CMD...: replace this (sub)shell by CMD run the way systemd
# runs the installed unit's ExecStart: as its User, with no capability but
# binding low ports (AmbientCapabilities=, CapabilityBoundingSet=,
# NoNewPrivileges=), a clean environment with its Environment= and
# EnvironmentFile=, and umask 0077. Call it in a subshell.
service_exec() {
	se_user=$(unit_value User)
	se_env=$(sed -n 's/^Environment=//p' "$unit_path" | tr '\n' ' ')
	se_envfile=$(unit_value EnvironmentFile)
	se_envfile=${se_envfile#-}
	# Word splitting of Environment= is what systemd does with it (the unit
	# quotes nothing); the sh -c script expands its own arguments. The
	# environment file is read by the service user, as it is theirs.
	# shellcheck disable=SC2086,SC2016
	exec setpriv --reuid="$se_user" --regid="$se_user" --init-groups --no-new-privs \
		--bounding-set=-all,+net_bind_service --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service -- \
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME="$data_dir" USER="$se_user" LOGNAME="$se_user" $se_env \
		sh -c 'set -a; if [ -r "$1" ]; then . "$1"; fi; set +a; shift; umask 077; exec "$@"' cairn-env "$se_envfile" "$@"
}

# direct_start: the unit's ExecStart started directly (service_exec), in
# the background with SIGHUP ignored and a pidfile, for hosts where PID 1
# is not systemd.
direct_start() {
	direct_stop || return 1
	ds_log=$(logfile)
	# ExecStart= is split on blanks, as systemd does (the unit quotes nothing).
	# shellcheck disable=SC2046
	(
		trap '' HUP
		service_exec $(unit_value ExecStart)
	) </dev/null >>"$ds_log" 2>&1 &
	echo $! >"$(pidfile)"
	sleep 1
	direct_pid >/dev/null || { echo "the service exited at once; the end of $ds_log:"; tail -n 5 "$ds_log"; return 1; }
}

direct_stop() {
	if ds_pid=$(direct_pid); then
		kill -TERM "$ds_pid" || return 1
		ds_n=0
		while [ -d "/proc/$ds_pid" ] && [ "$ds_n" -lt 50 ]; do sleep 0.2; ds_n=$((ds_n + 1)); done
		if [ -d "/proc/$ds_pid" ]; then kill -KILL "$ds_pid" 2>/dev/null || true; fi
	fi
	rm -f "$(pidfile)"
}

# health_urls: the public health URL, then the internal site's metrics.
public_health_url() {
	case $domain in
	localhost) echo "https://localhost:$https_port/xrpc/_health" ;;
	*) echo "https://$domain:$https_port/xrpc/_health" ;;
	esac
}

# wait_healthy URL: poll URL with the installed binary's healthcheck.
wait_healthy() {
	wh_end=$(($(date +%s) + health_timeout))
	while :; do
		if wh_out=$("$bin_dir/cairn-caddy" healthcheck --url "$1" --timeout 3s 2>&1); then return 0; fi
		if [ "$(date +%s)" -ge "$wh_end" ]; then echo "$wh_out"; return 1; fi
		if ! use_systemd && ! direct_pid >/dev/null; then
			echo "the service stopped; the end of $(logfile):"
			tail -n 5 "$(logfile)"
			return 1
		fi
		sleep 1
	done
}

# ---------------------------------------------------------------- install

# read_installed_env: an existing cairn.env's answers, for the next steps
# of an upgrade (nothing in it is changed).
read_installed_env() {
	# The file belongs to the service user: its values are validated, never
	# evaluated.
	for ri in DOMAIN:domain HTTPS_PORT:https_port HTTP_PORT:http_port METRICS_ADDR:metrics_addr ADMIN_ADDR:admin_addr DATABASE_URL:database; do
		ri_val=$(sed -n "s/^CAIRN_${ri%%:*}=//p" "$etc_dir/cairn.env" | tail -n 1 | tr -d "'\"")
		ri_key=${ri#*:}
		if [ -n "$ri_val" ] && "$(validator "$ri_key")" "$ri_val"; then
			eval "$ri_key=\$ri_val"
		fi
	done
}

resolve_answers() {
	database_url=$database redis_url=$redis db_password=''
	# An upgrade keeps the token configured (or not) at install.
	if installed; then operator_token=none; fi
	if [ "$database" = local ]; then
		db_password=$(random_token)
		database_url="postgres://$user:$db_password@127.0.0.1:5432/$user?sslmode=disable"
	fi
	if [ "$redis" = local ]; then redis_url=redis://127.0.0.1:6379/0; fi
	if [ "$mode" = compose ]; then
		# The stack runs its own PostgreSQL and Redis; only URLs of
		# external ones go into .env.
		case $database in local) database=sqlite ;; esac
		case $redis in local) redis=none ;; esac
	fi
	case $operator_token in
	generate) token_plain=$(random_token); token_hash="sha256:$(sha256_hex "$token_plain")" ;;
	none) ;;
	*) token_plain=$operator_token; token_hash="sha256:$(sha256_hex "$token_plain")" ;;
	esac
	if [ "$http_port" = "$https_port" ]; then usage_error "--http-port and --https-port are both $http_port"; fi
}

install_native() {
	upgrade=0
	if [ -f "$etc_dir/cairn.env" ]; then upgrade=1; fi
	if [ -n "$package" ]; then
		act package "install the package $package (binary, unit, $etc_dir, user $user)" install_package
		bin_dir=$(package_bin_dir)
		candidate=$bin_dir/cairn-caddy
		unit_installed="the package's unit"
		unit_path=''
		for unit_try in "$unit_dir/$service.service" /usr/lib/systemd/system/$service.service /lib/systemd/system/$service.service; do
			if [ -z "$unit_path" ] && [ -f "$unit_try" ]; then unit_path=$unit_try; fi
		done
	else
		if getent passwd "$user" >/dev/null 2>&1; then
			step user ok "user $user exists"
		else
			act user "create the system user $user (home $data_dir, no login shell)" create_user
		fi
		act dirs "make sure of $etc_dir (0750 root:$user) and $data_dir (0700 $user)" make_dirs
		act stage "copy the new binary to $bin_dir/cairn-caddy.new ($new_version)" stage_binary
		candidate=$bin_dir/cairn-caddy.new
		act unit "write $unit_dir/$service.service (from $unit_src)" write_unit
		unit_installed="$unit_dir/$service.service"
		unit_path=$unit_installed
	fi

	if [ "$upgrade" = 1 ]; then
		step config ok "keeping $etc_dir/cairn.env and the Caddyfile (upgrade)"
	else
		if [ "$database" = local ]; then
			act postgres "install PostgreSQL here and create the role and database $user" setup_local_postgres
		fi
		if [ "$redis" = local ]; then
			act redis "install Redis here (127.0.0.1:6379)" setup_local_redis
		fi
		act env "write $etc_dir/cairn.env (0600, owner $user): domain $domain$( [ "$database" = sqlite ] && echo ', embedded SQLite' || echo ", database $(redact_url "$database_url")")$( [ "$redis" = none ] || echo ", redis $(redact_url "$redis_url")")$(extra_count)" write_env
		if [ -n "$token_plain" ]; then
			act token "write the operator token to $etc_dir/operator-token (0600 root)" write_token
		fi
	fi
	if [ -z "$package" ]; then
		act caddyfile "$( [ -f "$etc_dir/Caddyfile" ] && echo "keep $etc_dir/Caddyfile (a changed template goes to Caddyfile.new)" || echo "write $etc_dir/Caddyfile (from $caddyfile_src)")" install_caddyfile
	fi
	if [ "$memory_limit$cpu_limit" != nonenone ]; then
		act limits "write $unit_dir/$service.service.d/limits.conf ($(render_limits | sed -n '3,$p' | paste -sd ' ' -))" write_limits
	fi
	act validate "check the configuration with the new binary (cairn-caddy validate, as $user)" validate_config
	if [ "$upgrade" = 1 ]; then check_migrations; fi
	if [ -z "$package" ]; then
		if [ -f "$bin_dir/cairn-caddy" ]; then
			old_version=$("$bin_dir/cairn-caddy" version 2>/dev/null | head -n 1 || echo unknown)
			act binary "upgrade $bin_dir/cairn-caddy: $old_version -> $new_version (the old one kept as cairn-caddy.previous)" install_binary
		else
			act binary "install $bin_dir/cairn-caddy ($new_version)" install_binary
		fi
	fi
	if use_systemd; then
		act start "enable and (re)start $service with systemd ($unit_installed)" systemd_start
	else
		act start "start $service directly as $user (as $unit_installed would; pidfile $(pidfile), log $(logfile))" direct_start
	fi
	act health "wait for the internal site http://$metrics_addr/metrics" wait_healthy "http://$metrics_addr/metrics"
	if [ "$dry_run" = 1 ]; then
		step health.public plan "check $(public_health_url)"
	elif wait_public=$(if [ "$domain" != localhost ]; then health_timeout=10; fi && wait_healthy "$(public_health_url)"); then
		step health.public ok "$(public_health_url) answers"
	elif [ "$domain" = localhost ]; then
		step health.public fail "$(public_health_url): $wait_public"
		die "the gateway does not answer on $(public_health_url)"
	else
		step health.public warn "$(public_health_url) does not answer yet: Let's Encrypt issues the certificate once DNS for $domain points here and ports 80 and 443 are open (below)"
	fi
}

# extra_count: ", +N variable(s) from --env" when --env brought any.
extra_count() {
	if [ -n "$extra_env" ]; then printf ', +%s variable(s) from --env' "$(printf '%s' "$extra_env" | wc -l | tr -d ' ')"; fi
}

write_env() { render_env | write_file "$etc_dir/cairn.env" 0600 "$user:$user"; }
write_token() { printf '%s\n' "$token_plain" | write_file "$etc_dir/operator-token" 0600 root:root; }
write_limits() {
	mkdir -p "$unit_dir/$service.service.d" && render_limits | write_file "$unit_dir/$service.service.d/limits.conf" 0644 root:root
}
write_unit() { mkdir -p "$unit_dir" && render_unit | write_file "$unit_dir/$service.service" 0644 root:root; }

install_compose() {
	if [ -f "$etc_dir/.env" ]; then
		step config ok "keeping $etc_dir/.env (upgrade)"
	else
		act env "write $etc_dir/.env (0600 root): domain $domain" write_compose_env
		if [ -n "$token_plain" ]; then act token "write the operator token to $etc_dir/operator-token (0600 root)" write_token; fi
	fi
	act compose "copy $compose_src to $etc_dir/docker-compose.yml" install -D -m 0644 "$compose_src" "$etc_dir/docker-compose.yml"
	act start "docker compose up -d --wait (pulls the images, runs the migrations, waits for the health checks)" \
		docker compose --project-directory "$etc_dir" -f "$etc_dir/docker-compose.yml" up -d --wait
}

write_compose_env() {
	mkdir -p "$etc_dir" && {
		render_env
		printf "POSTGRES_PASSWORD='%s'\n" "$(random_token)"
		# Compose interpolates every service, the monitoring profile's too:
		# without it the file does not load, profile or not.
		printf "GRAFANA_ADMIN_PASSWORD='%s'\n" "$(random_token)"
		if [ "$memory_limit" != none ]; then printf "CAIRN_MEMORY_LIMIT='%s'\n" "$memory_limit"; fi
		if [ "$cpu_limit" != none ]; then printf "CAIRN_CPUS='%s'\n" "$cpu_limit"; fi
	} | write_file "$etc_dir/.env" 0600 root:root
}

next_steps() {
	if [ "$dry_run" = 1 ]; then
		summary result=planned mode="$mode" service="$service" checks="$([ "$dry_run_failed" = 1 ] && echo failed || echo passed)"
		say ''
		say 'Dry run: nothing was changed.'
		return
	fi
	ns_public=$(public_health_url)
	summary result="$([ "${upgrade:-0}" = 1 ] && echo upgraded || echo installed)" mode="$mode" service="$service" domain="$domain" health_url="$ns_public" \
		metrics_url="http://$metrics_addr/metrics" operator_token_file="$([ -f "$etc_dir/operator-token" ] && echo "$etc_dir/operator-token")"
	[ "$json" = 0 ] || return 0
	say ''
	say 'cairn-caddy is running. Next:'
	say ''
	if [ "$domain" = localhost ]; then
		say "1. DNS: none for a trial on localhost (Caddy's own CA signs its certificate)."
	else
		say "1. DNS: point $domain at this server: an A record to its IPv4 address and"
		say "   an AAAA record to its IPv6 address${host_addrs:+ (this host has: $host_addrs)}."
	fi
	cat <<EOF
2. Firewall: allow TCP $http_port and $https_port (and UDP $https_port for HTTP/3),
   e.g. ufw allow $http_port/tcp; ufw allow $https_port/tcp; ufw allow $https_port/udp
   (firewalld: firewall-cmd --permanent --add-service=http --add-service=https).
   Caddy then obtains the certificate by itself; check with
   cairn-caddy healthcheck --url $ns_public
3. Metrics and the operator API stay on http://$metrics_addr (this host only).
EOF
	if [ -f "$etc_dir/operator-token" ]; then
		cat <<EOF
   The operator token is in $etc_dir/operator-token (root only); it is shown
   nowhere else. Try: CAIRN_OPERATOR_URL=http://$metrics_addr $bin_dir/cairn-caddy status --token-file $etc_dir/operator-token
EOF
	fi
	cat <<EOF
4. First backup (docs/backup.md):
   umask 077; openssl rand -hex 32 > /root/cairn-backup.key
   $bin_dir/cairn-caddy backup $(backup_store_flags) \\
       --to /var/backups/cairn --key-file /root/cairn-backup.key --keep 7
5. Upgrade: run this script again with the new --binary or --package; your
   configuration stays. Uninstall: $prog --uninstall (keeps data) [--purge].
EOF
}

# backup_store_flags: how `cairn-caddy backup` finds this node's store and
# key files: the SQLite data directory, or the PostgreSQL URL in cairn.env
# (read by the shell, so the password is not printed) and the key files.
backup_store_flags() {
	case $database in
	sqlite) printf -- '--data-dir %s' "$data_dir/caddy/cairn" ;;
	*) printf -- "--database \"\$(sed -n \"s/^CAIRN_DATABASE_URL='\\\\(.*\\\\)'/\\\\1/p\" %s)\" --data-files %s" "$etc_dir/cairn.env" "$data_dir/caddy/cairn" ;;
	esac
}

# ---------------------------------------------------------------- uninstall

uninstall() {
	if [ -f "$etc_dir/docker-compose.yml" ]; then
		if [ "$purge" = 1 ]; then
			act stop "docker compose down --volumes (deletes the database volumes)" \
				docker compose --project-directory "$etc_dir" -f "$etc_dir/docker-compose.yml" down --volumes
		else
			act stop "docker compose down (volumes kept)" \
				docker compose --project-directory "$etc_dir" -f "$etc_dir/docker-compose.yml" down
		fi
	elif uninstall_pkg=$(installed_package); then
		# The package's scripts stop a systemd service; one this script
		# started directly (no systemd) is stopped here first.
		bin_dir=$(package_bin_dir)
		if ! use_systemd && direct_pid >/dev/null; then
			act stop "stop $service (pid $(direct_pid))" direct_stop
		fi
		act package "remove the package $uninstall_pkg$([ "$purge" = 1 ] && echo ' and its configuration')" remove_package "$uninstall_pkg"
		rm_if "$unit_dir/$service.service.d" unit.limits "remove $unit_dir/$service.service.d"
	else
		if use_systemd && [ -f "$unit_dir/$service.service" ]; then
			act stop "stop and disable $service (systemd)" systemctl disable --now "$service"
		elif direct_pid >/dev/null; then
			act stop "stop $service (pid $(direct_pid))" direct_stop
		else
			rm_if "$(pidfile)" stop "remove the stale pidfile $(pidfile)"
			step stop skip "$service is not running"
		fi
		rm_if "$unit_dir/$service.service.d" unit.limits "remove $unit_dir/$service.service.d"
		rm_if "$unit_dir/$service.service" unit "remove $unit_dir/$service.service"
		if use_systemd && [ "$dry_run" = 0 ] && have systemctl; then systemctl daemon-reload || true; fi
		rm_if "$bin_dir/cairn-caddy" binary "remove $bin_dir/cairn-caddy"
		rm_if "$bin_dir/cairn-caddy.previous" binary.previous "remove $bin_dir/cairn-caddy.previous"
		rm_if "$bin_dir/cairn-caddy.new" binary.new "remove $bin_dir/cairn-caddy.new (a staged binary)"
	fi
	if [ "$purge" = 0 ]; then
		[ ! -d "$etc_dir" ] || step config skip "kept $etc_dir (configuration; --purge removes it)"
		[ ! -d "$data_dir" ] || step data skip "kept $data_dir (database, keys, certificates; --purge removes it)"
		summary result=uninstalled purged=false
		return
	fi
	case $(sed -n 's/^CAIRN_DATABASE_URL=//p' "$etc_dir/cairn.env" 2>/dev/null) in
	*@127.0.0.1:*) step postgres skip "the local PostgreSQL database $user is kept: runuser -u postgres -- dropdb $user; runuser -u postgres -- dropuser $user" ;;
	esac
	rm_if "$etc_dir" config "remove $etc_dir (configuration and secrets)"
	rm_if "$data_dir" data "remove $data_dir (database, keys, certificates)"
	# Only a user this script created (by its comment) is removed.
	if getent passwd "$user" | cut -d: -f5 | grep -q '(install.sh)$'; then
		act user "remove the system user $user" remove_user
	elif getent passwd "$user" >/dev/null 2>&1; then
		step user skip "kept the user $user (not created by this script)"
	fi
	summary result=uninstalled purged=true
}

remove_user() {
	userdel "$user" || return 1
	if getent group "$user" >/dev/null; then groupdel "$user" 2>/dev/null || true; fi
}

# rm_if PATH ID DESCRIPTION: remove PATH when it exists.
rm_if() {
	if [ -e "$1" ] || [ -L "$1" ]; then act "$2" "$3" rm -rf -- "$1"; fi
}

# installed_package: the package to remove, if one is installed; for
# --purge also a deb removed before whose configuration dpkg still holds
# (the "rc" state an --uninstall without --purge leaves).
installed_package() {
	ip_status=''
	if have dpkg-query; then ip_status=$(dpkg-query -W -f='${Status}' cairn-caddy 2>/dev/null || true); fi
	case $ip_status in
	*' ok installed') echo cairn-caddy ;;
	*' ok config-files') if [ "$purge" = 1 ]; then echo cairn-caddy; else return 1; fi ;;
	*) if have rpm && rpm -q cairn-caddy >/dev/null 2>&1; then echo cairn-caddy; else return 1; fi ;;
	esac
}

# package_bin_dir: where the package installs the binary.
package_bin_dir() {
	if have dpkg-query && pbd=$(dpkg-query -L cairn-caddy 2>/dev/null | grep '/cairn-caddy$' | grep /bin/); then
		dirname "$(printf '%s\n' "$pbd" | head -n 1)"
	elif have rpm && pbd=$(rpm -ql cairn-caddy 2>/dev/null | grep '/bin/cairn-caddy$'); then
		dirname "$(printf '%s\n' "$pbd" | head -n 1)"
	else
		echo /usr/bin
	fi
}

remove_package() {
	if have dpkg-query && dpkg-query -W cairn-caddy >/dev/null 2>&1; then
		if [ "$purge" = 1 ]; then dpkg --purge "$1"; else dpkg --remove "$1"; fi
	else
		rpm -e "$1"
	fi
}

# --------------------------------------------------------------------- main

main() {
	# --json, --config and --env first, so that flags override the files and
	# errors in them are already JSON.
	for main_a in "$@"; do [ "$main_a" != --json ] || json=1; done
	main_prev=''
	for main_a in "$@"; do
		case $main_prev in
		--config) config_file=$main_a ;;
		--env) env_file=$main_a ;;
		esac
		case $main_a in
		--config=*) config_file=${main_a#*=} ;;
		--env=*) env_file=${main_a#*=} ;;
		esac
		main_prev=$main_a
	done
	if [ -n "$config_file" ]; then load_config "$config_file"; fi
	if [ -n "$env_file" ]; then load_env "$env_file"; fi
	parse_args "$@"
	if [ -n "$root" ] && [ "$dry_run" = 0 ]; then usage_error "--root is for dry runs"; fi
	if [ "$purge" = 1 ] && [ "$action" != uninstall ]; then usage_error "--purge goes with --uninstall"; fi
	if [ -n "$binary" ] && [ -n "$package" ]; then usage_error "--binary and --package: give one"; fi
	if [ -n "$package" ] && [ "$mode" = compose ]; then usage_error "--package is for --mode native"; fi
	# The package puts the binary in its own place: the checks of a re-run
	# (is the service that holds the ports ours?) look for it there.
	if [ -n "$package" ]; then bin_dir=$(package_bin_dir); fi

	if [ "$action" = uninstall ]; then
		run_checks
		uninstall
		return
	fi
	# The wizard is for a first install on a terminal; an upgrade asks nothing.
	if [ "$assume_yes" = 0 ] && [ -z "$config_file$env_file" ] && [ -t 0 ] && ! installed; then
		wizard
	fi
	if ! installed && [ -z "$domain" ]; then
		usage_error "no domain: give --domain, domain: in --config, or CAIRN_DOMAIN in --env"
	fi
	if [ -f "$etc_dir/cairn.env" ]; then read_installed_env; fi
	run_checks
	resolve_answers
	host_addrs=$(ip -o addr show scope global 2>/dev/null | awk '{ sub("/.*", "", $4); printf "%s%s", sep, $4; sep = " " }' || true)
	if [ "$mode" = compose ]; then install_compose; else install_native; fi
	next_steps
	# A dry run whose checks failed has shown its plan; its status says so.
	return "$dry_run_failed"
}

main "$@"
