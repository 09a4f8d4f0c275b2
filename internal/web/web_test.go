package web

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/net/html"
)

func validConfig() Config {
	return Config{Name: "Cairn", Domain: "chat.example.com", ServiceDID: "did:web:chat.example.com"}
}

func TestConfigNormalize(t *testing.T) {
	c := validConfig()
	c.Branding.AccentColor = "#0b6e4f"
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	if r := contrastWithWhite("#1d5fa8"); r < 4.5 {
		t.Errorf("the default accent has a contrast of %.2f with white", r)
	}
	if r := contrastWithWhite("#000000"); r < 20.9 || r > 21.1 {
		t.Errorf("black on white = %.2f:1, want 21:1", r)
	}
	if c.ServiceURL != "https://chat.example.com" {
		t.Errorf("service_url default = %q", c.ServiceURL)
	}
	bad := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "name is required"},
		{"control character", func(c *Config) { c.Name = "a\nb" }, "control character"},
		{"not UTF-8", func(c *Config) { c.Name = "\xff" }, "UTF-8"},
		{"long name", func(c *Config) { c.Name = strings.Repeat("x", 101) }, "longer than 100"},
		{"domain", func(c *Config) { c.Domain = "exa mple.com" }, "domain"},
		{"service_url scheme", func(c *Config) { c.ServiceURL = "javascript:alert(1)" }, "service_url"},
		{"service_url query", func(c *Config) { c.ServiceURL = "https://a.example/?x=1" }, "service_url"},
		{"service_did", func(c *Config) { c.ServiceDID = "did:key:z6Mk" }, "service_did"},
		{"accent", func(c *Config) { c.Branding.AccentColor = "red;}body{" }, "accent_color"},
		{"accent too light", func(c *Config) { c.Branding.AccentColor = "#7fd3ff" }, "contrast"},
		{"logo elsewhere", func(c *Config) { c.Branding.LogoURL = "https://cdn.example/logo.svg" }, "logo_url"},
		{"logo protocol-relative", func(c *Config) { c.Branding.LogoURL = "//cdn.example/logo.svg" }, "logo_url"},
		{"feature name", func(c *Config) { c.Features = map[string]bool{"Bad-Name": true} }, "feature"},
		{"limit negative", func(c *Config) { c.Limits = map[string]int64{"max": -1} }, "negative"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Normalize()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Normalize() = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func validDownload() Download {
	return Download{Name: "Cairn for Linux", OS: "linux", Arch: "amd64", URL: "https://dl.example/cairn-1.0.tar.gz", SHA256: strings.Repeat("ab", 32), Size: 10}
}

func TestDownloadValidate(t *testing.T) {
	if err := validDownload().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name   string
		mutate func(*Download)
	}{
		{"os", func(d *Download) { d.OS = "beos" }},
		{"arch", func(d *Download) { d.Arch = "amd 64" }},
		{"http url", func(d *Download) { d.URL = "http://dl.example/c.tar.gz" }},
		{"javascript url", func(d *Download) { d.URL = "javascript:alert(1)" }},
		{"file name with a quote", func(d *Download) { d.URL = `https://dl.example/a"b.tar.gz` }},
		{"file name with a dollar", func(d *Download) { d.URL = "https://dl.example/$(id).tar.gz" }},
		{"short sum", func(d *Download) { d.SHA256 = "abcd" }},
		{"size", func(d *Download) { d.Size = 0 }},
	}
	for _, tc := range bad {
		d := validDownload()
		tc.mutate(&d)
		if err := d.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", tc.name, d)
		}
	}
}

func TestConnectURI(t *testing.T) {
	c := validConfig()
	c.ServiceURL = "https://chat.example.com:8443"
	if got, want := c.ConnectURI(), "cairn://connect?server=https%3A%2F%2Fchat.example.com%3A8443&did=did%3Aweb%3Achat.example.com"; got != want {
		t.Errorf("ConnectURI() = %q, want %q", got, want)
	}
}

func TestIsHashedAsset(t *testing.T) {
	for p, want := range map[string]bool{
		"/assets/app.3f9a1c2b.js":    true,
		"/assets/index.Bx1_a-9Q.css": true,
		"/app.js":                    false,
		"/app.something.css":         false,
		"/app.1234567.js":            false, // 7 characters
		"/app.3f9a1c2b.png":          false,
		"/app.3f9a1c2b.js.map":       false,
	} {
		if got := IsHashedAsset(p); got != want {
			t.Errorf("IsHashedAsset(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestDetectOS(t *testing.T) {
	for ua, want := range map[string]string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36":                  "windows",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15":            "macos",
		"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0":                                                           "linux",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36":            "android",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148":                    "ios",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1": "ios",
		"curl/8.5.0": "",
		"":           "",
	} {
		if got := DetectOS(ua); got != want {
			t.Errorf("DetectOS(%q) = %q, want %q", ua, got, want)
		}
	}
}

func TestInject(t *testing.T) {
	block := []byte(`<script type="application/json" id="cairn-config">{}</script>`)
	got := string(Inject([]byte("<html><head><title>x</title></HEAD ><body></body></html>"), block))
	if want := `<html><head><title>x</title>` + string(block) + "\n</HEAD ><body></body></html>"; got != want {
		t.Errorf("Inject = %q, want %q", got, want)
	}
	if got := string(Inject([]byte("<p>no head</p>"), block)); !strings.HasPrefix(got, string(block)) {
		t.Errorf("Inject without </head> = %q", got)
	}
}

func TestDownloadPageOrder(t *testing.T) {
	linux, win := validDownload(), validDownload()
	win.Name, win.OS, win.URL = "Cairn for Windows", "windows", "/files/cairn-setup.exe"
	s, err := NewSite(validConfig(), []Download{linux, win})
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.DownloadPage("Mozilla/5.0 (X11; Linux x86_64)")
	if err != nil {
		t.Fatal(err)
	}
	p := string(page)
	if !strings.Contains(p, `data-os="linux" open`) || strings.Contains(p, `data-os="windows" open`) {
		t.Errorf("the Linux section is not the open one:\n%s", p)
	}
	if strings.Index(p, `data-os="linux"`) > strings.Index(p, `data-os="windows"`) {
		t.Error("the visitor's OS does not come first")
	}
	if !strings.Contains(p, "sha256sum --check") || !strings.Contains(p, "Get-FileHash") {
		t.Error("the verify commands are missing")
	}
}

// checkBlock parses page as a browser would and checks that it holds one
// cairn-config block, that the block's text is the config, and that no
// other script element or markup came out of a config value.
func checkBlock(t *testing.T, page []byte, want Config, scriptsBefore int) {
	t.Helper()
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	var scripts []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "script" {
			scripts = append(scripts, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if len(scripts) != scriptsBefore+1 {
		t.Fatalf("%d script elements, want %d: a value broke out of the block\n%s", len(scripts), scriptsBefore+1, page)
	}
	var block *html.Node
	for _, s := range scripts {
		for _, a := range s.Attr {
			if a.Key == "id" && a.Val == BlockID {
				block = s
			}
		}
	}
	if block == nil || block.FirstChild == nil || block.FirstChild.NextSibling != nil {
		t.Fatalf("no single-text cairn-config block in\n%s", page)
	}
	typ := ""
	for _, a := range block.Attr {
		if a.Key == "type" {
			typ = a.Val
		}
	}
	if typ != "application/json" {
		t.Fatalf("block type %q", typ)
	}
	var got Config
	if err := json.Unmarshal([]byte(block.FirstChild.Data), &got); err != nil {
		t.Fatalf("block text is not JSON: %v\n%s", err, block.FirstChild.Data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("block holds %+v, want %+v", got, want)
	}
}

func TestBlockInert(t *testing.T) {
	c := validConfig()
	c.Name = "</script><script>alert(1)</script>"
	c.Branding.Tagline = "<!-- <script> ]]> \u2028 & </SCRIPT >"
	if err := c.Normalize(); err != nil {
		t.Fatal(err)
	}
	block, err := c.Block()
	if err != nil {
		t.Fatal(err)
	}
	page := Inject([]byte(`<!doctype html><html><head><script src="/app.js"></script></head><body></body></html>`), block)
	checkBlock(t, page, c, 1)
}

// FuzzConfigBlock: whatever text the operator puts into the name, the
// tagline, a feature or a limit name, the page holds exactly one extra
// script element, the data block, and its text parses back to the config.
func FuzzConfigBlock(f *testing.F) {
	f.Add("</script><script>alert(1)</script>", "<!--", "x")
	f.Add("]]>", "</SCRIPT\t>", "a&b")
	f.Add("\u2028\u2029", "<script", "\x00")
	f.Fuzz(func(t *testing.T, name, tagline, feature string) {
		c := validConfig()
		c.Name, c.Branding.Tagline = name, tagline
		c.Features = map[string]bool{feature: true}
		if err := c.Normalize(); err != nil {
			// Only valid configs reach a page; still, the block of an
			// unvalidated one must be inert too, as long as it is UTF-8
			// (JSON replaces invalid bytes, so it cannot round-trip).
			if !utf8Valid(name, tagline, feature) {
				return
			}
		}
		block, err := c.Block()
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.IndexByte(block[len(`<script type="application/json" id="cairn-config">`):len(block)-len(`</script>`)], '<'); i >= 0 {
			t.Fatalf("a < inside the block: %s", block)
		}
		page := Inject([]byte(`<!doctype html><html><head><title>t</title><script src="/app.js"></script></head><body><p>x</p></body></html>`), block)
		checkBlock(t, page, c, 1)
	})
}

func utf8Valid(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// FuzzPages: whatever text the operator puts into the name, the tagline or
// a download's name, /connect and /download hold no script element, the
// name shows as the same text, and the QR code still renders.
func FuzzPages(f *testing.F) {
	f.Add("</script><script>alert(1)</script>", "<img src=x onerror=alert(1)>", `"><svg onload=alert(1)>`)
	f.Add("a & b", "]]>", "'")
	f.Fuzz(func(t *testing.T, name, tagline, build string) {
		c := validConfig()
		c.Name, c.Branding.Tagline = name, tagline
		d := validDownload()
		d.Name = build
		s, err := NewSite(c, []Download{d})
		if err != nil {
			return // refused at provision: never rendered
		}
		connect, err := s.ConnectPage()
		if err != nil {
			t.Fatal(err)
		}
		download, err := s.DownloadPage("Mozilla/5.0 (X11; Linux x86_64)")
		if err != nil {
			t.Fatal(err)
		}
		for what, page := range map[string][]byte{"connect": connect, "download": download} {
			doc, err := html.Parse(bytes.NewReader(page))
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			var bad []string
			var nameText string
			var walk func(*html.Node)
			walk = func(n *html.Node) {
				if n.Type == html.ElementNode {
					if n.Data == "script" || n.Data == "img" || n.Data == "iframe" || n.Data == "object" {
						bad = append(bad, n.Data)
					}
					for _, a := range n.Attr {
						if strings.HasPrefix(strings.ToLower(a.Key), "on") {
							bad = append(bad, a.Key)
						}
						if a.Key == "id" && a.Val == "instance-name" && n.FirstChild != nil {
							nameText = n.FirstChild.Data
						}
					}
				}
				for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
					walk(ch)
				}
			}
			walk(doc)
			if len(bad) > 0 {
				t.Fatalf("%s page for name %q has %q:\n%s", what, name, bad, page)
			}
			if nameText != name {
				t.Fatalf("%s page shows the name as %q, want %q", what, nameText, name)
			}
		}
		if !bytes.Contains(connect, []byte(`<svg xmlns="http://www.w3.org/2000/svg"`)) {
			t.Fatalf("no QR code on /connect")
		}
	})
}
