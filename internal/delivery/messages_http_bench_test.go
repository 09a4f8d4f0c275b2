package delivery_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// BenchmarkGetMessagesHTTP measures a getMessages page of 100 over HTTP
// (loopback TCP, keep-alive client, the service's membership check, the
// store's page query and the JSON response) on a conversation of
// CAIRN_BENCH_MESSAGES messages (default 100000; issue 18's target is
// 1000000), from sinceSeq values spread over the whole conversation, on
// both stores. It reports p50 and p99 latency as the client sees it.
//
//	CAIRN_BENCH_MESSAGES=1000000 go test -run '^$' -bench GetMessagesHTTP -benchtime 5000x ./internal/delivery
func BenchmarkGetMessagesHTTP(b *testing.B) {
	n := int64(100_000)
	if v := os.Getenv("CAIRN_BENCH_MESSAGES"); v != "" {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 1000 {
			b.Fatalf("CAIRN_BENCH_MESSAGES=%q: want an integer >= 1000", v)
		}
	}
	for _, be := range []struct {
		name string
		open func(b *testing.B) (store.Store, func(convo string, n int64))
	}{{"sqlite", bulkSQLite}, {"postgres", bulkPostgres}} {
		b.Run(be.name, func(b *testing.B) {
			s, load := be.open(b)
			e := newEnv(b, func(testing.TB, func() time.Time) store.Store { return s })
			convo := e.createConvo(b, alice, bob)
			load(convo, n)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				e.svc.ServeHTTP(w, r.WithContext(caller.With(r.Context(), alice)))
			}))
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer client.CloseIdleConnections()
			// The client shares the process (and its garbage collector) with
			// the server it measures, so it reads into one reused buffer:
			// io.ReadAll's growing copies were 40% of the process's
			// allocations, a cost a real client pays in its own process.
			var buf bytes.Buffer
			get := func(since int64) error {
				resp, err := client.Get(fmt.Sprintf("%s/xrpc/blue.catbird.mls.getMessages?convoId=%s&sinceSeq=%d&limit=100", srv.URL, convo, since))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				buf.Reset()
				_, _ = buf.ReadFrom(resp.Body)
				body := buf.Bytes()
				if resp.StatusCode != http.StatusOK || len(body) < 100*512 {
					return fmt.Errorf("getMessages: %d, %d bytes: %.200s", resp.StatusCode, len(body), body)
				}
				return nil
			}
			for i := range int64(200) { // warm the connection and the caches
				if err := get(i * (n / 200)); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			i := int64(0)
			b.ResetTimer()
			for b.Loop() {
				i = (i*7919 + 104729) % (n - 100) // spread over the conversation
				t0 := time.Now()
				if err := get(i); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.ReportMetric(float64(percentile(lat, 50).Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(percentile(lat, 99).Microseconds())/1000, "p99_ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// bulkSQLite opens a SQLite store and returns it with a loader that
// appends n messages of 512 bytes to a conversation in one statement
// (AppendMessage would take minutes for 1M).
func bulkSQLite(b *testing.B) (store.Store, func(string, int64)) {
	path := filepath.Join(b.TempDir(), "bench.db")
	s, err := sqlite.Open(b.Context(), sqlite.Config{Path: path})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, func(convo string, n int64) {
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		bulkLoad(b, func(q string, args ...any) error { _, err := db.ExecContext(b.Context(), q, args...); return err },
			`WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?2)
			INSERT INTO messages (convo_id, seq, epoch, msg_id, ciphertext, padded_size, received_bucket)
			SELECT ?1, i, 0, 'm' || i, zeroblob(512), 512, 0 FROM g`,
			`UPDATE convos SET last_seq = ?2 WHERE id = ?1`, `ANALYZE`, convo, n)
	}
}

// bulkPostgres is bulkSQLite on a fresh PostgreSQL database.
func bulkPostgres(b *testing.B) (store.Store, func(string, int64)) {
	url := testenv.Postgres(b)
	s, err := postgres.Open(b.Context(), postgres.Config{URL: url})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, func(convo string, n int64) {
		pool, err := pgxpool.New(context.Background(), url)
		if err != nil {
			b.Fatal(err)
		}
		defer pool.Close()
		bulkLoad(b, func(q string, args ...any) error { _, err := pool.Exec(b.Context(), q, args...); return err },
			`INSERT INTO messages (convo_id, seq, epoch, msg_id, ciphertext, padded_size, received_bucket)
			SELECT $1, g, 0, 'm' || g, decode(repeat('00', 512), 'hex'), 512, now() FROM generate_series(1, $2::bigint) g`,
			`UPDATE convos SET last_seq = $2 WHERE id = $1`, `VACUUM ANALYZE messages`, convo, n)
		// Write out the load's dirty pages now, so the checkpoint a 1M-row
		// load triggers does not land inside the measurement: the benchmark
		// is of reads in steady state, not of the load's aftermath.
		if _, err := pool.Exec(b.Context(), `CHECKPOINT`); err != nil {
			b.Fatalf("checkpoint: %v", err)
		}
	}
}

func bulkLoad(b *testing.B, exec func(string, ...any) error, insert, setLast, analyze, convo string, n int64) {
	b.Helper()
	if err := exec(insert, convo, n); err != nil {
		b.Fatalf("bulk insert: %v", err)
	}
	if err := exec(setLast, convo, n); err != nil {
		b.Fatalf("set last seq: %v", err)
	}
	if err := exec(analyze); err != nil {
		b.Fatalf("analyze: %v", err)
	}
}
