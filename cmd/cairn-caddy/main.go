// Command cairn-caddy is Caddy with cairn's modules: an edge gateway and MLS
// delivery service for end-to-end-encrypted atproto group chat.
//
// It accepts every Caddy subcommand: `cairn-caddy run --config Caddyfile`,
// `cairn-caddy validate`, `cairn-caddy list-modules`, and so on.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/cairn-chat/cairn-caddy/caddymodules"
)

func main() {
	caddycmd.Main()
}
