#!/usr/bin/env bash
# The PostgreSQL append statement against the raw INSERT ceiling, without
# Go or HTTP: pgbench runs, on a scratch database built by the store's own
# migration, (1) the ceiling's single-row INSERT of a 512-byte row, (2) the
# statement sendMessage runs (a copy of appendMessageSQL in
# internal/store/postgres/writer.go, with the membership check), and (3)
# the same without the event row, to show what that row costs. Each is run
# three times, interleaved, at the given number of clients.
#
#   test/bench/pg-append.sh [clients] [seconds]      (defaults: 16 5)
#
# PG_APPEND_SCHEMA_SQL names an SQL file applied after the migration, to
# try a schema change (an index, a storage parameter) before writing one.
#
# Needs pgbench (Debian package postgresql-client) and the test PostgreSQL
# (CAIRN_TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/../.."
clients=${1:-16}
seconds=${2:-5}
base=${CAIRN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
command -v pgbench >/dev/null || { echo "pgbench is not installed (apt-get install postgresql-client)" >&2; exit 1; }
db=cairn_pg_append_$$
url=${base%/*}/$db
work=$(mktemp -d)
trap 'psql -q "$base" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

psql -q "$base" -c "CREATE DATABASE $db" >/dev/null
psql -q "$url" -v ON_ERROR_STOP=1 -f internal/store/postgres/migrations/0001_init.sql >/dev/null
if [ -n "${PG_APPEND_SCHEMA_SQL:-}" ]; then
	psql -q "$url" -v ON_ERROR_STOP=1 -f "$PG_APPEND_SCHEMA_SQL" >/dev/null
fi
psql -q "$url" -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
INSERT INTO convos (id, creator_did, cipher_suite, epoch, created_at, last_activity_at)
	SELECT 'c' || i, 'alice', 'x', 0, now(), now() FROM generate_series(0, 63) i;
INSERT INTO members (convo_id, member_did, user_did, role, joined_at)
	SELECT 'c' || i, 'alice', 'alice', 'admin', now() FROM generate_series(0, 63) i;
CREATE TABLE ceiling (convo text, seq bigint, data bytea, PRIMARY KEY (convo, seq));
CREATE SEQUENCE ceiling_seq;
SQL

# pgbench reads :name as a variable anywhere, so the DIDs have no colons.
cat >"$work/raw.sql" <<'SQL'
INSERT INTO ceiling (convo, seq, data) VALUES ('c' || :client_id, nextval('ceiling_seq'), decode(repeat('ab', 512), 'hex'));
SQL
append() { # $1: the event CTE or nothing
	cat <<SQL
\set c random(0, 63)
WITH c AS (
	UPDATE convos SET last_seq = last_seq + 1, last_activity_at = date_trunc('second', now())
	WHERE id = 'c' || :c AND epoch >= 0 AND (
		EXISTS (SELECT 1 FROM members WHERE convo_id = 'c' || :c AND member_did = ANY('{alice}') AND left_at IS NULL)
		OR ('alice' <> '' AND EXISTS (SELECT 1 FROM members WHERE user_did = 'alice' AND convo_id = 'c' || :c AND left_at IS NULL)))
	RETURNING id, last_seq
), m AS (
	INSERT INTO messages (convo_id, seq, epoch, msg_id, ciphertext, padded_size, received_bucket, expires_at)
	SELECT id, last_seq, 0, md5(random()::text), decode(repeat('ab', 512), 'hex'), 512, date_trunc('second', now()), NULL FROM c
)$1
SELECT 1 FROM c;
SQL
}
append ", e AS (
	INSERT INTO events (convo_id, kind, message_id, epoch, created_bucket)
	SELECT id, 'message', 'x', 0, date_trunc('second', now()) FROM c
	RETURNING cursor
)" >"$work/append.sql"
append "" >"$work/no-event.sql"

tps() { pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" -f "$work/$1.sql" "$url" 2>&1 | awk '/^tps/ {printf "%.0f", $3}'; }
echo "PostgreSQL append statement vs raw INSERT ($clients clients, ${seconds}s each, statements/s)"
printf '  %-8s %10s %10s %10s %8s %8s\n' run raw append no-event append/raw no-event/raw
for run in 1 2 3; do
	r=$(tps raw) a=$(tps append) n=$(tps no-event)
	awk -v run="$run" -v r="$r" -v a="$a" -v n="$n" 'BEGIN { printf "  %-8s %10d %10d %10d %8.2f %8.2f\n", run, r, a, n, a/r, n/r }'
done
