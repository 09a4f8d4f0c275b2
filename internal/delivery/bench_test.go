package delivery_test

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
)

// BenchmarkSendMessage measures sendMessage through the handler (decode,
// MLS parse, membership, idempotent append) on each store, with
// b.SetParallelism controlling concurrency (-cpu sets GOMAXPROCS).
func BenchmarkSendMessage(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			e := newEnv(b, be.open)
			g := e.createConvo(b, alice, bob)
			ct := app(b, g, 0)
			body := b64bytes(ct)
			var n atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := n.Add(1)
					r := e.post(alice, "sendMessage", obj{"convoId": g, "msgId": fmt.Sprintf("b%d", id), "ciphertext": body, "epoch": 0, "paddedSize": 512})
					if r.status != http.StatusOK {
						b.Errorf("send: %d %s", r.status, r.raw)
						return
					}
				}
			})
		})
	}
}
