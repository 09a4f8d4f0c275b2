package delivery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// BenchmarkSendMessageHTTP measures sendMessage end to end over HTTP: real
// loopback TCP with keep-alive clients, JSON decoding, MLS framing checks,
// membership, the idempotent append and its commit. Each of the
// concurrency workers sends into its own conversation (one conversation is
// serialised by its gapless sequence by design). It reports msgs/s and p50
// and p99 latency; on PostgreSQL the same run also times a raw pgx
// single-row INSERT loop at the same concurrency as the ceiling, in ten
// slices alternating with the sends, and reports the ratio (x_raw_insert).
//
//	go test -run '^$' -bench SendMessageHTTP -benchtime 2000x ./internal/delivery
func BenchmarkSendMessageHTTP(b *testing.B) {
	for _, be := range backends {
		for _, conc := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/concurrency=%d", be.name, conc), func(b *testing.B) {
				e := newEnv(b, be.open)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					e.svc.ServeHTTP(w, r.WithContext(caller.With(r.Context(), alice)))
				}))
				defer srv.Close()
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}}
				defer client.CloseIdleConnections()

				ciphertexts := make([]obj, conc)
				convos := make([]string, conc)
				for w := range conc {
					convos[w] = e.createConvo(b, alice, bob)
					ciphertexts[w] = b64bytes(app(b, convos[w], 0))
				}
				b.ResetTimer()
				send := func(w int, i int64) error {
					body, _ := json.Marshal(obj{"convoId": convos[w], "msgId": fmt.Sprintf("m%d", i), "ciphertext": ciphertexts[w], "epoch": 0, "paddedSize": 512})
					resp, err := client.Post(srv.URL+"/xrpc/blue.catbird.mls.sendMessage", "application/json", bytes.NewReader(body))
					if err != nil {
						return err
					}
					defer resp.Body.Close()
					out, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != http.StatusOK {
						return fmt.Errorf("sendMessage: %d %s", resp.StatusCode, out)
					}
					return nil
				}

				// The ceiling is timed in slices alternating with the
				// sends, so load from elsewhere on the machine weighs on
				// both alike and the ratio holds still while the rates move.
				var ceiling func(w int, i int64) error
				if be.name == "postgres" {
					ceiling = rawInsert(b)
				}
				var next atomic.Int64
				var elapsed, rawElapsed time.Duration
				var lat []time.Duration
				for r := range benchRounds {
					n := b.N/benchRounds + btoi(r < b.N%benchRounds)
					el, l := runWorkers(b, conc, n, &next, send)
					elapsed += el
					lat = append(lat, l...)
					if ceiling != nil {
						el, _ := runWorkers(b, conc, n, &next, ceiling)
						rawElapsed += el
					}
				}
				rate := float64(b.N) / elapsed.Seconds()
				var raw float64
				if ceiling != nil {
					raw = float64(b.N) / rawElapsed.Seconds()
				}
				// Report last: ResetTimer (in each run) deletes reported metrics.
				b.ReportMetric(rate, "msgs/s")
				b.ReportMetric(float64(percentile(lat, 50).Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(percentile(lat, 99).Microseconds())/1000, "p99_ms")
				b.ReportMetric(0, "ns/op")
				if raw > 0 {
					b.ReportMetric(raw, "raw_insert/s")
					b.ReportMetric(rate/raw, "x_raw_insert")
				}
			})
		}
	}
}

// benchRounds is how many slices a run is cut into, alternating the
// measured calls with the ceiling's.
const benchRounds = 10

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// runWorkers runs n calls of send spread over conc workers and returns
// the wall time and every call's latency. i is drawn from next, so it
// counts on across calls and message ids stay unique.
func runWorkers(b *testing.B, conc, n int, next *atomic.Int64, send func(worker int, i int64) error) (time.Duration, []time.Duration) {
	b.Helper()
	var done atomic.Int64
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	var failed atomic.Bool
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			for !failed.Load() {
				if done.Add(1) > int64(n) {
					return
				}
				i := next.Add(1)
				t0 := time.Now()
				if err := send(w, i); err != nil {
					b.Error(err)
					failed.Store(true)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	return time.Since(start), slices.Concat(lat...)
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, len(d)*p/100)]
}

// rawInsert returns the ceiling's call: a single-row INSERT of a
// message-sized row through a pgx pool of the store's default size, one
// autocommitted statement.
func rawInsert(b *testing.B) func(w int, i int64) error {
	b.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testenv.Postgres(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if _, err := pool.Exec(ctx, `CREATE TABLE ceiling (convo text, seq bigint, data bytea, PRIMARY KEY (convo, seq))`); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 512)
	return func(w int, i int64) error {
		_, err := pool.Exec(ctx, `INSERT INTO ceiling (convo, seq, data) VALUES ($1, $2, $3)`, fmt.Sprintf("c%d", w), i, data)
		return err
	}
}
