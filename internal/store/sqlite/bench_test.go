package sqlite_test

import (
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

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
