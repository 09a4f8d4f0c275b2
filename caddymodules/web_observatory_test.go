package caddymodules_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
)

// observatoryScore grades one response's headers by the Mozilla HTTP
// Observatory's header tests (https://developer.mozilla.org/en-US/observatory/docs/tests_and_scoring),
// starting from 100 as it does and applying its modifiers for the headers a
// site controls. It returns the score and what failed. An A+ needs at least
// 100 with no failing test.
func observatoryScore(h http.Header) (int, []string) {
	score := 100
	var failed []string
	fail := func(modifier int, why string) {
		score += modifier
		failed = append(failed, why)
	}

	// Content Security Policy: present, no unsafe script sources; 'unsafe-inline'
	// in style-src only costs nothing.
	csp := parseCSP(h.Get("Content-Security-Policy"))
	if csp == nil {
		fail(-25, "csp-not-implemented")
	} else {
		script, ok := csp["script-src"]
		if !ok {
			script, ok = csp["default-src"]
		}
		if !ok {
			fail(-25, "csp-implemented-but-no-default-or-script-src")
		}
		for _, src := range script {
			switch {
			case src == "'unsafe-inline'" || src == "data:":
				fail(-20, "csp-implemented-with-unsafe-inline: script-src "+src)
			case src == "'unsafe-eval'":
				fail(-10, "csp-implemented-with-unsafe-eval")
			case src == "*" || src == "http:" || src == "https:" || strings.HasPrefix(src, "http://"):
				fail(-20, "csp-implemented-with-insecure-scheme or wildcard: script-src "+src)
			}
		}
		for _, d := range []string{"object-src", "default-src"} {
			for _, src := range csp[d] {
				if src == "*" || src == "http:" || src == "https:" {
					fail(-20, "csp with a wildcard "+d)
				}
			}
		}
	}

	// HSTS: at least six months.
	maxAge := -1
	for _, part := range strings.Split(h.Get("Strict-Transport-Security"), ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(strings.ToLower(part)), "max-age="); ok {
			maxAge, _ = strconv.Atoi(v)
		}
	}
	switch {
	case maxAge < 0:
		fail(-20, "hsts-not-implemented")
	case maxAge < 15768000:
		fail(-10, "hsts-implemented-max-age-less-than-six-months")
	}

	// Framing: X-Frame-Options DENY/SAMEORIGIN, or CSP frame-ancestors.
	xfo := strings.ToUpper(h.Get("X-Frame-Options"))
	if _, ancestors := csp["frame-ancestors"]; !ancestors && xfo != "DENY" && xfo != "SAMEORIGIN" {
		fail(-20, "x-frame-options-not-implemented")
	}

	if !strings.EqualFold(h.Get("X-Content-Type-Options"), "nosniff") {
		fail(-5, "x-content-type-options-not-implemented")
	}

	// Referrer-Policy: a private value earns +5.
	switch strings.ToLower(h.Get("Referrer-Policy")) {
	case "no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin":
		score += 5
	case "":
	default:
		fail(-5, "referrer-policy-unsafe")
	}

	if h.Get("Access-Control-Allow-Origin") == "*" {
		fail(-50, "cross-origin-resource-sharing-implemented-with-universal-access")
	}
	if len(h.Values("Set-Cookie")) > 0 {
		fail(-40, "cookies set on a page (the site sets none)")
	}
	return score, failed
}

// parseCSP splits a policy into directives; nil when there is none.
func parseCSP(policy string) map[string][]string {
	if strings.TrimSpace(policy) == "" {
		return nil
	}
	out := map[string][]string{}
	for _, d := range strings.Split(policy, ";") {
		fields := strings.Fields(d)
		if len(fields) > 0 {
			out[strings.ToLower(fields[0])] = fields[1:]
		}
	}
	return out
}

// TestExampleWebPagesGradeAPlus grades every public page and file of
// Caddyfile.example's web face by the Observatory's header rules, and checks
// that the CSP is exactly the mandated one: serving the web client weakened
// nothing.
func TestExampleWebPagesGradeAPlus(t *testing.T) {
	httpPort := gatewaytest.FreePort(t)
	eg := startExample(t, fmt.Sprintf("CAIRN_HTTP_PORT=%d", httpPort))

	// The Observatory's redirection test: plain HTTP goes straight to HTTPS
	// on the same host.
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(fmt.Sprintf("http://localhost:%d/connect", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusPermanentRedirect || !strings.HasPrefix(loc, "https://localhost") || !strings.HasSuffix(loc, "/connect") {
		t.Errorf("http://…/connect: %s to %q, want a permanent redirect to the same path over HTTPS", resp.Status, loc)
	}

	for _, path := range []string{"/", "/index.html", "/some/deep/link", "/connect", "/download", "/config.json", "/app.js", "/_cairn/pages.css", "/_cairn/theme.css", "/xrpc/_health", "/.well-known/did.json"} {
		resp, _ = eg.get(t, path, nil)
		if resp.StatusCode >= 500 {
			t.Errorf("%s: %s", path, resp.Status)
		}
		score, failed := observatoryScore(resp.Header)
		if score < 100 || len(failed) > 0 {
			t.Errorf("%s: Observatory score %d (A+ needs 100 and no failure): %q", path, score, failed)
		}
		if got, want := resp.Header.Get("Content-Security-Policy"), securityHeaders["Content-Security-Policy"]; got != want {
			t.Errorf("%s: CSP %q, want the mandated %q", path, got, want)
		}
	}
	// And the grader fails a weak policy, so a pass above means something.
	weak := http.Header{"Content-Security-Policy": {"default-src 'self'; script-src 'self' 'unsafe-inline'"}, "X-Content-Type-Options": {"nosniff"}}
	if score, failed := observatoryScore(weak); score >= 100 || len(failed) < 3 {
		t.Errorf("a policy with unsafe-inline scripts, no HSTS and no framing rule scored %d (%q)", score, failed)
	}
}
