// Command headerfloor measures what the edge pipeline's response headers
// cost with no Caddy and no cairn code at all: two bare net/http servers,
// one answering "ok", the other answering "ok" with the pipeline's
// response headers assigned straight into the header map. Run it through
// test/bench/header-floor.sh, which drives both with wrk and reports the
// server CPU time per request of each.
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
)

func main() {
	plainAddr := flag.String("plain", "127.0.0.1:28080", "address of the plain server")
	headersAddr := flag.String("headers", "127.0.0.1:28082", "address of the server sending the pipeline's headers")
	flag.Parse()

	// The headers of a cairn pipeline response to an XRPC GET, as
	// test/bench/edge.sh's same-headers site sends them.
	pipeline := map[string][]string{
		"Cache-Control":             {"no-store"},
		"Content-Security-Policy":   {"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self' wss:"},
		"Permissions-Policy":        {"camera=(), microphone=(), geolocation=()"},
		"Ratelimit-Limit":           {"1000000"},
		"Ratelimit-Remaining":       {"999999"},
		"Ratelimit-Reset":           {"1"},
		"Referrer-Policy":           {"strict-origin-when-cross-origin"},
		"Strict-Transport-Security": {"max-age=31536000; includeSubDomains"},
		"X-Content-Type-Options":    {"nosniff"},
		"X-Frame-Options":           {"DENY"},
		"X-Request-Id":              {"01a208eb-875b-79d6-a217-06374d5c9d9d"},
	}
	body := []byte("ok")
	respond := func(extra map[string][]string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			h := w.Header()
			for k, v := range extra {
				h[k] = v
			}
			h["Content-Type"] = []string{"text/plain; charset=utf-8"}
			h["Content-Length"] = []string{strconv.Itoa(len(body))}
			_, _ = w.Write(body)
		}
	}
	errs := make(chan error, 2)
	go func() { errs <- http.ListenAndServe(*plainAddr, respond(nil)) }()
	go func() { errs <- http.ListenAndServe(*headersAddr, respond(pipeline)) }()
	log.Fatal(<-errs)
}
