package postgres_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// runConcurrent runs op b.N times: in a loop for conc 1, else from
// conc × GOMAXPROCS goroutines.
func runConcurrent(b *testing.B, conc int, op func()) {
	if conc == 1 {
		for b.Loop() {
			op()
		}
	} else {
		b.SetParallelism(conc)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				op()
			}
		})
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkAppendMessage measures AppendMessage (counter bump under the
// conversation row lock, message and event insert: one statement) of
// 512-byte ciphertexts. With one conversation every append serialises on
// its row lock, so throughput is bounded by commit latency; spread over
// several conversations appends run in parallel. Compare with
// BenchmarkRawInsert, the ceiling.
func BenchmarkAppendMessage(b *testing.B) {
	cases := []struct{ convos, conc int }{{1, 1}, {1, 16}, {16, 16}}
	for _, tc := range cases {
		b.Run(fmt.Sprintf("convos=%d/conc=%d", tc.convos, tc.conc), func(b *testing.B) {
			s, err := postgres.Open(b.Context(), postgres.Config{URL: testenv.Postgres(b), MaxConns: 16})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ids := make([]string, tc.convos)
			for i := range ids {
				ids[i] = "bench" + strconv.Itoa(i)
				if _, err := s.CreateConvo(b.Context(), store.NewConvo{ID: ids[i], CreatorDID: "did:plc:a", CipherSuite: "x",
					Members: []store.NewMember{{MemberDID: "did:plc:a#d", UserDID: "did:plc:a"}}}); err != nil {
					b.Fatal(err)
				}
			}
			ct := make([]byte, 512)
			var n atomic.Int64
			b.SetBytes(int64(len(ct)))
			b.ResetTimer()
			runConcurrent(b, tc.conc, func() {
				i := n.Add(1)
				m := store.NewMessage{ConvoID: ids[i%int64(len(ids))], MsgID: "m" + strconv.FormatInt(i, 10), Ciphertext: ct, PaddedSize: 512}
				if _, err := s.AppendMessage(b.Context(), m); err != nil {
					b.Error(err)
				}
			})
		})
	}
}

// BenchmarkRawInsert is the ceiling: a bare single-row INSERT through pgx
// into a table shaped and indexed like messages, seq from a Go counter, no
// ordering guarantee, no event.
func BenchmarkRawInsert(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run("conc="+strconv.Itoa(conc), func(b *testing.B) {
			cfg, err := pgxpool.ParseConfig(testenv.Postgres(b))
			if err != nil {
				b.Fatal(err)
			}
			cfg.MaxConns = 16
			pool, err := pgxpool.NewWithConfig(b.Context(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			if _, err := pool.Exec(b.Context(), `CREATE TABLE raw_messages (
				convo_id text NOT NULL, seq bigint NOT NULL, epoch bigint NOT NULL, msg_id text NOT NULL,
				ciphertext bytea NOT NULL, padded_size bigint NOT NULL, received_bucket timestamptz NOT NULL,
				expires_at timestamptz, PRIMARY KEY (convo_id, seq), UNIQUE (convo_id, msg_id));
				ALTER TABLE raw_messages ALTER COLUMN ciphertext SET STORAGE EXTERNAL;
				CREATE INDEX ON raw_messages (received_bucket)`); err != nil {
				b.Fatal(err)
			}
			ct := make([]byte, 512)
			var n atomic.Int64
			b.SetBytes(int64(len(ct)))
			b.ResetTimer()
			runConcurrent(b, conc, func() {
				seq := n.Add(1)
				if _, err := pool.Exec(b.Context(), `INSERT INTO raw_messages (convo_id, seq, epoch, msg_id, ciphertext, padded_size, received_bucket, expires_at)
					VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
					"bench", seq, int64(0), "m"+strconv.FormatInt(seq, 10), ct, int64(512), time.Now().Truncate(2*time.Second), nil); err != nil {
					b.Error(err)
				}
			})
		})
	}
}

// BenchmarkMessages measures a getMessages page (limit 100 from a random
// sinceSeq) on a conversation of CAIRN_BENCH_MESSAGES messages (default
// 100000; the figure is 1000000), reporting p50 and p99.
func BenchmarkMessages(b *testing.B) {
	n := benchMessages(b)
	url := testenv.Postgres(b)
	s, err := postgres.Open(b.Context(), postgres.Config{URL: url})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateConvo(b.Context(), store.NewConvo{ID: "big", CreatorDID: "did:plc:a", CipherSuite: "x",
		Members: []store.NewMember{{MemberDID: "did:plc:a#d", UserDID: "did:plc:a"}}}); err != nil {
		b.Fatal(err)
	}
	// Bulk-load directly: going through AppendMessage would take minutes.
	pool, err := pgxpool.New(b.Context(), url)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(b.Context(), `INSERT INTO messages (convo_id, seq, epoch, msg_id, ciphertext, padded_size, received_bucket)
		SELECT 'big', g, 0, 'm' || g, decode(repeat('00', 512), 'hex'), 512, now() FROM generate_series(1, $1::bigint) g`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(b.Context(), `UPDATE convos SET last_seq = $1 WHERE id = 'big'`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(b.Context(), `VACUUM ANALYZE messages`); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, 1024)
	i := int64(0)
	b.ResetTimer()
	for b.Loop() {
		i = (i*7919 + 104729) % n // spread over the conversation
		start := time.Now()
		p, err := s.Messages(b.Context(), "big", i, 100)
		lat = append(lat, time.Since(start))
		if err != nil || p.ConvoLastSeq != n {
			b.Fatalf("page: %v (last seq %d)", err, p.ConvoLastSeq)
		}
	}
	reportPercentiles(b, lat)
}

func benchMessages(b *testing.B) int64 {
	if v := os.Getenv("CAIRN_BENCH_MESSAGES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1000 {
			b.Fatalf("CAIRN_BENCH_MESSAGES=%q: want an integer >= 1000", v)
		}
		return n
	}
	return 100_000
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkActiveMemberCount is the large-group check's read of a
// 500-device conversation: loading the member rows and taking their
// length (what cairn_delivery did) against ActiveMemberCount.
func BenchmarkActiveMemberCount(b *testing.B) {
	s, err := postgres.Open(b.Context(), postgres.Config{URL: testenv.Postgres(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const n = 500
	members := make([]store.NewMember, n)
	for i := range members {
		did := fmt.Sprintf("did:plc:member%04d", i)
		members[i] = store.NewMember{MemberDID: did + "#d", UserDID: did, DeviceID: "d", Role: store.RoleMember}
	}
	members[0].Role = store.RoleAdmin
	if _, err := s.CreateConvo(b.Context(), store.NewConvo{ID: "big", CreatorDID: members[0].UserDID, CipherSuite: "x", Members: members}); err != nil {
		b.Fatal(err)
	}
	b.Run("Members", func(b *testing.B) {
		for b.Loop() {
			ms, err := s.Members(b.Context(), []string{"big"}, false)
			if err != nil || len(ms["big"]) != n {
				b.Fatalf("members: %d, %v", len(ms["big"]), err)
			}
		}
	})
	b.Run("ActiveMemberCount", func(b *testing.B) {
		for b.Loop() {
			if got, err := s.ActiveMemberCount(b.Context(), "big"); err != nil || got != n {
				b.Fatalf("count: %d, %v", got, err)
			}
		}
	})
}
