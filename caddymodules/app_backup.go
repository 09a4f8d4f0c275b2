package caddymodules

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/backup"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// BackupConfig is the scheduled backup of the cairn app's configuration:
// an encrypted archive of the store and the data directory's files, every
// Interval, into Target, keeping the newest Keep. In a cluster one node
// runs each backup (a store lock, as retention takes).
type BackupConfig struct {
	// Target is where archives go: a directory,
	// s3://bucket/prefix?endpoint=host:port or rsync://user@host/path.
	// Placeholders are expanded.
	Target string `json:"target,omitempty"`
	// Interval between backups. Default 24h (`schedule daily`).
	Interval caddy.Duration `json:"interval,omitempty"`
	// Keep is how many archives the target keeps; older ones are deleted
	// after each backup. Default 7.
	Keep int `json:"keep,omitempty"`
	// KeyFile holds the backup key; empty reads the CAIRN_BACKUP_KEY
	// environment variable. It must not be inside a directory Target.
	KeyFile string `json:"key_file,omitempty"`
	// CaddyStorage, if set, is Caddy's file storage directory to include.
	CaddyStorage string `json:"caddy_storage,omitempty"`
}

// Backup defaults.
const (
	defaultBackupInterval = 24 * time.Hour
	defaultBackupKeep     = 7
)

// unmarshalBackup parses
//
//	backup {
//	    target    /var/backups/cairn
//	    schedule  daily | hourly | <duration>
//	    keep      7
//	    key_file  /etc/cairn/backup.key
//	    caddy_storage /var/lib/caddy/.local/share/caddy
//	}
func (a *App) unmarshalBackup(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	a.Backup = new(BackupConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return d.Errf("backup %s takes one value", opt)
		}
		switch opt {
		case "target":
			a.Backup.Target = v
		case "schedule":
			switch v {
			case "daily":
				a.Backup.Interval = caddy.Duration(24 * time.Hour)
			case "hourly":
				a.Backup.Interval = caddy.Duration(time.Hour)
			default:
				dur, err := caddy.ParseDuration(v)
				if err != nil || dur < time.Minute {
					return d.Errf("backup schedule %q: want daily, hourly or a duration of at least 1m", v)
				}
				a.Backup.Interval = caddy.Duration(dur)
			}
		case "keep":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return d.Errf("backup keep %q: want a whole number of archives, at least 1", v)
			}
			a.Backup.Keep = n
		case "key_file":
			a.Backup.KeyFile = v
		case "caddy_storage":
			a.Backup.CaddyStorage = v
		default:
			return d.Errf("unrecognized backup option %q", opt)
		}
	}
	return nil
}

// provisionBackup builds the scheduled backup's runner: it parses the
// target and reads the key (so `validate` reports a missing one), and
// connects to nothing.
func (a *App) provisionBackup(repl *caddy.Replacer) error {
	c := a.Backup
	if c == nil {
		return nil
	}
	spec := repl.ReplaceAll(c.Target, "")
	if spec == "" {
		return errors.New("cairn backup: no target: set `target` to a directory, s3://bucket/prefix or rsync://user@host/path")
	}
	t, err := backup.ParseTarget(spec)
	if err != nil {
		return fmt.Errorf("cairn backup target: %w", err)
	}
	keyFile := repl.ReplaceAll(c.KeyFile, "")
	if d, ok := t.(backup.Dir); ok && keyFile != "" && inside(keyFile, d.Path) {
		return fmt.Errorf("cairn backup key_file %s is inside the target %s: keep the key away from the archives", keyFile, d.Path)
	}
	key, err := backup.LoadKey(keyFile)
	if err != nil {
		return fmt.Errorf("cairn backup: %w", err)
	}
	if c.Interval == 0 {
		c.Interval = caddy.Duration(defaultBackupInterval)
	}
	if c.Keep == 0 {
		c.Keep = defaultBackupKeep
	}
	opts := backup.Options{Store: a.storeCfg, Key: key, DataDir: a.DataDir, CaddyStorage: repl.ReplaceAll(c.CaddyStorage, "")}
	if d, ok := t.(backup.Dir); ok && inside(d.Path, a.DataDir) {
		opts.Exclude = append(opts.Exclude, d.Path)
	}
	a.backupRunner = &backup.Runner{Target: t, Options: opts, Keep: c.Keep, OnFinish: a.onBackup}
	return nil
}

// backupSchedule is the scheduled backup's worker, locking through st.
func (a *App) backupSchedule(st store.Store) *backup.Schedule {
	a.metrics.BackupInterval(time.Duration(a.Backup.Interval))
	return &backup.Schedule{
		OnNewest: func(newest backup.Archive, ok bool) {
			if ok {
				a.metrics.BackupArchive(newest.Created, newest.Size)
			} else {
				a.metrics.BackupArchive(time.Time{}, 0)
			}
		},
		Runner: a.backupRunner, Locker: st, Interval: time.Duration(a.Backup.Interval),
		OnError: func(err error) {
			a.metrics.BackendError("backup", "schedule")
			a.logger.Error("scheduled backup", zap.Error(err))
		},
	}
}

func (a *App) onBackup(f backup.Finished) {
	if f.Error != "" {
		a.metrics.BackendError("backup", "run")
		a.logger.Error("backup failed", zap.String("error", f.Error))
		return
	}
	a.metrics.BackupArchive(f.StartedAt, f.Bytes)
	a.logger.Info("backup written", zap.String("archive", f.Archive), zap.Int64("bytes", f.Bytes),
		zap.Int64("rows", f.Rows), zap.Int("pruned", len(f.Pruned)))
}

// backupAuditor records backups and restores in the audit log: the actor
// is the operator who asked ("" for the schedule or the service), and the
// metadata holds counts, sizes and names only.
func backupAuditor(rec audit.Recorder) backup.Auditor {
	return func(ctx context.Context, event, actor string, metadata map[string]any) error {
		return rec.Record(ctx, audit.Event{Type: event, Actor: actor, Metadata: metadata})
	}
}

// BackupRunner returns the scheduled backup's runner, for the operator
// API's backup routes; nil when no backup is configured.
func (a *App) BackupRunner() *backup.Runner { return a.backupRunner }
