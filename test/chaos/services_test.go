package chaos

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// missing skips the test for a tool that is not installed, or fails it
// when services are required.
func missing(t *testing.T, what string, err error) {
	t.Helper()
	if testenv.RequireServices() {
		t.Fatalf("%s is required (CAIRN_REQUIRE_SERVICES=1): %v", what, err)
	}
	t.Skipf("%s not available: %v", what, err)
}

// pgCluster is a PostgreSQL cluster the test owns: its own data directory
// and port, so it can be killed without touching the shared server.
type pgCluster struct {
	t    *testing.T
	bin  string // directory of initdb and pg_ctl
	dir  string
	port int
	// asPostgres runs the tools as the postgres OS user: PostgreSQL
	// refuses to run as root.
	asPostgres bool
}

// pgBinDir finds the directory holding initdb and pg_ctl: pg_config's
// bindir, else the newest /usr/lib/postgresql/<v>/bin (Debian keeps them
// off PATH).
func pgBinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := string(bytes.TrimSpace(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		return "", fmt.Errorf("no initdb in pg_config's bindir or /usr/lib/postgresql/*/bin")
	}
	sort.Slice(found, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(found[j]))))
		return vi < vj
	})
	return filepath.Dir(found[len(found)-1]), nil
}

// newPGCluster initialises a cluster in a fresh directory and starts it.
// It is stopped and removed when the test ends.
func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	bin, err := pgBinDir()
	if err != nil {
		missing(t, "PostgreSQL server binaries", err)
	}
	c := &pgCluster{t: t, bin: bin, port: gatewaytest.FreePort(t), asPostgres: os.Geteuid() == 0}
	// Not t.TempDir: its parents are private to root, and the server
	// runs as postgres.
	c.dir, err = os.MkdirTemp("", "cairn-chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(c.dir) })
	if c.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			missing(t, "the postgres OS user", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(c.dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	c.run("initdb", "-D", c.data(), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
	c.start()
	t.Cleanup(func() {
		c.stop("fast")
		if log, err := os.ReadFile(filepath.Join(c.dir, "server.log")); err == nil && t.Failed() {
			t.Logf("PostgreSQL log (last 8 KiB):\n%s", log[max(0, len(log)-8<<10):])
		}
	})
	return c
}

func (c *pgCluster) data() string { return filepath.Join(c.dir, "data") }

// run runs one of the cluster tools and fails the test if it fails.
func (c *pgCluster) run(tool string, args ...string) {
	c.t.Helper()
	if err := c.runErr(tool, args...); err != nil {
		c.t.Fatal(err)
	}
}

func (c *pgCluster) runErr(tool string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := filepath.Join(c.bin, tool)
	if c.asPostgres {
		args = append([]string{"-u", "postgres", "--", name}, args...)
		name = "runuser"
	}
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w\n%s", tool, args, err, out)
	}
	return nil
}

// start starts the server and waits until it accepts connections.
func (c *pgCluster) start() {
	c.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=60 -c shared_buffers=16MB", c.port, c.dir)
	c.run("pg_ctl", "start", "-w", "-t", "120", "-D", c.data(), "-l", filepath.Join(c.dir, "server.log"), "-o", opts)
}

// stop stops the server: mode "immediate" kills it as a crash would (no
// checkpoint; it recovers from the WAL on the next start).
func (c *pgCluster) stop(mode string) {
	c.t.Helper()
	if err := c.runErr("pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", c.data()); err != nil {
		c.t.Log(err) // already stopped, say
	}
}

// url is the address of the cluster's postgres database.
func (c *pgCluster) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.port)
}

// database creates a database on the cluster and returns its URL.
func (c *pgCluster) database(name string) string {
	c.t.Helper()
	conn, err := pgx.Connect(c.t.Context(), c.url())
	if err != nil {
		c.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(c.t.Context(), "CREATE DATABASE "+name); err != nil {
		c.t.Fatal(err)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, name)
}

// eventually polls cond until it holds, failing the test after a generous
// bound: it waits for a state, it does not time anything.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
