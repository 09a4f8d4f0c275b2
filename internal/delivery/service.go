package delivery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Namespace is the NSID prefix of every method this package serves or
// refuses as not implemented.
const Namespace = "blue.catbird.mls."

// Defaults for the zero values of Config.
const (
	DefaultMaxMessageBytes         = 10 << 20
	DefaultMaxBodyBytes            = 1 << 20
	DefaultMaxKeyPackagesPerDevice = 200
	DefaultMaxKeyPackageLifetime   = 90 * 24 * time.Hour
	DefaultKeyPackageThreshold     = 10
	DefaultMaxMembers              = 1000
	DefaultMaxDevices              = 10
	DefaultGroupInfoTTL            = 5 * time.Minute
)

// Store is the slice of store.Store the service uses: reads, writes,
// idempotent writes, the social state, and the device and recovery state
// (pending device additions, rejoins, Welcome keys); never the event log
// or maintenance.
type Store interface {
	store.Reader
	store.Writer
	store.Idempotency
	store.Social
	store.PendingDevices
	store.Rejoins
	store.WelcomeKeys
	store.PushTokens
	store.ChatRequests
}

// Config configures a Service. Only Store is required; every other zero
// value selects the documented default.
type Config struct {
	// Store is where conversations, messages and key packages live.
	Store Store
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// MaxMessageBytes bounds the ciphertext of one message or commit.
	// Default 10 MiB, the lexicon's maximum.
	MaxMessageBytes int
	// MaxBodyBytes bounds the JSON body of procedures that carry no message
	// (key-package uploads and sendMessage get room for their payloads on
	// top). Default 1 MiB.
	MaxBodyBytes int64
	// MaxKeyPackagesPerDevice is the inventory cap of available key packages
	// per device. Default 200.
	MaxKeyPackagesPerDevice int
	// MaxKeyPackageLifetime caps how long a key package is handed out,
	// whatever lifetime it declares. Default 90 days (the lexicon's limit).
	MaxKeyPackageLifetime time.Duration
	// KeyPackageThreshold is the inventory below which getKeyPackageStats
	// tells a client to replenish. Default 10.
	KeyPackageThreshold int
	// MaxMembers bounds the active members (devices) of a conversation.
	// Default 1000.
	MaxMembers int
	// MaxDevices bounds the registered devices of an account. Default 10.
	MaxDevices int
	// GroupInfoTTL is the staleness hint getGroupInfo reports. Default 5 min.
	GroupInfoTTL time.Duration
	// PendingAdditionTTL is how long a pending device addition or rejoin
	// request waits for a member to add the device before the retention
	// worker deletes it. Default 7 days.
	PendingAdditionTTL time.Duration
	// OnChange, if set, is called with a conversation's id after a write
	// added events to it (a message, a commit, a membership change), once
	// the write is committed; never for a replayed retry. The realtime hub
	// uses it to wake subscribers, who then read the events from the store.
	// ctx is the request's (for its trace); the write is already
	// committed, so ctx's cancellation must not stop the announcement.
	// It must not block.
	OnChange func(ctx context.Context, convoID string)
	// MessageTTL, when positive, sets an expiry on every stored message and
	// commit, independent of the retention worker. Default none.
	MessageTTL time.Duration
	// OnServerError, if set, is told once of every server fault the
	// service answers (a store outage, a bug), to log it; see internal/xrpc's
	// error path. The service itself logs nothing.
	OnServerError xrpc.ServerErrorFunc
	// Audit, if set, records moderation events (role changes, resolved
	// reports, warnings) with every identity passed through HashIdentity.
	Audit audit.Recorder
	// HashIdentity is the keyed hash (internal/redact) that identities go
	// through before they reach the audit log. Required with Audit.
	HashIdentity func(string) string
	// OnAuditError, if set, is told of an audit record that failed, to log
	// it; the action it describes stands.
	OnAuditError func(error)
	// RequireOptIn, when true, lets only accounts that opted in (optIn) be
	// added to conversations, by createConvo, addMembers or an invite.
	RequireOptIn bool
	// Blocks, if set, is where Bluesky block relations are read: adds
	// that would put a blocker and the account it blocks in one
	// conversation are refused, and checkBlocks, getBlockStatus and
	// handleBlockChange answer. Without it no add is checked and those
	// methods find no blocks (handleBlockChange answers
	// BlueskyServiceUnavailable).
	Blocks BlockSource
	// BlocksFailOpen, when true, lets an add through when the block source
	// cannot be read. Default false: the add is refused (fail closed).
	BlocksFailOpen bool
	// PushSealer seals the tokens registerDeviceToken stores (internal/push).
	// Without it the push-token methods answer MethodNotImplemented.
	PushSealer PushSealer
	// PushInsecureHosts lists UnifiedPush endpoint hosts that may be plain
	// http (development and tests).
	PushInsecureHosts []string
	// ChatPreviewSealer, if set, seals the previewText of chat requests
	// under a key outside the database, and listChatRequests shows it to
	// the recipient. Without it, the default, previewText is dropped
	// unread.
	ChatPreviewSealer ChatPreviewSealer
	// ChatRequestLimiter, if set, enforces ChatRequestsPerSender and
	// ChatRequestsPerRecipient on sendChatRequest, keyed by hashed DIDs.
	// A limiter that cannot decide refuses the request.
	ChatRequestLimiter ratelimit.Limiter
	// ChatRequestsPerSender is one account's quota of requests sent.
	// Default DefaultChatRequestsPerSender (20 an hour, burst 5).
	ChatRequestsPerSender ratelimit.Limit
	// ChatRequestsPerRecipient is the quota of requests one account
	// receives. Default DefaultChatRequestsPerRecipient (30 an hour, burst
	// 10).
	ChatRequestsPerRecipient ratelimit.Limit
	// ProofOfWork, if set, asks for a proof-of-work stamp before the
	// expensive first actions of an account (428 with a challenge
	// otherwise). Default none.
	ProofOfWork *ProofOfWork
}

// Service is the MLS delivery service: it serves the blue.catbird.mls
// methods of issue 3 at /xrpc/<nsid> over a store.Store. It implements
// http.Handler. It is safe for concurrent use.
type Service struct {
	cfg     Config
	methods map[string]method
	seen    deviceSeen
}

// method is one served XRPC method.
type method struct {
	typ xrpc.MethodType
	// bodyLimit bounds a procedure's body.
	bodyLimit int64
	// handle serves the method for a verified caller. Queries read params,
	// procedures body. It returns the response value, or an error that
	// mapError turns into the XRPC body.
	handle func(ctx context.Context, c call) (any, error)
}

// call is one request as a handler sees it.
type call struct {
	nsid   string
	id     caller.Identity
	params paramReader
	body   []byte
}

// New returns a Service for cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("delivery: Config.Store is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxKeyPackagesPerDevice <= 0 {
		cfg.MaxKeyPackagesPerDevice = DefaultMaxKeyPackagesPerDevice
	}
	if cfg.MaxKeyPackageLifetime <= 0 {
		cfg.MaxKeyPackageLifetime = DefaultMaxKeyPackageLifetime
	}
	if cfg.KeyPackageThreshold <= 0 {
		cfg.KeyPackageThreshold = DefaultKeyPackageThreshold
	}
	if cfg.MaxMembers <= 0 {
		cfg.MaxMembers = DefaultMaxMembers
	}
	if cfg.MaxDevices <= 0 {
		cfg.MaxDevices = DefaultMaxDevices
	}
	if cfg.Audit != nil && cfg.HashIdentity == nil {
		return nil, errors.New("delivery: Config.HashIdentity is required with Config.Audit")
	}
	if cfg.GroupInfoTTL <= 0 {
		cfg.GroupInfoTTL = DefaultGroupInfoTTL
	}
	if cfg.ChatRequestsPerSender.Rate <= 0 {
		cfg.ChatRequestsPerSender = DefaultChatRequestsPerSender
	}
	if cfg.ChatRequestsPerRecipient.Rate <= 0 {
		cfg.ChatRequestsPerRecipient = DefaultChatRequestsPerRecipient
	}
	if cfg.PendingAdditionTTL <= 0 {
		cfg.PendingAdditionTTL = DefaultPendingAdditionTTL
	}
	if cfg.ProofOfWork != nil {
		w := *cfg.ProofOfWork
		if err := w.validate(); err != nil {
			return nil, err
		}
		cfg.ProofOfWork = &w
	}
	s := &Service{cfg: cfg}
	s.methods = s.routes()
	return s, nil
}

// routes lists the served methods. Body limits leave room for base64
// (4/3) and the JSON around it.
func (s *Service) routes() map[string]method {
	small := s.cfg.MaxBodyBytes
	msg := int64(s.cfg.MaxMessageBytes)*4/3 + small
	// 100 key packages of at most 64 KiB of base64 each, or 200 at
	// registration.
	kpBatch := 100*(64<<10) + small
	kpRegister := 200*(64<<10) + small
	q := func(h func(context.Context, call) (any, error)) method {
		return method{typ: xrpc.Query, handle: h}
	}
	p := func(limit int64, h func(context.Context, call) (any, error)) method {
		return method{typ: xrpc.Procedure, bodyLimit: limit, handle: h}
	}
	m := map[string]method{
		Namespace + "createConvo":              p(msg, s.createConvo),
		Namespace + "getConvos":                q(s.getConvos),
		Namespace + "getEpoch":                 q(s.getEpoch),
		Namespace + "addMembers":               p(msg, s.addMembers),
		Namespace + "removeMember":             p(msg, s.removeMember),
		Namespace + "leaveConvo":               p(msg, s.leaveConvo),
		Namespace + "sendMessage":              p(msg, s.sendMessage),
		Namespace + "getMessages":              q(s.getMessages),
		Namespace + "getCommits":               q(s.getCommits),
		Namespace + "getGroupInfo":             q(s.getGroupInfo),
		Namespace + "updateGroupInfo":          p(msg, s.updateGroupInfo),
		Namespace + "getWelcome":               q(s.getWelcome),
		Namespace + "confirmWelcome":           p(small, s.confirmWelcome),
		Namespace + "publishKeyPackage":        p(small, s.publishKeyPackage),
		Namespace + "publishKeyPackages":       p(kpBatch, s.publishKeyPackages),
		Namespace + "getKeyPackages":           q(s.getKeyPackages),
		Namespace + "getKeyPackageStats":       q(s.getKeyPackageStats),
		Namespace + "getKeyPackageStatus":      q(s.getKeyPackageStatus),
		Namespace + "syncKeyPackages":          p(small, s.syncKeyPackages),
		Namespace + "registerDevice":           p(kpRegister, s.registerDevice),
		Namespace + "listDevices":              q(s.listDevices),
		Namespace + "deleteDevice":             p(small, s.deleteDevice),
		Namespace + "getExpectedConversations": q(s.getExpectedConversations),
	}
	s.socialRoutes(m)
	s.blockRoutes(m)
	s.chatRequestRoutes(m)
	maps.Copy(m, s.recoveryRoutes(small, msg))
	s.pushRoutes(m, small)
	return m
}

// Handles reports whether the service answers requests for nsid: every
// method it serves, and every other blue.catbird.mls method (answered with
// 501 MethodNotImplemented). An adapter passes any other request on.
func (s *Service) Handles(nsid string) bool {
	if _, ok := s.methods[nsid]; ok {
		return true
	}
	return strings.HasPrefix(nsid, Namespace)
}

// Methods returns the NSIDs of the served methods, in no particular order.
func (s *Service) Methods() []string {
	out := make([]string, 0, len(s.methods))
	for n := range s.methods {
		out = append(out, n)
	}
	return out
}

// ServeHTTP serves one XRPC request. Requests outside /xrpc/, or for a
// method the service does not serve, get 501 MethodNotImplemented (use
// Handles to pass those on instead).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status, body, err := s.serve(r)
	if err != nil {
		xrpc.RespondError(w, r, err, s.cfg.OnServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// serve runs the request to a response body or an *xrpc.Error.
func (s *Service) serve(r *http.Request) (int, []byte, error) {
	nsid, ok := xrpc.NSIDFromPath(r.URL.Path)
	m, served := s.methods[nsid]
	if !ok || !served {
		return 0, nil, xrpc.Errorf(http.StatusNotImplemented, "MethodNotImplemented", "method not implemented")
	}
	want := http.MethodGet
	if m.typ == xrpc.Procedure {
		want = http.MethodPost
	}
	if r.Method != want && !(want == http.MethodGet && r.Method == http.MethodHead) {
		e := xrpc.Errorf(http.StatusMethodNotAllowed, "InvalidRequest", "%s must be called with HTTP %s", nsid, want)
		e.Header = http.Header{"Allow": {want}}
		return 0, nil, e
	}
	id, ok := caller.From(r.Context())
	if !ok {
		name := "AuthenticationRequired"
		if nsid == Namespace+"getRequestCount" {
			// Its lexicon names this error Unauthorized ("Authentication
			// required").
			name = "Unauthorized"
		}
		return 0, nil, xrpc.Errorf(http.StatusUnauthorized, name, "authentication required")
	}
	if err := s.requireWork(r.Context(), r, nsid, id); err != nil {
		return 0, nil, s.mapError(nsid, err)
	}
	c := call{nsid: nsid, id: id}
	if m.typ == xrpc.Query {
		q, err := newParamReader(r.URL.RawQuery)
		if err != nil {
			return 0, nil, err
		}
		c.params = q
	} else {
		body, err := readBody(r, m.bodyLimit)
		if err != nil {
			return 0, nil, err
		}
		c.body = body
	}
	out, err := m.handle(r.Context(), c)
	s.touchDevice(r.Context(), id)
	if err != nil {
		return 0, nil, s.mapError(nsid, err)
	}
	if raw, ok := out.(rawJSON); ok {
		return http.StatusOK, raw, nil
	}
	body, err := encodeJSON(out)
	if err != nil {
		return 0, nil, s.mapError(nsid, fmt.Errorf("encode %s response: %w", nsid, err))
	}
	return http.StatusOK, body, nil
}

// readBody checks the content type and reads at most limit bytes.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != "application/json" {
		return nil, xrpc.Errorf(http.StatusUnsupportedMediaType, "InvalidRequest", "Content-Type must be application/json")
	}
	if r.ContentLength > limit {
		return nil, xrpc.Errorf(http.StatusRequestEntityTooLarge, "PayloadTooLarge", "request body exceeds %d bytes", limit)
	}
	body, err := readLimited(r.Body, limit)
	if err != nil {
		return nil, err
	}
	return body, nil
}

// deviceSeenEvery is how often a device's lastSeenAt moves at most: it
// tells an account's owner which devices are in use, not when each call
// was made, and it costs a write per device an hour rather than per call.
const deviceSeenEvery = time.Hour

// maxSeenTracked bounds deviceSeen's memory; past it the map starts over,
// which only costs each device one early write.
const maxSeenTracked = 1 << 16

// deviceSeen remembers when each device was last recorded as seen.
type deviceSeen struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// touchDevice records that the caller's device was active (listDevices'
// lastSeenAt), at most once per deviceSeenEvery. A device that is not
// registered has no row to touch; a failed write waits for the next hour.
func (s *Service) touchDevice(ctx context.Context, id caller.Identity) {
	if id.DeviceID == "" {
		return
	}
	now, key := s.cfg.Now(), memberDID(id)
	s.seen.mu.Lock()
	if t, ok := s.seen.last[key]; ok && now.Sub(t) < deviceSeenEvery {
		s.seen.mu.Unlock()
		return
	}
	if s.seen.last == nil || len(s.seen.last) >= maxSeenTracked {
		s.seen.last = make(map[string]time.Time)
	}
	s.seen.last[key] = now
	s.seen.mu.Unlock()
	_ = s.cfg.Store.TouchDevice(ctx, id.DID, id.DeviceID)
}
