package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TransactionPooler starts PgBouncer in transaction pooling mode in front of
// the database at databaseURL, on a free loopback port, and returns the URL
// to reach that database through it. Consecutive transactions of one client
// connection may run on different server connections there, which is what
// code that claims to work behind such poolers must survive. The PgBouncer
// of Debian 12 (1.18) cannot carry named prepared statements in this mode,
// so pgx's default statement cache fails through it; code that does not
// choose another exec mode itself needs default_query_exec_mode=exec in
// the URL.
//
// Without pgbouncer installed the test is skipped, unless
// CAIRN_REQUIRE_SERVICES=1, where it fails. PgBouncer refuses to run as
// root, so as root it is started with -u nobody.
func TransactionPooler(t testing.TB, databaseURL string) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
				break
			}
		}
	}
	if err != nil {
		unavailable(t, "pgbouncer", err)
		return ""
	}
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	server := fmt.Sprintf("host=%s port=%s user=%s", host, port, u.User.Username())
	if pw, ok := u.User.Password(); ok {
		server += " password=" + pw
	}
	listen := Port(t)

	// A directory other users can read: PgBouncer may drop to nobody.
	dir, err := os.MkdirTemp("", "cairn-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ini := fmt.Sprintf(`[databases]
* = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 4
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
`, server, listen)
	cfg := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{cfg}
	if os.Geteuid() == 0 {
		args = []string{"-u", "nobody", cfg}
	}
	cmd := exec.Command(bin, args...)
	var out SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	proc, err := StartProcess(t, cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proc.Kill)

	pooled := *u
	pooled.Host = fmt.Sprintf("127.0.0.1:%d", listen)
	probe := pooled
	q := probe.Query()
	q.Set("default_query_exec_mode", "exec")
	probe.RawQuery = q.Encode()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, probe.String())
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return pooled.String()
		}
		select {
		case <-proc.Done():
			t.Fatalf("pgbouncer exited: %s", strings.TrimSpace(out.String()))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer did not accept connections: %v\n%s", err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
