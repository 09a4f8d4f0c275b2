package testenv

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// ClientError fails the test unless rec is what hostile input may get: a
// success, or a 4xx whose body is an XRPC error naming the error, never a
// 5xx. Fuzz targets of request parsers check every response with it. what
// names the request in the failure.
func ClientError(t testing.TB, rec *httptest.ResponseRecorder, what string) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s: %d %s", what, rec.Code, rec.Body)
	}
	if rec.Code < 400 {
		return
	}
	var body xrpc.Body
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: %d with Content-Type %q: %s", what, rec.Code, ct, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" {
		t.Fatalf("%s: %d without an XRPC error body: %s", what, rec.Code, rec.Body)
	}
}
