// Package cairncaddy is what a Caddy build imports to plug cairn's modules
// in: `xcaddy build --with github.com/cairn-chat/cairn-caddy` writes
// `import _ "github.com/cairn-chat/cairn-caddy"` into the main package it
// generates, and this package registers every cairn module and command by
// importing caddymodules. cmd/cairn-caddy is the same build without xcaddy.
package cairncaddy

import (
	// Registers the cairn Caddy modules and the cairn-caddy subcommands.
	_ "github.com/cairn-chat/cairn-caddy/caddymodules"
)
