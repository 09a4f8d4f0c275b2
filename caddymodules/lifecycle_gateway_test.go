package caddymodules_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// isolated is a process environment of its own: HOME, the XDG data and
// config directories and the working directory are fresh temp dirs, so
// every file the process creates lands where the test can see it.
type isolated struct {
	root, home, data, config, work string
}

func newIsolated(t *testing.T) isolated {
	t.Helper()
	root := t.TempDir()
	iso := isolated{
		root:   root,
		home:   filepath.Join(root, "home"),
		data:   filepath.Join(root, "xdg-data"),
		config: filepath.Join(root, "xdg-config"),
		work:   filepath.Join(root, "work"),
	}
	for _, d := range []string{iso.home, iso.data, iso.config, iso.work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return iso
}

// cairnDataDir is the cairn app's default data_dir in this environment.
func (iso isolated) cairnDataDir() string { return filepath.Join(iso.data, "caddy", "cairn") }

// run runs the built binary with args in the isolated environment plus
// env, and returns its combined output.
func (iso isolated) run(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(builder.Binary(t), args...)
	cmd.Dir = iso.work
	cmd.Env = append(os.Environ(),
		"HOME="+iso.home,
		"XDG_DATA_HOME="+iso.data,
		"XDG_CONFIG_HOME="+iso.config,
		"CAIRN_LOG_HASH_KEY=",
		"CAIRN_REDIS_URL=",
	)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// gatewayEnv is the environment for Caddyfile.example run in iso on free
// ports, plus extra.
func (iso isolated) gatewayEnv(t *testing.T, extra ...string) []string {
	t.Helper()
	env := []string{"HOME=" + iso.home, "XDG_DATA_HOME=" + iso.data, "XDG_CONFIG_HOME=" + iso.config,
		"CAIRN_DOMAIN=localhost", "CAIRN_LOG_HASH_KEY=", "CAIRN_REDIS_URL=",
		fmt.Sprintf("CAIRN_HTTPS_PORT=%d", gatewaytest.FreePort(t)), fmt.Sprintf("CAIRN_HTTP_PORT=%d", gatewaytest.FreePort(t)),
		fmt.Sprintf("CAIRN_ADMIN_ADDR=127.0.0.1:%d", gatewaytest.FreePort(t)), fmt.Sprintf("CAIRN_METRICS_ADDR=127.0.0.1:%d", gatewaytest.FreePort(t))}
	return append(env, extra...)
}

// files lists every path under root, relative to it.
func files(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// created returns the paths in after that are not in before.
func created(before, after []string) []string {
	had := map[string]bool{}
	for _, p := range before {
		had[p] = true
	}
	var out []string
	for _, p := range after {
		if !had[p] {
			out = append(out, p)
		}
	}
	return out
}

// caddyPKI is where Caddy's own pki app keeps its local CA. Caddyfile.example's
// `skip_install_trust` configures that app, and Caddy provisions it (which
// generates the CA) whenever it provisions the config, validate included.
// That is Caddy's behaviour, not cairn's; the test allows exactly it.
var caddyPKI = filepath.Join("xdg-data", "caddy", "pki")

// countingListener accepts TCP connections on a loopback port and counts
// them, answering nothing: a database URL pointing at it proves whether a
// process tried to connect at all.
func countingListener(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return l.Addr().String(), accepted
}

// dbStats reads the activity PostgreSQL has recorded for database name,
// from another database, so reading does not add to it.
func dbStats(t *testing.T, name string) (backends, commits, rollbacks int64) {
	t.Helper()
	admin, err := pgx.Connect(t.Context(), testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	// Ask for fresh numbers: statistics are otherwise cached per
	// transaction.
	if _, err := admin.Exec(t.Context(), `SELECT pg_stat_clear_snapshot()`); err != nil {
		t.Fatal(err)
	}
	err = admin.QueryRow(t.Context(), `SELECT numbackends, xact_commit, xact_rollback FROM pg_stat_database WHERE datname = $1`, name).
		Scan(&backends, &commits, &rollbacks)
	if err != nil {
		t.Fatal(err)
	}
	return
}

// tables lists the tables in the database at url.
func tables(t *testing.T, url string) []string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(t.Context(), `SELECT table_name::text FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func dbName(t *testing.T, url string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

func exampleCaddyfile(t *testing.T) string {
	t.Helper()
	return filepath.Join(gatewaytest.RepoRoot(), "Caddyfile.example")
}

// TestValidateAndAdaptHaveNoSideEffects runs the real binary's validate and
// adapt on Caddyfile.example, on SQLite and on PostgreSQL (with Redis
// configured), and proves they create no file, open no database or Redis
// connection and apply no migration.
func TestValidateAndAdaptHaveNoSideEffects(t *testing.T) {
	pgURL := testenv.Postgres(t)
	unreachableAddr, attempts := countingListener(t)
	// Redis too: the config names one, and nothing may dial it.
	redisAddr, redisDials := countingListener(t)
	for _, tc := range []struct {
		name, database string
	}{
		{"sqlite", ""},
		// A listener that only counts: any dial, write or not, shows.
		{"postgres-listener", "postgres://cairn:secret@" + unreachableAddr + "/cairn?connect_timeout=2"},
		// A real, fresh database: its statistics and tables show what a
		// connection would have done.
		{"postgres", pgURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iso := newIsolated(t)
			env := []string{"CAIRN_DATABASE_URL=" + tc.database, "CAIRN_DOMAIN=localhost", "CAIRN_REDIS_URL=redis://" + redisAddr + "/0"}
			before := files(t, iso.root)
			var b0, c0, r0 int64
			if tc.name == "postgres" {
				b0, c0, r0 = dbStats(t, dbName(t, pgURL))
			}

			if out, err := iso.run(t, env, "validate", "--config", exampleCaddyfile(t), "--adapter", "caddyfile"); err != nil || !strings.Contains(out, "Valid configuration") {
				t.Fatalf("validate: %v\n%s", err, out)
			}
			for _, p := range created(before, files(t, iso.root)) {
				if p != caddyPKI && !strings.HasPrefix(p, caddyPKI+string(filepath.Separator)) && p != filepath.Dir(caddyPKI) {
					t.Errorf("validate created %s", p)
				}
			}
			if _, err := os.Stat(iso.cairnDataDir()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("validate created the cairn data directory (stat: %v)", err)
			}

			afterValidate := files(t, iso.root)
			if out, err := iso.run(t, env, "adapt", "--config", exampleCaddyfile(t), "--adapter", "caddyfile"); err != nil || !strings.Contains(out, `"cairn"`) {
				t.Fatalf("adapt: %v\n%s", err, out)
			}
			if c := created(afterValidate, files(t, iso.root)); len(c) != 0 {
				t.Errorf("adapt created %v", c)
			}

			if n := redisDials.Load(); n != 0 {
				t.Errorf("validate and adapt dialled Redis %d times", n)
			}
			switch tc.name {
			case "postgres-listener":
				if n := attempts.Load(); n != 0 {
					t.Errorf("validate and adapt dialled the database %d times", n)
				}
			case "postgres":
				b1, c1, r1 := dbStats(t, dbName(t, pgURL))
				if b1 != b0 || c1 != c0 || r1 != r0 {
					t.Errorf("the database saw activity: backends %d→%d, commits %d→%d, rollbacks %d→%d", b0, b1, c0, c1, r0, r1)
				}
				if ts := tables(t, pgURL); len(ts) != 0 {
					t.Errorf("validate applied migrations: tables %v", ts)
				}
			}
		})
	}
}

// migrateJSON runs `migrate <args> --json` and decodes its output.
func migrateJSON(t *testing.T, iso isolated, env []string, args ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(builder.Binary(t), append(append([]string{"migrate"}, args...), "--json")...)
	cmd.Dir = iso.work
	cmd.Env = append(os.Environ(), "HOME="+iso.home, "XDG_DATA_HOME="+iso.data, "XDG_CONFIG_HOME="+iso.config)
	cmd.Env = append(cmd.Env, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("migrate %v: %v\nstderr: %s", args, err, stderr.String())
	}
	var v map[string]any
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("migrate %v --json printed %q: %v", args, out, err)
	}
	return v
}

func names(v any) []string {
	var out []string
	for _, m := range v.([]any) {
		out = append(out, m.(map[string]any)["name"].(string))
	}
	return out
}

// TestMigrateCommand drives `cairn-caddy migrate` on both backends, finding
// the database from Caddyfile.example as `run` would and directly.
func TestMigrateCommand(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			iso := newIsolated(t)
			var env, direct []string
			if backend == "postgres" {
				url := testenv.Postgres(t)
				env = []string{"CAIRN_DATABASE_URL=" + url}
				direct = []string{"--database", url}
			} else {
				env = []string{"CAIRN_DATABASE_URL="}
				direct = []string{"--data-dir", iso.cairnDataDir()}
			}
			config := []string{"--config", exampleCaddyfile(t)}

			st := migrateJSON(t, iso, env, append([]string{"status"}, config...)...)
			pending := names(st["pending"])
			if st["backend"] != backend || st["current"] != float64(0) || st["up_to_date"] != false || len(pending) == 0 {
				t.Fatalf("status of a fresh database: %v", st)
			}
			if backend == "sqlite" {
				if _, err := os.Stat(iso.cairnDataDir()); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("status created the data directory (stat: %v)", err)
				}
			}
			dry := migrateJSON(t, iso, env, append([]string{"up", "--dry-run"}, config...)...)
			if dry["dry_run"] != true || strings.Join(names(dry["migrations"]), ",") != strings.Join(pending, ",") {
				t.Fatalf("up --dry-run: %v, want the pending %v", dry, pending)
			}
			if again := migrateJSON(t, iso, env, append([]string{"status"}, direct...)...); again["current"] != float64(0) {
				t.Fatalf("--dry-run applied migrations: %v", again)
			}
			up := migrateJSON(t, iso, env, append([]string{"up"}, direct...)...)
			if up["dry_run"] != false || strings.Join(names(up["migrations"]), ",") != strings.Join(pending, ",") {
				t.Fatalf("up: %v, want %v applied", up, pending)
			}
			st = migrateJSON(t, iso, env, append([]string{"status"}, config...)...)
			if st["up_to_date"] != true || st["current"] != st["latest"] {
				t.Fatalf("status after up: %v", st)
			}
			if up := migrateJSON(t, iso, env, append([]string{"up"}, config...)...); len(names(up["migrations"])) != 0 {
				t.Fatalf("a second up applied %v", up)
			}
			// Plain text, for people.
			out, err := iso.run(t, env, append([]string{"migrate", "status"}, config...)...)
			if err != nil || !strings.Contains(out, "up to date") {
				t.Fatalf("migrate status: %v\n%s", err, out)
			}
		})
	}
}

func TestMigrateCommandErrorsAreOneActionableLine(t *testing.T) {
	iso := newIsolated(t)
	addr, _ := countingListener(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate", "status"}, "pass --config"},
		{[]string{"migrate", "status", "--config", "/nonexistent/Caddyfile"}, "does not exist"},
		{[]string{"migrate", "up", "--database", "mysql://x/y"}, "PostgreSQL URL"},
		{[]string{"migrate", "up", "--database", "postgres://a@b/c", "--data-dir", "/x"}, "not both"},
		{[]string{"migrate", "status", "--database", "postgres://cairn:hunter2@" + addr + "/cairn?connect_timeout=2"}, "reading the schema"},
	} {
		out, err := iso.run(t, nil, tc.args...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%v: %v, want exit status 1\n%s", tc.args, err, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "cairn-caddy migrate: ") || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v printed %q, want one line naming %q", tc.args, out, tc.want)
		}
		if strings.Contains(out, "hunter2") || strings.Contains(out, "goroutine") {
			t.Errorf("%v printed a password or a stack trace: %q", tc.args, out)
		}
	}
}

// recordFutureMigration marks a migration newer than the binary as
// applied, as a newer cairn-caddy would have.
func recordFutureMigration(t *testing.T, backend, dsn string) {
	t.Helper()
	if backend == "postgres" {
		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(t.Context(), `INSERT INTO schema_migrations VALUES (9999, '9999_from_the_future.sql', now())`); err != nil {
			t.Fatal(err)
		}
		return
	}
	out, err := exec.Command("sqlite3", dsn, `INSERT INTO schema_migrations VALUES (9999, '9999_from_the_future.sql', 0)`).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3: %v %s", err, out)
	}
}

// TestRunMigratesServesAndRefusesANewerSchema starts Caddyfile.example on
// each backend: run migrates a fresh database and serves the delivery
// service from it; once a newer binary's migration is recorded, run and
// migrate up both refuse, saying how to roll back.
func TestRunMigratesServesAndRefusesANewerSchema(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			iso := newIsolated(t)
			var env []string
			var dsn string
			if backend == "postgres" {
				dsn = testenv.Postgres(t)
				env = []string{"CAIRN_DATABASE_URL=" + dsn}
			} else {
				env = []string{"CAIRN_DATABASE_URL="}
			}
			eg := startExample(t, append(env, "HOME="+iso.home, "XDG_DATA_HOME="+iso.data, "XDG_CONFIG_HOME="+iso.config)...)
			// subscribeConvoEvents reaches cairn_delivery without cairn_auth:
			// its answer comes from the realtime server over the open store.
			resp, body := eg.get(t, "/xrpc/blue.catbird.mls.subscribeConvoEvents", nil)
			if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest {
				t.Fatalf("subscribeConvoEvents without a ticket: %d %s", resp.StatusCode, body)
			}
			if st := migrateJSON(t, iso, env, "status", "--config", exampleCaddyfile(t)); st["up_to_date"] != true {
				t.Fatalf("run did not migrate: %v", st)
			}
			if _, err := os.Stat(filepath.Join(iso.cairnDataDir(), "log-hash.key")); err != nil {
				t.Fatalf("run did not write the generated log-hash key: %v", err)
			}
			eg.Stop()

			if backend == "sqlite" {
				dsn = filepath.Join(iso.cairnDataDir(), "cairn.db")
			}
			recordFutureMigration(t, backend, dsn)
			out, err := iso.run(t, env, "migrate", "up", "--config", exampleCaddyfile(t))
			if err == nil || !strings.Contains(out, "9999_from_the_future.sql") || !strings.Contains(out, "cairn-caddy rollback") {
				t.Fatalf("migrate up on a newer schema: %v\n%s", err, out)
			}
			_, err = gatewaytest.StartErr(t, &builder, gatewaytest.Options{
				Caddyfile: mustRead(t, exampleCaddyfile(t)),
				Home:      iso.root,
				Env:       iso.gatewayEnv(t, env...),
				ReadyURL:  "http://127.0.0.1:1/never",
			})
			if err == nil || !strings.Contains(err.Error(), "exited during start-up") || !strings.Contains(err.Error(), "newer than this binary knows") || !strings.Contains(err.Error(), "cairn-caddy rollback") {
				t.Fatalf("run on a newer schema: %v", err)
			}
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// TestRunFailsFastOnAnUnreachableDatabase: with the store opened at Start
// rather than at Provision, `run` must still refuse to serve, naming the
// database (without its password), when PostgreSQL does not answer.
func TestRunFailsFastOnAnUnreachableDatabase(t *testing.T) {
	iso := newIsolated(t)
	dead := fmt.Sprintf("postgres://cairn:hunter2@127.0.0.1:%d/cairn?connect_timeout=2", gatewaytest.FreePort(t))
	_, err := gatewaytest.StartErr(t, &builder, gatewaytest.Options{
		Caddyfile: mustRead(t, exampleCaddyfile(t)),
		Home:      iso.root,
		Env:       iso.gatewayEnv(t, "CAIRN_DATABASE_URL="+dead),
		ReadyURL:  "http://127.0.0.1:1/never",
	})
	if err == nil || !strings.Contains(err.Error(), "exited during start-up") || !strings.Contains(err.Error(), "cairn database (PostgreSQL postgres://cairn:xxxxx@127.0.0.1") {
		t.Fatalf("run against an unreachable database: %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatal("the start-up error shows the database password")
	}
}

// TestValidateDoesNotContactTheOIDCProvider: cairn_operator_auth discovers
// its provider when the server starts, not when the config is validated.
func TestValidateDoesNotContactTheOIDCProvider(t *testing.T) {
	iso := newIsolated(t)
	issuerAddr, dials := countingListener(t)
	config := filepath.Join(iso.root, "Caddyfile")
	text := fmt.Sprintf("{\n\tadmin off\n}\nhttp://127.0.0.1:%d {\n\tcairn_operator_auth {\n\t\toidc {\n\t\t\tissuer https://%s/\n\t\t\taudience cairn\n\t\t\trequired_role admin\n\t\t}\n\t}\n}\n",
		gatewaytest.FreePort(t), issuerAddr)
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := iso.run(t, nil, "validate", "--config", config, "--adapter", "caddyfile"); err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
	if n := dials.Load(); n != 0 {
		t.Fatalf("validate dialled the OIDC issuer %d times", n)
	}
}

// TestMigrateCommandReadsJSONConfig: a JSON config (here, the adapted
// Caddyfile.example) names the same database as its Caddyfile.
func TestMigrateCommandReadsJSONConfig(t *testing.T) {
	iso := newIsolated(t)
	env := []string{"CAIRN_DATABASE_URL="}
	jsonConfig := filepath.Join(iso.root, "caddy.json")
	// adapt writes the JSON to stdout, its logs to stderr.
	cmd := exec.Command(builder.Binary(t), "adapt", "--config", exampleCaddyfile(t), "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+iso.home, "XDG_DATA_HOME="+iso.data, "XDG_CONFIG_HOME="+iso.config, "CAIRN_DATABASE_URL=")
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("adapt: %v", err)
	}
	if err := os.WriteFile(jsonConfig, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	fromJSON := migrateJSON(t, iso, env, "status", "--config", jsonConfig)
	fromCaddyfile := migrateJSON(t, iso, env, "status", "--config", exampleCaddyfile(t))
	want := "SQLite " + filepath.Join(iso.cairnDataDir(), "cairn.db")
	if fromJSON["database"] != want || fromCaddyfile["database"] != want {
		t.Fatalf("JSON config names %v, Caddyfile %v; want %s", fromJSON["database"], fromCaddyfile["database"], want)
	}
}
