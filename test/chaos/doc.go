// Package chaos breaks a running gateway's dependencies under load and
// checks that nothing acknowledged is lost. It runs with `go test ./...`
// (and so `make test`), needs no Node, and owns every process it breaks:
//
//   - the gateway (a real cairn-caddy binary, gatewaytest), killed with
//     SIGKILL under concurrent sendMessage calls (application messages from
//     several senders, commits advancing the epoch from one) and restarted
//     on the same store, on SQLite and on PostgreSQL;
//   - a PostgreSQL cluster of its own (initdb into a temporary directory,
//     as the postgres OS user when run as root, on a free port), stopped
//     under load with `pg_ctl stop -m immediate` (a crash) and with `-m
//     fast` (sessions terminated), and started again each time;
//   - a redis-server of its own on a free port, holding the service-auth
//     replay set and the rate limits, killed under load and started again
//     (empty).
//
// The shared PostgreSQL and Redis of the machine are never stopped or
// flushed; the gateway-kill test on PostgreSQL uses a database of its own
// on the shared server (internal/testenv).
//
// Every test asserts the same account of the writes: no 500 (or any 5xx
// but 503) was ever answered; every send that was in flight when the fault
// hit is retried with the same msgId until it is acknowledged, and is then
// answered with the seq it was first stored at; after recovery the
// conversation holds exactly the acknowledged messages, each once, at the
// seq it was acknowledged with, numbered 1..n without a gap, with exactly
// one event each; the epoch counts the acknowledged commits; and the load
// really met the fault (some request failed while it lasted).
//
// Budget: each test runs a few hundred sends from a handful of senders,
// in phases that end on counts (acknowledgements, observed failures), not
// on time, so all of them take well under a minute and a half on a busy
// two-core machine. CAIRN_CHAOS_SOAK=<duration> (for example 10m) repeats
// each test's fault in a loop for that long, for a soak outside CI.
//
// Without initdb/pg_ctl or redis-server the tests that need them are
// skipped, unless CAIRN_REQUIRE_SERVICES=1 (as CI sets it), where they
// fail.
package chaos
