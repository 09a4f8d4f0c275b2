package caddymodules

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/ban"
	"github.com/cairn-chat/cairn-caddy/internal/blocks"
	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/realtime"
	"github.com/cairn-chat/cairn-caddy/internal/tracing"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func init() {
	caddy.RegisterModule(new(Delivery))
	httpcaddyfile.RegisterHandlerDirective("cairn_delivery", parseDelivery)
}

// Delivery is the MLS delivery service: it serves the blue.catbird.mls XRPC
// methods (/xrpc/blue.catbird.mls.*) over the cairn app's store — SQLite by
// default, PostgreSQL when the cairn app has `database`. It stores
// ciphertext and the minimum routing state, never who sent a message, and
// never decrypts anything. It reads the caller only from the identity
// cairn_auth verified, so it must come after cairn_auth. Requests for other
// paths pass through to the next handler.
//
// It also serves the event streams: streamConvoEvents (Server-Sent Events)
// and getSubscriptionTicket behind cairn_auth, and subscribeConvoEvents
// (WebSocket), which authenticates by its single-use ticket and so is routed
// without cairn_auth (see Caddyfile.example). Every committed write wakes
// the streams of its conversation, across nodes on PostgreSQL.
//
// Caddyfile:
//
//	cairn_delivery {
//	    max_message_size           10MiB
//	    max_key_package_lifetime   90d
//	    max_members                1000
//	    max_devices                10
//	    message_ttl                <duration>   # optional expiry on every message
//	    websocket_endpoint         <ws(s) URL>  # what getSubscriptionTicket advertises
//	    require_opt_in                          # only opted-in accounts can be added
//	    block_checks               on|off       # default on: Bluesky blocks refuse adds
//	    block_source               pds|appview|both # default pds (appview with block_appview)
//	    block_appview              <https URL>  # a Bluesky AppView, such as https://api.bsky.app
//	    block_source_unavailable   refuse|allow # default refuse (fail closed)
//	    block_cache_ttl            1m
//	    chat_request_previews                   # keep previewText, sealed; default: dropped
//	    chat_request_sender_rate    20/1h       # chat requests one account sends
//	    chat_request_recipient_rate 30/1h       # chat requests one account receives
//	    proof_of_work { … }                     # optional; see ProofOfWork
//	}
type Delivery struct {
	// MaxMessageBytes bounds one message's or commit's ciphertext. Default
	// 10 MiB.
	MaxMessageBytes int `json:"max_message_bytes,omitempty"`
	// MaxKeyPackageLifetime caps how long a key package is handed out,
	// whatever lifetime it declares. Default 90 days.
	MaxKeyPackageLifetime caddy.Duration `json:"max_key_package_lifetime,omitempty"`
	// MaxMembers bounds the members (devices) of one conversation. Default
	// 1000.
	MaxMembers int `json:"max_members,omitempty"`
	// MaxDevices bounds an account's registered devices. Default 10.
	MaxDevices int `json:"max_devices,omitempty"`
	// MessageTTL, when set, expires every message this long after it was
	// received, sooner than retention would.
	MessageTTL caddy.Duration `json:"message_ttl,omitempty"`
	// WebSocketEndpoint is the subscribeConvoEvents URL that
	// getSubscriptionTicket advertises, for a gateway whose public address
	// differs from the Host a request arrives with (behind a proxy, on
	// another port) or that serves plain HTTP (ws://). Default:
	// wss://<request host>/xrpc/blue.catbird.mls.subscribeConvoEvents.
	WebSocketEndpoint string `json:"websocket_endpoint,omitempty"`
	// RequireOptIn, when true, lets only accounts that opted in
	// (blue.catbird.mls.optIn) be added to a conversation: by createConvo,
	// addMembers, or redeeming an invite. Default false.
	RequireOptIn bool `json:"require_opt_in,omitempty"`
	// DisableBlockChecks turns off reading Bluesky blocks
	// (app.bsky.graph.block records, from each account's PDS): adds are
	// then not checked and checkBlocks finds nothing. Default false.
	DisableBlockChecks bool `json:"disable_block_checks,omitempty"`
	// AllowAddsWhenBlocksUnavailable lets an add through when the block
	// records could not be read. Default false: the add is refused with
	// 503 BlueskyServiceUnavailable (fail closed).
	AllowAddsWhenBlocksUnavailable bool `json:"allow_adds_when_blocks_unavailable,omitempty"`
	// BlockCacheTTL is how long an account's blocks are reused. Default 1
	// minute.
	BlockCacheTTL caddy.Duration `json:"block_cache_ttl,omitempty"`
	// BlockSource is where blocks are read: "pds" reads each account's
	// block records from its PDS, as its DID document names it; "appview"
	// asks the AppView at BlockAppView (app.bsky.graph.getRelationships);
	// "both" asks both and counts a block either finds, refusing an add
	// when either is down, and verifies handleBlockChange on the PDS.
	// Default "pds", or "appview" when BlockAppView is set.
	BlockSource string `json:"block_source,omitempty"`
	// BlockAppView is the base URL of a Bluesky AppView to read blocks
	// from, such as https://api.bsky.app: https, or http to a loopback
	// address.
	BlockAppView string `json:"block_appview,omitempty"`
	// ChatRequestPreviews, when true, keeps the plain-text previewText of
	// chat requests, sealed under a key in the data directory
	// (chat-preview.key), for the recipient. Default false: previewText is
	// dropped unread (docs/privacy.md).
	ChatRequestPreviews bool `json:"chat_request_previews,omitempty"`
	// ChatRequestSenderRate is one account's quota of chat requests sent,
	// as requests/period. Default 20/1h.
	ChatRequestSenderRate string `json:"chat_request_sender_rate,omitempty"`
	// ChatRequestRecipientRate is the quota of chat requests one account
	// receives, as requests/period. Default 30/1h.
	ChatRequestRecipientRate string `json:"chat_request_recipient_rate,omitempty"`
	// ProofOfWork, if set, asks for a proof-of-work stamp before the
	// expensive first actions of an account. Default off.
	ProofOfWork *ProofOfWork `json:"proof_of_work,omitempty"`

	app    *App
	work   *delivery.ProofOfWork
	lazy   *lazyHandlers
	logger *zap.Logger
}

// lazyHandlers holds a Delivery's handlers once built.
type lazyHandlers struct {
	mu    sync.Mutex
	built atomic.Pointer[deliveryHandlers]
}

// CaddyModule returns the Caddy module information.
func (*Delivery) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_delivery",
		New: func() caddy.Module { return new(Delivery) },
	}
}

// checkMaxMembers refuses a max_members of 1: accepting a chat request
// makes a conversation of two devices in one step, with no member add for
// the cap to refuse, so the smallest cap that holds everywhere is 2.
func (d *Delivery) checkMaxMembers() error {
	if d.MaxMembers == 1 {
		return fmt.Errorf("max_members 1: a conversation needs room for at least two devices; set 2 or more (default %d)", delivery.DefaultMaxMembers)
	}
	return nil
}

// Provision checks the configuration and tells the cairn app that this
// handler needs the store. The store is opened by the app's Start, so the
// service over it is built on the first request (see ServeHTTP).
func (d *Delivery) Provision(ctx caddy.Context) error {
	app, err := cairnApp(ctx)
	if err != nil {
		return err
	}
	if err := validWebSocketEndpoint(d.WebSocketEndpoint); err != nil {
		return fmt.Errorf("cairn_delivery: %w", err)
	}
	if _, err := d.blockSourceMode(); err != nil {
		return fmt.Errorf("cairn_delivery: %w", err)
	}
	if err := d.checkMaxMembers(); err != nil {
		return fmt.Errorf("cairn_delivery: %w", err)
	}
	for name, v := range map[string]string{"chat_request_sender_rate": d.ChatRequestSenderRate, "chat_request_recipient_rate": d.ChatRequestRecipientRate} {
		if _, err := chatRequestLimit(v, ratelimit.Limit{}); err != nil {
			return fmt.Errorf("cairn_delivery %s: %w", name, err)
		}
	}
	if d.ProofOfWork != nil {
		if d.work, err = d.ProofOfWork.build(app); err != nil {
			return fmt.Errorf("cairn_delivery: %w", err)
		}
	}
	app.UseStore()
	d.app, d.lazy, d.logger = app, new(lazyHandlers), app.ModuleLogger(ctx)
	return nil
}

// handlers returns the service and the realtime server, building them once
// the cairn app has opened the store: Caddy may start the http app before
// the cairn app, and a request in that window waits here.
func (d *Delivery) handlers(ctx context.Context) (*deliveryHandlers, error) {
	if h := d.lazy.built.Load(); h != nil {
		return h, nil
	}
	run, err := d.app.Ready(ctx)
	if err != nil {
		return nil, err
	}
	d.lazy.mu.Lock()
	defer d.lazy.mu.Unlock()
	if h := d.lazy.built.Load(); h != nil {
		return h, nil
	}
	h := &deliveryHandlers{bans: run.operator.bans}
	rec, _ := d.app.AuditRecorder()
	node := run.Realtime
	if h.realtime, err = realtime.NewServer(realtime.ServerConfig{Hub: node.Hub, Tickets: node.Tickets, Endpoint: d.WebSocketEndpoint, OnServerError: serverErrorLogger(d.logger)}); err != nil {
		return nil, fmt.Errorf("cairn_delivery: %w", err)
	}
	var blockSource delivery.BlockSource
	if !d.DisableBlockChecks {
		if blockSource, err = d.blockSource(); err != nil {
			return nil, fmt.Errorf("cairn_delivery: %w", err)
		}
	}
	onChange := fanOut(node.Hub, d.app.notifier)
	var pushSealer delivery.PushSealer
	if q := d.app.PushQueue(); q != nil {
		pushSealer = d.app.PushSealer()
		announce := onChange
		onChange = func(ctx context.Context, convoID string) {
			announce(ctx, convoID)
			q.Add(convoID)
		}
	}
	chat, err := d.chatRequests()
	if err != nil {
		return nil, fmt.Errorf("cairn_delivery: %w", err)
	}
	var pushHosts []string
	if d.app.Push != nil {
		pushHosts = d.app.Push.AllowHosts
	}
	h.service, err = delivery.New(delivery.Config{
		Store:                    run.Store,
		OnChange:                 onChange,
		PushSealer:               pushSealer,
		PushInsecureHosts:        pushHosts,
		MaxMessageBytes:          d.MaxMessageBytes,
		MaxKeyPackagesPerDevice:  d.app.KeyPackagesPerDevice,
		MaxKeyPackageLifetime:    time.Duration(d.MaxKeyPackageLifetime),
		MaxMembers:               d.MaxMembers,
		MaxDevices:               d.MaxDevices,
		MessageTTL:               time.Duration(d.MessageTTL),
		OnServerError:            serverErrorLogger(d.logger),
		RequireOptIn:             d.RequireOptIn,
		Blocks:                   blockSource,
		BlocksFailOpen:           d.AllowAddsWhenBlocksUnavailable,
		ChatPreviewSealer:        chat.previews,
		ChatRequestLimiter:       chat.limiter,
		ChatRequestsPerSender:    chat.perSender,
		ChatRequestsPerRecipient: chat.perRecipient,
		Audit:                    rec,
		HashIdentity:             d.app.Hasher().Hash,
		ProofOfWork:              d.work,
		OnAuditError: func(err error) {
			d.logger.Error("audit: recording a moderation event", zap.Error(err))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cairn_delivery: %w", err)
	}
	d.lazy.built.Store(h)
	return h, nil
}

// Block source modes (Delivery.BlockSource).
const (
	blockSourcePDS     = "pds"
	blockSourceAppView = "appview"
	blockSourceBoth    = "both"
)

// blockSourceMode returns the block source mode, checking it against
// BlockAppView.
func (d *Delivery) blockSourceMode() (string, error) {
	mode := d.BlockSource
	if mode == "" {
		mode = blockSourcePDS
		if d.BlockAppView != "" {
			mode = blockSourceAppView
		}
	}
	switch mode {
	case blockSourcePDS:
		if d.BlockAppView != "" {
			return "", fmt.Errorf("block_appview is set but block_source pds does not read it: write block_source appview or both, or remove block_appview")
		}
	case blockSourceAppView, blockSourceBoth:
		if d.BlockAppView == "" {
			return "", fmt.Errorf("block_source %s needs block_appview <url>, such as https://api.bsky.app", mode)
		}
		if _, err := blocks.ValidateAppViewURL(d.BlockAppView); err != nil {
			return "", fmt.Errorf("block_appview: %w", err)
		}
	default:
		return "", fmt.Errorf("block_source %q: want pds, appview or both", mode)
	}
	return mode, nil
}

// blockSource builds the configured block source: the PDS reader goes
// through the app's DID resolver (its PLC directory, cache and address
// guard), the AppView reader to the one configured address.
func (d *Delivery) blockSource() (delivery.BlockSource, error) {
	mode, err := d.blockSourceMode()
	if err != nil {
		return nil, err
	}
	ttl := time.Duration(d.BlockCacheTTL)
	var appView *blocks.AppView
	if mode != blockSourcePDS {
		if appView, err = blocks.NewAppView(blocks.AppViewConfig{BaseURL: d.BlockAppView, CacheTTL: ttl}); err != nil {
			return nil, err
		}
		if mode == blockSourceAppView {
			return appView, nil
		}
	}
	res, err := d.app.DIDResolver(d.app.PLCURL)
	if err != nil {
		return nil, err
	}
	pds, err := blocks.New(blocks.Config{Locator: blocks.ResolverLocator{Resolver: res}, Client: res.GuardedClient(), CacheTTL: ttl})
	if err != nil || appView == nil {
		return pds, err
	}
	return blocks.Combined{Primary: pds, Secondary: appView}, nil
}

// deliveryHandlers is what a Delivery serves with, once the store is open.
type deliveryHandlers struct {
	service  *delivery.Service
	realtime *realtime.Server
	bans     *ban.List
}

// errAccountBanned refuses a banned account (docs/api.md).
var errAccountBanned = &xrpc.Error{Status: http.StatusForbidden, Name: "AccountBanned",
	Message: "this account is barred from this service by its operator"}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
//
// Its frame stays on the stack of every event stream's connection for as
// long as the stream is open, so the checks before the method run in
// admit and the traced call in serveMethod, whose frames are gone by then.
func (d *Delivery) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	nsid, ok := xrpc.NSIDFromPath(r.URL.Path)
	if !ok || !strings.HasPrefix(nsid, delivery.Namespace) {
		return next.ServeHTTP(w, r)
	}
	h := d.admit(w, r)
	switch {
	case h == nil:
	case h.realtime.Handles(nsid):
		h.realtime.ServeHTTP(w, r)
	case h.service.Handles(nsid):
		serveMethod(h.service, w, r, nsid)
	default:
		return next.ServeHTTP(w, r)
	}
	return nil
}

// admit returns the handlers to serve r with, or answers r and returns nil:
// while the app cannot serve, or when a verified caller is banned.
func (d *Delivery) admit(w http.ResponseWriter, r *http.Request) *deliveryHandlers {
	h, err := d.handlers(r.Context())
	if err != nil {
		if r.Context().Err() != nil {
			return nil // the client left while the app was starting
		}
		respondError(d.logger, w, r, &xrpc.Error{
			Status:  http.StatusServiceUnavailable,
			Name:    "ServiceUnavailable",
			Message: "the delivery service is not available",
			Header:  http.Header{"Retry-After": {"1"}},
			Err:     err,
		})
		return nil
	}
	// A verified caller (cairn_auth ran) that is banned goes no further.
	// The WebSocket stream carries no caller here: its ticket was issued
	// by getSubscriptionTicket, which this check already guarded.
	if id, ok := caller.From(r.Context()); ok {
		banned, err := h.bans.Banned(r.Context(), id.DID)
		if err != nil {
			// Bans fail closed: the ban list could not be read.
			respondError(d.logger, w, r, &xrpc.Error{
				Status:  http.StatusServiceUnavailable,
				Name:    "ServiceUnavailable",
				Message: "the delivery service is not available",
				Header:  http.Header{"Retry-After": {"5"}},
				Err:     err,
			})
			return nil
		}
		if banned {
			respondError(d.logger, w, r, errAccountBanned)
			return nil
		}
	}
	return h
}

// serveMethod serves one XRPC method of the delivery service inside its
// span: its store operation and the fan-out of what it wrote happen inside
// it.
func serveMethod(service *delivery.Service, w http.ResponseWriter, r *http.Request, nsid string) {
	traced, span := startSpan(r, "cairn.delivery", attribute.String(tracing.NSIDKey, xrpc.LabelFor(nsid)))
	service.ServeHTTP(w, traced)
	span.End()
}

// validWebSocketEndpoint accepts an empty endpoint (the default) or an
// absolute ws:// or wss:// URL with a host and no query or fragment (the
// client appends its own query).
func validWebSocketEndpoint(endpoint string) error {
	if endpoint == "" {
		return nil
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("websocket_endpoint %q: want a ws:// or wss:// URL with a host and no query, such as wss://chat.example.com/xrpc/%s", endpoint, realtime.NSIDSubscribe)
	}
	return nil
}

func parseDelivery(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Delivery)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (d *Delivery) UnmarshalCaddyfile(disp *caddyfile.Dispenser) error {
	disp.Next() // directive name
	if disp.NextArg() {
		return disp.ArgErr()
	}
	for disp.NextBlock(0) {
		opt := disp.Val()
		if opt == "proof_of_work" {
			if d.ProofOfWork != nil {
				return disp.Errf("cairn_delivery takes one proof_of_work block")
			}
			d.ProofOfWork = new(ProofOfWork)
			if err := unmarshalProofOfWork(disp, d.ProofOfWork); err != nil {
				return err
			}
			continue
		}
		if opt == "require_opt_in" || opt == "chat_request_previews" {
			if disp.NextArg() {
				return disp.Errf("%s takes no value", opt)
			}
			if opt == "require_opt_in" {
				d.RequireOptIn = true
			} else {
				d.ChatRequestPreviews = true
			}
			continue
		}
		var v string
		if !disp.AllArgs(&v) {
			return disp.Errf("%s takes one value", opt)
		}
		switch opt {
		case "block_checks":
			if v != "on" && v != "off" {
				return disp.Errf("block_checks %q: want on or off", v)
			}
			d.DisableBlockChecks = v == "off"
		case "block_source_unavailable":
			if v != "refuse" && v != "allow" {
				return disp.Errf("block_source_unavailable %q: want refuse (the default: an add is refused while blocks cannot be read) or allow", v)
			}
			d.AllowAddsWhenBlocksUnavailable = v == "allow"
		case "block_source":
			if v != blockSourcePDS && v != blockSourceAppView && v != blockSourceBoth {
				return disp.Errf("block_source %q: want pds (each account's PDS, the default), appview (block_appview's AppView) or both", v)
			}
			d.BlockSource = v
		case "block_appview":
			if _, err := blocks.ValidateAppViewURL(v); err != nil {
				return disp.Errf("block_appview: %v", err)
			}
			d.BlockAppView = v
		case "block_cache_ttl":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 || dur > time.Hour {
				return disp.Errf("block_cache_ttl %q: want a positive duration of at most 1h such as 1m", v)
			}
			d.BlockCacheTTL = caddy.Duration(dur)
		case "max_message_size":
			n, err := byteSize(v)
			if err != nil || n > 1<<30 {
				return disp.Errf("max_message_size %q: want a whole number of bytes such as 10MiB, at most 1GiB", v)
			}
			d.MaxMessageBytes = int(n)
		case "max_key_packages_per_device":
			return disp.Errf("cairn_delivery max_key_packages_per_device has moved: write `key_packages_per_device %s` in the cairn global options, where cairn_delivery and retention both read it", v)
		case "max_members", "max_devices":
			n, err := positiveInt(v)
			if err != nil {
				return disp.Errf("%s %q: %v", opt, v, err)
			}
			switch opt {
			case "max_members":
				d.MaxMembers = n
			case "max_devices":
				d.MaxDevices = n
			}
		case "max_key_package_lifetime", "message_ttl":
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return disp.Errf("%s %q: want a positive duration such as 90d", opt, v)
			}
			if opt == "message_ttl" {
				d.MessageTTL = caddy.Duration(dur)
			} else {
				d.MaxKeyPackageLifetime = caddy.Duration(dur)
			}
		case "chat_request_sender_rate", "chat_request_recipient_rate":
			if _, err := chatRequestLimit(v, ratelimit.Limit{}); err != nil {
				return disp.Errf("%s %q: %v", opt, v, err)
			}
			if opt == "chat_request_sender_rate" {
				d.ChatRequestSenderRate = v
			} else {
				d.ChatRequestRecipientRate = v
			}
		case "websocket_endpoint":
			if err := validWebSocketEndpoint(v); err != nil {
				return disp.Err(err.Error())
			}
			d.WebSocketEndpoint = v
		default:
			return disp.Errf("unrecognized cairn_delivery option %q", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Delivery)(nil)
	_ caddyhttp.MiddlewareHandler = (*Delivery)(nil)
	_ caddyfile.Unmarshaler       = (*Delivery)(nil)
)
