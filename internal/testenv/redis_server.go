package testenv

import (
	"context"

	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisServer is a redis-server of the test's own, on a free loopback port
// with its data in a temporary directory, for tests that restart, flush or
// stop Redis: the shared test Redis must never be touched that way. It runs
// without automatic persistence; Save writes a snapshot that the next
// Restart(t, true) loads.
type RedisServer struct {
	bin  string
	dir  string
	port int
	proc *Process
}

// StartRedisServer starts a RedisServer and stops it when the test ends.
// Without redis-server installed the test is skipped, or fails when
// CAIRN_REQUIRE_SERVICES=1.
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server", err)
		return nil
	}
	r := &RedisServer{bin: bin, dir: t.TempDir(), port: Port(t)}
	r.start(t)
	t.Cleanup(func() { r.Stop(t) })
	return r
}

// Addr is the server's host:port.
func (r *RedisServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL is the server's redis:// URL.
func (r *RedisServer) URL() string { return "redis://" + r.Addr() + "/0" }

// Client returns a new client of the server, closed when the test ends.
func (r *RedisServer) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Save writes a snapshot of the data (SAVE).
func (r *RedisServer) Save(t testing.TB) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Save(ctx).Err(); err != nil {
		t.Fatalf("redis SAVE: %v", err)
	}
}

// Restart kills the server and starts it again on the same port: with the
// last snapshot when keepSnapshot, else empty.
func (r *RedisServer) Restart(t testing.TB, keepSnapshot bool) {
	t.Helper()
	r.Stop(t)
	if !keepSnapshot {
		if err := os.Remove(filepath.Join(r.dir, "dump.rdb")); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	r.start(t)
}

// Stop kills the server (as a crash would: nothing is saved).
func (r *RedisServer) Stop(t testing.TB) {
	if r.proc == nil {
		return
	}
	r.proc.Kill()
	r.proc = nil
}

func (r *RedisServer) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(r.bin, "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no")
	var err error
	if r.proc, err = StartProcess(t, cmd); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			r.Stop(t)
			t.Fatalf("redis-server on %d did not start: %v", r.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
