package caddymodules_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// webXSSName is an instance name that would run a script if any page, or
// the config block, let it out as markup.
const webXSSName = `Cairn </script><script>alert(1)</script>`

const webServiceDID = "did:web:chat.example.com"

// webConnectURI is the connect URI of webCaddyfile's first site.
const webConnectURI = "cairn://connect?server=https%3A%2F%2Fchat.example.com&did=did%3Aweb%3Achat.example.com"

// webCaddyfile serves the embedded reference client with a hostile name and
// three downloads on one port, and a client bundle from a directory on
// another, both over HTTPS from Caddy's internal CA with the default
// security headers.
const webCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	skip_install_trust
	local_certs
	http_port {HTTP}
	https_port {HTTPS}
}
(front) {
	tls internal
	cairn_security_headers
	handle /xrpc/_health {
		header Content-Type application/json
		respond ` + "`" + `{"version":"cairn-caddy"}` + "`" + ` 200
	}
	handle_errors {
		cairn_xrpc_errors
	}
}
https://127.0.0.1:{HTTPS} {
	import front
	route {
		cairn_web {
			config {
				name "` + `Cairn </script><script>alert(1)</script>` + `"
				domain chat.example.com
				service_did ` + webServiceDID + `
				branding {
					accent_color 0b6e4f
					tagline "Messages <b>only</b> members can read & nobody else"
				}
				feature realtime
				limit max_message_bytes 65536
			}
			download "Cairn for Windows" {
				os windows
				arch amd64
				url https://dl.example.com/cairn-1.0-windows-amd64.msi
				sha256 1111111111111111111111111111111111111111111111111111111111111111
				size 31457280
			}
			download "Cairn for macOS" {
				os macos
				arch universal
				url https://dl.example.com/cairn-1.0-macos.dmg
				sha256 2222222222222222222222222222222222222222222222222222222222222222
				size 41943040
			}
			download "Cairn for Linux" {
				os linux
				arch amd64
				url /files/cairn-1.0-linux-amd64.tar.gz
				sha256 3333333333333333333333333333333333333333333333333333333333333333
				size 20971520
			}
		}
	}
}
https://127.0.0.1:{BUNDLE} {
	import front
	route {
		cairn_web {
			root {BUNDLEDIR}
			config {
				name "Bundle instance"
				domain 127.0.0.1
				service_url https://127.0.0.1:{BUNDLE}
				service_did did:web:127.0.0.1
			}
		}
	}
}
`

// webUserAgents are the three visitors whose OS the download page must
// preselect.
var webUserAgents = map[string]string{
	"windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	"macos":   "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
	"linux":   "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
}

const (
	bundleScript = "assets/app.3f9a1c2b.js"
	bundleStyle  = "assets/style.9d8e7f60.css"
)

// writeBundle writes a small built client: index.html, a hashed script
// that shows the route and the config's name, and a hashed stylesheet with
// real gzip and (stand-in) brotli siblings.
func writeBundle(t *testing.T) (dir string, style, styleGz, styleBr []byte) {
	t.Helper()
	dir = t.TempDir()
	files := map[string]string{
		"index.html": `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>bundle</title>
<link rel="stylesheet" href="/` + bundleStyle + `"><script src="/` + bundleScript + `" defer></script></head>
<body><main><h1 id="name">…</h1><p>Route: <span id="route"></span></p></main></body></html>`,
		bundleScript: `"use strict";
const cfg = JSON.parse(document.getElementById("cairn-config").textContent);
document.getElementById("name").textContent = cfg.name;
document.getElementById("route").textContent = location.pathname;
document.body.dataset.ready = "1";
`,
		bundleStyle:   "body { font-family: system-ui, sans-serif; margin: 2rem; }\n",
		".env":        "SECRET=1\n",
		"favicon.txt": "plain\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	style = []byte(files[bundleStyle])
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(style)
	_ = zw.Close()
	styleGz = gz.Bytes()
	// Brotli is not in the standard library; Caddy picks the sibling by
	// name and Accept-Encoding without decoding it, which is what this
	// checks. The browser never loads it: it gets the real stylesheet
	// because the test's Go client, not Chromium, asks for br.
	styleBr = []byte("stand-in brotli bytes")
	if err := os.WriteFile(filepath.Join(dir, bundleStyle+".gz"), styleGz, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, style, styleGz, styleBr
}

type webGateway struct {
	base, bundleBase string
	client           *http.Client
}

func startWebGateway(t *testing.T, bundleDir string) *webGateway {
	t.Helper()
	admin, httpPort, httpsPort, bundlePort := gatewaytest.FreePort(t), gatewaytest.FreePort(t), gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	cfg := strings.NewReplacer("{ADMIN}", fmt.Sprint(admin), "{HTTP}", fmt.Sprint(httpPort), "{HTTPS}", fmt.Sprint(httpsPort),
		"{BUNDLE}", fmt.Sprint(bundlePort), "{BUNDLEDIR}", bundleDir).Replace(webCaddyfile)
	wg := &webGateway{
		base:       fmt.Sprintf("https://127.0.0.1:%d", httpsPort),
		bundleBase: fmt.Sprintf("https://127.0.0.1:%d", bundlePort),
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableCompression: true},
		},
	}
	// The internal CA issues the certificates asynchronously on start:
	// Start waits until both sites answer over TLS.
	gatewaytest.Start(t, &builder, gatewaytest.Options{Caddyfile: cfg, AdminPort: admin,
		AnswerURLs: []string{wg.base + "/xrpc/_health", wg.bundleBase + "/xrpc/_health"}})
	return wg
}

func (wg *webGateway) get(t *testing.T, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := wg.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp, body
}

// TestWebServing checks, over real HTTPS against the real binary, what the
// browser test does not: cache headers, precompressed siblings, the
// reserved paths and the config document.
func TestWebServing(t *testing.T) {
	bundleDir, style, styleGz, styleBr := writeBundle(t)
	if err := os.WriteFile(filepath.Join(bundleDir, bundleStyle+".br"), styleBr, 0o644); err != nil {
		t.Fatal(err)
	}
	wg := startWebGateway(t, bundleDir)

	for _, tc := range []struct {
		path, cacheControl, contentType string
	}{
		{"/", "no-cache", "text/html; charset=utf-8"},
		{"/index.html", "no-cache", "text/html; charset=utf-8"},
		{"/some/deep/link", "no-cache", "text/html; charset=utf-8"},
		{"/config.json", "no-cache", "application/json"},
		{"/" + bundleScript, "public, max-age=31536000, immutable", "text/javascript; charset=utf-8"},
		{"/" + bundleStyle, "public, max-age=31536000, immutable", "text/css; charset=utf-8"},
		{"/favicon.txt", "no-cache", "text/plain; charset=utf-8"},
		{"/_cairn/pages.css", "no-cache", "text/css; charset=utf-8"},
		{"/connect", "no-cache", "text/html; charset=utf-8"},
	} {
		resp, _ := wg.get(t, wg.bundleBase+tc.path)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", tc.path, resp.Status)
			continue
		}
		if got := resp.Header.Get("Cache-Control"); got != tc.cacheControl {
			t.Errorf("%s: Cache-Control %q, want %q", tc.path, got, tc.cacheControl)
		}
		if got := resp.Header.Get("Content-Type"); got != tc.contentType {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, got, tc.contentType)
		}
	}

	// index.html carries the config block; a deep link gets the same page.
	_, index := wg.get(t, wg.bundleBase+"/")
	_, deep := wg.get(t, wg.bundleBase+"/some/deep/link")
	if !bytes.Contains(index, []byte(`<script type="application/json" id="cairn-config">{"name":"Bundle instance"`)) || !bytes.Equal(index, deep) {
		t.Errorf("index.html without the config block, or a deep link without the app:\n%s\n---\n%s", index, deep)
	}
	// Conditional requests revalidate index.html.
	resp, _ := wg.get(t, wg.bundleBase+"/")
	if r2, _ := wg.get(t, wg.bundleBase+"/", "If-None-Match", resp.Header.Get("ETag")); r2.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match on index.html: %s, want 304", r2.Status)
	}

	// Precompressed siblings, by Accept-Encoding.
	for _, tc := range []struct {
		accept, encoding string
		body             []byte
	}{
		{"br, gzip", "br", styleBr},
		{"gzip", "gzip", styleGz},
		{"identity", "", style},
	} {
		resp, body := wg.get(t, wg.bundleBase+"/"+bundleStyle, "Accept-Encoding", tc.accept)
		if got := resp.Header.Get("Content-Encoding"); got != tc.encoding || !bytes.Equal(body, tc.body) {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q and %d bytes, want %q and the %d bytes of the sibling", tc.accept, got, len(body), tc.encoding, len(tc.body))
		}
		if resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
			t.Errorf("Accept-Encoding %q: Cache-Control %q, Vary %q", tc.accept, resp.Header.Get("Cache-Control"), resp.Header.Get("Vary"))
		}
	}

	// /xrpc/ and /.well-known/ never fall through to the app: an XRPC
	// error body, not index.html.
	for _, p := range []string{"/xrpc/blue.catbird.mls.nothing", "/.well-known/did.json", "/xrpc"} {
		resp, body := wg.get(t, wg.bundleBase+p)
		if resp.StatusCode != http.StatusNotFound || bytes.Contains(body, []byte("<html")) {
			t.Errorf("%s: %s %q, want a 404 that is not the app", p, resp.Status, body)
		}
		if strings.HasPrefix(p, "/xrpc/") && !bytes.Contains(body, []byte(`"error"`)) {
			t.Errorf("%s: %q is no XRPC error body", p, body)
		}
	}
	// Hidden files are not served; the path is a client route instead.
	if _, body := wg.get(t, wg.bundleBase+"/.env"); bytes.Contains(body, []byte("SECRET")) {
		t.Error("/.env was served")
	}
	// Writes are refused.
	resp, err := wg.client.Post(wg.bundleBase+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %s, want 405", resp.Status)
	}

	// /config.json is the config, escaped as in the block.
	_, cfg := wg.get(t, wg.base+"/config.json")
	var got struct {
		Name       string           `json:"name"`
		ServiceDID string           `json:"service_did"`
		Features   map[string]bool  `json:"features"`
		Limits     map[string]int64 `json:"limits"`
	}
	if err := json.Unmarshal(cfg, &got); err != nil || got.Name != webXSSName || got.ServiceDID != webServiceDID || !got.Features["realtime"] || got.Limits["max_message_bytes"] != 65536 {
		t.Errorf("/config.json = %s (%v)", cfg, err)
	}
	if bytes.ContainsAny(cfg, "<>") {
		t.Errorf("/config.json holds raw markup characters: %s", cfg)
	}
}

// browserResult is what test/web/pages.mjs saw.
type browserResult struct {
	Landing struct {
		pageSeen
		ConfigBlock map[string]any `json:"configBlock"`
		AppConfig   map[string]any `json:"appConfig"`
		Heading     string         `json:"heading"`
		Health      string         `json:"health"`
		Links       []string       `json:"links"`
		Scripts     int            `json:"scripts"`
		Lang        string         `json:"lang"`
		FirstTab    struct {
			Text    string `json:"text"`
			Visible bool   `json:"visible"`
		} `json:"firstTab"`
	} `json:"landing"`
	Connect struct {
		pageSeen
		QR         *string `json:"qr"`
		ServiceURL string  `json:"serviceURL"`
		ServiceDID string  `json:"serviceDID"`
		Heading    string  `json:"heading"`
		Scripts    int     `json:"scripts"`
	} `json:"connect"`
	Download map[string]struct {
		pageSeen
		Open     []string `json:"open"`
		First    string   `json:"first"`
		Sums     []string `json:"sums"`
		Commands []string `json:"commands"`
	} `json:"download"`
	DeepLink struct {
		pageSeen
		Route string `json:"route"`
		Name  string `json:"name"`
	} `json:"deepLink"`
}

type pageSeen struct {
	URL            string   `json:"url"`
	Status         int      `json:"status"`
	ConsoleErrors  []string `json:"consoleErrors"`
	PageErrors     []string `json:"pageErrors"`
	Dialogs        []string `json:"dialogs"`
	FailedRequests []string `json:"failedRequests"`
	CSPViolations  []string `json:"cspViolations"`
	Screenshot     string   `json:"screenshot"`
}

// clean fails the test for anything a page should never show: a CSP
// violation, a console error, an exception, a dialog, a failed request.
func (p pageSeen) clean(t *testing.T) {
	t.Helper()
	if p.Status != http.StatusOK {
		t.Errorf("%s: status %d", p.URL, p.Status)
	}
	for what, list := range map[string][]string{"CSP violations": p.CSPViolations, "console errors": p.ConsoleErrors, "uncaught exceptions": p.PageErrors, "dialogs": p.Dialogs, "failed requests": p.FailedRequests} {
		if len(list) > 0 {
			t.Errorf("%s: %s: %q", p.URL, what, list)
		}
	}
	if p.Screenshot == "" {
		t.Errorf("%s: no screenshot", p.URL)
	}
}

// requireChromium returns Debian's Chromium, or skips (fails under
// CAIRN_REQUIRE_SERVICES=1) when it is missing.
func requireChromium(t *testing.T) string {
	t.Helper()
	path := "/usr/bin/chromium"
	if p := os.Getenv("CAIRN_CHROMIUM"); p != "" {
		path = p
	}
	if _, err := exec.LookPath(path); err != nil {
		if testenv.RequireServices() {
			t.Fatalf("Chromium is required (CAIRN_REQUIRE_SERVICES=1; apt-get install chromium): %v", err)
		}
		t.Skipf("Chromium not installed: %v", err)
	}
	return path
}

// TestWebPagesInChromium loads the landing page, /connect, /download (as
// three visitors) and a client route of a bundle in headless Chromium
// against the real binary, and checks that none breaks the CSP or logs an
// error, that the injected config reaches the page intact and inert, that
// the QR code decodes to the connect URI and that the visitor's OS is
// preselected. Screenshots land in the test's artifact directory (go test
// -artifacts -outputdir DIR keeps them).
func TestWebPagesInChromium(t *testing.T) {
	chromium := requireChromium(t)
	harness := filepath.Join(gatewaytest.RepoRoot(), "test", "web")
	testenv.RequireNodeHarness(t, harness)
	bundleDir, _, _, _ := writeBundle(t)
	wg := startWebGateway(t, bundleDir)

	out := t.ArtifactDir()
	args, _ := json.Marshal(map[string]any{"base": wg.base, "bundleBase": wg.bundleBase, "out": out, "userAgents": webUserAgents})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "pages.mjs", string(args))
	cmd.Dir = harness
	cmd.Env = append(os.Environ(), "CAIRN_CHROMIUM="+chromium)
	// Through StartProcess: the browsers node starts are in its process
	// group, and go when it does.
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	proc, err := testenv.StartProcess(t, cmd)
	if err == nil {
		err = proc.Wait()
	}
	if err != nil {
		t.Fatalf("test/web/pages.mjs: %v\n%s", err, stderr.String())
	}
	var r browserResult
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("harness output: %v\n%s", err, stdout.Bytes())
	}
	t.Logf("screenshots in %s", out)

	// The landing page: the reference client, its config read from the
	// block, the hostile name shown as text and never run.
	r.Landing.clean(t)
	if r.Landing.ConfigBlock["name"] != webXSSName || r.Landing.ConfigBlock["service_did"] != webServiceDID || r.Landing.AppConfig["name"] != webXSSName {
		t.Errorf("config read from the page: block %v, app %v", r.Landing.ConfigBlock, r.Landing.AppConfig)
	}
	if r.Landing.Heading != webXSSName {
		t.Errorf("landing heading %q, want the name as text", r.Landing.Heading)
	}
	if r.Landing.Health != "up" {
		t.Errorf("landing status %q, want up", r.Landing.Health)
	}
	if strings.Join(r.Landing.Links, " ") != "/connect /download" {
		t.Errorf("landing links %q", r.Landing.Links)
	}
	// app.js and the data block: the name added no script element.
	if r.Landing.Scripts != 2 {
		t.Errorf("landing has %d script elements, want 2 (app.js and the config block)", r.Landing.Scripts)
	}

	if r.Landing.FirstTab.Text != "Skip to content" || !r.Landing.FirstTab.Visible || r.Landing.Lang != "en" {
		t.Errorf("landing accessibility: first Tab on %+v, lang %q", r.Landing.FirstTab, r.Landing.Lang)
	}

	r.Connect.clean(t)
	if r.Connect.QR == nil || *r.Connect.QR != webConnectURI {
		t.Errorf("QR code decodes to %v, want %q", r.Connect.QR, webConnectURI)
	}
	if r.Connect.ServiceURL != "https://chat.example.com" || r.Connect.ServiceDID != webServiceDID || r.Connect.Heading != "Connect to "+webXSSName {
		t.Errorf("connect page shows %q, %q, %q", r.Connect.ServiceURL, r.Connect.ServiceDID, r.Connect.Heading)
	}
	if r.Connect.Scripts != 0 {
		t.Errorf("connect page has %d script elements, want none", r.Connect.Scripts)
	}

	if len(r.Download) != len(webUserAgents) {
		t.Fatalf("download visits: %d, want %d", len(r.Download), len(webUserAgents))
	}
	for os, d := range r.Download {
		d.clean(t)
		if len(d.Open) != 1 || d.Open[0] != os || d.First != os {
			t.Errorf("download page for a %s visitor: open %q, first %q", os, d.Open, d.First)
		}
		if len(d.Sums) != 3 || len(d.Commands) != 3 {
			t.Errorf("download page for %s: %d checksums, %d commands, want 3 each", os, len(d.Sums), len(d.Commands))
		}
	}
	if cmds := strings.Join(r.Download["linux"].Commands, "\n"); !strings.Contains(cmds, `echo "3333333333333333333333333333333333333333333333333333333333333333  cairn-1.0-linux-amd64.tar.gz" | sha256sum --check`) ||
		!strings.Contains(cmds, `shasum -a 256 --check`) || !strings.Contains(cmds, `Get-FileHash -Algorithm SHA256 -LiteralPath .\cairn-1.0-windows-amd64.msi`) {
		t.Errorf("verify commands:\n%s", cmds)
	}

	r.DeepLink.clean(t)
	if r.DeepLink.Route != "/some/deep/link" || r.DeepLink.Name != "Bundle instance" {
		t.Errorf("deep link: route %q, name %q: the bundle's app did not run there", r.DeepLink.Route, r.DeepLink.Name)
	}
}

// TestWebValidateNamesTheField: `cairn-caddy validate` refuses a bad
// cairn_web configuration with a message naming what to fix, and accepts a
// good one.
func TestWebValidateNamesTheField(t *testing.T) {
	emptyRoot := t.TempDir()
	site := "http://127.0.0.1:1 {\n\tcairn_web {\n%s\n\t}\n}\n"
	good := "config {\n name Cairn\n domain chat.example.com\n service_did did:web:chat.example.com\n}"
	for _, tc := range []struct {
		name, block, want string
	}{
		{"valid", good, ""},
		{"no service DID", "config {\n name Cairn\n domain chat.example.com\n}", "service_did"},
		{"no name", "config {\n domain chat.example.com\n service_did did:web:chat.example.com\n}", "name is required"},
		{"logo elsewhere", "config {\n name Cairn\n domain chat.example.com\n service_did did:web:chat.example.com\n branding {\n  logo_url https://cdn.example/logo.svg\n }\n}", "logo_url"},
		{"pale accent", "config {\n name Cairn\n domain chat.example.com\n service_did did:web:chat.example.com\n branding {\n  accent_color \"#eeeeee\"\n }\n}", "contrast"},
		{"bad checksum", good + "\ndownload Cairn {\n os linux\n arch amd64\n url https://dl.example/c.tar.gz\n sha256 abc\n size 1\n}", "sha256"},
		{"unknown OS", good + "\ndownload Cairn {\n os plan9\n arch amd64\n url https://dl.example/c.tar.gz\n sha256 " + strings.Repeat("a", 64) + "\n size 1\n}", "plan9"},
		{"root without index.html", good + "\nroot " + emptyRoot, "holds no index.html"},
		{"root as an argument", "", "root <dir>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := fmt.Sprintf(site, tc.block)
			if tc.name == "root as an argument" {
				// An argument starting with / would be a path matcher.
				cfg = "http://127.0.0.1:1 {\n\tcairn_web dist\n}\n"
			}
			out, ok := validate(t, cfg)
			if tc.want == "" {
				if !ok {
					t.Fatalf("refused a valid configuration:\n%s", out)
				}
				return
			}
			if ok || !strings.Contains(out, tc.want) {
				t.Fatalf("validate accepted=%v, want a refusal naming %q:\n%s", ok, tc.want, out)
			}
		})
	}
}
