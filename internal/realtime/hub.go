package realtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxPerDID      = 5
	DefaultMaxConnections = 20000
	DefaultBufferSize     = 64
	DefaultPageSize       = 200
	DefaultSampleEvery    = time.Second
	DefaultSlowAfter      = 10 * time.Second
	DefaultAdvanceEvery   = 10 * time.Second
	DefaultSettle         = 30 * time.Second
)

// Sentinel errors.
var (
	// ErrTooManyConnections means a connection cap (per DID or global) is
	// reached; the transports answer 429.
	ErrTooManyConnections = errors.New("realtime: too many connections")
	// ErrSlowConsumer ends a subscription whose client did not keep up
	// with its buffer. The client resumes by cursor and loses nothing.
	ErrSlowConsumer = errors.New("realtime: slow consumer")
	// ErrRemoved ends a single-conversation subscription whose caller is no
	// longer a member of the conversation.
	ErrRemoved = errors.New("realtime: no longer a member")
	// ErrHubClosed ends every subscription when the hub closes.
	ErrHubClosed = errors.New("realtime: hub closed")
)

// Store is the slice of store.Store the hub reads: the event log, the
// messages events point at, membership (who may follow what) and the
// backend's traits (whether cursors are visible in order).
type Store interface {
	store.EventLog
	MessagesByID(ctx context.Context, convoID string, msgIDs []string) ([]store.Message, error)
	ActiveMember(ctx context.Context, convoID, memberDID string) (store.Member, error)
	Members(ctx context.Context, convoIDs []string, includeLeft bool) (map[string][]store.Member, error)
	UserConvos(ctx context.Context, userDID string) ([]store.UserConvo, error)
	Traits() store.Traits
}

// Config configures a Hub. Only Store is required.
type Config struct {
	// Store is read for events, messages and membership.
	Store Store
	// Notifier carries wake-ups between nodes. Default: an in-process
	// LocalNotifier, right for a single node.
	Notifier Notifier
	// Observer receives metrics counts. Default: none.
	Observer Observer
	// MaxPerDID caps the concurrent subscriptions of one DID. Default 5.
	MaxPerDID int
	// MaxConnections caps the concurrent subscriptions of the node.
	// Default 20000.
	MaxConnections int
	// BufferSize bounds the events a subscription holds for its client.
	// Default 64.
	BufferSize int
	// SlowAfter is how long a live event may wait for room in a full
	// buffer before the subscription ends with ErrSlowConsumer. Replay
	// waits as long as the client reads. Default 10 s.
	SlowAfter time.Duration
	// AdvanceEvery is how often a stream over several conversations
	// re-reads to raise its cursor's floor (so cursors stay short). A
	// single-conversation stream needs no re-read. Default 10 s.
	AdvanceEvery time.Duration
	// PageSize is how many events one store read returns. Default 200.
	PageSize int
	// FeedSize is how many of a followed conversation's newest events the
	// hub keeps, so a wake-up is read from the store once per node rather
	// than once per subscription. Default 64.
	FeedSize int
	// Settle is how long after a cursor is seen every lower cursor is
	// certainly visible. On PostgreSQL cursors are drawn before commit, so
	// it must exceed the longest write transaction. It only decides how
	// far the floor of a resume cursor over several conversations may
	// advance: an event committed more than Settle after its cursor was
	// drawn can be missed by a stream that resumes from a cursor handed
	// out meanwhile. Delivery within one connection, and
	// single-conversation cursors, never depend on it. It is ignored when
	// the store's Traits say its cursors are ordered (SQLite, one writer):
	// every cursor seen is then settled at once. Default 30 s.
	Settle time.Duration
	// SampleEvery is how often the hub reads the store's event horizon to
	// advance floors and to place fresh streams. With Settle it does so
	// steadily in the background (at most every 10 ms), so a fresh stream
	// starts at most about Settle before the present. Default 1 s.
	SampleEvery time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Hub fans conversation wake-ups out to subscriptions. It lives as long as
// the process (the cairn app), across config reloads. It is safe for
// concurrent use.
type Hub struct {
	cfg          Config
	stopListen   func()
	stopSampling func()

	mu   sync.RWMutex
	subs map[string]map[*Subscription]struct{}
	all  map[*Subscription]struct{}
	// wide holds the streams over all of a user's conversations, by user
	// DID, for adding conversations the user joins.
	wide   map[string]map[*Subscription]struct{}
	perDID map[string]int
	total  int
	closed bool

	smu     sync.Mutex
	samples []sample

	joins *joinWatch
	feeds *feeds
}

// sample is the store's latest cursor as seen at a time.
type sample struct {
	at     time.Time
	latest int64
}

// SetLimits changes the caps on concurrent subscriptions (zero for the
// default: DefaultMaxPerDID, DefaultMaxConnections). Subscriptions already
// open stay open; new ones are refused while over a cap.
func (h *Hub) SetLimits(maxPerDID, maxConnections int) {
	if maxPerDID <= 0 {
		maxPerDID = DefaultMaxPerDID
	}
	if maxConnections <= 0 {
		maxConnections = DefaultMaxConnections
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cfg.MaxPerDID, h.cfg.MaxConnections = maxPerDID, maxConnections
}

// New returns a Hub listening on cfg.Notifier. It reads the store's event
// horizon once (the point from which it watches for joins), so it fails if
// the store is unreachable.
func New(cfg Config) (*Hub, error) {
	if cfg.Store == nil {
		return nil, errors.New("realtime: Config.Store is required")
	}
	cfg.Store = shallowStore{cfg.Store}
	switch {
	case cfg.Store.Traits().OrderedCursors:
		cfg.Settle = 0
	case cfg.Settle < 0:
		return nil, errors.New("realtime: Config.Settle must not be negative")
	case cfg.Settle == 0:
		cfg.Settle = DefaultSettle
	}
	if cfg.Notifier == nil {
		cfg.Notifier = NewLocalNotifier()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.MaxPerDID <= 0 {
		cfg.MaxPerDID = DefaultMaxPerDID
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.BufferSize <= 0 {
		cfg.BufferSize = DefaultBufferSize
	}
	if cfg.SlowAfter <= 0 {
		cfg.SlowAfter = DefaultSlowAfter
	}
	if cfg.AdvanceEvery <= 0 {
		cfg.AdvanceEvery = DefaultAdvanceEvery
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultPageSize
	}
	if cfg.FeedSize <= 0 {
		cfg.FeedSize = DefaultFeedSize
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = DefaultSampleEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Hub{
		cfg:    cfg,
		subs:   make(map[string]map[*Subscription]struct{}),
		all:    make(map[*Subscription]struct{}),
		wide:   make(map[string]map[*Subscription]struct{}),
		perDID: make(map[string]int),
		feeds:  newFeeds(cfg.Store, cfg.FeedSize, cfg.PageSize),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hz, err := cfg.Store.EventHorizon(ctx)
	if err != nil {
		return nil, fmt.Errorf("read event horizon: %w", err)
	}
	h.joins = newJoinWatch(h, hz.Latest)
	h.stopListen = cfg.Notifier.Listen(h.wake)
	h.stopSampling = func() {}
	if cfg.Settle > 0 {
		stop, done := make(chan struct{}), make(chan struct{})
		go h.sampleLoop(stop, done)
		h.stopSampling = sync.OnceFunc(func() { close(stop); <-done })
	}
	return h, nil
}

// Notify announces that convoID has new committed events. Pass it as
// delivery.Config.OnChange. It does not block on subscribers.
func (h *Hub) Notify(convoID string) {
	if convoID == "" {
		return
	}
	_ = h.cfg.Notifier.Publish(context.Background(), convoID)
}

// wake marks convoID for every subscription following it.
func (h *Hub) wake(convoID string) {
	h.feeds.mark(convoID)
	h.mu.RLock()
	if convoID == "" {
		// Announcements may have been lost: wake everything.
		for c, set := range h.subs {
			for s := range set {
				s.mark(c)
			}
			h.joins.mark(c)
		}
		h.mu.RUnlock()
		return
	}
	for s := range h.subs[convoID] {
		s.mark(convoID)
	}
	h.mu.RUnlock()
	h.joins.mark(convoID)
}

// Close stops listening and ends every subscription with ErrHubClosed.
func (h *Hub) Close() error {
	h.stopListen()
	h.stopSampling()
	h.joins.stop()
	h.mu.Lock()
	h.closed = true
	all := make([]*Subscription, 0, len(h.all))
	for s := range h.all {
		all = append(all, s)
	}
	h.mu.Unlock()
	for _, s := range all {
		s.stop(ErrHubClosed)
	}
	for _, s := range all {
		<-s.done
	}
	return nil
}

// Open reports the number of open subscriptions.
func (h *Hub) Open() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.total
}

// Request describes a subscription.
type Request struct {
	// Identity is the verified caller.
	Identity caller.Identity
	// ConvoID restricts the stream to one conversation; empty follows every
	// conversation the caller is an active member of when subscribing.
	ConvoID string
	// Cursor resumes after a position a previous stream handed out; empty
	// starts at the present.
	Cursor string
	// Transport labels the subscription for the Observer ("sse",
	// "websocket").
	Transport string
}

// Subscribe authorizes req and starts a subscription: it registers for
// wake-ups first, then replays from the store, then follows live, so
// nothing falls between replay and live and nothing is delivered twice.
// Errors: ErrInvalidCursor, store.ErrNotFound or store.ErrNotMember for
// ConvoID, ErrTooManyConnections, ErrHubClosed.
//
// The subscription ends when ctx ends, when Close is called or when its
// Events channel closes on its own (see Subscription.Err).
func (h *Hub) Subscribe(ctx context.Context, req Request) (*Subscription, error) {
	return h.subscribe(ctx, ctx, req)
}

// subscribe is Subscribe with the set-up's reads under ctx and the
// subscription's life under life: a transport that outlives its request
// (an SSE stream detached from net/http) passes a context of its own.
func (h *Hub) subscribe(ctx, life context.Context, req Request) (*Subscription, error) {
	if req.Identity.DID == "" {
		return nil, errors.New("realtime: subscribe without a caller")
	}
	var resume *token
	if req.Cursor != "" {
		t, err := decodeCursor(req.Cursor)
		if err != nil {
			return nil, err
		}
		resume = &t
	}
	sctx, cancel := context.WithCancel(life)
	s := &Subscription{
		h:         h,
		id:        req.Identity,
		transport: req.Transport,
		single:    req.ConvoID,
		out:       make(chan *Event, h.cfg.BufferSize),
		wakeCh:    make(chan struct{}, 1),
		ctx:       sctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		live:      make(chan struct{}),
		dirty:     make(map[string]struct{}),
		joined:    make(map[string]int64),
		convos:    make(map[string]struct{}),
	}

	h.mu.Lock()
	switch {
	case h.closed:
		h.mu.Unlock()
		cancel()
		return nil, ErrHubClosed
	case h.perDID[req.Identity.DID] >= h.cfg.MaxPerDID, h.total >= h.cfg.MaxConnections:
		h.mu.Unlock()
		cancel()
		h.cfg.Observer.Refused(req.Transport)
		return nil, ErrTooManyConnections
	}
	h.perDID[req.Identity.DID]++
	h.total++
	if s.single == "" {
		// Before listing the conversations, so a join in between is seen
		// by one or the other.
		set := h.wide[s.id.DID]
		if set == nil {
			set = make(map[*Subscription]struct{})
			h.wide[s.id.DID] = set
		}
		set[s] = struct{}{}
	}
	h.mu.Unlock()

	convos, err := h.convosFor(ctx, req.Identity, req.ConvoID)
	if err != nil {
		h.release(s, false)
		cancel()
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.release(s, false)
		cancel()
		return nil, ErrHubClosed
	}
	s.mu.Lock()
	for _, c := range convos {
		s.convos[c] = struct{}{}
		h.registerLocked(s, c)
	}
	s.mu.Unlock()
	h.mu.Unlock()

	if err := s.position(ctx, resume); err != nil {
		h.release(s, false)
		cancel()
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.release(s, false)
		cancel()
		return nil, ErrHubClosed
	}
	h.all[s] = struct{}{}
	h.mu.Unlock()
	h.cfg.Observer.ConnOpened(req.Transport)

	go s.run()
	return s, nil
}

func (h *Hub) registerLocked(s *Subscription, convoID string) {
	set := h.subs[convoID]
	if set == nil {
		set = make(map[*Subscription]struct{})
		h.subs[convoID] = set
	}
	set[s] = struct{}{}
}

// release undoes Subscribe's registration; opened says whether the
// Observer was told of the stream.
func (h *Hub) release(s *Subscription, opened bool) {
	h.mu.Lock()
	for _, c := range s.registered() {
		h.unregisterLocked(s, c)
	}
	if set := h.wide[s.id.DID]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(h.wide, s.id.DID)
		}
	}
	if h.perDID[s.id.DID]--; h.perDID[s.id.DID] <= 0 {
		delete(h.perDID, s.id.DID)
	}
	h.total--
	delete(h.all, s)
	h.mu.Unlock()
	if opened {
		h.cfg.Observer.ConnClosed(s.transport)
	}
}

func (h *Hub) unregister(s *Subscription, convoID string) {
	h.mu.Lock()
	h.unregisterLocked(s, convoID)
	h.mu.Unlock()
}

func (h *Hub) unregisterLocked(s *Subscription, convoID string) {
	if set := h.subs[convoID]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(h.subs, convoID)
			h.feeds.drop(convoID)
		}
	}
}

// convosFor returns the conversations a stream for id may follow: convoID
// alone if id is an active member of it, or all of id's conversations.
func (h *Hub) convosFor(ctx context.Context, id caller.Identity, convoID string) ([]string, error) {
	if convoID != "" {
		if err := h.member(ctx, convoID, id); err != nil {
			return nil, err
		}
		return []string{convoID}, nil
	}
	all, err := h.cfg.Store.UserConvos(ctx, id.DID)
	if err != nil {
		return nil, fmt.Errorf("list caller's conversations: %w", err)
	}
	out := make([]string, 0, len(all))
	for _, uc := range all {
		if id.DeviceID == "" || containsAny(uc.MemberDIDs, id.DID, memberDID(id)) {
			out = append(out, uc.ConvoID)
		}
	}
	return out, nil
}

// member reports whether id is an active member of convoID, with the
// delivery service's rule: a caller bound to a device matches its device
// row or a device-less row of its DID; a caller without a device matches
// any row of its DID.
func (h *Hub) member(ctx context.Context, convoID string, id caller.Identity) error {
	st := h.cfg.Store
	if id.DeviceID != "" {
		_, err := st.ActiveMember(ctx, convoID, memberDID(id))
		if err == nil || !errors.Is(err, store.ErrNotMember) {
			return err
		}
	}
	_, err := st.ActiveMember(ctx, convoID, id.DID)
	if err == nil || !errors.Is(err, store.ErrNotMember) || id.DeviceID != "" {
		return err
	}
	all, err := st.Members(ctx, []string{convoID}, false)
	if err != nil {
		return fmt.Errorf("list members: %w", err)
	}
	for _, m := range all[convoID] {
		if m.UserDID == id.DID {
			return nil
		}
	}
	return fmt.Errorf("caller: %w", store.ErrNotMember)
}

func memberDID(id caller.Identity) string {
	if id.DeviceID == "" {
		return id.DID
	}
	return id.DID + "#" + id.DeviceID
}

func containsAny(list []string, want ...string) bool {
	for _, v := range list {
		for _, w := range want {
			if v == w {
				return true
			}
		}
	}
	return false
}

// minSampleTick bounds how often the background sampler runs, so that a
// tiny SampleEvery (tests use a nanosecond) cannot make it a busy loop.
const minSampleTick = 10 * time.Millisecond

// sampleTick is the background sampler's period.
func (h *Hub) sampleTick() time.Duration { return max(h.cfg.SampleEvery, minSampleTick) }

// sampleLoop samples the store's latest cursor every sampleTick until stop
// closes. Sampling only when a stream asks would leave, after a quiet spell,
// nothing but a sample taken long before, and a fresh stream would start
// there and replay everything since; sampling steadily keeps a sample about
// Settle old at hand. Errors are left for the next settled call to report.
func (h *Hub) sampleLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(h.sampleTick())
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			h.smu.Lock()
			_ = h.sampleLocked(ctx)
			h.smu.Unlock()
			cancel()
		}
	}
}

// sampleLocked appends a sample of the store's latest cursor unless the
// newest is younger than SampleEvery. h.smu must be held.
func (h *Hub) sampleLocked(ctx context.Context) error {
	now := h.cfg.Now()
	if n := len(h.samples); n > 0 && now.Sub(h.samples[n-1].at) < h.cfg.SampleEvery {
		return nil
	}
	hz, err := h.cfg.Store.EventHorizon(ctx)
	if err != nil {
		return fmt.Errorf("read event horizon: %w", err)
	}
	h.samples = append(h.samples, sample{at: now, latest: hz.Latest})
	return nil
}

// settled returns a cursor at or below which every event is visible, and
// false if the hub knows none yet. Samples of the store's latest cursor are
// taken every SampleEvery (in the background, and when a subscription
// asks) and shared by all subscriptions; one becomes usable Settle after it
// was taken, and stops being usable once it is more than two sampling
// periods past that: a sample that old means sampling stopped (the store
// was unreachable, the process paused), and a stream starting there would
// replay everything since rather than start at the present.
func (h *Hub) settled(ctx context.Context) (int64, bool, error) {
	h.smu.Lock()
	defer h.smu.Unlock()
	if err := h.sampleLocked(ctx); err != nil {
		return 0, false, err
	}
	now := h.cfg.Now()
	best := -1
	for i, smp := range h.samples {
		if now.Sub(smp.at) >= h.cfg.Settle {
			best = i
		}
	}
	if best < 0 {
		return 0, false, nil
	}
	h.samples = h.samples[best:]
	if now.Sub(h.samples[0].at) > h.cfg.Settle+2*h.sampleTick() {
		return 0, false, nil
	}
	return h.samples[0].latest, true, nil
}
