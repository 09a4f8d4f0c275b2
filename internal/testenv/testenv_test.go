package testenv

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestPostgresGivesAnEmptyDatabase(t *testing.T) {
	url := Postgres(t)
	conn, err := pgx.Connect(context.Background(), url)
	Must(t, err, "connect to test database")
	defer conn.Close(context.Background())
	var n int
	Must(t, conn.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&n), "count tables")
	if n != 0 {
		t.Fatalf("fresh database has %d tables", n)
	}
}

func TestRedisGivesAPrefix(t *testing.T) {
	c, prefix := Redis(t)
	ctx := context.Background()
	Must(t, c.Set(ctx, prefix+"k", "v", 0).Err(), "set")
	if v, _ := c.Get(ctx, prefix+"k").Result(); v != "v" {
		t.Fatalf("get = %q", v)
	}
}
