// Package retention deletes what the delivery service no longer needs:
// messages, event rows, Welcomes, key packages, idempotency records and
// audit log rows past their configured ages. It runs as one background worker per gateway node,
// and a store-wide lock makes sure only one node purges at a time.
//
// It decides nothing about what a row means; each purge's rules live in the
// store (see store.Purger).
package retention

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// LockName is the store lock a purge pass holds.
const LockName = "cairn.retention"

// Defaults of Config.
const (
	DefaultMessages           = 30 * 24 * time.Hour
	DefaultEvents             = 7 * 24 * time.Hour
	DefaultConsumedWelcomes   = 24 * time.Hour
	DefaultUnconsumedWelcomes = 30 * 24 * time.Hour
	DefaultConsumedKeyPackage = 7 * 24 * time.Hour
	DefaultKeyPackagesPerDev  = 200
	DefaultIdempotency        = 24 * time.Hour
	DefaultInterval           = 10 * time.Minute
	DefaultAudit              = 90 * 24 * time.Hour
	DefaultClosedChatRequests = 7 * 24 * time.Hour
)

// Config sets how long each kind of row is kept. Zero values take the
// defaults.
type Config struct {
	// Messages: message ciphertext and commits. Default 30 days.
	Messages time.Duration
	// Events: realtime event rows (a cursor older than this cannot resume).
	// Default 7 days.
	Events time.Duration
	// ConsumedWelcomes: Welcomes after their recipient confirmed them.
	// Default 24 hours.
	ConsumedWelcomes time.Duration
	// UnconsumedWelcomes: Welcomes never fetched. Default 30 days.
	UnconsumedWelcomes time.Duration
	// ConsumedKeyPackages: key packages after they were handed out (kept
	// for the key-package statistics). Expired packages go at once.
	// Default 7 days.
	ConsumedKeyPackages time.Duration
	// KeyPackagesPerDevice: a device's available packages beyond this many
	// (oldest first) are deleted. Default 200, the delivery service's
	// default inventory cap; keep the two equal.
	KeyPackagesPerDevice int
	// Idempotency: records that let a retried write return its original
	// response. Default 24 hours.
	Idempotency time.Duration
	// Audit: audit log rows, when the worker has an AuditPruner. Default
	// 90 days.
	Audit time.Duration
	// ClosedChatRequests: chat requests after they were accepted, declined,
	// blocked or expired (their held messages and previews go when they
	// close; the row, so that listChatRequests can show the outcome, after
	// this). Pending requests expire by their own expiry. Default 7 days.
	ClosedChatRequests time.Duration
	// Interval between passes. Default 10 minutes.
	Interval time.Duration
}

// AuditPruner prunes the audit log keeping its chain verifiable
// (*audit.Log).
type AuditPruner interface {
	Prune(ctx context.Context, olderThan time.Duration) (int64, error)
}

func (c *Config) applyDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Messages, DefaultMessages)
	def(&c.Events, DefaultEvents)
	def(&c.ConsumedWelcomes, DefaultConsumedWelcomes)
	def(&c.UnconsumedWelcomes, DefaultUnconsumedWelcomes)
	def(&c.ConsumedKeyPackages, DefaultConsumedKeyPackage)
	def(&c.Idempotency, DefaultIdempotency)
	def(&c.Interval, DefaultInterval)
	def(&c.Audit, DefaultAudit)
	def(&c.ClosedChatRequests, DefaultClosedChatRequests)
	if c.KeyPackagesPerDevice <= 0 {
		c.KeyPackagesPerDevice = DefaultKeyPackagesPerDev
	}
}

// Validate rejects settings that would break the service, naming them.
func (c Config) Validate() error {
	c.applyDefaults()
	if c.Events > c.Messages {
		return fmt.Errorf("retention: events (%s) outlive messages (%s): a resumed stream would point at deleted messages", c.Events, c.Messages)
	}
	if c.Interval < time.Second {
		return fmt.Errorf("retention: interval %s is below one second", c.Interval)
	}
	return nil
}

// Report is what one pass deleted, by kind. Skipped is true when another
// node held the lock.
type Report struct {
	Messages, Events, Welcomes, KeyPackages, Idempotency, Audit int64
	// DeviceAdditions counts pending device additions and rejoin
	// requests that expired (each carries its own expiry).
	DeviceAdditions int64
	// ChatRequests counts chat requests closed as expired plus closed
	// ones deleted.
	ChatRequests int64
	Skipped      bool
}

// Worker runs purge passes.
type Worker struct {
	store store.Maintenance
	cfg   Config
	audit AuditPruner
	// OnPass, if set, is called after every pass with its report and error
	// (for logs and metrics; a report holds only counts).
	onPass func(Report, error)
}

// New returns a Worker for s with cfg (defaults applied).
func New(s store.Maintenance, cfg Config, onPass func(Report, error)) (*Worker, error) {
	if s == nil {
		return nil, errors.New("retention: a store is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	return &Worker{store: s, cfg: cfg, onPass: onPass}, nil
}

// PruneAudit makes every pass also prune the audit log through p, after
// Config.Audit. Call it before Run.
func (w *Worker) PruneAudit(p AuditPruner) { w.audit = p }

// Name names the worker, for the cairn app's worker list and its logs.
func (w *Worker) Name() string { return "retention" }

// Config returns the worker's configuration with defaults applied.
func (w *Worker) Config() Config { return w.cfg }

// RunOnce runs one pass if no other node is running one. A failing purge
// does not stop the others; their errors are joined.
func (w *Worker) RunOnce(ctx context.Context) (Report, error) {
	unlock, ok, err := w.store.TryLock(ctx, LockName)
	if err != nil {
		return Report{}, fmt.Errorf("retention: taking the lock: %w", err)
	}
	if !ok {
		return Report{Skipped: true}, nil
	}
	defer unlock()
	var r Report
	var errs []error
	run := func(what string, n *int64, purge func() (int64, error)) {
		deleted, err := purge()
		*n = deleted
		if err != nil {
			errs = append(errs, fmt.Errorf("retention: purging %s: %w", what, err))
		}
	}
	c := w.cfg
	run("messages", &r.Messages, func() (int64, error) { return w.store.PurgeMessages(ctx, c.Messages) })
	run("events", &r.Events, func() (int64, error) { return w.store.PurgeEvents(ctx, c.Events) })
	run("welcomes", &r.Welcomes, func() (int64, error) {
		return w.store.PurgeWelcomes(ctx, c.ConsumedWelcomes, c.UnconsumedWelcomes)
	})
	run("key packages", &r.KeyPackages, func() (int64, error) {
		return w.store.PurgeKeyPackages(ctx, c.ConsumedKeyPackages, c.KeyPackagesPerDevice)
	})
	run("idempotency records", &r.Idempotency, func() (int64, error) { return w.store.PurgeIdempotency(ctx, c.Idempotency) })
	run("pending device additions", &r.DeviceAdditions, func() (int64, error) { return w.store.PurgePendingAdditions(ctx) })
	run("chat requests", &r.ChatRequests, func() (int64, error) { return w.store.PurgeChatRequests(ctx, c.ClosedChatRequests) })
	if w.audit != nil {
		run("audit log", &r.Audit, func() (int64, error) { return w.audit.Prune(ctx, c.Audit) })
	}
	return r, errors.Join(errs...)
}

// Run runs a pass at once and then every Interval until ctx is done.
func (w *Worker) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		r, err := w.RunOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if w.onPass != nil {
			w.onPass(r, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
