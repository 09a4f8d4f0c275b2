// Package web is cairn-caddy's reference web client: static files, no
// framework, embedded in the binary so that an instance without a client
// bundle of its own still has a landing page. It reads the instance config
// from the JSON block cairn_web injects into index.html and shows the
// instance's name and status with links to /connect and /download.
//
// A real client bundle replaces it with cairn_web's root (docs/web.md).
package web

import (
	"embed"
	"io/fs"
)

//go:embed index.html app.js
var files embed.FS

// Files is the reference client: index.html and app.js.
func Files() fs.FS { return files }
