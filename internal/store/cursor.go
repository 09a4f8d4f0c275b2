package store

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// PageCursor is the decoded form of the opaque keyset cursors the store
// hands out: a time and a tie-breaking identifier of the last row returned.
type PageCursor struct {
	At time.Time
	ID string
}

// EncodeCursor returns the opaque string form of c.
func EncodeCursor(c PageCursor) string {
	raw := strconv.FormatInt(c.At.UnixMilli(), 10) + ":" + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor parses a cursor made by EncodeCursor. The empty string
// decodes to the zero cursor with ok false; anything malformed is
// ErrInvalidCursor.
func DecodeCursor(s string) (c PageCursor, ok bool, err error) {
	if s == "" {
		return PageCursor{}, false, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return PageCursor{}, false, fmt.Errorf("decode cursor: %w", ErrInvalidCursor)
	}
	ms, id, found := strings.Cut(string(raw), ":")
	// Every identifier a cursor carries is stored text, which is UTF-8
	// without NUL; PostgreSQL refuses anything else as a query argument,
	// so a forged one must stop here, not fail the query.
	if !found || id == "" || !utf8.ValidString(id) || strings.ContainsRune(id, 0) {
		return PageCursor{}, false, fmt.Errorf("decode cursor: %w", ErrInvalidCursor)
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return PageCursor{}, false, fmt.Errorf("decode cursor: %w", ErrInvalidCursor)
	}
	return PageCursor{At: time.UnixMilli(n).UTC(), ID: id}, true, nil
}

// Digest returns the value an idempotency record is stored under: a SHA-256
// of the caller, endpoint and key, so the table holds no DID in clear.
func (k IdempotencyKey) Digest() []byte {
	h := sha256.New()
	for _, part := range []string{k.CallerDID, k.NSID, k.Key} {
		h.Write([]byte(strconv.Itoa(len(part))))
		h.Write([]byte{':'})
		h.Write([]byte(part))
	}
	return h.Sum(nil)
}
