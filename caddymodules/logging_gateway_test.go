package caddymodules_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
)

// assertJSONLines fails for every line of output that is not a JSON
// object: the process must not write plain-text noise beside its logs.
func assertJSONLines(t *testing.T, logs string) {
	t.Helper()
	for line := range strings.Lines(logs) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Errorf("output line is not JSON: %q", line)
		}
	}
}

// waitForLog waits until logs contain every one of want, and fails with
// the logs if they never do.
func waitForLog(t *testing.T, g *gatewaytest.Gateway, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		logs := g.Logs()
		found := true
		for line := range strings.Lines(logs) {
			found = true
			for _, w := range want {
				if !strings.Contains(line, w) {
					found = false
					break
				}
			}
			if found {
				return logs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line has all of %q:\n%s", want, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestExampleLogLevelDebugShowsCairnDebugLines(t *testing.T) {
	eg := startExample(t, "CAIRN_LOG_LEVEL=debug")
	const (
		did   = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
		token = "eyJhbGciOiJFUzI1NksiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJkaWQ6cGxjOmV3dmk3bnh6eW91bjZ6aHhyaHM2NG9peiJ9.c2lnbmF0dXJl"
	)
	resp, body := eg.get(t, "/xrpc/blue.catbird.mls.getMessages?convoId=convo-4f1c2a9be7d04c1e", http.Header{"Authorization": {"Bearer " + token}})
	assertXRPCError(t, "forged token", resp, body, http.StatusUnauthorized, "BadJwt")
	logs := waitForLog(t, eg.Gateway, `"level":"debug"`, `"logger":"cairn.auth"`, `"msg":"refused a service-auth token"`, `"request_id":"`+resp.Header.Get("X-Request-ID")+`"`)
	assertJSONLines(t, logs)
	for _, secret := range []string{did, "ewvi7nxzyoun6zhxrhs64oiz", "convo-4f1c2a9be7d04c1e", token} {
		if strings.Contains(logs, secret) {
			t.Errorf("debug logs contain %q", secret)
		}
	}
	if strings.Contains(logs, "no Caddy log admits") {
		t.Error("the example's cairn log admits debug, yet the app warned that it does not")
	}
}

func TestExampleDefaultLogLevelWritesNoCairnDebugLines(t *testing.T) {
	eg := startExample(t)
	resp, _ := eg.get(t, "/xrpc/blue.catbird.mls.getConvos", http.Header{"Authorization": {"Bearer x.y.z"}})
	// The access log line comes after the handler's; once it is written,
	// a debug line from cairn_auth would have been too.
	logs := waitForLog(t, eg.Gateway, `"msg":"handled request"`, `"request_id":"`+resp.Header.Get("X-Request-ID")+`"`)
	assertJSONLines(t, logs)
	for line := range strings.Lines(logs) {
		if strings.Contains(line, `"logger":"cairn`) && strings.Contains(line, `"level":"debug"`) {
			t.Errorf("debug line at the default level warn: %s", line)
		}
	}
}

func TestLogLevelDebugWithoutACaddyLogForItWarns(t *testing.T) {
	adminPort, port := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	caddyfile := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tcairn {\n\t\tlog_level debug\n\t}\n}\nhttp://127.0.0.1:%d {\n\tcairn_request_id\n\trespond 204\n}\n", adminPort, port)
	g := gatewaytest.Start(t, &builder, gatewaytest.Options{Caddyfile: caddyfile, AdminPort: adminPort})
	logs := waitForLog(t, g, `"level":"warn"`, `"logger":"cairn"`, "no Caddy log admits cairn's entries", `"log_level":"debug"`)
	assertJSONLines(t, logs)
	if strings.Contains(logs, "IncreaseLevel") {
		t.Errorf("zap refused a level change:\n%s", logs)
	}
}
