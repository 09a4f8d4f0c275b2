package realtime

import (
	"context"
	"sync"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// joinWatch adds conversations to the all-conversations streams of users
// who join them while connected. It reads each woken conversation's new
// events once per node (not once per stream), from its own exact
// per-conversation position, and on a membership event offers the
// conversation to the streams of its active members that do not follow it
// yet, from just before that event.
//
// Membership is read when the event is scanned, not as of the event: when
// wake-ups coalesce, a member who joined at a later event of the same scan
// is offered the conversation from the earlier one, and receives a few
// events from before the join. That discloses nothing getMessages would
// not (members may read the retained history); the reverse choice could
// lose events.
type joinWatch struct {
	h      *Hub
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wakeCh chan struct{}

	mu    sync.Mutex
	dirty map[string]struct{}

	// owned by the loop
	start int64
	pos   map[string]int64
}

func newJoinWatch(h *Hub, start int64) *joinWatch {
	ctx, cancel := context.WithCancel(context.Background())
	j := &joinWatch{
		h: h, ctx: ctx, cancel: cancel, done: make(chan struct{}), wakeCh: make(chan struct{}, 1),
		dirty: make(map[string]struct{}), start: start, pos: make(map[string]int64),
	}
	go j.loop()
	return j
}

func (j *joinWatch) mark(convoID string) {
	j.mu.Lock()
	j.dirty[convoID] = struct{}{}
	j.mu.Unlock()
	select {
	case j.wakeCh <- struct{}{}:
	default:
	}
}

func (j *joinWatch) stop() {
	j.cancel()
	<-j.done
}

func (j *joinWatch) loop() {
	defer close(j.done)
	for {
		select {
		case <-j.ctx.Done():
			return
		case <-j.wakeCh:
		}
		j.mu.Lock()
		dirty := j.dirty
		j.dirty = make(map[string]struct{})
		j.mu.Unlock()
		for c := range dirty {
			// A failed read leaves the position where it was: the next
			// wake-up of the conversation retries.
			_ = j.scan(c)
		}
	}
}

// scan reads convoID's new events and offers it on membership events.
func (j *joinWatch) scan(convoID string) error {
	after, ok := j.pos[convoID]
	if !ok {
		after = j.start
	}
	page := j.h.cfg.PageSize
	for {
		evs, err := j.h.cfg.Store.EventsAfter(j.ctx, []string{convoID}, after, page)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Kind == store.EventMembership && j.h.hasWide() {
				if err := j.offer(convoID, ev.Cursor-1); err != nil {
					return err
				}
			}
			after = ev.Cursor
			j.pos[convoID] = after
		}
		if len(evs) < page {
			return nil
		}
	}
}

// offer adds convoID to the all-conversations streams of its active
// members that do not follow it yet.
func (j *joinWatch) offer(convoID string, after int64) error {
	all, err := j.h.cfg.Store.Members(j.ctx, []string{convoID}, false)
	if err != nil {
		return err
	}
	rows := make(map[string][]string)
	for _, m := range all[convoID] {
		rows[m.UserDID] = append(rows[m.UserDID], m.MemberDID)
	}
	h := j.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for user, members := range rows {
		for s := range h.wide[user] {
			if _, ok := h.subs[convoID][s]; ok {
				continue
			}
			if s.id.DeviceID != "" && !containsAny(members, s.id.DID, memberDID(s.id)) {
				continue
			}
			h.registerLocked(s, convoID)
			s.join(convoID, after)
		}
	}
	return nil
}

func (h *Hub) hasWide() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.wide) > 0
}
