package caddymodules

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/servicekey"
	"github.com/cairn-chat/cairn-caddy/internal/worker"
)

// IdentityConfig configures the service's did:web signing keys
// (docs/operations.md, "Service identity and key rotation").
type IdentityConfig struct {
	// KeyFile is the keyring file. Default DataDir/service-keys.json. The
	// nodes of a cluster point it at one shared file (a shared volume or
	// a mounted secret): every node publishes and signs with the same
	// keys, and a rotation on one is seen by all within Refresh.
	// Placeholders are expanded.
	KeyFile string `json:"key_file,omitempty"`
	// Grace is how long a rotated-out key stays published (and verifies).
	// Default 7d.
	Grace caddy.Duration `json:"grace,omitempty"`
	// Refresh is how often a node re-reads the key file for another
	// node's rotation, and drops keys past their grace period. Default 10s.
	Refresh caddy.Duration `json:"refresh,omitempty"`
}

const defaultIdentityRefresh = 10 * time.Second

func (c *IdentityConfig) keyFile(dataDir string) string {
	if c != nil && c.KeyFile != "" {
		return caddy.NewReplacer().ReplaceAll(c.KeyFile, "")
	}
	return filepath.Join(dataDir, servicekey.FileName)
}

func (c *IdentityConfig) options() (grace, refresh time.Duration) {
	refresh = defaultIdentityRefresh
	if c == nil {
		return 0, refresh
	}
	if c.Refresh > 0 {
		refresh = time.Duration(c.Refresh)
	}
	return time.Duration(c.Grace), refresh
}

// unmarshalIdentity parses
//
//	identity {
//	    key_file /var/lib/cairn/service-keys.json
//	    grace    7d
//	    refresh  10s
//	}
func (a *App) unmarshalIdentity(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	a.Identity = new(IdentityConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return d.Errf("identity %s takes one value", opt)
		}
		switch opt {
		case "key_file":
			a.Identity.KeyFile = v
		case "grace", "refresh":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("identity %s %q: want a positive duration such as 7d or 10s", opt, v)
			}
			if opt == "grace" {
				a.Identity.Grace = caddy.Duration(dur)
			} else {
				a.Identity.Refresh = caddy.Duration(dur)
			}
		default:
			return d.Errf("unrecognized identity option %q (want key_file, grace or refresh)", opt)
		}
	}
	return nil
}

// UseServiceIdentity tells the app, during a module's Provision, that the
// module needs the service's signing keys, so that Start opens (and on
// first start generates) them.
func (a *App) UseServiceIdentity() { a.useIdentity = true }

// startIdentity opens the keyring, generating the first key when there is
// none, and returns the worker that refreshes it.
func (a *App) startIdentity() (worker.Worker, error) {
	grace, refresh := a.Identity.options()
	path := a.Identity.keyFile(a.DataDir)
	k, err := servicekey.Open(path, servicekey.Options{Grace: grace})
	if err != nil {
		return nil, fmt.Errorf("cairn identity: %w", err)
	}
	a.serviceKeys = k
	logger := a.logger
	return worker.Func{WorkerName: "service-keys", Fn: func(ctx context.Context) {
		t := time.NewTicker(refresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := k.Refresh(); err != nil {
					logger.Error("service keys: re-reading the key file", zap.Error(err))
				}
			}
		}
	}}, nil
}

// ServiceKeys returns the service's keyring once Start has opened it; ok
// is false before, or when no module asked for it.
func (a *App) ServiceKeys() (k *servicekey.Keyring, ok bool) {
	if a == nil || a.ready == nil {
		return nil, false
	}
	select {
	case <-a.ready:
	default:
		return nil, false
	}
	return a.serviceKeys, a.serviceKeys != nil
}

// ServiceSigner returns the signer of outgoing service-auth JWTs for the
// service DID did, once Start has opened the keyring.
func (a *App) ServiceSigner(did string) (servicekey.ServiceAuthSigner, bool) {
	k, ok := a.ServiceKeys()
	if !ok {
		return nil, false
	}
	return servicekey.Signer{DID: did, Keys: k}, true
}
