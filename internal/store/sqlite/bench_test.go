package sqlite_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
)

// BenchmarkAppendMessage measures AppendMessage (seq bump, message, event in
// one transaction) of 512-byte ciphertexts into one conversation.
func BenchmarkAppendMessage(b *testing.B) {
	for _, conc := range []int{1, 16} {
		b.Run("conc="+strconv.Itoa(conc), func(b *testing.B) {
			s, err := sqlite.Open(b.Context(), sqlite.Config{Path: filepath.Join(b.TempDir(), "bench.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if _, err := s.CreateConvo(b.Context(), store.NewConvo{ID: "bench", CreatorDID: "did:plc:a", CipherSuite: "x",
				Members: []store.NewMember{{MemberDID: "did:plc:a#d", UserDID: "did:plc:a"}}}); err != nil {
				b.Fatal(err)
			}
			ct := make([]byte, 512)
			var n atomic.Int64
			b.SetBytes(int64(len(ct)))
			b.ResetTimer()
			run := func() {
				id := "m" + strconv.FormatInt(n.Add(1), 10)
				if _, err := s.AppendMessage(b.Context(), store.NewMessage{ConvoID: "bench", MsgID: id, Ciphertext: ct, PaddedSize: 512}); err != nil {
					b.Error(err)
				}
			}
			if conc == 1 {
				for b.Loop() {
					run()
				}
			} else {
				b.SetParallelism(conc) // goroutines = conc × GOMAXPROCS
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						run()
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkMessages measures a getMessages page (limit 100 from a random
// sinceSeq) on a conversation of CAIRN_BENCH_MESSAGES messages (default
// 100000; the figure is 1000000), reporting p50 and p99.
func BenchmarkMessages(b *testing.B) {
	n := int64(100_000)
	if v := os.Getenv("CAIRN_BENCH_MESSAGES"); v != "" {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 1000 {
			b.Fatalf("CAIRN_BENCH_MESSAGES=%q: want an integer >= 1000", v)
		}
	}
	path := filepath.Join(b.TempDir(), "bench.db")
	s, err := sqlite.Open(b.Context(), sqlite.Config{Path: path})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateConvo(b.Context(), store.NewConvo{ID: "big", CreatorDID: "did:plc:a", CipherSuite: "x",
		Members: []store.NewMember{{MemberDID: "did:plc:a#d", UserDID: "did:plc:a"}}}); err != nil {
		b.Fatal(err)
	}
	// Bulk-load directly: going through AppendMessage would take minutes.
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(b.Context(), `WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < ?)
		INSERT INTO messages (convo_id, seq, epoch, msg_id, ciphertext, padded_size, received_bucket)
		SELECT 'big', i, 0, 'm' || i, zeroblob(512), 512, 0 FROM g`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := db.ExecContext(b.Context(), `UPDATE convos SET last_seq = ? WHERE id = 'big'`, n); err != nil {
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
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkAppendTail measures the latency of single appends one at a
// time, as a fan-out's sendMessage makes them, reporting the tail: p50,
// p99.9, the slowest, and how many took over 50 ms. Run it with a
// -benchtime of several thousand appends (e.g. 20000x) so the WAL passes
// SQLite's checkpoint size (1,000 pages) several times.
func BenchmarkAppendTail(b *testing.B) {
	s, err := sqlite.Open(b.Context(), sqlite.Config{Path: filepath.Join(b.TempDir(), "bench.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateConvo(b.Context(), store.NewConvo{ID: "bench", CreatorDID: "did:plc:a", CipherSuite: "x",
		Members: []store.NewMember{{MemberDID: "did:plc:a#d", UserDID: "did:plc:a"}}}); err != nil {
		b.Fatal(err)
	}
	ct := make([]byte, 512)
	lat := make([]time.Duration, 0, 1024)
	n := 0
	for b.Loop() {
		n++
		start := time.Now()
		if _, err := s.AppendMessage(b.Context(), store.NewMessage{ConvoID: "bench", MsgID: "m" + strconv.Itoa(n), Ciphertext: ct, PaddedSize: 512}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	slow := len(lat) - sort.Search(len(lat), func(i int) bool { return lat[i] > 50*time.Millisecond })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*999/1000].Microseconds()), "p99.9-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds()), "max-µs")
	b.ReportMetric(float64(slow), "over-50ms")
}
