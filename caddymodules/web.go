package caddymodules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/fileserver"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/web"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
	webclient "github.com/cairn-chat/cairn-caddy/web"
)

func init() {
	caddy.RegisterModule(new(Web))
	httpcaddyfile.RegisterHandlerDirective("cairn_web", parseWeb)
}

// Web is the web face of an instance. It serves a built single-page web
// client (a directory, or the reference client embedded in the binary) with
// the instance config injected into index.html as a non-executable JSON
// block (<script type="application/json" id="cairn-config">), the same
// config at /config.json, and two server-rendered pages: /connect (the
// service URL, the service DID and a QR code of the connect URI) and
// /download (the client builds, the visitor's OS first, with checksums).
//
// Files are served by Caddy's file_server, with precompressed .br and .gz
// siblings when the client accepts them. Paths that are no file get
// index.html, so client-side routes work; /xrpc/… and /.well-known/… never
// do: they answer 404 here and belong to handlers before this one.
// index.html, /config.json and the pages are sent with Cache-Control
// no-cache; hashed assets (name.<hash>.js|css) with a year and immutable.
// /_cairn/ is reserved for the pages' own stylesheets.
//
// Nothing here weakens the CSP: no inline script is ever written.
//
// Caddyfile (docs/web.md):
//
//	cairn_web [<matcher>] {
//	    root <directory of a built client; default: the embedded reference client>
//	    config {
//	        name        <instance name>
//	        domain      <public hostname>
//	        service_url <https://…; default https://<domain>>
//	        service_did <did:web:… | did:plc:…>
//	        branding {
//	            accent_color <rrggbb | "#rrggbb">
//	            logo_url     </path/on/this/site.svg>
//	            tagline      <text>
//	        }
//	        feature <name> [on|off]
//	        limit   <name> <integer>
//	    }
//	    download <name> {
//	        os     windows|macos|linux|android|ios
//	        arch   <amd64|arm64|universal|…>
//	        url    <https://… | /path>
//	        sha256 <64 hex>
//	        size   <bytes>
//	    }
//	}
type Web struct {
	// Root is the directory of a built web client (holding index.html).
	// Empty serves the reference client embedded in the binary.
	Root string `json:"root,omitempty"`
	// Config is the instance configuration given to clients. Everything in
	// it is public.
	Config web.Config `json:"config"`
	// Downloads are the client builds listed on /download.
	Downloads []web.Download `json:"downloads,omitempty"`

	site      *web.Site
	client    fs.FS
	files     *fileserver.FileServer
	pageFiles *fileserver.FileServer
	config    []byte
	block     []byte
	index     *injectedIndex // fixed when the client is embedded
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Web) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_web",
		New: func() caddy.Module { return new(Web) },
	}
}

const (
	webClientFS = "cairn_web_reference_client"
	webPagesFS  = "cairn_web_pages"
	webReserved = "/_cairn/"
)

// Provision validates the config, renders what never changes (the JSON,
// the QR code) and sets up Caddy's file_server over the client.
func (w *Web) Provision(ctx caddy.Context) error {
	w.logger = ctx.Logger()
	site, err := web.NewSite(w.Config, w.Downloads)
	if err != nil {
		return fmt.Errorf("cairn_web: config: %w", err)
	}
	w.site = site
	if w.config, err = site.Config.JSON(); err != nil {
		return fmt.Errorf("cairn_web: %w", err)
	}
	if w.block, err = site.Config.Block(); err != nil {
		return fmt.Errorf("cairn_web: %w", err)
	}

	precompressed := caddy.ModuleMap{"br": json.RawMessage(`{}`), "gzip": json.RawMessage(`{}`)}
	w.files = &fileserver.FileServer{
		Hide:               []string{".*"},
		IndexNames:         []string{},
		PrecompressedRaw:   precompressed,
		PrecompressedOrder: []string{"br", "gzip"},
	}
	if w.Root == "" {
		w.client = webclient.Files()
		ctx.FileSystems().Register(webClientFS, w.client)
		w.files.FileSystem, w.files.Root = webClientFS, "."
		idx, err := readIndex(w.client, w.block)
		if err != nil {
			return fmt.Errorf("cairn_web: the embedded reference client: %w", err)
		}
		w.index = idx
	} else {
		root, err := filepath.Abs(w.Root)
		if err != nil {
			return fmt.Errorf("cairn_web: root %q: %w", w.Root, err)
		}
		// Registered under its own name, so the site's `fs` variable
		// cannot point the file server elsewhere than the files isFile
		// checks.
		w.client = os.DirFS(root)
		name := webClientFS + ":" + root
		ctx.FileSystems().Register(name, w.client)
		w.files.FileSystem, w.files.Root = name, "."
	}
	if err := w.files.Provision(ctx); err != nil {
		return fmt.Errorf("cairn_web: file server: %w", err)
	}
	ctx.FileSystems().Register(webPagesFS, web.Static())
	w.pageFiles = &fileserver.FileServer{FileSystem: webPagesFS, Root: ".", IndexNames: []string{}}
	if err := w.pageFiles.Provision(ctx); err != nil {
		return fmt.Errorf("cairn_web: file server: %w", err)
	}
	return nil
}

// Validate checks that a configured root holds a client: a directory with
// an index.html.
func (w *Web) Validate() error {
	if w.Root == "" {
		return nil
	}
	info, err := os.Stat(filepath.Join(w.Root, "index.html"))
	if err != nil {
		return fmt.Errorf("cairn_web: root %q holds no index.html (point root at the build output of the client, e.g. dist/): %w", w.Root, err)
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("cairn_web: root %q: index.html is not a file", w.Root)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. It is terminal: it
// never calls next. Like every cairn handler it answers its own errors as
// XRPC error bodies (see the package doc), including those of the
// file_server it delegates to.
func (w *Web) ServeHTTP(rw http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if err := w.serve(rw, r); err != nil {
		// An error must not go out with the caching headers meant for
		// the file (a year, immutable).
		h := rw.Header()
		h.Del("Cache-Control")
		h.Del("ETag")
		respondError(w.logger, rw, r, caddyErrorToXRPC(err))
	}
	return nil
}

func (w *Web) serve(rw http.ResponseWriter, r *http.Request) error {
	p := r.URL.Path
	if reservedForAPI(p) {
		return xrpc.Errorf(http.StatusNotFound, "NotFound", "no such method or document")
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return &xrpc.Error{Status: http.StatusMethodNotAllowed, Name: "MethodNotAllowed", Message: "only GET and HEAD", Header: http.Header{"Allow": {"GET, HEAD"}}}
	}
	switch p {
	case "/config.json":
		return serveBytes(rw, r, "application/json", w.config)
	case "/connect":
		page, err := w.site.ConnectPage()
		if err != nil {
			return err
		}
		return serveBytes(rw, r, "text/html; charset=utf-8", page)
	case "/download":
		page, err := w.site.DownloadPage(r.UserAgent())
		if err != nil {
			return err
		}
		rw.Header().Add("Vary", "User-Agent")
		return serveBytes(rw, r, "text/html; charset=utf-8", page)
	case webReserved + "theme.css":
		return serveBytes(rw, r, "text/css; charset=utf-8", w.site.ThemeCSS())
	case "/", "/index.html":
		return w.serveIndex(rw, r)
	}
	if strings.HasPrefix(p, webReserved) {
		rw.Header().Set("Cache-Control", web.RevalidateCacheControl)
		return w.pageFiles.ServeHTTP(rw, withPath(r, strings.TrimPrefix(p, webReserved[:len(webReserved)-1])), notFoundHandler)
	}
	if !w.isFile(p) {
		// A client-side route: the app decides what it shows.
		return w.serveIndex(rw, r)
	}
	if web.IsHashedAsset(p) {
		rw.Header().Set("Cache-Control", web.ImmutableCacheControl)
	} else {
		rw.Header().Set("Cache-Control", web.RevalidateCacheControl)
	}
	return w.files.ServeHTTP(rw, r, notFoundHandler)
}

// reservedForAPI reports whether p belongs to the API or to well-known
// discovery, which a client bundle must never answer.
func reservedForAPI(p string) bool {
	for _, prefix := range []string{"/xrpc", "/.well-known"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return false
}

// isFile reports whether p names a regular, non-hidden file of the client.
func (w *Web) isFile(p string) bool {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" || !fs.ValidPath(rel) {
		return false
	}
	for _, part := range strings.Split(rel, "/") {
		if strings.HasPrefix(part, ".") {
			return false
		}
	}
	info, err := fs.Stat(w.client, rel)
	return err == nil && info.Mode().IsRegular()
}

// serveIndex sends index.html with the config block: read once for the
// embedded client, at each request for a directory, so that deploying a new
// build needs no reload.
func (w *Web) serveIndex(rw http.ResponseWriter, r *http.Request) error {
	idx := w.index
	if idx == nil {
		var err error
		if idx, err = readIndex(w.client, w.block); err != nil {
			return err
		}
	}
	rw.Header().Set("ETag", idx.etag)
	return serveBytes(rw, r, "text/html; charset=utf-8", idx.body)
}

// injectedIndex is index.html with the config block, and its ETag.
type injectedIndex struct {
	body []byte
	etag string
}

func readIndex(fsys fs.FS, block []byte) (*injectedIndex, error) {
	raw, err := fs.ReadFile(fsys, "index.html")
	if err != nil {
		return nil, fmt.Errorf("read index.html: %w", err)
	}
	body := web.Inject(raw, block)
	sum := sha256.Sum256(body)
	return &injectedIndex{body: body, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}, nil
}

// serveBytes answers with b, no-cache, honouring conditional requests when
// an ETag was set.
func serveBytes(rw http.ResponseWriter, r *http.Request, contentType string, b []byte) error {
	h := rw.Header()
	h.Set("Content-Type", contentType)
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", web.RevalidateCacheControl)
	}
	if h.Get("ETag") == "" {
		sum := sha256.Sum256(b)
		h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	}
	http.ServeContent(rw, r, "", time.Time{}, bytes.NewReader(b))
	return nil
}

func withPath(r *http.Request, p string) *http.Request {
	r2 := r.Clone(r.Context())
	r2.URL.Path = p
	r2.URL.RawPath = ""
	return r2
}

// notFoundHandler is the file_server's next: a file that vanished between
// the check and the serving.
var notFoundHandler = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
	return xrpc.Errorf(http.StatusNotFound, "NotFound", "no such file")
})

func parseWeb(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Web)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (w *Web) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	// A first argument would be a path matcher (Caddy reads one starting
	// with / as such), so the directory is the root option, not an
	// argument.
	if d.NextArg() {
		return d.Errf("cairn_web takes no argument: set the client's directory with root <dir> in its block")
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "root":
			if !d.Args(&w.Root) || d.NextArg() {
				return d.Errf("root takes one directory")
			}
		case "config":
			if d.NextArg() {
				return d.ArgErr()
			}
			if err := unmarshalWebConfig(d, &w.Config); err != nil {
				return err
			}
		case "download":
			var dl web.Download
			if !d.Args(&dl.Name) || d.NextArg() {
				return d.Errf("download takes one name (quote it) and a block")
			}
			if err := unmarshalDownload(d, &dl); err != nil {
				return err
			}
			w.Downloads = append(w.Downloads, dl)
		default:
			return d.Errf("unknown cairn_web option %q (root, config, download)", d.Val())
		}
	}
	return nil
}

func unmarshalWebConfig(d *caddyfile.Dispenser, c *web.Config) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		switch key {
		case "name", "domain", "service_url", "service_did":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.Errf("config %s takes one value (quote values with spaces)", key)
			}
			*map[string]*string{"name": &c.Name, "domain": &c.Domain, "service_url": &c.ServiceURL, "service_did": &c.ServiceDID}[key] = v
		case "branding":
			if d.NextArg() {
				return d.ArgErr()
			}
			for nb := d.Nesting(); d.NextBlock(nb); {
				bkey := d.Val()
				var v string
				if !d.Args(&v) || d.NextArg() {
					return d.Errf("branding %s takes one value (write a colour as 0b6e4f or \"#0b6e4f\": a bare # starts a comment)", bkey)
				}
				switch bkey {
				case "accent_color":
					// A bare # starts a Caddyfile comment: accept the
					// colour without it, or quoted.
					if !strings.HasPrefix(v, "#") {
						v = "#" + v
					}
					c.Branding.AccentColor = v
				case "logo_url":
					c.Branding.LogoURL = v
				case "tagline":
					c.Branding.Tagline = v
				default:
					return d.Errf("unknown branding option %q (accent_color, logo_url, tagline)", bkey)
				}
			}
		case "feature":
			var name string
			if !d.Args(&name) {
				return d.Errf("feature takes a name and optionally on or off")
			}
			on := true
			if d.NextArg() {
				switch d.Val() {
				case "on":
				case "off":
					on = false
				default:
					return d.Errf("feature %s: %q is neither on nor off", name, d.Val())
				}
			}
			if d.NextArg() {
				return d.ArgErr()
			}
			if c.Features == nil {
				c.Features = map[string]bool{}
			}
			c.Features[name] = on
		case "limit":
			var name, value string
			if !d.Args(&name, &value) || d.NextArg() {
				return d.Errf("limit takes a name and an integer")
			}
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return d.Errf("limit %s: %q is not an integer", name, value)
			}
			if c.Limits == nil {
				c.Limits = map[string]int64{}
			}
			c.Limits[name] = n
		default:
			return d.Errf("unknown config option %q (name, domain, service_url, service_did, branding, feature, limit)", key)
		}
	}
	return nil
}

func unmarshalDownload(d *caddyfile.Dispenser, dl *web.Download) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		var v string
		if !d.Args(&v) || d.NextArg() {
			return d.Errf("download %s: %s takes one value", dl.Name, key)
		}
		switch key {
		case "os":
			dl.OS = v
		case "arch":
			dl.Arch = v
		case "url":
			dl.URL = v
		case "sha256":
			dl.SHA256 = strings.ToLower(v)
		case "size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return d.Errf("download %s: size %q is not a number of bytes", dl.Name, v)
			}
			dl.Size = n
		default:
			return d.Errf("unknown download option %q (os, arch, url, sha256, size)", key)
		}
	}
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Web)(nil)
	_ caddy.Validator             = (*Web)(nil)
	_ caddyhttp.MiddlewareHandler = (*Web)(nil)
	_ caddyfile.Unmarshaler       = (*Web)(nil)
)
