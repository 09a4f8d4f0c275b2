package caddymodules

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
)

// BenchmarkPipeline measures what the edge modules add to a request, in
// process and on one goroutine, so that CPU time and allocations per request
// can be read without the noise of a loaded machine: cpu-ns/op is the
// process's CPU time per request (garbage collection included), which other
// load on the machine does not inflate as it does ns/op. Each sub-benchmark runs
// the same request (GET /xrpc/blue.catbird.mls.getConvos, as test/bench/edge.sh
// sends) with the context Caddy's server builds for it through a chain ending
// in `respond "ok"`:
//
//   - respond: the terminal handler alone, the baseline;
//   - respond_same_headers: the pipeline's response headers written by
//     Caddy's `header` directive, as edge.sh's third site;
//   - request_id, xrpc_metrics, security_headers, rate_limit: one module in
//     front of it (subtract the baseline for the module's cost);
//   - pipeline: all four, in edge.sh's order and configuration.
//
// The handlers are provisioned from a running cairn app, the way Caddy
// provisions them, so ServeHTTP runs the production code paths.
func BenchmarkPipeline(b *testing.B) {
	ctx := benchCairnContext(b)
	requestID := new(RequestID)
	xrpcMetrics := new(XRPCMetrics)
	secHeaders := new(SecurityHeaders)
	rateLimit := &RateLimit{
		Backend: backendMemory,
		Zones: []*ratelimit.Zone{
			{Name: "ip", Key: ratelimit.KeyIP, Rate: "1000000/1s"},
			{Name: "did", Key: ratelimit.KeyDID, Rate: "1000000/1s", MatchNSIDs: []string{"blue.catbird.mls.*"}},
		},
	}
	for _, p := range []caddy.Provisioner{requestID, xrpcMetrics, secHeaders, rateLimit} {
		if err := p.Provision(ctx); err != nil {
			b.Fatal(err)
		}
	}
	respond := caddyhttp.StaticResponse{Body: "ok"}
	// The response headers the pipeline writes, written instead by Caddy's
	// `header` directive (deferred, as `-Server` makes it): edge.sh's
	// third site, which prices the header bytes without cairn's code.
	sameHeaders := &headers.Handler{Response: &headers.RespHeaderOps{Deferred: true, HeaderOps: &headers.HeaderOps{
		Delete: []string{"Server"},
		Set: http.Header{
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
		},
	}}}
	if err := sameHeaders.Provision(ctx); err != nil {
		b.Fatal(err)
	}

	for _, bc := range []struct {
		name  string
		chain []caddyhttp.MiddlewareHandler
	}{
		{"respond", nil},
		{"respond_same_headers", []caddyhttp.MiddlewareHandler{sameHeaders}},
		{"request_id", []caddyhttp.MiddlewareHandler{requestID}},
		{"xrpc_metrics", []caddyhttp.MiddlewareHandler{xrpcMetrics}},
		{"security_headers", []caddyhttp.MiddlewareHandler{secHeaders}},
		{"rate_limit", []caddyhttp.MiddlewareHandler{rateLimit}},
		{"pipeline", []caddyhttp.MiddlewareHandler{requestID, xrpcMetrics, secHeaders, rateLimit}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := benchChain(append(bc.chain, respond))
			conn := benchConnRequest(b, "/xrpc/blue.catbird.mls.getConvos")
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				w := &benchWriter{header: make(http.Header)}
				if err := h.ServeHTTP(w, benchCaddyRequest(conn, w)); err != nil {
					b.Fatal(err)
				}
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU returns the CPU time the process has used, in nanoseconds.
// Unlike wall time it does not grow when other processes compete for the
// machine, and it includes the garbage collector's background work.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// benchCairnContext runs a config holding only the cairn app and returns
// the active context, from which ctx.App("cairn") finds it.
func benchCairnContext(b *testing.B) caddy.Context {
	b.Helper()
	cfg := fmt.Sprintf(`{
		"admin": {"disabled": true, "config": {"persist": false}},
		"logging": {"logs": {"default": {"level": "WARN"}}},
		"apps": {"cairn": {"data_dir": %q, "log_hash_key": %q}}
	}`, b.TempDir(), strings.Repeat("k", 40))
	if err := caddy.Load([]byte(cfg), true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = caddy.Stop() })
	return caddy.ActiveContext()
}

// benchChain composes handlers the way Caddy compiles a route: each wrapped
// in a closure that looks the server up in the context before calling it.
func benchChain(handlers []caddyhttp.MiddlewareHandler) caddyhttp.Handler {
	var next caddyhttp.Handler = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	for i := len(handlers) - 1; i >= 0; i-- {
		mh, n := handlers[i], next
		next = caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			_ = r.Context().Value(caddyhttp.ServerCtxKey) // Caddy's trace check
			return mh.ServeHTTP(w, r, n)
		})
	}
	return next
}

// benchConnRequest returns a request as net/http hands it to Caddy's
// server: its context carries the http.Server, the local address and two
// cancellable layers (connection, request).
func benchConnRequest(tb testing.TB, path string) *http.Request {
	ctx := context.WithValue(context.Background(), http.ServerContextKey, &http.Server{})
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 27081})
	ctx, cancelConn := context.WithCancel(ctx)
	tb.Cleanup(cancelConn)
	ctx, cancelRequest := context.WithCancel(ctx)
	tb.Cleanup(cancelRequest)
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:27081"+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	r.RemoteAddr = "127.0.0.1:40000"
	r.RequestURI = path
	r.Header.Set("User-Agent", "wrk")
	return r
}

type benchRouteGroupKey struct{}

// benchCaddyRequest mirrors caddyhttp's prepareRequest for one request: a
// fresh replacer, vars (trusted proxy, client IP), route groups, the
// original request and extra log fields, each a context layer.
func benchCaddyRequest(conn *http.Request, w http.ResponseWriter) *http.Request {
	conn.Header.Del("X-Request-Id") // a fresh request: the ID is minted, not reused
	repl := caddy.NewReplacer()
	ctx := context.WithValue(conn.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.ServerCtxKey, (*caddyhttp.Server)(nil))
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{
		caddyhttp.TrustedProxyVarKey: false,
		caddyhttp.ClientIPVarKey:     "127.0.0.1",
	})
	ctx = context.WithValue(ctx, benchRouteGroupKey{}, make(map[string]struct{}))
	u := *conn.URL
	ctx = context.WithValue(ctx, caddyhttp.OriginalRequestCtxKey, http.Request{Method: conn.Method, RemoteAddr: conn.RemoteAddr, RequestURI: conn.RequestURI, URL: &u})
	ctx = context.WithValue(ctx, caddyhttp.ExtraLogFieldsCtxKey, new(caddyhttp.ExtraLogFields))
	r := conn.WithContext(ctx)
	w.Header()["Server"] = []string{"Caddy"}
	return r
}

// benchWriter is a response writer that keeps only the status.
type benchWriter struct {
	header http.Header
	status int
}

func (w *benchWriter) Header() http.Header { return w.header }

func (w *benchWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *benchWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}

// BenchmarkEdgeSites runs requests through Caddy's own server, in process:
// a config adapted from a Caddyfile like test/bench/edge.sh's, one site per
// case, each request handed to the site's caddyhttp.Server as net/http
// would hand it (no sockets). Unlike BenchmarkPipeline it includes what
// Caddy spends per directive — a Caddyfile site is a subroute that is
// compiled again on every request, one route per directive — so the gap
// between "respond_same_headers" and "pipeline" is what the four cairn
// directives cost a real server, less the kernel and connection work, and
// "respond_same_headers_4_vars" shows how much of that any four directives
// would cost.
func BenchmarkEdgeSites(b *testing.B) {
	const rateLimit = `cairn_rate_limit {
		backend memory
		zone ip {
			key   ip
			rate  1000000/1s
		}
		zone did {
			key   did
			rate  1000000/1s
			match nsid blue.catbird.mls.*
		}
	}`
	const ipRateLimit = `cairn_rate_limit {
		backend memory
		zone ip {
			key   ip
			rate  1000000/1s
		}
	}`
	const sameHeaders = `header {
		-Server
		Cache-Control "no-store"
		Content-Security-Policy "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self' wss:"
		Permissions-Policy "camera=(), microphone=(), geolocation=()"
		Ratelimit-Limit "1000000"
		Ratelimit-Remaining "999999"
		Ratelimit-Reset "1"
		Referrer-Policy "strict-origin-when-cross-origin"
		Strict-Transport-Security "max-age=31536000; includeSubDomains"
		X-Content-Type-Options "nosniff"
		X-Frame-Options "DENY"
		X-Request-Id "01a208eb-875b-79d6-a217-06374d5c9d9d"
	}`
	sites := []struct{ name, directives string }{
		{"respond", ""},
		{"respond_same_headers", sameHeaders},
		// Four trivial directives more: what Caddy itself spends on four
		// more handlers, whatever they do.
		{"respond_same_headers_4_vars", "vars a 1\n\tvars b 2\n\tvars c 3\n\tvars d 4\n\t" + sameHeaders},
		{"request_id", "cairn_request_id"},
		{"xrpc_metrics", "cairn_xrpc_metrics"},
		{"security_headers", "cairn_security_headers"},
		{"rate_limit", rateLimit},
		{"pipeline", "cairn_request_id\n\tcairn_xrpc_metrics\n\tcairn_security_headers\n\t" + rateLimit},
		// The issue 18 comparison: the three directives against cairn_edge
		// with the same IP zone (the edge takes no DID zones).
		{"three_directives", "cairn_request_id\n\tcairn_security_headers\n\t" + ipRateLimit},
		{"edge", "cairn_edge {\n\t\trate_limit {\n\t\t\tbackend memory\n\t\t\tzone ip {\n\t\t\t\tkey ip\n\t\t\t\trate 1000000/1s\n\t\t\t}\n\t\t}\n\t}"},
		// The peer stack's header names: no RateLimit-* on admitted
		// requests, so the response header map stays within eight entries.
		{"edge_admitted_headers_off", "cairn_edge {\n\t\trate_limit {\n\t\t\tbackend memory\n\t\t\tadmitted_headers off\n\t\t\tzone ip {\n\t\t\t\tkey ip\n\t\t\t\trate 1000000/1s\n\t\t\t}\n\t\t}\n\t}"},
	}
	var cf strings.Builder
	fmt.Fprintf(&cf, "{\n\tadmin off\n\tpersist_config off\n\tlog {\n\t\tlevel WARN\n\t}\n\tcairn {\n\t\tdata_dir %s\n\t\tlog_hash_key %s\n\t}\n}\n", b.TempDir(), strings.Repeat("k", 40))
	ports := make([]int, len(sites))
	for i, s := range sites {
		ports[i] = gatewaytest.FreePort(b)
		fmt.Fprintf(&cf, "http://127.0.0.1:%d {\n\t%s\n\trespond \"ok\"\n}\n", ports[i], s.directives)
	}
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf.String()), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = caddy.Stop() })
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		b.Fatal(err)
	}
	for i, s := range sites {
		var srv *caddyhttp.Server
		for _, candidate := range app.(*caddyhttp.App).Servers {
			if slices.Contains(candidate.Listen, fmt.Sprintf(":%d", ports[i])) {
				srv = candidate
			}
		}
		if srv == nil {
			b.Fatalf("no server listens on port %d", ports[i])
		}
		b.Run(s.name, func(b *testing.B) {
			conn := benchConnRequest(b, "/xrpc/blue.catbird.mls.getConvos")
			conn.Host = fmt.Sprintf("127.0.0.1:%d", ports[i])
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				conn.Header.Del("X-Request-Id")
				w := &benchWriter{header: make(http.Header)}
				srv.ServeHTTP(w, conn)
				if w.status != http.StatusOK {
					b.Fatalf("status %d", w.status)
				}
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
