package chaos

import (
	"net/http"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// short skips a chaos test under -short (make test-short): CI and make
// test run them.
func short(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos tests start and kill processes; not in -short")
	}
}

// ackedBefore is how many sends each phase waits to see acknowledged: the
// load is really running before the fault and again after recovery.
const ackedBefore = 40

// TestGatewayKilledOnSQLite: SIGKILL of the gateway under concurrent
// sends, then a restart on the same SQLite file.
func TestGatewayKilledOnSQLite(t *testing.T) {
	short(t)
	testGatewayKilled(t, newSetup(t, "", ""))
}

// TestGatewayKilledOnPostgres: the same on PostgreSQL (a database of its
// own on the shared server, which is not touched).
func TestGatewayKilledOnPostgres(t *testing.T) {
	short(t)
	testGatewayKilled(t, newSetup(t, testenv.Postgres(t), ""))
}

func testGatewayKilled(t *testing.T, s *setup) {
	g := s.start()
	// The restarted gateway's replay memory is new: it refuses tokens issued
	// before it began plus the leeway (401 JwtExpired), and the client mints
	// a new one, as after a Redis restart.
	l := newLoad(s, http.StatusUnauthorized)
	l.start()
	cycles(t, func() {
		l.waitAcks(t, ackedBefore)
		failed := l.failed.Load()
		g.Kill()
		l.waitFailures(t, failed, senders)
		g = s.start()
		l.waitAcks(t, ackedBefore)
	})
	l.finish(t)
}

// TestPostgresKilledUnderLoad: PostgreSQL stopped under concurrent sends,
// then started again: with `pg_ctl stop -m immediate` (its processes
// killed, no checkpoint, recovery from the WAL on start), then with `-m
// fast` (sessions terminated with 57P01). The gateway stays up: it answers
// 503 with Retry-After meanwhile, never 500, and serves again once the
// database is back.
func TestPostgresKilledUnderLoad(t *testing.T) {
	short(t)
	pg := newPGCluster(t)
	s := newSetup(t, pg.database("cairn"), "")
	s.start()
	l := newLoad(s)
	l.start()
	cycles(t, func() {
		for _, mode := range []string{"immediate", "fast"} {
			l.waitAcks(t, ackedBefore)
			failed := l.failed.Load()
			pg.stop(mode)
			l.waitFailures(t, failed, 2*senders)
			pg.start()
		}
		l.waitAcks(t, ackedBefore)
	})
	l.finish(t)
}

// TestRedisRestartedUnderLoad: the Redis holding the service-auth replay
// set is killed under concurrent sends and started again, empty. Tokens
// cannot be checked for replay meanwhile, so requests are refused (503,
// failing closed); a refused token may also be refused once Redis is back
// (401: the replay store says its memory is younger than the token), and
// the client mints a new one. Nothing acknowledged is lost.
func TestRedisRestartedUnderLoad(t *testing.T) {
	short(t)
	r := testenv.StartRedisServer(t)
	s := newSetup(t, "", r.URL())
	s.start()
	l := newLoad(s, http.StatusUnauthorized)
	l.start()
	cycles(t, func() {
		l.waitAcks(t, ackedBefore)
		failed := l.failed.Load()
		r.Stop(t)
		l.waitFailures(t, failed, 2*senders)
		r.Restart(t, false)
		l.waitAcks(t, ackedBefore)
	})
	l.finish(t)
}
