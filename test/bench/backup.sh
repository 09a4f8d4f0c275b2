#!/usr/bin/env bash
# Backup and restore of 1,000,000 messages against a plain pg_dump of the
# same database. On a scratch PostgreSQL database built by `cairn-caddy
# migrate up`: 1,000 conversations of 1,000 messages (320-byte ciphertext)
# and their 1,000,000 event rows. Then, each under /usr/bin/time -v (peak
# RSS, elapsed): `cairn-caddy backup` to a directory, `pg_dump` (plain
# format) of the same database, `cairn-caddy restore` into a fresh
# PostgreSQL database, and `cairn-caddy restore` into SQLite. Prints MB/s
# (of the database's table size, pg_total_relation_size summed) and the
# load average.
#
#   test/bench/backup.sh [messages]      (default 1000000)
#
# Needs pg_dump/psql (postgresql-client), /usr/bin/time and the test
# PostgreSQL (CAIRN_TEST_DATABASE_URL, default
# postgres://postgres@127.0.0.1:5432/postgres). `make bench-backup` runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."
messages=${1:-1000000}
convos=1000
per=$((messages / convos))
base=${CAIRN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
src=cairn_bench_backup_src_$$
dst=cairn_bench_backup_dst_$$
work=$(mktemp -d)
trap 'for d in $src $dst; do psql -q "$base" -c "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT
bin=$work/cairn-caddy
go build -o "$bin" ./cmd/cairn-caddy
srcurl=${base%/*}/$src
dsturl=${base%/*}/$dst
psql -q "$base" -c "CREATE DATABASE $src" -c "CREATE DATABASE $dst" >/dev/null
"$bin" migrate up --database "$srcurl" >/dev/null

echo "seeding $messages messages in $convos conversations..."
psql -q "$srcurl" -v ON_ERROR_STOP=1 <<SQL
INSERT INTO convos (id, creator_did, cipher_suite, epoch, last_seq, created_at, last_activity_at)
  SELECT 'convo-' || c, 'did:plc:creator' || c, '0x0001', 1, $per, now(), now() FROM generate_series(1, $convos) c;
INSERT INTO messages (convo_id, seq, epoch, msg_id, ciphertext, padded_size, received_bucket)
  SELECT 'convo-' || c, s, 1, 'msg-' || c || '-' || s,
         convert_to(repeat(md5(c::text || '/' || s::text), 10), 'UTF8'), 512, now()
  FROM generate_series(1, $convos) c, generate_series(1, $per) s;
INSERT INTO events (convo_id, kind, message_id, epoch, created_bucket)
  SELECT convo_id, 'message', msg_id, 1, received_bucket FROM messages ORDER BY convo_id, seq;
ANALYZE;
SQL
size=$(psql -qtA "$srcurl" -c "SELECT sum(pg_total_relation_size(oid)) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace")
echo "database: $((size / 1000000)) MB (tables and indexes)"

export CAIRN_BACKUP_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
measure() { # label, command...
	local label=$1; shift
	/usr/bin/time -v -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
	local secs rss
	secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$work/time")
	rss=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$work/time")
	printf '%-28s %8.1f s  %7.1f MB/s  peak RSS %4d MB  load %s\n' "$label" "$secs" "$(echo "$size / 1000000 / $secs" | bc -l)" "$rss" "$(cut -d' ' -f1-3 /proc/loadavg)"
}
measure "cairn-caddy backup" "$bin" backup --database "$srcurl" --to "$work/archives"
archive=$(ls "$work/archives")
echo "archive: $archive, $(($(stat -c %s "$work/archives/$archive") / 1000000)) MB"
measure "pg_dump (plain)" pg_dump -f "$work/dump.sql" "$srcurl"
echo "pg_dump output: $(($(stat -c %s "$work/dump.sql") / 1000000)) MB"
measure "restore into PostgreSQL" "$bin" restore --database "$dsturl" --from "$work/archives"
mkdir -p "$work/sqlite"
measure "restore into SQLite" "$bin" restore --data-dir "$work/sqlite" --from "$work/archives"
got=$(psql -qtA "$dsturl" -c "SELECT count(*) FROM messages")
[ "$got" = "$messages" ] || { echo "restored $got messages, want $messages" >&2; exit 1; }
echo "restored: $got messages"
