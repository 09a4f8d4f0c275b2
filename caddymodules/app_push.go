package caddymodules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/cairn-chat/cairn-caddy/internal/push"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// PushConfig turns on push wake-ups (docs/push.md). Without it, the
// default, registerDeviceToken answers MethodNotImplemented and nothing
// is sent.
type PushConfig struct {
	// APNs, if set, sends to iOS devices through Apple's push service.
	APNs *PushAPNsConfig `json:"apns,omitempty"`
	// UnifiedPush, if set, sends to Android and web devices through the
	// distributor endpoint each registered (Web Push, RFC 8030/8291).
	UnifiedPush *PushUnifiedPushConfig `json:"unifiedpush,omitempty"`
	// QueueSize caps the conversations waiting for a wake-up round; past
	// it, changes are dropped and counted (cairn_push_wakeups_total with
	// outcome "dropped"). Default 10000.
	QueueSize int `json:"queue_size,omitempty"`
	// Interval is the coalescing window: every change within it costs each
	// device one wake-up. Default 2s.
	Interval caddy.Duration `json:"interval,omitempty"`
	// AllowHosts lists UnifiedPush endpoint hosts that may be plain http
	// on a private or loopback address. Development only.
	AllowHosts []string `json:"allow_hosts,omitempty"`
}

// PushAPNsConfig is token-based (.p8) APNs authentication.
type PushAPNsConfig struct {
	// KeyFile is the .p8 signing key from the Apple developer account.
	KeyFile string `json:"key_file"`
	// KeyID and TeamID identify the key and the team.
	KeyID  string `json:"key_id"`
	TeamID string `json:"team_id"`
	// Topic is the app's bundle ID.
	Topic string `json:"topic"`
	// Sandbox sends to APNs' development environment.
	Sandbox bool `json:"sandbox,omitempty"`
	// Host overrides the APNs URL (a local test server). Development only.
	Host string `json:"host,omitempty"`
}

// PushUnifiedPushConfig configures UnifiedPush sends.
type PushUnifiedPushConfig struct {
	// Contact is the VAPID subscriber: a mailto: address or https URL a
	// push service can reach the operator at.
	Contact string `json:"contact"`
}

// pushState is what Provision prepared and Start uses.
type pushState struct {
	keys       push.Keys
	newKeyFile string // where Start writes keys; empty when they were read
	sealer     *push.Sealer
	queue      *push.Queue
}

// provisionPush reads (or, for Start to write, generates) the push keys and
// builds the queue. Nothing is sent before Start.
func (a *App) provisionPush() error {
	if a.Push == nil {
		return nil
	}
	if a.Push.APNs == nil && a.Push.UnifiedPush == nil {
		return errors.New("cairn push: configure apns, unifiedpush or both")
	}
	if n := a.Push.QueueSize; n < 0 {
		return errors.New("cairn push queue_size: want a positive number")
	}
	if a.Push.Interval < 0 {
		return errors.New("cairn push interval: want a positive duration")
	}
	if c := a.Push.APNs; c != nil && (c.KeyFile == "" || c.KeyID == "" || c.TeamID == "" || c.Topic == "") {
		return errors.New("cairn push apns: key_file, key_id, team_id and topic are all required")
	}
	if c := a.Push.UnifiedPush; c != nil && c.Contact == "" {
		return errors.New("cairn push unifiedpush: contact is required (a mailto: address or https URL for push services to reach you)")
	}
	st := &pushState{}
	path := filepath.Join(a.DataDir, push.KeyFileName)
	keys, err := push.ReadKeyFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if keys, err = push.GenerateKeys(); err != nil {
			return fmt.Errorf("cairn push: %w", err)
		}
		st.newKeyFile = path
	case err != nil:
		return fmt.Errorf("cairn push: %w", err)
	}
	st.keys = keys
	if st.sealer, err = push.NewSealer(keys.Seal); err != nil {
		return fmt.Errorf("cairn push: %w", err)
	}
	size := a.Push.QueueSize
	if size == 0 {
		size = 10000
	}
	st.queue = push.NewQueue(size)
	st.queue.OnDrop = func() { a.metrics.Push.PushOutcome("none", "dropped") }
	a.push = st
	return nil
}

// validatePush refuses development-only push options in production.
func (a *App) validatePush() error {
	if a.Push == nil {
		return nil
	}
	if len(a.Push.AllowHosts) > 0 {
		if err := a.RequireDevelopment("cairn push allow_hosts (push endpoints on private hosts over http)"); err != nil {
			return err
		}
	}
	if a.Push.APNs != nil && a.Push.APNs.Host != "" {
		if err := a.RequireDevelopment("cairn push apns host (an APNs override)"); err != nil {
			return err
		}
	}
	return nil
}

// pushSender writes a new key file and builds the sender worker over st.
func (a *App) pushSender(st store.Store) (*push.Sender, error) {
	p := a.push
	if p.newKeyFile != "" {
		if err := push.WriteKeyFile(p.newKeyFile, p.keys); err != nil {
			return nil, fmt.Errorf("cairn push: %w (if another node created it, start again to use that key)", err)
		}
	}
	providers := map[string]push.Provider{}
	if c := a.Push.APNs; c != nil {
		key, err := os.ReadFile(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cairn push apns key_file: %w", err)
		}
		host := c.Host
		if host == "" && c.Sandbox {
			host = "https://api.sandbox.push.apple.com"
		}
		ap, err := push.NewAPNs(push.APNsConfig{AuthKey: key, KeyID: c.KeyID, TeamID: c.TeamID, Topic: c.Topic, Host: host})
		if err != nil {
			return nil, fmt.Errorf("cairn push apns: %w", err)
		}
		providers[push.ProviderAPNs] = ap
	}
	if c := a.Push.UnifiedPush; c != nil {
		providers[push.ProviderUnifiedPush] = push.NewUnifiedPush(push.UnifiedPushConfig{Keys: p.keys, Subscriber: c.Contact, AllowHosts: a.Push.AllowHosts})
	}
	return &push.Sender{Queue: p.queue, Store: st, Sealer: p.sealer, Providers: providers,
		Interval: time.Duration(a.Push.Interval), Observer: a.metrics.Push, Logger: a.logger.Named("push")}, nil
}

// PushSealer returns the sealer of push tokens, or nil when push is off.
func (a *App) PushSealer() *push.Sealer {
	if a.push == nil {
		return nil
	}
	return a.push.sealer
}

// PushQueue returns the queue of conversations to wake, or nil when push
// is off.
func (a *App) PushQueue() *push.Queue {
	if a.push == nil {
		return nil
	}
	return a.push.queue
}

// unmarshalPush parses the `push` block of the cairn option:
//
//	push {
//		queue_size 10000
//		interval 2s
//		apns {
//			key_file /etc/cairn/AuthKey_ABC123.p8
//			key_id ABC123
//			team_id DEF456
//			topic blue.catbird.app
//			sandbox
//		}
//		unifiedpush {
//			contact mailto:ops@example.com
//		}
//	}
func (a *App) unmarshalPush(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	a.Push = new(PushConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "queue_size":
			var v string
			if !d.AllArgs(&v) {
				return d.Errf("push queue_size takes one value")
			}
			n, err := positiveInt(v)
			if err != nil {
				return d.Errf("push queue_size %q: %v", v, err)
			}
			a.Push.QueueSize = n
		case "interval":
			var v string
			if !d.AllArgs(&v) {
				return d.Errf("push interval takes one value")
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("push interval %q: want a positive duration such as 2s", v)
			}
			a.Push.Interval = caddy.Duration(dur)
		case "allow_hosts":
			hosts := d.RemainingArgs()
			if len(hosts) == 0 {
				return d.Errf("push allow_hosts needs at least one host")
			}
			a.Push.AllowHosts = append(a.Push.AllowHosts, hosts...)
		case "apns":
			c := new(PushAPNsConfig)
			for n := d.Nesting(); d.NextBlock(n); {
				o := d.Val()
				if o == "sandbox" {
					if d.NextArg() {
						return d.ArgErr()
					}
					c.Sandbox = true
					continue
				}
				var v string
				if !d.AllArgs(&v) {
					return d.Errf("push apns %s takes one value", o)
				}
				field := map[string]*string{"key_file": &c.KeyFile, "key_id": &c.KeyID, "team_id": &c.TeamID, "topic": &c.Topic, "host": &c.Host}[o]
				if field == nil {
					return d.Errf("unrecognized push apns option %q", o)
				}
				*field = v
			}
			a.Push.APNs = c
		case "unifiedpush":
			c := new(PushUnifiedPushConfig)
			for n := d.Nesting(); d.NextBlock(n); {
				o := d.Val()
				var v string
				if o != "contact" || !d.AllArgs(&v) {
					return d.Errf("push unifiedpush takes one option, contact <mailto: or https URL>")
				}
				c.Contact = v
			}
			a.Push.UnifiedPush = c
		default:
			return d.Errf("unrecognized push option %q", opt)
		}
	}
	return nil
}
