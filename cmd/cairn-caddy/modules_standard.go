//go:build caddy_standard

package main

// All of Caddy's standard modules, as xcaddy and stock Caddy build them
// (modules.go leaves two out).
import _ "github.com/caddyserver/caddy/v2/modules/standard"
