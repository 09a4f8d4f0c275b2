// Package web is the web face of a node: the instance configuration a web
// client reads (rendered into index.html as a non-executable JSON block and
// served as /config.json), the connect URI and its QR code, the download
// list, and the server-rendered /connect and /download pages. It serves no
// files itself: the Caddy module hands the client bundle to Caddy's
// file_server. It is not a web client; web/ at the repository root holds the
// small reference client.
package web

import (
	"fmt"
	"math"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Config is the instance configuration given to web clients. Every field is
// public: it is served to anyone who asks, so nothing secret belongs here.
type Config struct {
	// Name is the instance's display name. Required.
	Name string `json:"name"`
	// Domain is the instance's public hostname. Required.
	Domain string `json:"domain"`
	// ServiceURL is the base URL clients send XRPC requests to. Default:
	// https://<domain>.
	ServiceURL string `json:"service_url,omitempty"`
	// ServiceDID is the DID clients mint service-auth tokens for (the
	// cairn_auth service_did). Required.
	ServiceDID string `json:"service_did"`
	// Branding is how clients present the instance.
	Branding Branding `json:"branding,omitzero"`
	// Features are feature flags by name.
	Features map[string]bool `json:"features,omitempty"`
	// Limits are numeric limits clients should respect, by name (for
	// example max_message_bytes).
	Limits map[string]int64 `json:"limits,omitempty"`
}

// Branding is the instance's look.
type Branding struct {
	// AccentColor is a #rrggbb colour.
	AccentColor string `json:"accent_color,omitempty"`
	// LogoURL is a same-origin path ("/logo.svg"): the CSP allows images
	// from the site itself only.
	LogoURL string `json:"logo_url,omitempty"`
	// Tagline is a short line under the name.
	Tagline string `json:"tagline,omitempty"`
}

// Download is one client build offered on /download.
type Download struct {
	// Name is what the page calls the build ("Cairn for Linux").
	Name string `json:"name"`
	// OS is one of windows, macos, linux, android, ios.
	OS string `json:"os"`
	// Arch is the architecture (amd64, arm64, universal, ...).
	Arch string `json:"arch"`
	// URL is where the build is downloaded from: an https URL or a
	// same-origin path.
	URL string `json:"url"`
	// SHA256 is the build's SHA-256, 64 hexadecimal characters.
	SHA256 string `json:"sha256"`
	// Size is the build's size in bytes.
	Size int64 `json:"size"`
}

// OSes are the operating systems a download may name, in the order the
// download page lists them.
var OSes = []string{"windows", "macos", "linux", "android", "ios"}

var (
	flagName        = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	hostname        = regexp.MustCompile(`^(?i:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.(?i:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?))*(?::[0-9]{1,5})?$`)
	didPattern      = regexp.MustCompile(`^did:(?:web|plc):[A-Za-z0-9._:%-]+$`)
	hexColor        = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
	sha256Hex       = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	fileNamePattern = regexp.MustCompile(`^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}$`)
	archName        = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)
)

// Normalize applies the defaults (the service URL) and checks every field,
// naming the one at fault.
func (c *Config) Normalize() error {
	if err := text("name", c.Name, 1, 100); err != nil {
		return err
	}
	if !hostname.MatchString(c.Domain) || len(c.Domain) > 253 {
		return fmt.Errorf("domain %q is not a hostname (example.com)", c.Domain)
	}
	if c.ServiceURL == "" {
		c.ServiceURL = "https://" + c.Domain
	}
	if err := serviceURL(c.ServiceURL); err != nil {
		return err
	}
	if !didPattern.MatchString(c.ServiceDID) || len(c.ServiceDID) > 2048 {
		return fmt.Errorf("service_did %q is not a did:web or did:plc DID (the service_did cairn_auth checks)", c.ServiceDID)
	}
	if b := c.Branding; b.AccentColor != "" {
		if !hexColor.MatchString(b.AccentColor) {
			return fmt.Errorf("branding accent_color %q is not a #rrggbb colour", b.AccentColor)
		}
		// The pages put white text on the accent and accent links on white.
		if r := contrastWithWhite(b.AccentColor); r < 4.5 {
			return fmt.Errorf("branding accent_color %s has a contrast of %.1f:1 with white; the pages put white text on it and it on white, and WCAG AA needs 4.5:1: choose a darker colour", b.AccentColor, r)
		}
	}
	if l := c.Branding.LogoURL; l != "" {
		if err := sameOriginPath("branding logo_url", l); err != nil {
			return err
		}
	}
	if err := text("branding tagline", c.Branding.Tagline, 0, 200); err != nil {
		return err
	}
	for name := range c.Features {
		if !flagName.MatchString(name) {
			return fmt.Errorf("feature %q: names are lower case letters, digits and _ (at most 64)", name)
		}
	}
	for name, v := range c.Limits {
		if !flagName.MatchString(name) {
			return fmt.Errorf("limit %q: names are lower case letters, digits and _ (at most 64)", name)
		}
		if v < 0 {
			return fmt.Errorf("limit %s: %d is negative", name, v)
		}
	}
	return nil
}

// Validate checks one download entry.
func (d Download) Validate() error {
	if err := text("download name", d.Name, 1, 100); err != nil {
		return err
	}
	if !knownOS(d.OS) {
		return fmt.Errorf("download %q: os %q is not one of %s", d.Name, d.OS, strings.Join(OSes, ", "))
	}
	if !archName.MatchString(d.Arch) {
		return fmt.Errorf("download %q: arch %q is not a short architecture name (amd64, arm64, universal)", d.Name, d.Arch)
	}
	if strings.HasPrefix(d.URL, "/") {
		if err := sameOriginPath("download "+d.Name+" url", d.URL); err != nil {
			return err
		}
	} else if u, err := url.Parse(d.URL); err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return fmt.Errorf("download %q: url %q is neither an https URL nor a path on this site", d.Name, d.URL)
	}
	if u, err := url.Parse(d.URL); err != nil || !fileNamePattern.MatchString(path.Base(u.Path)) {
		return fmt.Errorf("download %q: url %q must end in a file name of letters, digits and ._+- (the page prints the command that checks it)", d.Name, d.URL)
	}
	if !sha256Hex.MatchString(d.SHA256) {
		return fmt.Errorf("download %q: sha256 must be 64 hexadecimal characters (sha256sum prints it)", d.Name)
	}
	if d.Size <= 0 {
		return fmt.Errorf("download %q: size must be the build's size in bytes, more than 0", d.Name)
	}
	return nil
}

func knownOS(os string) bool {
	for _, o := range OSes {
		if o == os {
			return true
		}
	}
	return false
}

// text checks a display string: UTF-8, no control characters, within
// [minLen, maxLen] characters. Markup characters are allowed: every page and
// the JSON block escape them.
func text(field, s string, minLen, maxLen int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not UTF-8 text", field)
	}
	n := utf8.RuneCountInString(s)
	if n < minLen {
		return fmt.Errorf("%s is required", field)
	}
	if n > maxLen {
		return fmt.Errorf("%s is longer than %d characters", field, maxLen)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s holds a control character", field)
		}
	}
	return nil
}

func serviceURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("service_url %q is not an http(s) base URL (https://example.com)", s)
	}
	return nil
}

func sameOriginPath(field, p string) error {
	u, err := url.Parse(p)
	if err != nil || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || u.Scheme != "" || u.Host != "" || strings.ContainsAny(p, "\\ \t") {
		return fmt.Errorf("%s %q must be a path on this site (/logo.svg): the CSP loads nothing from elsewhere", field, p)
	}
	return nil
}

// SortDownloads orders downloads by OS (in OSes order), then architecture,
// then name, so the page lists them the same way whatever the Caddyfile
// order.
func SortDownloads(ds []Download) {
	rank := func(os string) int {
		for i, o := range OSes {
			if o == os {
				return i
			}
		}
		return len(OSes)
	}
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if rank(a.OS) != rank(b.OS) {
			return rank(a.OS) < rank(b.OS)
		}
		if a.Arch != b.Arch {
			return a.Arch < b.Arch
		}
		return a.Name < b.Name
	})
}

// contrastWithWhite is the WCAG 2 contrast ratio of a #rrggbb colour with
// white.
func contrastWithWhite(hex string) float64 {
	v, _ := strconv.ParseUint(hex[1:], 16, 32)
	channel := func(c uint64) float64 {
		x := float64(c) / 255
		if x <= 0.04045 {
			return x / 12.92
		}
		return math.Pow((x+0.055)/1.055, 2.4)
	}
	l := 0.2126*channel(v>>16&0xff) + 0.7152*channel(v>>8&0xff) + 0.0722*channel(v&0xff)
	return 1.05 / (l + 0.05)
}
