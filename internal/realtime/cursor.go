package realtime

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
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

// convoKey is how a cursor names a conversation: the first 8 bytes of its
// SHA-256, base64url. Cursors stay short and carry no conversation id in
// clear (they travel in URLs, which end up in access logs); a stream maps
// keys back through the conversations it follows.
func convoKey(convoID string) string {
	sum := sha256.Sum256([]byte(convoID))
	return base64.RawURLEncoding.EncodeToString(sum[:8])
}

// convoKeyLen is the length of a convoKey.
const convoKeyLen = 11

// encode returns the opaque cursor string of p. It is deterministic, so
// equal positions encode equally.
func (p *position) encode() string {
	keyed := make(map[string]int64, len(p.Convos))
	for id, c := range p.Convos {
		if c > p.Floor {
			keyed[convoKey(id)] = c
		}
	}
	return token{Floor: p.Floor, Keys: keyed}.encode()
}

// token is a decoded cursor: a floor and exceptions keyed by convoKey.
type token struct {
	Floor int64
	Keys  map[string]int64
}

func (t token) encode() string {
	var b strings.Builder
	b.WriteString(cursorVersion)
	b.WriteByte('.')
	b.WriteString(strconv.FormatInt(t.Floor, 10))
	keys := make([]string, 0, len(t.Keys))
	for k := range t.Keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte('&')
		b.WriteString(k)
		b.WriteByte('=')
		// Offsets from the floor keep busy streams' cursors short.
		b.WriteString(strconv.FormatInt(t.Keys[k]-t.Floor, 10))
	}
	return base64.RawURLEncoding.EncodeToString([]byte(b.String()))
}

// resolve maps t onto the conversations a stream follows. A key shared by
// two of them (a hash collision) is dropped for both: they fall back to
// the floor, which can repeat events but never skip one.
func (t token) resolve(convos map[string]struct{}) position {
	p := position{Floor: t.Floor}
	byKey := make(map[string][]string)
	for c := range convos {
		k := convoKey(c)
		byKey[k] = append(byKey[k], c)
	}
	for k, c := range t.Keys {
		if ids := byKey[k]; len(ids) == 1 {
			p.mark(ids[0], c)
		}
	}
	return p
}

// maxCursorLen bounds a cursor a client may send.
const maxCursorLen = 16 << 10

// decodeCursor parses a cursor made by encode.
func decodeCursor(s string) (token, error) {
	bad := func(why string) (token, error) {
		return token{}, fmt.Errorf("decode cursor: %s: %w", why, ErrInvalidCursor)
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
	t := token{Floor: floor}
	for _, part := range parts[1:] {
		k, v, ok := strings.Cut(part, "=")
		if _, err := base64.RawURLEncoding.DecodeString(k); !ok || err != nil || len(k) != convoKeyLen {
			return bad("bad conversation")
		}
		off, err := strconv.ParseInt(v, 10, 64)
		if err != nil || off <= 0 || off > 1<<62-floor {
			return bad("bad offset")
		}
		if t.Keys == nil {
			t.Keys = make(map[string]int64)
		}
		t.Keys[k] = floor + off
	}
	return t, nil
}
