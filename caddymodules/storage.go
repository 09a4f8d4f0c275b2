package caddymodules

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"

	"github.com/cairn-chat/cairn-caddy/internal/certstore"
)

func init() {
	caddy.RegisterModule(new(PostgresStorage))
}

// Environment variables the storage falls back to.
const (
	// databaseURLEnv is the variable Caddyfile.example gives the cairn
	// app's database; the storage reads the same one by default, because
	// Caddy provisions storage before any app.
	databaseURLEnv = "CAIRN_DATABASE_URL"
	// certKeyEnv may hold the certificate storage's encryption key.
	certKeyEnv = "CAIRN_CERT_KEY"
)

// certKeyFileName is the key file inside cairn's data directory.
const certKeyFileName = "certstore.key"

// PostgresStorage is `caddy.storage.cairn_postgres`: Caddy's certificate
// storage (certificates, ACME accounts, OCSP staples and the locks that
// stop two nodes from ordering the same certificate) in PostgreSQL, so the
// gateway nodes of a cluster share it. Values are sealed with AES-256-GCM;
// see docs/tls.md.
//
// It connects, creates its tables and loads or generates its key on first
// use, never while being provisioned, so `caddy validate` needs no
// database.
//
// Caddyfile (global options):
//
//	storage cairn_postgres {
//	    url      <postgres-url>   # default: the CAIRN_DATABASE_URL environment variable
//	    key      <64 hex chars>   # default: key_file, then CAIRN_CERT_KEY, then a key file in the data directory
//	    key_file <path>
//	    lock_ttl <duration>       # default 1m
//	}
type PostgresStorage struct {
	// URL is the PostgreSQL connection string. Default: the
	// CAIRN_DATABASE_URL environment variable, the one Caddyfile.example
	// gives the cairn app's database (Caddy provisions storage before
	// apps, so the storage cannot ask the app). Placeholders are expanded.
	URL string `json:"url,omitempty"`

	// Key is the AES-256 key that seals every stored value: 64 hexadecimal
	// characters (`openssl rand -hex 32`). Every node sharing the database
	// needs the same key. Placeholders are expanded, so
	// "{env.CAIRN_CERT_KEY}" or "{file./run/secrets/cert_key}" work.
	Key string `json:"key,omitempty"`

	// KeyFile is a file holding the key. When neither Key nor KeyFile is
	// set, the CAIRN_CERT_KEY environment variable is read, and failing
	// that the file cairn/certstore.key in Caddy's data directory (not the
	// cairn app's data_dir: storage is provisioned first), which is
	// generated on first use if the database holds no certificates yet.
	KeyFile string `json:"key_file,omitempty"`

	// LockTTL is the lease of a lock row: a holder renews it every third
	// of the TTL, and a lock whose node died is free after at most this
	// long. Default 1m.
	LockTTL caddy.Duration `json:"lock_ttl,omitempty"`

	storage *certstore.Storage
}

// CaddyModule returns the Caddy module information.
func (*PostgresStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.cairn_postgres",
		New: func() caddy.Module { return new(PostgresStorage) },
	}
}

// Provision resolves the URL and the key source and builds the storage,
// without connecting or creating files.
func (s *PostgresStorage) Provision(ctx caddy.Context) error {
	repl := caddy.NewReplacer()
	url := strings.TrimSpace(repl.ReplaceAll(s.URL, ""))
	if s.URL == "" {
		url = strings.TrimSpace(os.Getenv(databaseURLEnv))
	}
	if url == "" {
		if s.URL != "" {
			return fmt.Errorf("storage cairn_postgres: url %q expands to nothing", s.URL)
		}
		return fmt.Errorf("storage cairn_postgres: no database: set `url` in the storage block or the %s environment variable (the PostgreSQL the cluster shares)", databaseURLEnv)
	}
	cfg := certstore.Config{URL: url, LockTTL: time.Duration(s.LockTTL), Logger: ctx.Logger()}
	switch {
	case s.Key != "":
		key, err := certstore.ParseKey(repl.ReplaceAll(s.Key, ""))
		if err != nil {
			return fmt.Errorf("storage cairn_postgres key: %w", err)
		}
		cfg.Key = key
	case s.KeyFile != "":
		path := repl.ReplaceAll(s.KeyFile, "")
		raw, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("storage cairn_postgres key_file: %w", err)
		}
		if cfg.Key, err = certstore.ParseKey(string(raw)); err != nil {
			return fmt.Errorf("storage cairn_postgres key_file %s: %w", path, err)
		}
	case os.Getenv(certKeyEnv) != "":
		key, err := certstore.ParseKey(os.Getenv(certKeyEnv))
		if err != nil {
			return fmt.Errorf("storage cairn_postgres: environment variable %s: %w", certKeyEnv, err)
		}
		cfg.Key = key
	default:
		cfg.KeyFile = filepath.Join(caddy.AppDataDir(), "cairn", certKeyFileName)
		cfg.GenerateKeyFile = true
	}
	st, err := certstore.New(cfg)
	if err != nil {
		return fmt.Errorf("storage cairn_postgres: %w", err)
	}
	s.storage = st
	return nil
}

// Validate rejects a negative lock TTL.
func (s *PostgresStorage) Validate() error {
	if s.LockTTL < 0 {
		return errors.New("storage cairn_postgres lock_ttl: must be positive")
	}
	if s.LockTTL != 0 && time.Duration(s.LockTTL) < 3*time.Second {
		return fmt.Errorf("storage cairn_postgres lock_ttl %s: use at least 3s (a holder renews every third of it)", time.Duration(s.LockTTL))
	}
	return nil
}

// CertMagicStorage returns the storage; it is part of caddy.StorageConverter.
func (s *PostgresStorage) CertMagicStorage() (certmagic.Storage, error) {
	if s.storage == nil {
		return nil, errors.New("storage cairn_postgres: not provisioned")
	}
	return s.storage, nil
}

// Cleanup releases the locks this config's storage holds and closes its
// pool.
func (s *PostgresStorage) Cleanup() error {
	if s.storage == nil {
		return nil
	}
	return s.storage.Close()
}

// UnmarshalCaddyfile parses the storage block (see the type's comment).
func (s *PostgresStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if !d.NextArg() {
			return d.Errf("%s needs a value", opt)
		}
		v := d.Val()
		if d.NextArg() {
			return d.Errf("%s takes one value", opt)
		}
		switch opt {
		case "url":
			s.URL = v
		case "key":
			s.Key = v
		case "key_file":
			s.KeyFile = v
		case "lock_ttl":
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("lock_ttl %q: %v", v, err)
			}
			s.LockTTL = caddy.Duration(dur)
		default:
			return d.Errf("unknown storage cairn_postgres option %q (want url, key, key_file or lock_ttl)", opt)
		}
	}
	if s.Key != "" && s.KeyFile != "" {
		return d.Err("storage cairn_postgres: set key or key_file, not both")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner      = (*PostgresStorage)(nil)
	_ caddy.Validator        = (*PostgresStorage)(nil)
	_ caddy.CleanerUpper     = (*PostgresStorage)(nil)
	_ caddy.StorageConverter = (*PostgresStorage)(nil)
	_ caddyfile.Unmarshaler  = (*PostgresStorage)(nil)
)
