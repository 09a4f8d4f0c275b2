package certstore_test

import (
	"context"
	"testing"

	"github.com/caddyserver/certmagic"

	"github.com/cairn-chat/cairn-caddy/internal/certstore"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// benchStorages are the storages the benchmarks compare: this package on
// the test PostgreSQL, and certmagic's FileStorage on local disk (Caddy's
// default).
func benchStorages(b *testing.B) map[string]func(b *testing.B) certmagic.Storage {
	return map[string]func(b *testing.B) certmagic.Storage{
		"postgres": func(b *testing.B) certmagic.Storage {
			return newStorage(b, certstore.Config{URL: testenv.Postgres(b), Key: testKey(b)})
		},
		"file": func(b *testing.B) certmagic.Storage {
			return &certmagic.FileStorage{Path: b.TempDir()}
		},
	}
}

// BenchmarkLoad reads a certificate-sized value (a 3 KiB chain), as Caddy
// does at start-up and when it picks up another node's renewal.
func BenchmarkLoad(b *testing.B) {
	value := make([]byte, 3<<10)
	for _, name := range []string{"postgres", "file"} {
		b.Run(name, func(b *testing.B) {
			s := benchStorages(b)[name](b)
			ctx := context.Background()
			const key = "certificates/acme-v02.api.letsencrypt.org-directory/chat.example/chat.example.crt"
			if err := s.Store(ctx, key, value); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Load(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkLock takes and releases an uncontended lock, as Caddy does
// around every certificate it obtains or renews.
func BenchmarkLock(b *testing.B) {
	for _, name := range []string{"postgres", "file"} {
		b.Run(name, func(b *testing.B) {
			s := benchStorages(b)[name](b)
			ctx := context.Background()
			if err := s.Lock(ctx, "warm-up"); err != nil {
				b.Fatal(err)
			}
			if err := s.Unlock(ctx, "warm-up"); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if err := s.Lock(ctx, "issue_cert_chat.example"); err != nil {
					b.Fatal(err)
				}
				if err := s.Unlock(ctx, "issue_cert_chat.example"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
