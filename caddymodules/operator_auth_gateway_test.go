package caddymodules_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
)

// TestOperatorTokenGuardsTheInternalSite generates a token with the
// operator-token command, as an operator would, configures its hash, and
// checks the guard.
func TestOperatorTokenGuardsTheInternalSite(t *testing.T) {
	token, hash := operatorToken(t)

	text := `{
	admin 127.0.0.1:{ADMIN}
}
http://127.0.0.1:{PORT} {
	route /admin/* {
		cairn_operator_auth {
			static_token_hash ` + hash + `
		}
		respond "operator ok"
	}
}
http://127.0.0.1:{METRICS} {
	cairn_metrics
}
`
	g := startPlain(t, text, gatewaytest.Options{})
	url := g.url("/admin/stats")
	if resp, body := do(t, http.MethodGet, url, bearer(token)); resp.StatusCode != http.StatusOK || body != "operator ok" {
		t.Fatalf("valid operator token: %d %q", resp.StatusCode, body)
	}
	for name, h := range map[string]http.Header{"missing": nil, "wrong": bearer(token + "x"), "hash as token": bearer(hash)} {
		resp, body := do(t, http.MethodGet, url, h)
		if resp.StatusCode != http.StatusUnauthorized || errorName(t, body) == "" {
			t.Errorf("%s token: %d %s", name, resp.StatusCode, body)
		}
	}
	if v := metricValue(scrape(t, g), "cairn_auth_requests_total", `kind="operator"`, `reason="ok"`); v != 1 {
		t.Errorf("operator ok count = %v", v)
	}
	if strings.Contains(g.Logs(), token) {
		t.Error("the operator token reached the logs")
	}
}

func TestOperatorAuthConfigRefusals(t *testing.T) {
	site := "http://127.0.0.1:1 {\n\tcairn_operator_auth {\n%s\n\t}\n}\n"
	for _, tc := range []struct{ body, want string }{
		{"", "configure `oidc"},
		{"\t\tstatic_token_hash md5:abc", "static_token_hash"},
		{"\t\toidc {\n\t\t\tissuer http://127.0.0.1:1\n\t\t\taudience a\n\t\t\trequired_role r\n\t\t\tallow_http_issuer\n\t\t}", "allow_http_issuer"},
		{"\t\toidc {\n\t\t\tissuer https://sso.example\n\t\t\taudience a\n\t\t}", "required role"},
	} {
		out, ok := validate(t, fmt.Sprintf(site, tc.body))
		if ok || !strings.Contains(out, tc.want) {
			t.Errorf("config %q: want refusal naming %q:\n%s", tc.body, tc.want, out)
		}
	}
}
