package realtime

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ErrInvalidCursor means a resume cursor could not be decoded.
var ErrInvalidCursor = errors.New("realtime: invalid cursor")

// position is where a subscription stands in the event stream.
//
// Store cursors are one sequence across conversations but, on PostgreSQL,
// not one visibility order: an event of conversation B can become visible
// after a later-numbered event of A. A single number therefore cannot say
// what a subscriber has seen. A position is a floor plus exceptions:
// every event of the stream's conversations with a cursor at or below
// Floor has been delivered, and for each conversation in Convos every
// event at or below that value has too. Within one conversation events
// become visible in cursor order, so a per-conversation high-water mark is
// exact. The floor only advances to points the store has settled (see
// Config.Settle), which keeps the exceptions to the conversations active in
// the last moments.
type position struct {
	Floor  int64
	Convos map[string]int64
}

// after returns the cursor after which events of convoID are new.
func (p *position) after(convoID string) int64 {
	if c, ok := p.Convos[convoID]; ok && c > p.Floor {
		return c
	}
	return p.Floor
}

// mark records the delivery of the event at cursor in convoID.
func (p *position) mark(convoID string, cursor int64) {
	if p.Convos == nil {
		p.Convos = make(map[string]int64)
	}
	if cursor > p.Convos[convoID] {
		p.Convos[convoID] = cursor
	}
}

// raise moves the floor up to floor and drops the exceptions it covers.
func (p *position) raise(floor int64) {
	if floor <= p.Floor {
		return
	}
	p.Floor = floor
	for id, c := range p.Convos {
		if c <= floor {
			delete(p.Convos, id)
		}
	}
}

// lower moves the floor down to floor, pinning each of convos at the
// position it had, so only conversations outside convos gain events.
func (p *position) lower(floor int64, convos []string) {
	if floor >= p.Floor {
		return
	}
	for _, c := range convos {
		p.mark(c, p.after(c))
	}
	p.Floor = floor
}

// cursorVersion prefixes every encoded cursor so the format can change.
const cursorVersion = "1"

// encode returns the opaque cursor string of p. It is deterministic, so
// equal positions encode equally.
func (p *position) encode() string {
	var b strings.Builder
	b.WriteString(cursorVersion)
	b.WriteByte('.')
	b.WriteString(strconv.FormatInt(p.Floor, 10))
	ids := make([]string, 0, len(p.Convos))
	for id, c := range p.Convos {
		if c > p.Floor {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		b.WriteByte('&')
		b.WriteString(url.QueryEscape(id))
		b.WriteByte('=')
		// Offsets from the floor keep busy streams' cursors short.
		b.WriteString(strconv.FormatInt(p.Convos[id]-p.Floor, 10))
	}
	return base64.RawURLEncoding.EncodeToString([]byte(b.String()))
}

// maxCursorLen bounds a cursor a client may send.
const maxCursorLen = 16 << 10

// decodePosition parses a cursor made by encode.
func decodePosition(s string) (position, error) {
	bad := func(why string) (position, error) {
		return position{}, fmt.Errorf("decode cursor: %s: %w", why, ErrInvalidCursor)
	}
	if len(s) > maxCursorLen {
		return bad("too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return bad("not base64url")
	}
	ver, rest, ok := strings.Cut(string(raw), ".")
	if !ok || ver != cursorVersion {
		return bad("unknown version")
	}
	parts := strings.Split(rest, "&")
	floor, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || floor < 0 {
		return bad("bad floor")
	}
	p := position{Floor: floor}
	for _, part := range parts[1:] {
		k, v, ok := strings.Cut(part, "=")
		id, err := url.QueryUnescape(k)
		if !ok || err != nil || id == "" {
			return bad("bad conversation")
		}
		off, err := strconv.ParseInt(v, 10, 64)
		if err != nil || off <= 0 || off > 1<<62-floor {
			return bad("bad offset")
		}
		p.mark(id, floor+off)
	}
	return p, nil
}
