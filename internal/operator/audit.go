package operator

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/operatorauth"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Limits of GET /operator/v1/audit.
const (
	DefaultAuditLimit = 50
	MaxAuditLimit     = 500
)

// AuditEvent is one audit row as the API returns it.
type AuditEvent struct {
	Seq      int64           `json:"seq"`
	Time     time.Time       `json:"time"`
	Type     string          `json:"type"`
	Actor    string          `json:"actor,omitempty"`
	Target   string          `json:"target,omitempty"`
	Metadata json.RawMessage `json:"metadata"`
	IP       string          `json:"ip,omitempty"`
}

// AuditPage is the response of GET /operator/v1/audit.
type AuditPage struct {
	Events []AuditEvent `json:"events"`
	// Cursor fetches the next (older) page; absent after the last.
	Cursor string `json:"cursor,omitempty"`
}

// cursorPrefix versions the opaque cursor.
const cursorPrefix = "a1:"

// EncodeCursor returns the opaque cursor of the page after seq.
func EncodeCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.FormatInt(seq, 10)))
}

// ErrInvalidCursor means a cursor is not one EncodeCursor made.
var ErrInvalidCursor = errors.New("invalid cursor")

// ParseCursor returns the seq a cursor from EncodeCursor holds. It accepts
// exactly what EncodeCursor produces.
func ParseCursor(c string) (int64, error) {
	if len(c) > 64 {
		return 0, ErrInvalidCursor
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(c)
	if err != nil {
		return 0, ErrInvalidCursor
	}
	digits, ok := strings.CutPrefix(string(raw), cursorPrefix)
	if !ok {
		return 0, ErrInvalidCursor
	}
	seq, err := strconv.ParseInt(digits, 10, 64)
	// The base64 decoder skips \r and \n even in strict mode, so compare
	// with the canonical encoding rather than trust the decode alone.
	if err != nil || seq <= 0 || strconv.FormatInt(seq, 10) != digits || EncodeCursor(seq) != c {
		return 0, ErrInvalidCursor
	}
	return seq, nil
}

// ParseAuditQuery reads the filter of GET /operator/v1/audit: type
// (repeatable), actor, since and until (RFC 3339), limit (1 to 500) and
// cursor. Unknown parameters are refused.
func ParseAuditQuery(q url.Values) (store.AuditFilter, error) {
	f := store.AuditFilter{Limit: DefaultAuditLimit}
	for k, vs := range q {
		if len(vs) != 1 && k != "type" {
			return f, fmt.Errorf("%s: give it once", k)
		}
		v := vs[0]
		switch k {
		case "type":
			for _, v := range vs {
				if v == "" || len(v) > 64 {
					return f, fmt.Errorf("type %q: want an event type such as ban.add", v)
				}
				f.Types = append(f.Types, v)
			}
			if len(f.Types) > 32 {
				return f, errors.New("type: at most 32")
			}
		case "actor":
			if v == "" || len(v) > 512 {
				return f, errors.New("actor: want 1 to 512 bytes")
			}
			f.Actor = v
		case "since", "until":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return f, fmt.Errorf("%s %q: want an RFC 3339 time such as 2026-11-30T04:00:00Z", k, v)
			}
			if k == "since" {
				f.Since = t
			} else {
				f.Until = t
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxAuditLimit || strconv.Itoa(n) != v {
				return f, fmt.Errorf("limit %q: want a whole number from 1 to %d", v, MaxAuditLimit)
			}
			f.Limit = n
		case "cursor":
			seq, err := ParseCursor(v)
			if err != nil {
				return f, fmt.Errorf("cursor: %w", err)
			}
			f.BeforeSeq = seq
		default:
			return f, fmt.Errorf("unknown parameter %q: want type, actor, since, until, limit or cursor", k)
		}
	}
	return f, nil
}

// auditRoute serves GET /operator/v1/audit: newest first, paged.
func auditRoute(log store.AuditLog) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ *operatorauth.Operator) error {
		f, err := ParseAuditQuery(r.URL.Query())
		if err != nil {
			return badRequest("%v", err)
		}
		limit := f.Limit
		f.Limit = limit + 1 // one more tells whether another page exists
		rows, err := log.AuditRecords(r.Context(), f)
		if err != nil {
			return fmt.Errorf("query audit log: %w", err)
		}
		page := AuditPage{Events: make([]AuditEvent, 0, min(len(rows), limit))}
		for i, row := range rows {
			if i == limit {
				page.Cursor = EncodeCursor(rows[limit-1].Seq)
				break
			}
			meta := json.RawMessage(row.Metadata)
			if !json.Valid(meta) {
				meta = json.RawMessage(`null`) // altered outside cairn: `audit verify` reports it
			}
			page.Events = append(page.Events, AuditEvent{Seq: row.Seq, Time: row.Time, Type: row.Type,
				Actor: row.Actor, Target: row.Target, Metadata: meta, IP: row.IP})
		}
		xrpc.WriteJSON(w, http.StatusOK, page)
		return nil
	}
}
