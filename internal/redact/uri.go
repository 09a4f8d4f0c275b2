package redact

import (
	"net/url"
	"strings"
)

// Unparseable replaces a query string that cannot be parsed, so a value
// that might carry an identity never reaches a log as it was sent.
const Unparseable = "[unparseable]"

// URI returns the request target uri (a path with an optional query, or an
// absolute URL) with the values of the named query parameters replaced by
// their keyed hashes. Parameter names match exactly, as XRPC parameters are
// case-sensitive; a parameter that repeats has every value hashed. A query
// that cannot be parsed is replaced whole by Unparseable, keeping the path:
// filtering fails closed.
func (h *Hasher) URI(uri string, params []string) string {
	pathPart, rawQuery, hasQuery := strings.Cut(uri, "?")
	if !hasQuery {
		return uri
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return pathPart + "?" + Unparseable
	}
	changed := false
	for _, p := range params {
		vs, ok := q[p]
		if !ok {
			continue
		}
		for i := range vs {
			vs[i] = h.Hash(vs[i])
		}
		changed = true
	}
	if !changed {
		return uri
	}
	return pathPart + "?" + q.Encode()
}
