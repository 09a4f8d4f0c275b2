package caddymodules_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/requestid"
)

// edgeComparisonCaddyfile serves the same routes twice: on {PORT} behind
// the three separate directives, on {METRICS} behind cairn_edge with the
// same options. The zones have different names only so that the two sites
// do not share buckets in the one process.
const edgeComparisonCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
}
(routes) {
	handle /xrpc/* {
		header Content-Type application/json
		respond "{}"
	}
	handle /fail {
		error 503
	}
	handle /up/* {
		reverse_proxy {UPSTREAM}
	}
	respond "ok"
	handle_errors {
		cairn_xrpc_errors
	}
}
http://127.0.0.1:{PORT} {
	log
	cairn_request_id
	cairn_security_headers {
		X-Extra "1"
	}
	cairn_rate_limit {
		backend memory
		zone a {
			key ip
			rate 6/1h
		}
	}
	import routes
}
http://127.0.0.1:{METRICS} {
	log
	cairn_edge {
		headers {
			X-Extra "1"
		}
		rate_limit {
			backend memory
			zone b {
				key ip
				rate 6/1h
			}
		}
	}
	import routes
}
`

// TestEdgeAnswersAsTheSeparateDirectives sends the same requests to both
// configurations and requires the same status, headers, body and access
// log field for each: a plain response, an XRPC response, Caddy's error
// route, a proxied upstream replacing the headers, an inbound request ID,
// and the refusals once the zone is spent.
func TestEdgeAnswersAsTheSeparateDirectives(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Server", "upstream/1.0")
		w.Header().Set("X-Frame-Options", "ALLOWALL")
		w.Header().Set("X-Extra", "upstream")
		w.WriteHeader(http.StatusTeapot)
	}))
	defer upstream.Close()
	g := startPlain(t, strings.ReplaceAll(edgeComparisonCaddyfile, "{UPSTREAM}", strings.TrimPrefix(upstream.URL, "http://")), gatewaytest.Options{})
	sites := map[string]int{"separate directives": g.port, "cairn_edge": g.metrics}

	cases := []struct {
		name, path, inboundID string
		status                int
	}{
		{"plain", "/", "", http.StatusOK},
		{"xrpc", "/xrpc/blue.catbird.mls.getConvos", "", http.StatusOK},
		{"error route", "/fail", "", http.StatusServiceUnavailable},
		{"proxied upstream", "/up/x", "", http.StatusTeapot},
		{"inbound request id", "/", "client-chosen-id.42", http.StatusOK},
		{"malformed inbound request id", "/", "bad id!", http.StatusOK},
		{"refused", "/xrpc/blue.catbird.mls.getConvos", "", http.StatusTooManyRequests},
		{"refused, plain path", "/", "", http.StatusTooManyRequests},
	}
	type answer struct {
		header http.Header
		body   string
	}
	got := map[string][]answer{}
	var ids []string
	for name, port := range sites {
		for _, tc := range cases {
			header := http.Header{}
			if tc.inboundID != "" {
				header.Set("X-Request-ID", tc.inboundID)
			}
			resp, body := do(t, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(port)+tc.path, header)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s, %s: status %d, want %d: %s", name, tc.name, resp.StatusCode, tc.status, body)
			}
			assertSecurityHeaders(t, name+", "+tc.name, resp)
			id := resp.Header.Get("X-Request-ID")
			switch {
			case requestid.Valid(tc.inboundID) && id != tc.inboundID:
				t.Errorf("%s, %s: X-Request-ID %q, want the inbound %q", name, tc.name, id, tc.inboundID)
			case !requestid.Valid(id) || id == tc.inboundID && !requestid.Valid(tc.inboundID):
				t.Errorf("%s, %s: X-Request-ID %q", name, tc.name, id)
			}
			ids = append(ids, id)
			h := resp.Header.Clone()
			for _, varying := range []string{"Date", "X-Request-Id", "Ratelimit-Reset", "Retry-After"} {
				if !requestid.Valid(tc.inboundID) || varying != "X-Request-Id" {
					h.Del(varying)
				}
			}
			got[name] = append(got[name], answer{h, strings.ReplaceAll(body, `\"b\"`, `\"a\"`)})
		}
	}
	// Access log entries are written after the response: wait for the last.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g.Logs(), `"request_id":"`+ids[len(ids)-1]+`"`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range ids {
		if !strings.Contains(g.Logs(), `"request_id":"`+id+`"`) {
			t.Errorf("no access log entry with request_id %q", id)
		}
	}
	for i, tc := range cases {
		sep, edge := got["separate directives"][i], got["cairn_edge"][i]
		if !maps.EqualFunc(sep.header, edge.header, slices.Equal) {
			t.Errorf("%s: headers differ\nseparate: %v\nedge:     %v", tc.name, sep.header, edge.header)
		}
		if sep.body != edge.body {
			t.Errorf("%s: bodies differ\nseparate: %s\nedge:     %s", tc.name, sep.body, edge.body)
		}
	}
	refused := got["cairn_edge"][len(cases)-1]
	var xe struct{ Error string }
	if json.Unmarshal([]byte(refused.body), &xe) != nil || xe.Error != "RateLimitExceeded" || refused.header.Get("Ratelimit-Limit") == "" {
		t.Errorf("cairn_edge refusal: %v %s", refused.header, refused.body)
	}
}

func TestEdgeRefusesDIDZones(t *testing.T) {
	out, ok := validate(t, "{\n}\nhttp://127.0.0.1:1 {\n\tcairn_edge {\n\t\trate_limit {\n\t\t\tpreset api\n\t\t}\n\t}\n\trespond ok\n}\n")
	if ok || !strings.Contains(out, "keyed by did") {
		t.Fatalf("validate accepted DID zones in cairn_edge: %s", out)
	}
}

// TestAdmittedHeadersOff checks that admitted_headers off leaves the
// RateLimit-* headers off allowed responses, in cairn_rate_limit and in
// cairn_edge, and that refusals still carry them.
func TestAdmittedHeadersOff(t *testing.T) {
	g := startPlain(t, `{
	admin 127.0.0.1:{ADMIN}
}
http://127.0.0.1:{PORT} {
	cairn_rate_limit {
		backend memory
		admitted_headers off
		zone a {
			key ip
			rate 1/1h
		}
	}
	respond "ok"
}
http://127.0.0.1:{METRICS} {
	cairn_edge {
		rate_limit {
			backend memory
			admitted_headers off
			zone b {
				key ip
				rate 1/1h
			}
		}
	}
	respond "ok"
}
`, gatewaytest.Options{})
	for name, port := range map[string]int{"cairn_rate_limit": g.port, "cairn_edge": g.metrics} {
		url := "http://127.0.0.1:" + strconv.Itoa(port) + "/xrpc/blue.catbird.mls.getConvos"
		resp, body := do(t, http.MethodGet, url, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", name, resp.StatusCode, body)
		}
		for _, h := range []string{"Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset"} {
			if v := resp.Header.Values(h); len(v) > 0 {
				t.Errorf("%s: allowed response carries %s: %q", name, h, v)
			}
		}
		resp, body = do(t, http.MethodGet, url, nil)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("%s: second request: status %d: %s", name, resp.StatusCode, body)
		}
		if resp.Header.Get("Ratelimit-Limit") != "1" || resp.Header.Get("Ratelimit-Remaining") != "0" || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: refusal headers %v", name, resp.Header)
		}
	}
}
