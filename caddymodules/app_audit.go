package caddymodules

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/ban"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/retention"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/worker"
)

// auditKeyEnv names the environment variable that may hold the audit key.
const auditKeyEnv = "CAIRN_AUDIT_KEY"

// auditKeyFileName is the file the audit key is generated into, inside the
// data directory.
const auditKeyFileName = "audit.key"

// AuditConfig configures the tamper-evident audit log (docs/operations.md).
type AuditConfig struct {
	// Key is the secret the audit chain's MACs are computed under; at
	// least 32 bytes, kept outside the database. Placeholders are
	// expanded. When empty, KeyFile is read, then the CAIRN_AUDIT_KEY
	// environment variable, then DataDir/audit.key; failing all three a
	// key is generated when the app first starts and written to
	// DataDir/audit.key (mode 0600). Every node of a cluster must use the
	// same key.
	Key string `json:"key,omitempty"`
	// KeyFile is a file holding the audit key.
	KeyFile string `json:"key_file,omitempty"`
	// IP says what the log keeps of a client address: "off" (the
	// default: nothing), "hash" (the keyed hash) or "truncate" (the /24
	// or /48 network).
	IP string `json:"ip,omitempty"`
	// Retention is how long rows are kept; the retention worker prunes
	// older ones keeping the chain verifiable. Default 90d.
	Retention caddy.Duration `json:"retention,omitempty"`
}

func (c *AuditConfig) ip() string {
	if c == nil {
		return ""
	}
	return c.IP
}

func (c *AuditConfig) retention() time.Duration {
	if c == nil {
		return 0
	}
	return time.Duration(c.Retention)
}

// validate names a bad option.
func (c *AuditConfig) validate() error {
	if err := audit.ValidIPPolicy(c.ip()); err != nil {
		return fmt.Errorf("cairn %w", err)
	}
	if c.retention() < 0 {
		return errors.New("cairn audit retention: want a positive duration")
	}
	return nil
}

// AuditKey finds the audit key the app would use, without creating one:
// the key from config, key file, environment or the data directory.
// generate is the file path Start would create when there is none yet (the
// key is then nil). With no dataDir, key and generate are both empty when
// neither the configuration nor the environment holds a key.
func (c *AuditConfig) AuditKey(repl *caddy.Replacer, dataDir string) (key []byte, generate string, err error) {
	if c != nil {
		if k := repl.ReplaceAll(c.Key, ""); k != "" {
			key, err = redact.CheckKey([]byte(k), "cairn audit key")
			return key, "", err
		}
		if c.KeyFile != "" {
			key, err = redact.ReadKeyFile(repl.ReplaceAll(c.KeyFile, ""))
			if err != nil {
				return nil, "", fmt.Errorf("cairn audit key_file: %w", err)
			}
			return key, "", nil
		}
	}
	if k := os.Getenv(auditKeyEnv); k != "" {
		key, err = redact.CheckKey([]byte(k), "environment variable "+auditKeyEnv)
		return key, "", err
	}
	if dataDir == "" {
		// No data directory (a command given only a PostgreSQL URL): the
		// key can only come from the configuration or the environment.
		return nil, "", nil
	}
	path := filepath.Join(dataDir, auditKeyFileName)
	key, err = redact.ReadKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, path, nil
	}
	return key, "", err
}

// unmarshalAudit parses the `audit` block of the cairn option.
func (a *App) unmarshalAudit(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	a.Audit = new(AuditConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if !d.NextArg() {
			return d.Errf("audit %s needs a value", opt)
		}
		v := d.Val()
		if d.NextArg() {
			return d.Errf("audit %s takes one value", opt)
		}
		switch opt {
		case "key":
			a.Audit.Key = v
		case "key_file":
			a.Audit.KeyFile = v
		case "ip":
			if err := audit.ValidIPPolicy(v); err != nil {
				return d.Err(err.Error())
			}
			a.Audit.IP = v
		case "retention":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("audit retention %q: want a positive duration such as 90d", v)
			}
			a.Audit.Retention = caddy.Duration(dur)
		default:
			return d.Errf("unrecognized audit option %q (want key, key_file, ip or retention)", opt)
		}
	}
	return nil
}

// operatorState is what the operator plane needs once the store is open:
// the audit log, the ban list and the counters status reports.
type operatorState struct {
	audit *audit.Log
	bans  *ban.List
	auth  *audit.Aggregator
}

// retentionStats counts this app's retention passes for the status route.
type retentionStats struct {
	runs, failures atomic.Int64
	lastRun        atomic.Pointer[time.Time]
}

// startOperatorPlane builds the audit log and ban list over st, records
// the configuration load, hands the audit log to the retention worker and
// returns the worker that flushes aggregated authentication events.
func (a *App) startOperatorPlane(ctx context.Context, st store.Store, w *retention.Worker) (*operatorState, worker.Worker, error) {
	al, ok := st.(store.AuditLog)
	bs, ok2 := st.(store.Bans)
	if !ok || !ok2 {
		return nil, nil, fmt.Errorf("cairn: the %s store keeps no audit log or bans", a.storeCfg.Kind())
	}
	if a.newAuditKeyFile != "" {
		if err := redact.WriteKeyFile(a.newAuditKeyFile, a.auditKey); err != nil {
			if errors.Is(err, redact.ErrKeyFileConflict) {
				return nil, nil, fmt.Errorf("cairn audit key: %w: another process created it while this one started; start again to use that key", err)
			}
			return nil, nil, fmt.Errorf("cairn audit key: %w", err)
		}
	}
	log, err := audit.New(audit.Config{Store: al, Key: a.auditKey, IP: a.Audit.ip(), Hasher: a.hasher})
	if err != nil {
		return nil, nil, fmt.Errorf("cairn audit: %w", err)
	}
	bans, err := ban.New(ban.Config{Store: bs, Hasher: a.hasher})
	if err != nil {
		return nil, nil, fmt.Errorf("cairn bans: %w", err)
	}
	// A node with another key than the one that wrote the log (a cluster
	// node that generated its own) would write rows no one can verify:
	// refuse to start.
	if err := log.CheckKey(ctx); err != nil {
		if errors.Is(err, audit.ErrKeyMismatch) {
			return nil, nil, fmt.Errorf("cairn audit: %w: give every node the same key (%s, or `audit { key_file … }`), or run `cairn-caddy audit verify` if the log was altered", err, auditKeyEnv)
		}
		return nil, nil, fmt.Errorf("cairn audit: %w", err)
	}
	if err := log.Record(ctx, audit.Event{Type: audit.TypeConfigLoad, Metadata: map[string]any{"mode": a.Mode, "backend": string(a.storeCfg.Kind())}}); err != nil {
		return nil, nil, fmt.Errorf("cairn audit: recording the configuration load: %w", err)
	}
	w.PruneAudit(log)
	agg := audit.NewAggregator(nil)
	logger := a.logger
	flush := worker.Func{WorkerName: "audit-auth-flush", Fn: func(ctx context.Context) {
		t := time.NewTicker(audit.DefaultWindow)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				// Stop: what this app counted is written before it goes.
				fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := agg.Flush(fctx, log); err != nil {
					logger.Error("audit: recording operator authentication", zap.Error(err))
				}
				cancel()
				return
			case <-t.C:
				if err := agg.Flush(ctx, log); err != nil {
					logger.Error("audit: recording operator authentication", zap.Error(err))
				}
			}
		}
	}}
	return &operatorState{audit: log, bans: bans, auth: agg}, flush, nil
}

// AuditRecorder returns the audit log, for modules and workers that audit
// what they do (backups, key rotations): available once Start has opened
// the store, so call it when the work runs, not in Provision. ok is false
// before, or when no module asked for the store.
func (a *App) AuditRecorder() (rec audit.Recorder, ok bool) {
	if p := a.operatorPlane(); p != nil {
		return p.audit, true
	}
	return nil, false
}

// recordRetention audits a retention pass that deleted something (counts
// only) and counts it for the status route.
func (a *App) recordRetention(r retention.Report, err error) {
	now := time.Now().UTC()
	if r.Skipped {
		return
	}
	a.retention.runs.Add(1)
	a.retention.lastRun.Store(&now)
	if err != nil {
		a.retention.failures.Add(1)
	}
	if a.running == nil || a.running.operator == nil || r.Messages+r.Events+r.Welcomes+r.KeyPackages+r.Idempotency+r.DeviceAdditions+r.ChatRequests == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.running.operator.audit.Record(ctx, audit.Event{Type: audit.TypeRetentionPurge, Metadata: map[string]any{
		"messages": r.Messages, "events": r.Events, "welcomes": r.Welcomes, "key_packages": r.KeyPackages, "idempotency": r.Idempotency,
		"device_additions": r.DeviceAdditions, "chat_requests": r.ChatRequests,
	}}); err != nil {
		a.logger.Error("audit: recording a retention pass", zap.Error(err))
	}
}
