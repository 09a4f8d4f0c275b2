package caddymodules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/backup"
	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/metrics"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/realtime"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/retention"
	"github.com/cairn-chat/cairn-caddy/internal/servicekey"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
	"github.com/cairn-chat/cairn-caddy/internal/worker"
)

func init() {
	caddy.RegisterModule(new(App))
}

// The modes the cairn app runs in.
const (
	ModeProduction  = "production"
	ModeDevelopment = "development"
)

// DefaultPLCURL is the public PLC directory that did:plc identities resolve
// through. Pointing cairn anywhere else is a development-only option.
const DefaultPLCURL = "https://plc.directory"

// logHashKeyEnv names the environment variable that may hold the log-hash key.
const logHashKeyEnv = "CAIRN_LOG_HASH_KEY"

// logHashKeyFileName is the file the log-hash key is generated into, inside
// the data directory, when no key is configured.
const logHashKeyFileName = "log-hash.key"

// Migration modes of the cairn app.
const (
	// MigrationsAuto applies pending schema migrations when the app starts.
	MigrationsAuto = "auto"
	// MigrationsManual refuses to start on a schema with pending
	// migrations: the operator runs `cairn-caddy migrate up` first.
	MigrationsManual = "manual"
)

// memoryReplayCapacity bounds the in-memory set of used token IDs. Tokens
// live at most an hour (the lifetime cap), so this holds a busy node's
// tokens many times over.
const memoryReplayCapacity = 1 << 20

// hasherBox hands the app's keyed hasher to the cairn_redact log filter.
// Caddy opens logs before it provisions apps, so the filter cannot ask for
// the app; both take this box from the usage pool instead, and the app fills
// it while it provisions. Until then the filter redacts whole values.
type hasherBox struct{ hasher atomic.Pointer[redact.Hasher] }

// App is the `cairn` app: the single owner of cairn's process-wide state.
// Handlers reach it with ctx.App("cairn"). It holds the run mode, the data
// directory, the log-hash key, the Redis client and the metrics collectors,
// and it enforces that production mode runs with no development-only option.
//
// Its lifecycle follows Caddy's rule that provisioning has no side effects,
// because `caddy validate` runs it: Provision only builds values and reads
// existing key files. Start creates the log-hash key file on first run,
// opens the store (migrating it unless migrations is "manual"), starts the
// realtime notifier and the background workers; Stop stops the workers.
// The store and realtime hub outlive reloads through Caddy's usage pool.
//
// In the Caddyfile it is configured by the `cairn` global option.
type App struct {
	// Mode is "production" (the default) or "development". Production mode
	// refuses to start while any development-only option is set.
	Mode string `json:"mode,omitempty"`

	// DataDir is where cairn keeps its files: the embedded database and the
	// generated log-hash key. Default: "cairn" inside Caddy's data directory.
	// Placeholders such as {env.CAIRN_DATA_DIR} are expanded. It is created
	// (mode 0700) when the app starts, not when the config is validated.
	DataDir string `json:"data_dir,omitempty"`

	// LogLevel is the lowest level cairn's own modules log at: "debug",
	// "info", "warn" or "error". Default: "warn" in production, "info" in
	// development. cairn's loggers are named "cairn" (the app) and
	// "cairn.<module>" (cairn.auth, cairn.delivery, …); a Caddy log must
	// admit their entries too, and Caddy's default log stops at INFO, so
	// debug needs a log such as `log cairn { include cairn; level DEBUG }`
	// in the global options. Without one, the app warns at start.
	LogLevel string `json:"log_level,omitempty"`

	// LogHashKey is the secret key for the keyed hash that replaces
	// identities in logs; at least 32 bytes. Placeholders are expanded, so
	// "{env.CAIRN_LOG_HASH_KEY}" or "{file./run/secrets/cairn_log_key}" work.
	// When empty, LogHashKeyFile is read, then the CAIRN_LOG_HASH_KEY
	// environment variable, then DataDir/log-hash.key; failing all three a
	// key is generated when the app first starts, written to
	// DataDir/log-hash.key (mode 0600) and reused from then on.
	LogHashKey string `json:"log_hash_key,omitempty"`

	// LogHashKeyFile is a file holding the log-hash key.
	LogHashKeyFile string `json:"log_hash_key_file,omitempty"`

	// Redis is the URL of the Redis server shared by all gateway nodes
	// (redis:// or rediss://). When set, rate limits and the token replay
	// set live there. An empty value (for example an unset
	// {$CAIRN_REDIS_URL}) means no Redis: in-memory state is used.
	Redis string `json:"redis,omitempty"`

	// Database is the PostgreSQL URL (postgres://user:pass@host/db) that
	// every gateway node of a cluster shares. Empty (for example an unset
	// {$CAIRN_DATABASE_URL}) means the embedded SQLite database
	// DataDir/cairn.db, for a single node. Placeholders are expanded.
	Database string `json:"database,omitempty"`

	// Migrations says what Start does with pending schema migrations:
	// "auto" (the default) applies them; "manual" refuses to start until
	// `cairn-caddy migrate up` has applied them, for clusters that migrate
	// as a separate deployment step. Either way a schema newer than the
	// binary knows is refused.
	Migrations string `json:"migrations,omitempty"`

	// KeyPackagesPerDevice caps a device's available key packages: the
	// delivery service refuses to publish beyond it (TooManyKeyPackages),
	// and the retention worker deletes the oldest beyond it. Both read this
	// one setting. Default 200.
	KeyPackagesPerDevice int `json:"key_packages_per_device,omitempty"`

	// Retention sets how long the delivery service keeps each kind of row;
	// a background worker purges the rest.
	Retention *RetentionConfig `json:"retention,omitempty"`

	// Streams caps the node's event streams (SSE and WebSocket).
	Streams *StreamsConfig `json:"streams,omitempty"`

	// Audit configures the tamper-evident audit log: its key, whether
	// client addresses are kept, and its retention.
	Audit *AuditConfig `json:"audit,omitempty"`

	// Backup, if set, backs the node up on a schedule: see BackupConfig.
	Backup *BackupConfig `json:"backup,omitempty"`

	// Identity configures the service's did:web signing keys, which
	// cairn_did_document publishes and rotate-key rotates.
	Identity *IdentityConfig `json:"identity,omitempty"`

	// Push, if set, wakes devices through APNs and UnifiedPush when their
	// conversations change: see PushConfig. Off by default.
	Push *PushConfig `json:"push,omitempty"`

	// LogIdentities writes raw identities (DIDs, conversation IDs) into debug
	// logs instead of their keyed hashes. Development only.
	LogIdentities bool `json:"log_identities,omitempty"`

	// PLCURL is the PLC directory did:plc identities are resolved through.
	// Default https://plc.directory; any other value is development only.
	PLCURL string `json:"plc_url,omitempty"`

	// DIDWebAllowHTTP resolves did:web documents over plain http instead of
	// https. Development only.
	DIDWebAllowHTTP bool `json:"did_web_allow_http,omitempty"`

	// ResolverAllowHosts lists hosts that DID resolution may reach even
	// though they are private, loopback or link-local addresses (a local PLC
	// directory in tests, for example). Development only.
	ResolverAllowHosts []string `json:"resolver_allow_hosts,omitempty"`

	hasher     *redact.Hasher
	logHashKey []byte
	// newKeyFile is where Start writes logHashKey, generated in Provision
	// because no key existed yet; empty when the key came from elsewhere.
	newKeyFile string
	// auditKey is the audit chain's MAC key; newAuditKeyFile, like
	// newKeyFile, is where Start writes it when Provision generated it.
	auditKey        []byte
	newAuditKeyFile string
	// push is the push keys and queue; nil while push is off.
	push      *pushState
	retention retentionStats
	// backupRunner runs the scheduled backup; nil without a backup block.
	backupRunner *backup.Runner
	// serviceKeys is the service's keyring, opened by Start when a module
	// asked for it (useIdentity).
	serviceKeys *servicekey.Keyring
	useIdentity bool
	logLevel    zapcore.Level
	redis       *redis.Client
	redisKey    string // the shared-state key of redis, naming its URL
	metrics     *metrics.Metrics
	local       *ratelimit.MemoryStore
	poolMu      sync.Mutex
	poolKeys    []string
	logger      *zap.Logger

	limitersMu sync.Mutex
	shared     map[ratelimit.Policy]*ratelimit.Failover
	// recorders are the adaptive-signal recorders by backend (memory,
	// redis), one each for every cairn_rate_limit handler (SignalRecorder).
	recorders map[string]*ratelimit.SignalRecorder

	storeCfg open.Config
	notifier string // realtime.ChooseNotifier's answer
	useStore bool   // a module asked for the store in its Provision
	// added are the workers modules registered in their Provision.
	added []worker.Worker

	// ready is closed once Start has opened what modules wait for, or
	// failed to (running, startErr), or the config was unloaded first.
	ready     chan struct{}
	readyOnce sync.Once
	running   *Running
	startErr  error
	workers   worker.Group
}

// StreamsConfig caps the concurrent event streams (SSE and WebSocket) of
// one node; a stream over a cap is refused with 429. Zero values take the
// defaults. A reload applies new caps to new streams; open ones stay.
type StreamsConfig struct {
	// MaxPerDID caps one account's concurrent streams. Default 5.
	MaxPerDID int `json:"max_per_did,omitempty"`
	// Max caps all concurrent streams. Default 20000; each needs a file
	// descriptor (see docs/realtime.md on the open-file limit).
	Max int `json:"max,omitempty"`
	// Notifier carries wake-ups between the nodes sharing PostgreSQL:
	// "postgres" (LISTEN/NOTIFY, the default) or "redis" (pub/sub over
	// the cairn app's redis, for a PostgreSQL behind a pooler that cannot
	// LISTEN). Only with database; the embedded SQLite store serves one
	// node.
	Notifier string `json:"notifier,omitempty"`
}

// Stream notifiers.
const (
	NotifierPostgres = realtime.NotifierPostgres
	NotifierRedis    = realtime.NotifierRedis
)

func (s *StreamsConfig) notifier() string {
	if s == nil {
		return ""
	}
	return s.Notifier
}

func (s *StreamsConfig) limits() (perDID, total int) {
	if s == nil {
		return 0, 0
	}
	return s.MaxPerDID, s.Max
}

// RetentionConfig is the retention part of the cairn app's configuration.
// Zero values take the defaults of internal/retention.
type RetentionConfig struct {
	// Messages keeps message ciphertext. Default 30d.
	Messages caddy.Duration `json:"messages,omitempty"`
	// Events keeps realtime event rows; a cursor older than this cannot
	// resume. Default 7d.
	Events caddy.Duration `json:"events,omitempty"`
	// ConsumedWelcomes keeps confirmed Welcomes. Default 24h.
	ConsumedWelcomes caddy.Duration `json:"consumed_welcomes,omitempty"`
	// UnconsumedWelcomes keeps Welcomes never fetched. Default 30d.
	UnconsumedWelcomes caddy.Duration `json:"unconsumed_welcomes,omitempty"`
	// ConsumedKeyPackages keeps handed-out key packages (for statistics);
	// expired ones go at once. Default 7d.
	ConsumedKeyPackages caddy.Duration `json:"consumed_key_packages,omitempty"`
	// Idempotency keeps the records that let a retried write return its
	// first response. Default 24h.
	Idempotency caddy.Duration `json:"idempotency,omitempty"`
	// ClosedChatRequests is how long an accepted, declined, blocked or
	// expired chat request stays listed (its held messages and preview go
	// when it closes). Default 7d.
	ClosedChatRequests caddy.Duration `json:"closed_chat_requests,omitempty"`
	// Interval between purge passes. Default 10m.
	Interval caddy.Duration `json:"interval,omitempty"`
}

// config returns the retention worker's configuration, with the app's
// key-package cap (the one cairn_delivery enforces) as its trim bound.
func (r *RetentionConfig) config(keyPackagesPerDevice int) retention.Config {
	if r == nil {
		return retention.Config{KeyPackagesPerDevice: keyPackagesPerDevice}
	}
	return retention.Config{
		Messages:             time.Duration(r.Messages),
		Events:               time.Duration(r.Events),
		ConsumedWelcomes:     time.Duration(r.ConsumedWelcomes),
		UnconsumedWelcomes:   time.Duration(r.UnconsumedWelcomes),
		ConsumedKeyPackages:  time.Duration(r.ConsumedKeyPackages),
		KeyPackagesPerDevice: keyPackagesPerDevice,
		Idempotency:          time.Duration(r.Idempotency),
		ClosedChatRequests:   time.Duration(r.ClosedChatRequests),
		Interval:             time.Duration(r.Interval),
	}
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "cairn",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision applies defaults and builds the process-wide state. It has no
// side effects, since `caddy validate` runs it: it dials nothing, creates
// no file and only reads an existing log-hash key; see Start.
func (a *App) Provision(ctx caddy.Context) error {
	a.ready = make(chan struct{})
	repl := caddy.NewReplacer()

	if a.Mode == "" {
		a.Mode = ModeProduction
	}
	if a.PLCURL == "" {
		a.PLCURL = DefaultPLCURL
	}
	if a.Migrations == "" {
		a.Migrations = MigrationsAuto
	}
	if a.KeyPackagesPerDevice == 0 {
		a.KeyPackagesPerDevice = delivery.DefaultMaxKeyPackagesPerDevice
	}
	a.storeCfg = a.StoreConfig()
	a.DataDir = a.storeCfg.DataDir
	if a.LogLevel == "" {
		a.LogLevel = "warn"
		if a.Mode == ModeDevelopment {
			a.LogLevel = "info"
		}
	}
	level, err := zapcore.ParseLevel(a.LogLevel)
	if err != nil || level < zapcore.DebugLevel || level > zapcore.ErrorLevel {
		return fmt.Errorf("cairn log_level %q: must be debug, info, warn or error", a.LogLevel)
	}
	a.logLevel = level
	a.logger = levelLogger(ctx.Logger(), level)
	if c := a.logger.Check(level, "probe"); c == nil {
		a.logger.Warn("no Caddy log admits cairn's entries at its log_level, so they are dropped; add a log for the cairn logger namespace to the global options: log cairn { include cairn; level DEBUG } (docs/configuration.md)",
			zap.String("log_level", a.LogLevel))
	}

	// Validate first, so that `caddy validate` reports a refused
	// production config before anything else.
	if err := a.validateConfig(); err != nil {
		return err
	}
	if err := a.checkOnDemandTLS(ctx); err != nil {
		return err
	}

	key, err := a.loadLogHashKey(repl)
	if err != nil {
		return err
	}
	a.logHashKey = key
	if err := a.provisionBackup(repl); err != nil {
		return err
	}
	if a.hasher, err = redact.New(key); err != nil {
		return fmt.Errorf("cairn log_hash_key: %w", err)
	}
	if a.auditKey, a.newAuditKeyFile, err = a.Audit.AuditKey(repl, a.DataDir); err != nil {
		return err
	}
	if a.newAuditKeyFile != "" {
		if a.auditKey, err = redact.NewKey(); err != nil {
			return fmt.Errorf("cairn audit key: %w", err)
		}
	}

	box, err := shared(a, logHasherPoolKey, func() (*hasherBox, func() error, error) { return new(hasherBox), nil, nil })
	if err != nil {
		return fmt.Errorf("cairn log hasher: %w", err)
	}
	box.hasher.Store(a.hasher)

	if a.metrics, err = shared(a, metricsPoolKey, func() (*metrics.Metrics, func() error, error) {
		return metrics.New(), nil, nil
	}); err != nil {
		return fmt.Errorf("cairn metrics: %w", err)
	}
	if err := a.watchCertificates(ctx); err != nil {
		return err
	}
	if err := a.provisionPush(); err != nil {
		return err
	}
	if a.local, err = shared(a, localLimiterPoolKey, func() (*ratelimit.MemoryStore, func() error, error) {
		return ratelimit.NewMemoryStore(ratelimit.MemoryConfig{}), nil, nil
	}); err != nil {
		return fmt.Errorf("cairn rate limiter: %w", err)
	}

	if url := strings.TrimSpace(repl.ReplaceAll(a.Redis, "")); url != "" {
		opts, err := redis.ParseURL(url)
		if err != nil {
			return fmt.Errorf("cairn redis: invalid URL (want redis://[user:password@]host:port/db or rediss://…): %w", err)
		}
		// Fail fast: every caller (rate limiter, replay store) has its own
		// fallback or fail-closed answer, and go-redis's defaults (five
		// dial attempts, three retries) would hold each request for
		// seconds during an outage.
		opts.DialerRetries = 1
		opts.MaxRetries = -1
		a.redisKey = "cairn.redis:" + url
		// NewClient dials on first use, not here.
		if a.redis, err = shared(a, a.redisKey, func() (*redis.Client, func() error, error) {
			client := redis.NewClient(opts)
			return client, client.Close, nil
		}); err != nil {
			return fmt.Errorf("cairn redis: %w", err)
		}
		a.metrics.BackendUp("redis", true)
	}
	return nil
}

// StoreConfig returns where the app's store lives: Database and DataDir
// with placeholders expanded and DataDir's default applied. It needs no
// provisioning, so the migrate command reads it from an adapted config.
func (a *App) StoreConfig() open.Config {
	repl := caddy.NewReplacer()
	dir := a.DataDir
	if dir == "" {
		dir = filepath.Join(caddy.AppDataDir(), "cairn")
	}
	return open.Config{
		Database: strings.TrimSpace(repl.ReplaceAll(a.Database, "")),
		DataDir:  repl.ReplaceAll(dir, ""),
	}
}

// validateConfig rejects unknown modes and, in production, every
// development-only option, naming it.
func (a *App) validateConfig() error {
	switch a.Mode {
	case ModeProduction, ModeDevelopment:
	default:
		return fmt.Errorf("cairn mode %q: must be %q or %q", a.Mode, ModeProduction, ModeDevelopment)
	}
	if a.KeyPackagesPerDevice < 0 {
		return fmt.Errorf("cairn key_packages_per_device %d: want a positive number, or none for the default %d", a.KeyPackagesPerDevice, delivery.DefaultMaxKeyPackagesPerDevice)
	}
	if err := a.Retention.config(a.KeyPackagesPerDevice).Validate(); err != nil {
		return fmt.Errorf("cairn %w", err)
	}
	if err := a.Audit.validate(); err != nil {
		return err
	}
	if c := a.Identity; c != nil && (c.Grace < 0 || c.Refresh < 0) {
		return errors.New("cairn identity: grace and refresh want positive durations")
	}
	if perDID, total := a.Streams.limits(); perDID < 0 || total < 0 {
		return fmt.Errorf("cairn streams: max_per_did %d, max %d: want positive numbers, or none for the defaults", perDID, total)
	}
	if err := a.storeCfg.Validate(); err != nil {
		return fmt.Errorf("cairn %w", err)
	}
	switch a.Migrations {
	case MigrationsAuto, MigrationsManual:
	default:
		return fmt.Errorf("cairn migrations %q: want %q or %q", a.Migrations, MigrationsAuto, MigrationsManual)
	}
	haveRedis := strings.TrimSpace(caddy.NewReplacer().ReplaceAll(a.Redis, "")) != ""
	notifier, err := realtime.ChooseNotifier(a.Streams.notifier(), a.storeCfg.Kind() == open.Postgres, haveRedis)
	if err != nil {
		return fmt.Errorf("cairn streams: %w", err)
	}
	a.notifier = notifier
	if a.PLCURL != DefaultPLCURL {
		if err := a.RequireDevelopment("cairn plc_url (a PLC directory override)"); err != nil {
			return err
		}
	}
	if a.DIDWebAllowHTTP {
		if err := a.RequireDevelopment("cairn did_web_allow_http (insecure did:web over http)"); err != nil {
			return err
		}
	}
	if len(a.ResolverAllowHosts) > 0 {
		if err := a.RequireDevelopment("cairn resolver_allow_hosts (DID resolution to private hosts)"); err != nil {
			return err
		}
	}
	if a.LogIdentities {
		if err := a.RequireDevelopment("cairn log_identities (identity-revealing debug logs)"); err != nil {
			return err
		}
	}
	return a.validatePush()
}

// Validate is part of caddy.Validator. The checks run during Provision, before
// anything else; this re-runs them for callers that validate separately.
func (a *App) Validate() error { return a.validateConfig() }

// RequireDevelopment returns an error naming option unless the app runs in
// development mode. Modules call it for each development-only option they
// have enabled, so that production refuses to start with any of them.
func (a *App) RequireDevelopment(option string) error {
	if a.Mode == ModeDevelopment {
		return nil
	}
	return fmt.Errorf("%s is a development-only option and cairn runs in production mode: remove it, or set `mode development` in the cairn global options of a non-production deployment", option)
}

// loadLogHashKey finds the log-hash key in config, file, environment or the
// data directory. When there is none yet, it generates one in memory and
// leaves writing it to DataDir/log-hash.key to Start.
func (a *App) loadLogHashKey(repl *caddy.Replacer) ([]byte, error) {
	if k := repl.ReplaceAll(a.LogHashKey, ""); k != "" {
		return redact.CheckKey([]byte(k), "cairn log_hash_key")
	}
	if a.LogHashKeyFile != "" {
		path := repl.ReplaceAll(a.LogHashKeyFile, "")
		key, err := redact.ReadKeyFile(path)
		if err != nil {
			return nil, fmt.Errorf("cairn log_hash_key_file: %w", err)
		}
		return key, nil
	}
	if k := os.Getenv(logHashKeyEnv); k != "" {
		return redact.CheckKey([]byte(k), "environment variable "+logHashKeyEnv)
	}
	path := filepath.Join(a.DataDir, logHashKeyFileName)
	key, err := redact.ReadKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	a.newKeyFile = path
	return redact.NewKey()
}

// Cleanup releases this config's references to shared state.
func (a *App) Cleanup() error {
	if a.ready != nil {
		a.readyOnce.Do(func() { close(a.ready) })
	}
	a.poolMu.Lock()
	keys := a.poolKeys
	a.poolKeys = nil // a second Cleanup must not release others' references
	a.poolMu.Unlock()
	var errs []error
	for _, k := range keys {
		if _, err := sharedState.Delete(k); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Redact returns the keyed hash of an identity-bearing value, for a log
// field. With the development-only log_identities option it returns the
// value itself.
func (a *App) Redact(value string) string {
	if a.LogIdentities {
		return value
	}
	return a.hasher.Hash(value)
}

// Hasher returns the keyed hasher for identity-bearing values.
func (a *App) Hasher() *redact.Hasher { return a.hasher }

// Metrics returns the process-wide collectors.
func (a *App) Metrics() *metrics.Metrics { return a.metrics }

// RedisClient returns the shared Redis client, or nil when none is configured.
func (a *App) RedisClient() *redis.Client { return a.redis }

// ModuleLogger returns the logger a cairn module should use: the cairn
// app's logger, named for the module ("cairn.auth" for cairn_auth), at the
// app's log level. Putting every cairn logger under the "cairn" namespace
// lets one Caddy log (`include cairn`) carry all of them at any level.
func (a *App) ModuleLogger(ctx caddy.Context) *zap.Logger {
	if m := ctx.Module(); m != nil {
		id := m.CaddyModule().ID
		return a.logger.Named(strings.TrimPrefix(id.Name(), "cairn_"))
	}
	return a.logger
}

// LocalLimiter returns the process's in-memory rate-limit store. It is
// shared by every cairn_rate_limit handler (their keys carry the zone name)
// and kept across config reloads.
func (a *App) LocalLimiter() *ratelimit.MemoryStore { return a.local }

// MemoryReplayStore returns the process's in-memory set of used token IDs,
// kept across reloads so that a reload cannot make a used token valid again.
// Its memory begins when it is first made, at process start: tokens issued
// before then (plus the leeway) are refused, since a restart forgot them.
func (a *App) MemoryReplayStore() *atpauth.MemoryReplayStore {
	// The constructor cannot fail.
	st, _ := shared(a, replayPoolKey, func() (*atpauth.MemoryReplayStore, func() error, error) {
		return atpauth.NewMemoryReplayStore(memoryReplayCapacity, nil), nil, nil
	})
	return st
}

// ReplayStore returns the replay memory a handler's `replay` option
// names: "memory" (MemoryReplayStore), "redis" (the app's Redis, keys under
// prefix; an error without Redis) or "auto" (Redis when configured).
func (a *App) ReplayStore(option, prefix string) (atpauth.ReplayStore, error) {
	switch option {
	case backendMemory:
		return a.MemoryReplayStore(), nil
	case backendRedis, backendAuto:
		if a.redis == nil {
			if option == backendRedis {
				return nil, fmt.Errorf("redis: no Redis is configured; set `redis <url>` in the cairn global options")
			}
			return a.MemoryReplayStore(), nil
		}
		return &atpauth.RedisReplayStore{Client: a.redis, Prefix: prefix}, nil
	}
	return nil, fmt.Errorf("%q: want auto, redis or memory", option)
}

// DIDResolver returns the process's DID resolver for the PLC directory at
// plcURL, with the app's development options. Its cache of DID documents is
// kept across reloads.
func (a *App) DIDResolver(plcURL string) (*atpauth.Resolver, error) {
	cfg := atpauth.ResolverConfig{PLCURL: plcURL, AllowHTTP: a.DIDWebAllowHTTP, AllowedHosts: a.ResolverAllowHosts}
	key := fmt.Sprintf("%s%s|%t|%q", resolverPoolPrefix, cfg.PLCURL, cfg.AllowHTTP, cfg.AllowedHosts)
	r, err := shared(a, key, func() (*atpauth.Resolver, func() error, error) {
		r, err := atpauth.NewResolver(cfg)
		return r, nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("DID resolver: %w", err)
	}
	return r, nil
}

// SharedLimiter returns the Redis-backed limiter that applies policy while
// Redis is unreachable. Handlers with the same policy share one, so an
// outage is detected, logged and counted once per transition, not once per
// handler. It must only be called when RedisClient is not nil.
func (a *App) SharedLimiter(policy ratelimit.Policy) (*ratelimit.Failover, error) {
	a.limitersMu.Lock()
	defer a.limitersMu.Unlock()
	if f, ok := a.shared[policy]; ok {
		return f, nil
	}
	store, err := ratelimit.NewRedisStore(ratelimit.RedisConfig{Client: a.redis, Prefix: "cairn:rl:"})
	if err != nil {
		return nil, err
	}
	f, err := ratelimit.NewFailover(ratelimit.FailoverConfig{
		Shared: store,
		Local:  a.local,
		Policy: policy,
		OnTransition: func(up bool, err error) {
			a.metrics.BackendUp("redis", up)
			if up {
				a.logger.Warn("redis answers again; rate limits are shared across nodes again")
				return
			}
			a.metrics.BackendError("redis", "ratelimit")
			a.logger.Error("redis unreachable; rate limiting falls back to on_backend_error", zap.String("on_backend_error", policy.String()), zap.Error(err))
		},
	})
	if err != nil {
		return nil, err
	}
	if a.shared == nil {
		a.shared = map[ratelimit.Policy]*ratelimit.Failover{}
	}
	a.shared[policy] = f
	return f, nil
}

// cairnApp loads the cairn app from a module's provisioning context.
func cairnApp(ctx caddy.Context) (*App, error) {
	v, err := ctx.App("cairn")
	if err != nil {
		return nil, fmt.Errorf("loading the cairn app: %w", err)
	}
	return v.(*App), nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
