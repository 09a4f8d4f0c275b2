package realtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// EventType says what an Event carries.
type EventType int

// Event types.
const (
	// EventMessage carries an application message or a commit
	// (messageEvent; Message.IsCommit tells them apart).
	EventMessage EventType = iota + 1
	// EventRemoved says the subscriber is no longer a member of ConvoID
	// (membershipChangeEvent); the stream carries nothing more of it.
	EventRemoved
	// EventInfo is a notice (infoEvent) such as InfoCursorExpired.
	EventInfo
)

// Info notices. They start with a fixed token clients can match.
const (
	// InfoCursorExpired: the resume cursor is older than the retained
	// event stream. The stream continues from the present; the client
	// re-syncs each conversation with getMessages.
	InfoCursorExpired = "cursor-expired: resume point is older than retention; re-sync with getMessages"
	// InfoSlowConsumer: the client fell behind; the server closes the
	// stream. Resume with the last cursor received: nothing is lost.
	InfoSlowConsumer = "slow-consumer: stream closed; resume with the last cursor"
)

// Event is one event for a client. Cursor resumes a stream just after it.
type Event struct {
	Type    EventType
	Cursor  string
	ConvoID string
	// Message is set for EventMessage: the stored message the event row
	// references, without a sender (the store keeps none).
	Message *store.Message
	// Epoch is the conversation epoch after a membership change.
	Epoch int64
	// DID is the subscriber's DID in EventRemoved.
	DID string
	// Info is the notice of EventInfo.
	Info string

	// view, if set, encodes Message once for every stream it goes to.
	view *sharedView
}

// Subscription is one client's stream. Read Events until it closes, then
// Err says why.
type Subscription struct {
	h         *Hub
	id        caller.Identity
	transport string
	single    string
	// out carries pointers: a buffer of BufferSize events would hold
	// kilobytes per open stream even while idle.
	out    chan *Event
	wakeCh chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	live   chan struct{}

	mu    sync.Mutex
	dirty map[string]struct{}
	// joined holds conversations the user joined while subscribed, with
	// the cursor after which to read them.
	joined    map[string]int64
	err       error
	stopCause error
	// convos is read by release under mu after the pump has ended, and
	// written only by the pump.
	convos map[string]struct{}
	// onQueue, if set, is called after each event is queued and once
	// Events has closed (see onQueued).
	onQueue atomic.Pointer[func()]

	// pump-owned
	// pos is what the stream's cursors say. Its floor moves up to settled
	// points so cursors stay short.
	pos position
	// cursor is where the stream started, and expired says the resume
	// cursor was older than retention. Both are set before Subscribe
	// returns.
	cursor  string
	expired bool
	// base and sent are what the stream itself goes by: base is the
	// position it started from (lowered by joins), sent the highest cursor
	// delivered per conversation. Neither is ever raised to a settled
	// point, so within a connection a late commit is never skipped,
	// whatever Settle says.
	base     position
	sent     map[string]int64
	replayed int
}

// Events returns the channel of events. It is closed when the
// subscription ends. An Event received is the receiver's alone.
func (s *Subscription) Events() <-chan *Event { return s.out }

// Err reports why Events closed: nil after the context ended or Close,
// ErrSlowConsumer, ErrRemoved, ErrHubClosed or a store failure.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the subscription and waits for it to release its resources.
func (s *Subscription) Close() {
	s.stop(nil)
	<-s.done
}

// onQueued has fn called after each event is queued and once Events has
// closed, and once now for what was queued before. A transport that
// drains Events only while there is work (the WebSocket stream) starts
// its writer from it instead of keeping a goroutine parked on Events.
// fn must not block.
func (s *Subscription) onQueued(fn func()) {
	s.onQueue.Store(&fn)
	fn()
}

// queued calls the onQueued function, if any.
func (s *Subscription) queued() {
	if fn := s.onQueue.Load(); fn != nil {
		(*fn)()
	}
}

// Cursor returns a cursor for the point the stream starts from: the
// request's, or the present for a stream without one. A transport can hand
// it to the client before any event (SSE sends it as an id-only block), so
// a client that reconnects before the first event loses nothing.
func (s *Subscription) Cursor() string { return s.cursor }

// Live is closed once the replay is queued and the subscription follows
// live wake-ups (or has ended).
func (s *Subscription) Live() <-chan struct{} { return s.live }

// Done is closed once the subscription has ended and released its slot.
func (s *Subscription) Done() <-chan struct{} { return s.done }

func (s *Subscription) stop(cause error) {
	s.mu.Lock()
	if s.stopCause == nil {
		s.stopCause = cause
	}
	s.mu.Unlock()
	s.cancel()
}

// mark records a wake-up for convoID. Called with the hub's lock held; it
// never blocks.
func (s *Subscription) mark(convoID string) {
	s.mu.Lock()
	s.dirty[convoID] = struct{}{}
	s.mu.Unlock()
	select {
	case s.wakeCh <- struct{}{}:
	default:
	}
}

// registered returns the conversations the hub may have s registered
// for: those followed and those joined but not yet followed.
func (s *Subscription) registered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.listLocked()
	for c := range s.joined {
		out = append(out, c)
	}
	return out
}

// join asks the pump to follow convoID from after the cursor after.
// Called with the hub's lock held.
func (s *Subscription) join(convoID string, after int64) {
	s.mu.Lock()
	if prev, ok := s.joined[convoID]; !ok || after < prev {
		s.joined[convoID] = after
	}
	s.dirty[convoID] = struct{}{}
	s.mu.Unlock()
	select {
	case s.wakeCh <- struct{}{}:
	default:
	}
}

// run is the subscription's pump: replay, then live.
func (s *Subscription) run() {
	err := s.pump()
	if s.ctx.Err() != nil {
		s.mu.Lock()
		err = s.stopCause
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	if errors.Is(err, ErrSlowConsumer) {
		s.h.cfg.Observer.SlowConsumerDropped(s.transport)
	}
	s.h.release(s, true)
	select {
	case <-s.live:
	default:
		close(s.live)
	}
	close(s.out)
	s.queued()
	s.cancel()
	close(s.done)
}

func (s *Subscription) pump() error {
	if err := s.start(); err != nil {
		return err
	}
	// A stream over several conversations re-reads now and then to raise
	// its floor, so its cursors shrink back to a number.
	var advance <-chan time.Time
	if s.single == "" {
		t := time.NewTicker(s.h.cfg.AdvanceEvery)
		defer t.Stop()
		advance = t.C
	}
	for {
		select {
		case <-s.ctx.Done():
			return nil
		case <-s.wakeCh:
			if err := s.readWoken(); err != nil {
				return err
			}
		case <-advance:
			if len(s.pos.Convos) == 0 {
				continue
			}
			if err := s.advance(false); err != nil {
				return err
			}
		}
	}
}

// position sets where the subscription starts. Subscribe calls it after
// registering for wake-ups, so anything committed from then on also wakes
// the subscription; the per-conversation positions drop what the replay
// already delivered.
func (s *Subscription) position(ctx context.Context, resume *token) error {
	hz, err := s.h.cfg.Store.EventHorizon(ctx)
	if err != nil {
		return fmt.Errorf("read event horizon: %w", err)
	}
	switch {
	case resume == nil:
		// Starting at the present. With Settle, start at a settled point
		// instead, so an event whose cursor was drawn before now but
		// committed after is not skipped; the client may see a few seconds
		// it already fetched, and dedupes by (convoId, seq).
		s.pos.Floor = hz.Latest
		if s.h.cfg.Settle > 0 {
			if f, ok, err := s.h.settled(ctx); err != nil {
				return err
			} else if ok && f < hz.Latest {
				s.pos.Floor = f
			}
		}
	case resume.Floor+1 < hz.Oldest:
		s.pos.Floor = hz.Latest
		s.expired = true
	default:
		s.pos = resume.resolve(s.convos)
	}
	s.cursor = s.pos.encode()
	return nil
}

// start replays what the store holds after the start position.
func (s *Subscription) start() error {
	if s.expired && !s.send(Event{Type: EventInfo, Cursor: s.cursor, Info: InfoCursorExpired}, true) {
		return s.ctx.Err()
	}
	s.base = position{Floor: s.pos.Floor, Convos: maps.Clone(s.pos.Convos)}
	s.sent = make(map[string]int64)
	if err := s.advance(true); err != nil {
		return err
	}
	s.h.cfg.Observer.Replayed(s.transport, s.replayed)
	close(s.live)
	return nil
}

// advance reads every event of the stream's conversations above the floor
// that is not yet delivered, then raises the floor to the settled point.
// It runs at start (blocking on the buffer: the client is fed at its own
// pace) and then whenever the hub has a newer settled point.
func (s *Subscription) advance(replay bool) error {
	target, ok, err := s.h.settled(s.ctx)
	if err != nil {
		return err
	}
	if !replay && (!ok || target <= s.pos.Floor) {
		return nil
	}
	list := s.list()
	after := s.pos.Floor
	if s.single != "" && len(list) == 1 {
		if got, ok := s.h.feeds.since(s.ctx, list[0], s.after(list[0])); ok {
			// The feed is complete up to the latest wake-up, which is
			// everything committed before the subscription registered.
			return s.deliver(got, replay)
		}
	}
	for len(list) > 0 {
		evs, err := s.h.cfg.Store.EventsAfter(s.ctx, list, after, s.h.cfg.PageSize)
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if err := s.deliverEvents(evs, replay); err != nil {
			return err
		}
		if len(evs) < s.h.cfg.PageSize {
			break
		}
		after = evs[len(evs)-1].Cursor
		list = s.list()
	}
	if ok && s.single == "" {
		s.pos.raise(target)
	}
	return nil
}

// readWoken reads the new events of every woken conversation from that
// conversation's own position: exact, whatever the cross-conversation
// visibility order.
func (s *Subscription) readWoken() error {
	s.mu.Lock()
	dirty := s.dirty
	s.dirty = make(map[string]struct{})
	joined := s.joined
	s.joined = make(map[string]int64)
	for c, after := range joined {
		if _, ok := s.convos[c]; ok {
			continue
		}
		// Events of c from after on are new to this stream, and may lie
		// below the floor: lower it, pinning the conversations already
		// followed where they were.
		s.pos.lower(after, s.listLocked())
		s.base.lower(after, s.listLocked())
		s.convos[c] = struct{}{}
	}
	s.mu.Unlock()
	for c := range dirty {
		for {
			if _, ok := s.convos[c]; !ok {
				break
			}
			if got, ok := s.h.feeds.since(s.ctx, c, s.after(c)); ok {
				if err := s.deliver(got, false); err != nil {
					return err
				}
				break
			}
			evs, err := s.h.cfg.Store.EventsAfter(s.ctx, []string{c}, s.after(c), s.h.cfg.PageSize)
			if err != nil {
				return fmt.Errorf("read events: %w", err)
			}
			if err := s.deliverEvents(evs, false); err != nil {
				return err
			}
			if len(evs) < s.h.cfg.PageSize {
				break
			}
		}
	}
	return nil
}

// list returns the followed conversations.
func (s *Subscription) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listLocked()
}

func (s *Subscription) listLocked() []string {
	out := make([]string, 0, len(s.convos))
	for c := range s.convos {
		out = append(out, c)
	}
	return out
}

// deliverEvents reads the messages a page of event rows references and
// delivers them.
func (s *Subscription) deliverEvents(evs []store.Event, block bool) error {
	if len(evs) == 0 {
		return nil
	}
	msgs, err := s.messages(evs)
	if err != nil {
		return err
	}
	got := make([]entry, len(evs))
	for i, ev := range evs {
		got[i].ev = ev
		if m, ok := msgs[msgKey{ev.ConvoID, ev.MessageID}]; ok {
			got[i].msg = &m
		}
	}
	return s.deliver(got, block)
}

// deliver turns event rows into Events, in order, skipping what was
// delivered before. block makes it wait for buffer space (replay);
// otherwise a full buffer is ErrSlowConsumer. The messages may be shared
// with other subscriptions (the feed's): nothing downstream modifies them.
func (s *Subscription) deliver(got []entry, block bool) error {
	for _, e := range got {
		ev := e.ev
		if _, ok := s.convos[ev.ConvoID]; !ok || ev.Cursor <= s.after(ev.ConvoID) {
			continue
		}
		var out Event
		switch ev.Kind {
		case store.EventMessage, store.EventCommit:
			s.delivered(ev.ConvoID, ev.Cursor)
			if e.msg == nil {
				continue // purged since; getMessages reports the gap
			}
			out = Event{Type: EventMessage, ConvoID: ev.ConvoID, Message: e.msg, view: e.view}
		case store.EventMembership:
			err := s.h.member(s.ctx, ev.ConvoID, s.id)
			s.delivered(ev.ConvoID, ev.Cursor)
			if err == nil {
				// Someone else's change: the event row does not say whose,
				// and the commit that made it arrives as a message.
				continue
			}
			if !errors.Is(err, store.ErrNotMember) && !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("check membership: %w", err)
			}
			s.drop(ev.ConvoID)
			out = Event{Type: EventRemoved, ConvoID: ev.ConvoID, Epoch: ev.Epoch, DID: s.id.DID}
		default:
			s.delivered(ev.ConvoID, ev.Cursor)
			continue
		}
		out.Cursor = s.pos.encode()
		if !s.send(out, block) {
			if s.ctx.Err() != nil {
				return nil
			}
			return ErrSlowConsumer
		}
		if block {
			s.replayed++
		}
		if out.Type == EventRemoved && s.single != "" {
			return ErrRemoved
		}
	}
	return nil
}

// delivered records that the event at cursor in convoID is done with. A
// single-conversation stream's position is exact within the
// conversation, so its floor follows it and its cursor stays a number.
func (s *Subscription) delivered(convoID string, cursor int64) {
	if cursor > s.sent[convoID] {
		s.sent[convoID] = cursor
	}
	if s.single != "" {
		s.pos.raise(cursor)
		return
	}
	s.pos.mark(convoID, cursor)
}

// after returns the cursor after which events of convoID are new to this
// connection.
func (s *Subscription) after(convoID string) int64 {
	return max(s.base.after(convoID), s.sent[convoID])
}

// drop stops following convoID at once.
func (s *Subscription) drop(convoID string) {
	s.mu.Lock()
	delete(s.convos, convoID)
	s.mu.Unlock()
	delete(s.pos.Convos, convoID)
	delete(s.base.Convos, convoID)
	delete(s.sent, convoID)
	s.h.unregister(s, convoID)
}

type msgKey struct{ convo, id string }

// messages reads the messages a page of events references, one query per
// conversation.
func (s *Subscription) messages(evs []store.Event) (map[msgKey]store.Message, error) {
	ids := make(map[string][]string)
	for _, ev := range evs {
		if ev.MessageID == "" || ev.Cursor <= s.after(ev.ConvoID) {
			continue
		}
		if ev.Kind == store.EventMessage || ev.Kind == store.EventCommit {
			ids[ev.ConvoID] = append(ids[ev.ConvoID], ev.MessageID)
		}
	}
	out := make(map[msgKey]store.Message)
	for c, list := range ids {
		if _, ok := s.convos[c]; !ok {
			continue
		}
		ms, err := s.h.cfg.Store.MessagesByID(s.ctx, c, list)
		if err != nil {
			return nil, fmt.Errorf("read messages: %w", err)
		}
		for _, m := range ms {
			out[msgKey{c, m.MsgID}] = m
		}
	}
	return out, nil
}

// send queues ev for the client. It reports false if the context ended,
// or, when not blocking, if the buffer stayed full for SlowAfter.
func (s *Subscription) send(e Event, block bool) bool {
	ev := &e
	select {
	case s.out <- ev:
		s.queued()
		return true
	default:
	}
	var slow <-chan time.Time
	if !block {
		t := time.NewTimer(s.h.cfg.SlowAfter)
		defer t.Stop()
		slow = t.C
	}
	select {
	case s.out <- ev:
		s.queued()
		return true
	case <-s.ctx.Done():
		return false
	case <-slow:
		return false
	}
}
