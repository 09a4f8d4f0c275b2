// Command cairn-caddy is Caddy with cairn's modules: an edge gateway and MLS
// delivery service for end-to-end-encrypted atproto group chat.
//
// It accepts every Caddy subcommand: `cairn-caddy run --config Caddyfile`,
// `cairn-caddy validate`, `cairn-caddy list-modules`, and so on.
//
// Which of Caddy's own modules it carries is in modules.go (the default:
// Caddy's standard set less what a cairn node cannot use) and
// modules_standard.go (-tags caddy_standard: all of Caddy's standard set,
// as xcaddy builds it).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/cairn-chat/cairn-caddy/caddymodules"
)

func main() {
	caddycmd.Main()
}
