package redact

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Unparseable replaces a query string that cannot be parsed, so a value
// that might carry an identity never reaches a log as it was sent.
const Unparseable = "[unparseable]"

// DefaultKeepQuery lists the query parameters of the blue.catbird.mls
// lexicons whose values are known to be harmless in a log: page sizes, a
// boolean, and enumerations. Every other parameter (convoId, dids, did,
// cursor, deviceId, ticket, sinceSeq, … and any name no lexicon defines)
// has its value hashed.
func DefaultKeepQuery() []string {
	return []string{"limit", "cipherSuite", "includeRevoked", "status"}
}

// harmlessValue is the shape a kept parameter's value must have to be
// logged as sent: a short run of letters, digits and underscores. A DID
// (colons), a handle or a host (dots), an e-mail address (@), a token or
// anything escaped fails it and is hashed, even under a kept name, so a
// client cannot smuggle an identity into the log as `limit=did:plc:…`.
var harmlessValue = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// parameterName is the shape of a lexicon parameter name. A name of any
// other shape is hashed like a value, since a client could send an
// identity as a name (`?did:plc:…`).
var parameterName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,63}$`)

// URI returns the request target uri (a path with an optional query, or an
// absolute URL) with every query value replaced by its keyed hash, except
// the values of the parameters named in keep that have a harmless shape
// (letters, digits and underscores, at most 64). It is an allowlist: a
// parameter nobody listed, including one added to a lexicon later, is
// hashed. Parameter names match exactly, as XRPC parameters are
// case-sensitive; a parameter that repeats has every value treated alike,
// and a name that is not shaped like a lexicon parameter name is hashed
// too. A query that cannot be parsed is replaced whole by Unparseable,
// keeping the path: filtering fails closed. The path is kept as sent.
func (h *Hasher) URI(uri string, keep []string) string {
	pathPart, rawQuery, hasQuery := strings.Cut(uri, "?")
	if !hasQuery {
		return uri
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return pathPart + "?" + Unparseable
	}
	out := make(url.Values, len(q))
	for name, vs := range q {
		kept := slices.Contains(keep, name)
		hashed := make([]string, len(vs))
		for i, v := range vs {
			if kept && harmlessValue.MatchString(v) {
				hashed[i] = v
				continue
			}
			hashed[i] = h.Hash(v)
		}
		if !parameterName.MatchString(name) {
			name = h.Hash(name)
		}
		out[name] = append(out[name], hashed...)
	}
	return pathPart + "?" + out.Encode()
}
