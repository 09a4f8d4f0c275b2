package realtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// DefaultFeedSize is how many of a conversation's newest events the hub
// keeps for its subscribers when Config.FeedSize is zero.
const DefaultFeedSize = 64

// feedKeep is how long a feed keeps events after reading them. Its
// subscribers take them within milliseconds of the wake-up; after that the
// entries (with ciphertext and encodings, a few KiB each) would only hold
// memory for every quiet conversation the node follows.
const feedKeep = 10 * time.Second

// entry is one event row with the message it references (nil if it
// references none, or the message was purged). view, when set, is the
// message's JSON view shared by every stream the entry goes to.
type entry struct {
	ev   store.Event
	msg  *store.Message
	view *sharedView
}

// feeds keeps the newest events of each conversation that has
// subscribers on this node, so that a wake-up costs one store read per
// conversation and node instead of one per subscriber: a message to a
// thousand members is read once, not a thousand times.
//
// A feed is exact over a cursor range: it holds every event of its
// conversation with lo < cursor <= hi. That holds on PostgreSQL too, where
// cursors are drawn before commit, because within one conversation cursor
// order is commit order. A subscription whose position is below lo reads
// the store itself.
type feeds struct {
	st   Store
	size int
	page int

	mu sync.Mutex
	m  map[string]*feed
}

// feed is one conversation's cache.
type feed struct {
	mu sync.Mutex
	// gen counts wake-ups of the conversation; fresh is the gen as of which
	// the entries are complete (the gen when their last read started).
	gen, fresh uint64
	loaded     bool
	lo, hi     int64
	entries    []entry
	// reading is closed when the read in flight ends; readGen is the gen
	// it started at.
	reading chan struct{}
	readGen uint64
	// expire empties the entries feedKeep after a read added some.
	expire *time.Timer
}

func newFeeds(st Store, size, page int) *feeds {
	return &feeds{st: st, size: size, page: page, m: make(map[string]*feed)}
}

// mark records a wake-up of convoID ("" for every conversation). It must
// run before the subscriptions are woken, so that what they ask for next
// includes what woke them.
func (fs *feeds) mark(convoID string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if convoID == "" {
		for _, f := range fs.m {
			f.mu.Lock()
			f.gen++
			f.mu.Unlock()
		}
		return
	}
	if f := fs.m[convoID]; f != nil {
		f.mu.Lock()
		f.gen++
		f.mu.Unlock()
	}
}

// drop forgets convoID's feed once no subscription on the node follows it.
func (fs *feeds) drop(convoID string) {
	fs.mu.Lock()
	delete(fs.m, convoID)
	fs.mu.Unlock()
}

func (fs *feeds) get(convoID string) *feed {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	f := fs.m[convoID]
	if f == nil {
		f = &feed{}
		fs.m[convoID] = f
	}
	return f
}

// since returns convoID's events with cursor > after, complete as of every
// wake-up seen before the call, reading the store at most once for all
// concurrent callers. ok is false if the feed cannot answer (after is
// older than it holds, or a read failed): the caller reads the store
// itself.
func (fs *feeds) since(ctx context.Context, convoID string, after int64) (out []entry, ok bool) {
	f := fs.get(convoID)
	f.mu.Lock()
	need := f.gen
	for {
		if f.loaded && after < f.lo {
			f.mu.Unlock()
			return nil, false
		}
		if f.loaded && f.fresh >= need {
			for i := range f.entries {
				if f.entries[i].ev.Cursor > after {
					out = append(out, f.entries[i:]...)
					break
				}
			}
			f.mu.Unlock()
			return out, true
		}
		if f.reading != nil {
			// Wait for the read in flight; if it started before the
			// wake-up this caller needs, the loop starts another.
			ch := f.reading
			f.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, false
			}
			f.mu.Lock()
			continue
		}
		ch := make(chan struct{})
		f.reading, f.readGen = ch, f.gen
		from, first := after, !f.loaded
		if f.loaded {
			from = f.hi
		}
		f.mu.Unlock()
		got, complete, err := fs.read(ctx, convoID, from, first)
		f.mu.Lock()
		f.reading = nil
		close(ch)
		if err != nil || !complete {
			// A failed read, or a first read that found a backlog too long
			// to keep: this caller reads the store; others retry.
			f.mu.Unlock()
			return nil, false
		}
		if !f.loaded {
			f.loaded, f.lo, f.hi = true, from, from
		}
		f.add(got, fs.size)
		f.fresh = f.readGen
		if len(f.entries) > 0 && f.expire == nil {
			f.expire = time.AfterFunc(feedKeep, f.empty)
		}
	}
}

// empty drops the entries: the feed still knows it is complete up to hi,
// so streams that are up to date keep reading nothing from the store, and
// a stream behind hi reads the store itself.
func (f *feed) empty() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lo, f.entries, f.expire = f.hi, nil, nil
}

// add appends entries read after hi and keeps the newest size of them.
func (f *feed) add(got []entry, size int) {
	for _, e := range got {
		if e.ev.Cursor > f.hi {
			f.entries = append(f.entries, e)
			f.hi = e.ev.Cursor
		}
	}
	if n := len(f.entries) - size; n > 0 {
		f.lo = f.entries[n-1].ev.Cursor
		f.entries = append(f.entries[:0:0], f.entries[n:]...)
	}
}

// read returns convoID's events after from with their messages. A first
// read (first) gives up, complete false, when there are more events than
// the feed keeps: that backlog is one subscriber's replay, not worth
// caching.
func (fs *feeds) read(ctx context.Context, convoID string, from int64, first bool) ([]entry, bool, error) {
	var evs []store.Event
	for {
		page, err := fs.st.EventsAfter(ctx, []string{convoID}, from, fs.page)
		if err != nil {
			return nil, false, fmt.Errorf("read events: %w", err)
		}
		evs = append(evs, page...)
		if first && len(evs) > fs.size {
			return nil, false, nil
		}
		if len(page) < fs.page {
			break
		}
		from = page[len(page)-1].Cursor
	}
	var ids []string
	for _, ev := range evs {
		if ev.MessageID != "" && (ev.Kind == store.EventMessage || ev.Kind == store.EventCommit) {
			ids = append(ids, ev.MessageID)
		}
	}
	byID := make(map[string]*store.Message, len(ids))
	if len(ids) > 0 {
		ms, err := fs.st.MessagesByID(ctx, convoID, ids)
		if err != nil {
			return nil, false, fmt.Errorf("read messages: %w", err)
		}
		for i := range ms {
			byID[ms[i].MsgID] = &ms[i]
		}
	}
	out := make([]entry, len(evs))
	for i, ev := range evs {
		out[i] = entry{ev: ev}
		if ev.Kind == store.EventMessage || ev.Kind == store.EventCommit {
			if m := byID[ev.MessageID]; m != nil {
				out[i].msg, out[i].view = m, &sharedView{}
			}
		}
	}
	return out, true, nil
}
