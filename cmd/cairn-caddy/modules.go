//go:build !caddy_standard

package main

// Caddy's standard modules (github.com/caddyserver/caddy/v2/modules/standard
// and modules/caddyhttp/standard at v2.11.9), less two that a cairn node
// cannot use (docs/install.md, "What the image leaves out";
// docs/benchmarks.md for the sizes):
//
//   - modules/caddypki/acmeserver: the `acme_server` directive, which runs
//     an ACME certificate authority for other machines. It brings
//     smallstep's ACME server and, through it, the only use of smallstep's
//     database drivers (Badger v1 and v2, bbolt, MySQL, PostgreSQL), which
//     image.BuildTags then leave out. Caddy's internal CA (`tls internal`,
//     the certificate for localhost) stays: it is modules/caddypki.
//   - modules/caddyhttp/reverseproxy/fastcgi: `php_fastcgi` and the FastCGI
//     transport of reverse_proxy. reverse_proxy itself stays.
//
// Everything else stays, either because an operator may use it in front of
// cairn (reverse_proxy, basic_auth, encode, file_server, forward_auth, …)
// or because what remains imports it anyway: `templates` (sprig, goldmark,
// chroma) comes with file_server's directory browsing, and OpenTelemetry's
// exporters with Caddy's HTTP app.
//
// Build with -tags caddy_standard (modules_standard.go) for all of Caddy's
// standard set; xcaddy builds (make build) always have it.
import (
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/caddyevents"
	_ "github.com/caddyserver/caddy/v2/modules/caddyevents/eventsconfig"
	_ "github.com/caddyserver/caddy/v2/modules/caddyfs"
	_ "github.com/caddyserver/caddy/v2/modules/caddypki"
	_ "github.com/caddyserver/caddy/v2/modules/caddytls"
	_ "github.com/caddyserver/caddy/v2/modules/caddytls/distributedstek"
	_ "github.com/caddyserver/caddy/v2/modules/caddytls/standardstek"
	_ "github.com/caddyserver/caddy/v2/modules/filestorage"
	_ "github.com/caddyserver/caddy/v2/modules/logging"
	_ "github.com/caddyserver/caddy/v2/modules/metrics"

	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/encode"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/encode/brotli"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/encode/gzip"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/encode/zstd"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/headers"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/intercept"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/logging"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/map"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/proxyprotocol"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/push"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/requestbody"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy/forwardauth"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/rewrite"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/timeouts"
	_ "github.com/caddyserver/caddy/v2/modules/caddyhttp/tracing"
)
