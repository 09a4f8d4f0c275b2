package caddymodules

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap/zapcore"

	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
	"github.com/cairn-chat/cairn-caddy/internal/worker"
)

func provisionApp(t *testing.T, a *App) error {
	t.Helper()
	// A context of an empty config, as Caddy gives an app: the app asks it
	// for the events app.
	base, err := caddy.ProvisionContext(&caddy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(base)
	t.Cleanup(cancel)
	if a.DataDir == "" {
		a.DataDir = t.TempDir()
	}
	err = a.Provision(ctx)
	if err == nil {
		t.Cleanup(func() { _ = a.Cleanup() })
	}
	return err
}

func TestAppLogLevelDefaultsToWarnInProduction(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", "")
	for _, tc := range []struct {
		mode, level string
		want        zapcore.Level
	}{
		{"", "", zapcore.WarnLevel},
		{ModeProduction, "", zapcore.WarnLevel},
		{ModeDevelopment, "", zapcore.InfoLevel},
		{ModeProduction, "debug", zapcore.DebugLevel},
	} {
		a := &App{Mode: tc.mode, LogLevel: tc.level}
		if err := provisionApp(t, a); err != nil {
			t.Fatal(err)
		}
		if a.logLevel != tc.want {
			t.Errorf("mode %q log_level %q: level %v, want %v", tc.mode, tc.level, a.logLevel, tc.want)
		}
	}
}

func TestAppLogHashKeySources(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("f", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("e", 40))

	hashWith := func(a *App) string {
		t.Helper()
		if err := provisionApp(t, a); err != nil {
			t.Fatal(err)
		}
		return a.Redact("did:plc:abc")
	}
	fromConfig := hashWith(&App{LogHashKey: strings.Repeat("c", 40)})
	fromFile := hashWith(&App{LogHashKeyFile: keyFile})
	fromEnv := hashWith(&App{})
	if fromConfig == fromFile || fromFile == fromEnv || fromConfig == fromEnv {
		t.Fatalf("key sources not distinct: %s %s %s", fromConfig, fromFile, fromEnv)
	}
	if again := hashWith(&App{LogHashKeyFile: keyFile}); again != fromFile {
		t.Fatal("the same key file gave a different hash")
	}

	// Without any key, Provision generates one in memory and writes
	// nothing; Start writes it into the data directory, and the next
	// Provision reads it back.
	t.Setenv("CAIRN_LOG_HASH_KEY", "")
	data := filepath.Join(t.TempDir(), "data")
	first := &App{DataDir: data}
	generated := hashWith(first)
	if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Provision created the data directory (stat: %v)", err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = first.Stop() })
	info, err := os.Stat(filepath.Join(data, "log-hash.key"))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("generated key file: %v, mode %v", err, info.Mode())
	}
	if again := hashWith(&App{DataDir: data}); again != generated {
		t.Fatal("the generated key was not reused")
	}
}

// TestAppStartRefusesAKeyFileWrittenMeanwhile covers two processes starting
// together on one data directory: the second must not run with a key the
// file does not hold.
func TestAppStartRefusesAKeyFileWrittenMeanwhile(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", "")
	data := t.TempDir()
	a, b := &App{DataDir: data}, &App{DataDir: data}
	if err := provisionApp(t, a); err != nil {
		t.Fatal(err)
	}
	if err := provisionApp(t, b); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	if err := b.Start(); err == nil || !strings.Contains(err.Error(), "start again") {
		t.Fatalf("a second start with another generated key: %v, want a refusal saying to start again", err)
	}
}

func TestAppRedactHonoursLogIdentitiesOnlyInDevelopment(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("d", 40))
	a := &App{Mode: ModeDevelopment, LogIdentities: true}
	if err := provisionApp(t, a); err != nil {
		t.Fatal(err)
	}
	if got := a.Redact("did:plc:abc"); got != "did:plc:abc" {
		t.Errorf("development log_identities: %q", got)
	}
	if err := provisionApp(t, &App{LogIdentities: true}); err == nil || !strings.Contains(err.Error(), "log_identities") {
		t.Errorf("production accepted log_identities: %v", err)
	}
}

func TestAppCaddyfile(t *testing.T) {
	var a App
	src := "cairn {\n mode development\n data_dir /tmp/x\n log_level debug\n log_hash_key abc\n redis redis://127.0.0.1:6379/0\n log_identities\n plc_url http://127.0.0.1:1\n did_web_allow_http\n resolver_allow_hosts a b\n}"
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
		t.Fatal(err)
	}
	if a.Mode != "development" || a.DataDir != "/tmp/x" || a.LogLevel != "debug" || a.Redis == "" || !a.LogIdentities || !a.DIDWebAllowHTTP || len(a.ResolverAllowHosts) != 2 {
		t.Fatalf("parsed mode %q data_dir %q log_level %q redis %q", a.Mode, a.DataDir, a.LogLevel, a.Redis)
	}
	var empty App
	if err := empty.UnmarshalCaddyfile(caddyfile.NewTestDispenser("cairn {\n redis\n log_level\n}")); err != nil || empty.Redis != "" || empty.LogLevel != "" {
		t.Fatalf("an empty redis value must mean no Redis, an empty log_level the default: %v %q %q", err, empty.Redis, empty.LogLevel)
	}
	for _, bad := range []string{"cairn {\n mode\n}", "cairn {\n bogus\n}", "cairn {\n mode a b\n}", "cairn {\n log_level a b\n}", "cairn arg"} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// startStore provisions a with a module's request for the store, starts
// it and returns what it opened.
func startStore(t *testing.T, a *App) (*Running, error) {
	t.Helper()
	if err := provisionApp(t, a); err != nil {
		return nil, err
	}
	a.UseStore()
	if err := a.Start(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = a.Stop() })
	return a.Ready(context.Background())
}

func TestAppStoreIsSQLiteByDefaultAndPostgresWhenConfigured(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("s", 40))
	ctx := context.Background()

	a := &App{Retention: &RetentionConfig{Interval: caddy.Duration(time.Hour)}}
	run, err := startStore(t, a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a.DataDir, "cairn.db")); err != nil {
		t.Fatalf("embedded database not in the data directory: %v", err)
	}
	if _, _, err := run.Store.ConvosForUser(ctx, "did:plc:nobody", "", 10); err != nil {
		t.Fatalf("migrated SQLite store does not answer: %v", err)
	}
	// A reload's app shares the open store and realtime node.
	b := &App{DataDir: a.DataDir}
	again, err := startStore(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if again.Store != run.Store || again.Realtime != run.Realtime {
		t.Error("a second app on the same data directory opened another store or hub")
	}

	pg := &App{Database: testenv.Postgres(t)}
	prun, err := startStore(t, pg)
	if err != nil {
		t.Fatalf("postgres store: %v", err)
	}
	if _, _, err := prun.Store.ConvosForUser(ctx, "did:plc:nobody", "", 10); err != nil {
		t.Fatalf("migrated postgres store does not answer: %v", err)
	}
}

func TestAppWithoutAStoreModuleOpensNothing(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("n", 40))
	a := &App{}
	if err := provisionApp(t, a); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	entries, err := os.ReadDir(a.DataDir)
	if err != nil || len(entries) != 0 {
		t.Fatalf("data directory after a start without store modules: %v %v", entries, err)
	}
	if _, err := a.Ready(context.Background()); err == nil {
		t.Fatal("Ready returned a store nobody asked for")
	}
}

func TestAppReadyWaitsForStartAndFailsWithIt(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("r", 40))
	a := &App{}
	if err := provisionApp(t, a); err != nil {
		t.Fatal(err)
	}
	a.UseStore()
	// Before Start, a request's wait ends only with its context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := a.Ready(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Ready before Start: %v, want the request's cancellation", err)
	}
	// A Start that fails releases the waiters with its error.
	if err := os.WriteFile(filepath.Join(a.DataDir, "cairn.db"), []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	startErr := a.Start()
	if startErr == nil {
		t.Fatal("Start on a corrupt database file succeeded")
	}
	if _, err := a.Ready(context.Background()); err == nil || err.Error() != startErr.Error() {
		t.Fatalf("Ready after a failed Start: %v, want %v", err, startErr)
	}
	// Unloading a config that never started releases them too.
	b := &App{}
	if err := provisionApp(t, b); err != nil {
		t.Fatal(err)
	}
	b.UseStore()
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Ready(context.Background()); err == nil {
		t.Fatal("Ready on an unloaded, never started app succeeded")
	}
}

func TestAppRetentionCaddyfileAndValidation(t *testing.T) {
	var a App
	src := "cairn {\n database postgres://x@127.0.0.1/db\n key_packages_per_device 50\n retention {\n  messages 14d\n  events 2d\n  consumed_welcomes 12h\n  interval 5m\n }\n}"
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
		t.Fatal(err)
	}
	r := a.Retention
	if a.Database == "" || time.Duration(r.Messages) != 14*24*time.Hour || time.Duration(r.Events) != 48*time.Hour || a.KeyPackagesPerDevice != 50 || time.Duration(r.Interval) != 5*time.Minute {
		t.Fatalf("parsed retention %+v database %q", r, a.Database)
	}
	for _, bad := range []string{"cairn {\n retention {\n  messages soon\n }\n}", "cairn {\n retention {\n  forever 1d\n }\n}", "cairn {\n key_packages_per_device 0\n}"} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	bad := &App{Retention: &RetentionConfig{Messages: caddy.Duration(24 * time.Hour), Events: caddy.Duration(48 * time.Hour)}}
	if err := provisionApp(t, bad); err == nil || !strings.Contains(err.Error(), "events") {
		t.Errorf("events outliving messages accepted: %v", err)
	}
}

// TestOneKeyPackageCap checks that the key-package cap is one setting of
// the cairn app, which both cairn_delivery and retention read, and that the
// two retired spellings are refused with an error naming the new one.
func TestOneKeyPackageCap(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("k", 32))
	a := &App{}
	if err := provisionApp(t, a); err != nil {
		t.Fatal(err)
	}
	if a.KeyPackagesPerDevice != delivery.DefaultMaxKeyPackagesPerDevice {
		t.Errorf("default cap %d, want delivery's default %d", a.KeyPackagesPerDevice, delivery.DefaultMaxKeyPackagesPerDevice)
	}
	a = &App{KeyPackagesPerDevice: 7, Retention: &RetentionConfig{Interval: caddy.Duration(time.Hour)}}
	if err := provisionApp(t, a); err != nil {
		t.Fatal(err)
	}
	if got := a.Retention.config(a.KeyPackagesPerDevice).KeyPackagesPerDevice; got != 7 {
		t.Errorf("retention trims to %d, want the app's 7", got)
	}
	if got := (*RetentionConfig)(nil).config(a.KeyPackagesPerDevice).KeyPackagesPerDevice; got != 7 {
		t.Errorf("retention without a block trims to %d, want the app's 7", got)
	}
	retired := []struct {
		src   string
		parse func(*caddyfile.Dispenser) error
	}{
		{"cairn {\n retention {\n  key_packages_per_device 50\n }\n}", new(App).UnmarshalCaddyfile},
		{"cairn_delivery {\n max_key_packages_per_device 50\n}", new(Delivery).UnmarshalCaddyfile},
	}
	for _, tc := range retired {
		err := tc.parse(caddyfile.NewTestDispenser(tc.src))
		if err == nil || !strings.Contains(err.Error(), "`key_packages_per_device 50` ") || !strings.Contains(err.Error(), "cairn global options") {
			t.Errorf("%q: error %v, want one naming the cairn option key_packages_per_device", tc.src, err)
		}
	}
}

func TestAppStreamsCaddyfileAndValidation(t *testing.T) {
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("cairn {\n streams {\n  max_per_did 3\n  max 50000\n  notifier redis\n }\n}")); err != nil {
		t.Fatal(err)
	}
	if a.Streams == nil || a.Streams.MaxPerDID != 3 || a.Streams.Max != 50000 || a.Streams.Notifier != NotifierRedis {
		t.Fatalf("parsed streams %+v", a.Streams)
	}
	for _, bad := range []string{
		"cairn {\n streams {\n  max_per_did 0\n }\n}",
		"cairn {\n streams {\n  max lots\n }\n}",
		"cairn {\n streams {\n  per_ip 3\n }\n}",
		"cairn {\n streams {\n  max 1 2\n }\n}",
		"cairn {\n streams {\n  notifier kafka\n }\n}",
	} {
		var a App
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil || !strings.Contains(err.Error(), "streams") {
			t.Errorf("%q: err = %v, want a refusal naming streams", bad, err)
		}
	}
	if err := provisionApp(t, &App{Streams: &StreamsConfig{MaxPerDID: -1}}); err == nil || !strings.Contains(err.Error(), "max_per_did") {
		t.Errorf("a negative cap accepted: %v", err)
	}
	if err := provisionApp(t, &App{Streams: &StreamsConfig{Notifier: "kafka"}}); err == nil || !strings.Contains(err.Error(), "notifier") {
		t.Errorf("an unknown notifier accepted: %v", err)
	}
	// On the embedded SQLite store there is one node: a notifier is a
	// misunderstanding, refused by validation.
	if err := provisionApp(t, &App{Streams: &StreamsConfig{Notifier: NotifierPostgres}}); err == nil || !strings.Contains(err.Error(), "SQLite") {
		t.Errorf("a notifier on SQLite accepted: %v", err)
	}
	// notifier redis without redis names what is missing.
	noRedis := &App{Database: "postgres://cairn@127.0.0.1/cairn", Streams: &StreamsConfig{Notifier: NotifierRedis}}
	if err := provisionApp(t, noRedis); err == nil || !strings.Contains(err.Error(), "redis option") {
		t.Errorf("notifier redis without redis accepted: %v", err)
	}
}

func TestAppManualMigrationsRefusePendingOnes(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("m", 40))
	var parsed App
	if err := parsed.UnmarshalCaddyfile(caddyfile.NewTestDispenser("cairn {\n migrations manual\n}")); err != nil || parsed.Migrations != MigrationsManual {
		t.Fatalf("parsed migrations %q, %v", parsed.Migrations, err)
	}
	if err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("cairn {\n migrations sometimes\n}")); err == nil || !strings.Contains(err.Error(), "migrations") {
		t.Fatalf("an unknown migrations mode: %v", err)
	}
	if err := provisionApp(t, &App{Migrations: "sometimes"}); err == nil || !strings.Contains(err.Error(), "migrations") {
		t.Fatalf("an unknown migrations mode in JSON: %v", err)
	}

	dir := t.TempDir()
	if _, err := startStore(t, &App{DataDir: dir, Migrations: MigrationsManual}); err == nil || !strings.Contains(err.Error(), "migrate up") {
		t.Fatalf("manual migrations on a fresh database: %v, want a refusal naming migrate up", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cairn.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused start created the database (stat: %v)", err)
	}
	b, err := open.New(open.Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, err := startStore(t, &App{DataDir: dir, Migrations: MigrationsManual}); err != nil {
		t.Fatalf("manual migrations on a migrated database: %v", err)
	}
}

func TestAppRunsRegisteredWorkersFromStartToStop(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("w", 40))
	a := &App{}
	if err := provisionApp(t, a); err != nil {
		t.Fatal(err)
	}
	started, stopped := make(chan struct{}), make(chan struct{})
	a.AddWorker(worker.Func{WorkerName: "probe", Fn: func(ctx context.Context) {
		close(started)
		<-ctx.Done()
		close(stopped)
	}})
	select {
	case <-started:
		t.Fatal("a worker ran before Start")
	default:
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Stop returned before the worker did")
	}
}

// TestAppReleasesAStoreNoConfigUses: after a reload to another database,
// unloading the old config closes the old store (no pool leaks), while a
// store the new config shares stays open.
func TestAppReleasesAStoreNoConfigUses(t *testing.T) {
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("l", 40))
	ctx := context.Background()
	old := &App{}
	oldRun, err := startStore(t, old)
	if err != nil {
		t.Fatal(err)
	}
	same := &App{DataDir: old.DataDir}
	if _, err := startStore(t, same); err != nil {
		t.Fatal(err)
	}
	other := &App{}
	otherRun, err := startStore(t, other)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := oldRun.Store.EventHorizon(ctx); err != nil {
		t.Fatalf("a store another config still uses was closed: %v", err)
	}
	if err := same.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := same.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, err := oldRun.Store.EventHorizon(ctx); err == nil {
		t.Fatal("the store no config uses any more is still open")
	}
	if _, err := otherRun.Store.EventHorizon(ctx); err != nil {
		t.Fatalf("the other config's store was closed: %v", err)
	}
}
