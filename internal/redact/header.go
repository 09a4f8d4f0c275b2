package redact

import (
	"net/http"
	"slices"
)

// DefaultKeepHeaders lists the request and response headers whose values
// are known to be harmless in a log: how the message is framed and
// negotiated, the request ID, and the rate-limit and caching answers.
// Everything else is hashed: credentials, cookies, device IDs, event
// cursors (Last-Event-ID), WebSocket subprotocols, the User-Agent (a
// fingerprint), and any header nobody listed. The client addresses a proxy
// adds (IsIPHeader) follow the IP policy instead.
func DefaultKeepHeaders() []string {
	return []string{
		"Accept", "Accept-Encoding", "Cache-Control", "Connection",
		"Content-Encoding", "Content-Length", "Content-Type", "Date",
		"Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset",
		"Retry-After", "Sec-Websocket-Version", "Te", "Upgrade", "Vary",
		"X-Request-Id",
	}
}

// Header returns a copy of hdr in which the values of every header not
// named in keep are replaced by their keyed hashes, except the headers
// that carry client addresses (IsIPHeader), which are rendered under ips.
// Names in keep must be in canonical form (http.CanonicalHeaderKey);
// hdr's keys are, as net/http stores them.
func (h *Hasher) Header(hdr http.Header, keep []string, ips IPPolicy) http.Header {
	out := make(http.Header, len(hdr))
	for name, vs := range hdr {
		if slices.Contains(keep, name) {
			out[name] = vs
			continue
		}
		ipHeader := IsIPHeader(name)
		hashed := make([]string, len(vs))
		for i, v := range vs {
			if ipHeader {
				hashed[i] = h.IP(v, ips)
			} else {
				hashed[i] = h.Hash(v)
			}
		}
		out[name] = hashed
	}
	return out
}
