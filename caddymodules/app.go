// Package caddymodules adapts cairn's domain packages to Caddy: it registers
// the modules, provisions and validates their configuration, and parses their
// Caddyfile syntax. The work itself happens in internal/; nothing here should
// hold logic that a test could exercise without Caddy.
package caddymodules

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/cairn-chat/cairn-caddy/internal/metrics"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/realtime"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/retention"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
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

// sharedState holds what must outlive a config reload: Redis clients (keyed
// by URL) and the metrics collectors. A caddy.UsagePool is Caddy's idiom for
// this (the reverse proxy keeps its upstream hosts the same way): each config
// holds a reference while it is loaded, and the value is destroyed when the
// last config using it is unloaded.
var sharedState = caddy.NewUsagePool()

const (
	metricsPoolKey      = "cairn.metrics"
	localLimiterPoolKey = "cairn.ratelimit.memory"
	logHasherPoolKey    = "cairn.log-hasher"
	replayPoolKey       = "cairn.auth.replay"
	resolverPoolPrefix  = "cairn.auth.resolver:"
	storePoolPrefix     = "cairn.store:"
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
// In the Caddyfile it is configured by the `cairn` global option.
type App struct {
	// Mode is "production" (the default) or "development". Production mode
	// refuses to start while any development-only option is set.
	Mode string `json:"mode,omitempty"`

	// DataDir is where cairn keeps its files: the embedded database and the
	// generated log-hash key. Default: "cairn" inside Caddy's data directory.
	// Placeholders such as {env.CAIRN_DATA_DIR} are expanded.
	DataDir string `json:"data_dir,omitempty"`

	// LogLevel is the lowest level cairn's own modules log at: "debug",
	// "info", "warn" or "error". Default: "warn" in production, "info" in
	// development. Caddy's own log level still applies on top.
	LogLevel string `json:"log_level,omitempty"`

	// LogHashKey is the secret key for the keyed hash that replaces
	// identities in logs; at least 32 bytes. Placeholders are expanded, so
	// "{env.CAIRN_LOG_HASH_KEY}" or "{file./run/secrets/cairn_log_key}" work.
	// When empty, LogHashKeyFile is read, then the CAIRN_LOG_HASH_KEY
	// environment variable, and failing both a key is generated once into
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

	// Retention sets how long the delivery service keeps each kind of row;
	// a background worker purges the rest.
	Retention *RetentionConfig `json:"retention,omitempty"`

	// Streams caps the node's event streams (SSE and WebSocket).
	Streams *StreamsConfig `json:"streams,omitempty"`

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
	logLevel   zapcore.Level
	redis      *redis.Client
	redisKey   string // the shared-state key of redis, naming its URL
	metrics    *metrics.Metrics
	local      *ratelimit.MemoryStore
	poolMu     sync.Mutex
	poolKeys   []string
	logger     *zap.Logger

	limitersMu sync.Mutex
	shared     map[ratelimit.Policy]*ratelimit.Failover

	storeMu     sync.Mutex
	store       store.Store
	storeKey    string
	storeErr    error
	rt          *realtimeState
	stopWorkers context.CancelFunc
	workers     sync.WaitGroup
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
	NotifierPostgres = "postgres"
	NotifierRedis    = "redis"
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
	// KeyPackagesPerDevice caps a device's available key packages; the
	// oldest beyond it are deleted. Default 200, like cairn_delivery's
	// max_key_packages_per_device; keep the two equal.
	KeyPackagesPerDevice int `json:"key_packages_per_device,omitempty"`
	// Idempotency keeps the records that let a retried write return its
	// first response. Default 24h.
	Idempotency caddy.Duration `json:"idempotency,omitempty"`
	// Interval between purge passes. Default 10m.
	Interval caddy.Duration `json:"interval,omitempty"`
}

func (r *RetentionConfig) config() retention.Config {
	if r == nil {
		return retention.Config{}
	}
	return retention.Config{
		Messages:             time.Duration(r.Messages),
		Events:               time.Duration(r.Events),
		ConsumedWelcomes:     time.Duration(r.ConsumedWelcomes),
		UnconsumedWelcomes:   time.Duration(r.UnconsumedWelcomes),
		ConsumedKeyPackages:  time.Duration(r.ConsumedKeyPackages),
		KeyPackagesPerDevice: r.KeyPackagesPerDevice,
		Idempotency:          time.Duration(r.Idempotency),
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

// Provision applies defaults and builds the process-wide state.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()

	if a.Mode == "" {
		a.Mode = ModeProduction
	}
	if a.PLCURL == "" {
		a.PLCURL = DefaultPLCURL
	}
	if a.DataDir == "" {
		a.DataDir = filepath.Join(caddy.AppDataDir(), "cairn")
	}
	a.DataDir = repl.ReplaceAll(a.DataDir, "")
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

	// Validate before touching disk or network, so that `caddy validate`
	// reports a refused production config without side effects.
	if err := a.validateConfig(); err != nil {
		return err
	}

	key, err := a.loadLogHashKey(repl)
	if err != nil {
		return err
	}
	a.logHashKey = key
	if a.hasher, err = redact.New(key); err != nil {
		return fmt.Errorf("cairn log_hash_key: %w", err)
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

// validateConfig rejects unknown modes and, in production, every
// development-only option, naming it.
func (a *App) validateConfig() error {
	switch a.Mode {
	case ModeProduction, ModeDevelopment:
	default:
		return fmt.Errorf("cairn mode %q: must be %q or %q", a.Mode, ModeProduction, ModeDevelopment)
	}
	if err := a.Retention.config().Validate(); err != nil {
		return fmt.Errorf("cairn %w", err)
	}
	if perDID, total := a.Streams.limits(); perDID < 0 || total < 0 {
		return fmt.Errorf("cairn streams: max_per_did %d, max %d: want positive numbers, or none for the defaults", perDID, total)
	}
	switch n := a.Streams.notifier(); n {
	case "", NotifierPostgres, NotifierRedis:
	default:
		return fmt.Errorf("cairn streams: notifier %q: want %q or %q", n, NotifierPostgres, NotifierRedis)
	}
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
	return nil
}

// Validate is part of caddy.Validator. The checks run during Provision, before
// any side effect; this re-runs them for callers that validate separately.
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
// data directory, generating it there on first start.
func (a *App) loadLogHashKey(repl *caddy.Replacer) ([]byte, error) {
	if k := repl.ReplaceAll(a.LogHashKey, ""); k != "" {
		return checkKey([]byte(k), "cairn log_hash_key")
	}
	if a.LogHashKeyFile != "" {
		path := repl.ReplaceAll(a.LogHashKeyFile, "")
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("cairn log_hash_key_file: %w", err)
		}
		return checkKey([]byte(strings.TrimSpace(string(raw))), "cairn log_hash_key_file "+path)
	}
	if k := os.Getenv(logHashKeyEnv); k != "" {
		return checkKey([]byte(k), "environment variable "+logHashKeyEnv)
	}
	return loadOrGenerateKeyFile(filepath.Join(a.DataDir, logHashKeyFileName))
}

func checkKey(key []byte, source string) ([]byte, error) {
	if len(key) < redact.MinKeySize {
		return nil, fmt.Errorf("%s: the log-hash key must be at least %d bytes; generate one with `openssl rand -hex 32`", source, redact.MinKeySize)
	}
	return key, nil
}

// loadOrGenerateKeyFile reads the key at path, or creates it with 32 random
// bytes (hex-encoded) and mode 0600. Creation uses O_EXCL so two processes
// starting at once agree on one key.
func loadOrGenerateKeyFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		return checkKey([]byte(strings.TrimSpace(string(raw))), "log-hash key file "+path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading log-hash key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory for the log-hash key: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("generating log-hash key: %w", err)
	}
	key := []byte(hex.EncodeToString(secret))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadOrGenerateKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("creating log-hash key file: %w", err)
	}
	if _, err := f.Write(append(key, '\n')); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing log-hash key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("writing log-hash key file: %w", err)
	}
	return key, nil
}

// Start is part of caddy.App. It starts the background workers of the
// delivery service's store, if a handler opened it.
func (a *App) Start() error {
	a.storeMu.Lock()
	s := a.store
	a.storeMu.Unlock()
	if s == nil {
		return nil
	}
	w, err := retention.New(s, a.Retention.config(), func(r retention.Report, err error) {
		if err != nil {
			a.metrics.BackendError("store", "retention")
			a.logger.Error("retention pass failed", zap.Error(err))
			return
		}
		if !r.Skipped {
			a.logger.Info("retention pass", zap.Int64("messages", r.Messages), zap.Int64("events", r.Events),
				zap.Int64("welcomes", r.Welcomes), zap.Int64("key_packages", r.KeyPackages), zap.Int64("idempotency", r.Idempotency))
		}
	})
	if err != nil {
		return fmt.Errorf("cairn retention: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.stopWorkers = cancel
	a.workers.Add(1)
	go func() {
		defer a.workers.Done()
		w.Run(ctx)
	}()
	return nil
}

// Stop is part of caddy.App. It stops the background workers and waits for
// a running pass to end; the next config's app starts its own.
func (a *App) Stop() error {
	if a.stopWorkers != nil {
		a.stopWorkers()
		a.workers.Wait()
	}
	return nil
}

// Store returns the delivery service's store, opening it on first use:
// PostgreSQL when Database is set, otherwise SQLite in DataDir. Migrations
// run on open. The open store is kept across config reloads.
func (a *App) Store(ctx context.Context) (store.Store, error) {
	a.storeMu.Lock()
	defer a.storeMu.Unlock()
	if a.store != nil || a.storeErr != nil {
		return a.store, a.storeErr
	}
	dsn := strings.TrimSpace(caddy.NewReplacer().ReplaceAll(a.Database, ""))
	key := storePoolPrefix + "sqlite:" + filepath.Join(a.DataDir, "cairn.db")
	if dsn != "" {
		key = storePoolPrefix + "postgres:" + dsn
	}
	st, err := shared(a, key, func() (store.Store, func() error, error) {
		var s store.Store
		var err error
		if dsn != "" {
			s, err = postgres.Open(ctx, postgres.Config{URL: dsn})
		} else {
			if err := os.MkdirAll(a.DataDir, 0o700); err != nil {
				return nil, nil, fmt.Errorf("creating data directory: %w", err)
			}
			s, err = sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(a.DataDir, "cairn.db")})
		}
		if err != nil {
			return nil, nil, err
		}
		return s, s.Close, nil
	})
	if err != nil {
		a.storeErr = fmt.Errorf("cairn database: %w", err)
		return nil, a.storeErr
	}
	a.store, a.storeKey = st, key
	return a.store, nil
}

// realtimeState is the process's event hub and what it needs: the
// cross-node notifier and the WebSocket ticket service. It lives as long as
// its store, across reloads, so open streams survive `caddy reload`.
type realtimeState struct {
	hub *realtime.Hub
	// notifier is nil on SQLite: one node, in-process wake-ups.
	notifier interface{ Close() error }
	tickets  *realtime.Tickets
}

func (r *realtimeState) close() error {
	err := r.hub.Close()
	if r.notifier != nil {
		err = errors.Join(err, r.notifier.Close())
	}
	return err
}

// Realtime returns the event hub and ticket service over the delivery
// store, creating them on first use. On PostgreSQL, wake-ups cross nodes
// through LISTEN/NOTIFY, or Redis pub/sub with streams { notifier redis };
// on SQLite they stay in the process. Tickets are
// signed with a key derived from the log-hash key (shared by every node),
// and redeemed tickets are remembered in Redis when it is configured, so a
// ticket works once across the cluster.
func (a *App) Realtime(ctx context.Context) (*realtime.Hub, *realtime.Tickets, error) {
	st, err := a.Store(ctx)
	if err != nil {
		return nil, nil, err
	}
	a.storeMu.Lock()
	defer a.storeMu.Unlock()
	if a.rt != nil {
		return a.rt.hub, a.rt.tickets, nil
	}
	mac := hmac.New(sha256.New, a.logHashKey)
	mac.Write([]byte("cairn realtime ticket key v1"))
	ticketKey := mac.Sum(nil)
	keyID := sha256.Sum256(ticketKey)
	postgresURL, onPostgres := strings.CutPrefix(a.storeKey, storePoolPrefix+"postgres:")
	notifier := a.Streams.notifier()
	switch {
	case !onPostgres && notifier != "":
		return nil, nil, fmt.Errorf("cairn streams: notifier %s: the embedded SQLite store serves one node, whose streams are woken in process; set database to share streams across nodes", notifier)
	case notifier == NotifierRedis && a.redis == nil:
		return nil, nil, errors.New("cairn streams: notifier redis needs the cairn redis option (or an expanded {$CAIRN_REDIS_URL})")
	case onPostgres && notifier == "":
		notifier = NotifierPostgres
	}
	// The hub and what it holds (the notifier, the tickets' replay store)
	// are kept across reloads while the store, the ticket key and the
	// Redis client they use stay the same.
	rt, err := shared(a, fmt.Sprintf("cairn.realtime:%s|%x|%s|%s", a.storeKey, keyID[:8], a.redisKey, notifier), func() (*realtimeState, func() error, error) {
		r := &realtimeState{}
		cfg := realtime.Config{Store: st, OrderedCursors: !onPostgres, Observer: a.metrics.Realtime}
		logger := a.logger
		switch notifier {
		case NotifierPostgres:
			n, err := realtime.NewPGNotifier(context.Background(), realtime.PGNotifierConfig{
				URL:     postgresURL,
				OnError: func(err error) { logger.Warn("realtime notifier: PostgreSQL LISTEN failed; retrying", zap.Error(err)) },
			})
			if err != nil {
				return nil, nil, fmt.Errorf("realtime notifier: %w", err)
			}
			r.notifier, cfg.Notifier = n, n
		case NotifierRedis:
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			n, err := realtime.NewRedisNotifier(sctx, realtime.RedisNotifierConfig{
				Client:  a.redis,
				OnError: func(err error) { logger.Warn("realtime notifier: Redis pub/sub trouble", zap.Error(err)) },
			})
			cancel()
			if err != nil {
				return nil, nil, fmt.Errorf("realtime notifier: %w", err)
			}
			r.notifier, cfg.Notifier = n, n
		}
		hub, err := realtime.New(cfg)
		if err != nil {
			if r.notifier != nil {
				r.notifier.Close()
			}
			return nil, nil, fmt.Errorf("realtime hub: %w", err)
		}
		r.hub = hub
		tcfg := realtime.TicketConfig{Key: ticketKey}
		if a.redis != nil {
			tcfg.Replay = &atpauth.RedisReplayStore{Client: a.redis, Prefix: "cairn:ticket:"}
		}
		if r.tickets, err = realtime.NewTickets(tcfg); err != nil {
			r.close()
			return nil, nil, fmt.Errorf("realtime tickets: %w", err)
		}
		return r, r.close, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cairn realtime: %w", err)
	}
	a.rt = rt
	// The hub outlives reloads; this configuration's caps apply from now.
	rt.hub.SetLimits(a.Streams.limits())
	return rt.hub, rt.tickets, nil
}

// Cleanup releases this config's references to shared state.
func (a *App) Cleanup() error {
	var errs []error
	for _, k := range a.poolKeys {
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

// ModuleLogger returns the logger a cairn module should use: the module's
// Caddy logger, raised to the app's log level.
func (a *App) ModuleLogger(ctx caddy.Context) *zap.Logger {
	return ctx.Logger().WithOptions(zap.IncreaseLevel(a.logLevel))
}

// LocalLimiter returns the process's in-memory rate-limit store. It is
// shared by every cairn_rate_limit handler (their keys carry the zone name)
// and kept across config reloads.
func (a *App) LocalLimiter() *ratelimit.MemoryStore { return a.local }

// MemoryReplayStore returns the process's in-memory set of used token IDs,
// kept across reloads so that a reload cannot make a used token valid again.
func (a *App) MemoryReplayStore() *atpauth.MemoryReplayStore {
	// The constructor cannot fail.
	st, _ := shared(a, replayPoolKey, func() (*atpauth.MemoryReplayStore, func() error, error) {
		return atpauth.NewMemoryReplayStore(memoryReplayCapacity, nil), nil, nil
	})
	return st
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

// shared returns the process-wide value under key, building it on first use,
// and records this app's reference so Cleanup releases it. build returns the
// value and how to destroy it (nil when nothing needs closing).
func shared[T any](a *App, key string, build func() (T, func() error, error)) (T, error) {
	v, _, err := sharedState.LoadOrNew(key, func() (caddy.Destructor, error) {
		val, destroy, err := build()
		if err != nil {
			return nil, err
		}
		return destructible[T]{val, destroy}, nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	a.poolMu.Lock()
	a.poolKeys = append(a.poolKeys, key)
	a.poolMu.Unlock()
	return v.(destructible[T]).v, nil
}

// destructible wraps a shared value for the usage pool.
type destructible[T any] struct {
	v       T
	destroy func() error
}

// Destruct is part of caddy.Destructor.
func (d destructible[T]) Destruct() error {
	if d.destroy == nil {
		return nil
	}
	return d.destroy()
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
