package caddymodules

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/metrics"
	"github.com/cairn-chat/cairn-caddy/internal/realtime"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/retention"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/observe"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
	"github.com/cairn-chat/cairn-caddy/internal/worker"
)

// Running is what the app opens when it starts, for the modules that asked
// for it during their Provision (UseStore).
type Running struct {
	// Store is the delivery service's store, migrated.
	Store store.Store
	// Realtime is the node's event hub, notifier and ticket service.
	Realtime *realtime.Node

	operator *operatorState
}

// Start is part of caddy.App. It writes a newly generated log-hash key,
// opens the store and the realtime node if a module asked for them
// (migrating the store, or checking its schema when migrations are
// manual), then starts the background workers. Modules waiting in Ready
// are released when it returns, with its error if it failed; Caddy then
// stops the config, so `caddy run` exits with that error.
func (a *App) Start() error {
	err := a.start()
	if err != nil {
		a.startErr = err
	}
	a.readyOnce.Do(func() { close(a.ready) })
	return err
}

func (a *App) start() error {
	if a.newKeyFile != "" {
		if err := redact.WriteKeyFile(a.newKeyFile, a.logHashKey); err != nil {
			if errors.Is(err, redact.ErrKeyFileConflict) {
				return fmt.Errorf("cairn: %w: another process created it while this one started; start again to use that key", err)
			}
			return fmt.Errorf("cairn: %w", err)
		}
	}
	a.workers.OnPanic = func(name string, err error) {
		a.metrics.BackendError("worker", name)
		a.logger.Error("background worker stopped", zap.String("worker", name), zap.Error(err))
	}
	a.beginReplayMemories()
	workers := append([]worker.Worker(nil), a.added...)
	if a.useIdentity {
		w, err := a.startIdentity()
		if err != nil {
			return err
		}
		workers = append(workers, w)
	}
	if a.useStore {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		st, err := a.openStore(ctx)
		if err != nil {
			return err
		}
		node, err := a.startRealtime(ctx, st)
		if err != nil {
			return err
		}
		rcfg := a.Retention.config(a.KeyPackagesPerDevice)
		rcfg.Audit = a.Audit.retention()
		w, err := retention.New(st, rcfg, a.onRetentionPass)
		if err != nil {
			return fmt.Errorf("cairn retention: %w", err)
		}
		op, flush, err := a.startOperatorPlane(ctx, st, w)
		if err != nil {
			return err
		}
		a.running = &Running{Store: st, Realtime: node, operator: op}
		workers = append(workers, w, flush, &metrics.StockWatch{
			Store: st, Metrics: a.metrics, Low: delivery.DefaultKeyPackageThreshold, Interval: stockInterval,
			OnError: func(err error) {
				a.metrics.BackendError("store", "keypackage_stock")
				a.logger.Warn("reading the key-package stock", zap.Error(err))
			},
		})
		if a.backupRunner != nil {
			a.backupRunner.Audit = backupAuditor(op.audit)
			workers = append(workers, a.backupSchedule(st))
		}
		if a.push != nil {
			ps, err := a.pushSender(st)
			if err != nil {
				return err
			}
			workers = append(workers, ps)
		}
	}
	return a.workers.Start(workers...)
}

// beginReplayMemories records in Redis, unless it holds a record from the
// same Redis process, that the memories of used tokens and tickets begin
// now. Without it a memory begins at its first check, so after a first
// deployment or a flush the first request would be refused as issued before
// it; with it, only tokens issued before this start are. A failure is
// logged, not fatal: while Redis is down authentication answers 503 anyway,
// and the first check records the start itself.
func (a *App) beginReplayMemories() {
	if a.redis == nil {
		return
	}
	for _, prefix := range []string{jtiReplayPrefix, realtime.TicketReplayPrefix, powReplayPrefix} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := (&atpauth.RedisReplayStore{Client: a.redis, Prefix: prefix}).Begin(ctx)
		cancel()
		if err != nil {
			a.logger.Warn("could not record the start of the replay memory in Redis; the first check will", zap.Error(err))
		}
	}
}

// stockInterval is how often each node reads the key-package stock: one
// aggregate query over key_packages and devices.
const stockInterval = time.Minute

// startTimeout bounds opening and migrating the store and connecting the
// notifier at start.
const startTimeout = time.Minute

func (a *App) onRetentionPass(r retention.Report, err error) {
	a.recordRetention(r, err)
	if err != nil {
		a.metrics.BackendError("store", "retention")
		a.logger.Error("retention pass failed", zap.Error(err))
		return
	}
	if !r.Skipped {
		for kind, n := range map[string]int64{"messages": r.Messages, "events": r.Events, "welcomes": r.Welcomes,
			"key_packages": r.KeyPackages, "idempotency": r.Idempotency, "device_additions": r.DeviceAdditions,
			"chat_requests": r.ChatRequests} {
			a.metrics.RetentionPurged(kind, n)
		}
		a.logger.Info("retention pass", zap.Int64("messages", r.Messages), zap.Int64("events", r.Events),
			zap.Int64("welcomes", r.Welcomes), zap.Int64("key_packages", r.KeyPackages), zap.Int64("idempotency", r.Idempotency),
			zap.Int64("device_additions", r.DeviceAdditions), zap.Int64("chat_requests", r.ChatRequests), zap.Int64("audit", r.Audit))
	}
}

// Stop is part of caddy.App. It stops the background workers and waits for
// a running pass to end; the next config's app starts its own. The store and
// the realtime node stay open for the next config, until Cleanup releases
// the last reference.
func (a *App) Stop() error {
	a.workers.Stop()
	return nil
}

// AddWorker registers, during a module's Provision, a background worker
// that Start starts and Stop stops. A worker that must run on one node of
// a cluster at a time takes a store lock itself, as retention does.
func (a *App) AddWorker(w worker.Worker) { a.added = append(a.added, w) }

// UseStore tells the app, during a module's Provision, that the module
// serves from the store and the realtime node, so that Start opens them.
// It does nothing else.
func (a *App) UseStore() { a.useStore = true }

// Ready waits until the app has started and returns what it opened. A
// request that arrives before (Caddy may start the http app first) waits
// here rather than meet a half-open store. It fails with ctx's error, with
// Start's error, or when the config is unloaded without starting.
func (a *App) Ready(ctx context.Context) (*Running, error) {
	select {
	case <-a.ready:
	default:
		select {
		case <-a.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if a.startErr != nil {
		return nil, a.startErr
	}
	if a.running == nil {
		return nil, errors.New("cairn: the store is not open (no module asked for it, or the config was unloaded)")
	}
	return a.running, nil
}

// operatorPlane returns the audit log and bans once Start has opened
// them, without waiting; nil before, or when Start failed.
func (a *App) operatorPlane() *operatorState {
	if a == nil || a.ready == nil {
		return nil
	}
	select {
	case <-a.ready:
	default:
		return nil
	}
	if a.running == nil {
		return nil
	}
	return a.running.operator
}

// openStore returns the store, shared across reloads, opening it on first
// use: migrated when migrations are auto, otherwise checked to be exactly
// at the binary's schema.
func (a *App) openStore(ctx context.Context) (store.Store, error) {
	cfg := a.storeCfg
	st, err := shared(a, storePoolPrefix+cfg.Key(), func() (store.Store, func() error, error) {
		b, err := open.New(cfg)
		if err != nil {
			return nil, nil, err
		}
		applied, err := open.Prepare(ctx, b, a.Migrations == MigrationsAuto)
		for _, m := range applied {
			a.logger.Warn("applied schema migration", zap.String("migration", m.Name))
		}
		if err != nil {
			b.Close()
			return nil, nil, err
		}
		// Every call is measured, and traced inside a traced request.
		return observe.New(b, a.metrics.StoreCalls(string(cfg.Kind()), observe.Operations())), b.Close, nil
	})
	if err != nil {
		return nil, fmt.Errorf("cairn database (%s): %w", cfg, err)
	}
	a.metrics.WatchStorePools(string(cfg.Kind()), st)
	return st, nil
}

// startRealtime returns the realtime node over st, shared across reloads
// while the store, the ticket key, the Redis client and the notifier stay
// the same, so open streams survive `caddy reload`.
func (a *App) startRealtime(ctx context.Context, st store.Store) (*realtime.Node, error) {
	keyID := sha256.Sum256(realtime.TicketKey(a.logHashKey))
	key := fmt.Sprintf("cairn.realtime:%s|%x|%s|%s", a.storeCfg.Key(), keyID[:8], a.redisKey, a.notifier)
	// The node outlives this app: its callback holds copies, not a.
	logger, notifier := a.logger, a.notifier
	node, err := shared(a, key, func() (*realtime.Node, func() error, error) {
		n, err := realtime.StartNode(ctx, realtime.NodeConfig{
			Store:       st,
			Notifier:    a.notifier,
			PostgresURL: a.storeCfg.Database,
			Redis:       a.redis,
			Secret:      a.logHashKey,
			Observer:    a.metrics.Realtime,
			OnNotifierError: func(err error) {
				logger.Warn("realtime notifier trouble; retrying", zap.String("notifier", notifier), zap.Error(err))
			},
		})
		if err != nil {
			return nil, nil, err
		}
		return n, n.Close, nil
	})
	if err != nil {
		return nil, fmt.Errorf("cairn realtime: %w", err)
	}
	// The hub outlives reloads; this configuration's caps apply from now.
	node.Hub.SetLimits(a.Streams.limits())
	return node, nil
}
