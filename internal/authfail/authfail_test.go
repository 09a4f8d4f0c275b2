package authfail

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestXRPCError(t *testing.T) {
	missing := New(http.StatusUnauthorized, "AuthMissing", ReasonMissing, "authentication required")
	refused := New(http.StatusUnauthorized, "BadJwt", "malformed", "malformed JWT")
	forbidden := New(http.StatusForbidden, "Forbidden", "forbidden", "role required")
	down := New(http.StatusServiceUnavailable, "AuthUnavailable", "unavailable", "try again later")
	other := errors.New("boom: did:plc:secret")
	for _, tc := range []struct {
		err              error
		status           int
		name, message    string
		reason           string
		challenge, retry string
	}{
		{missing, 401, "AuthMissing", "authentication required", ReasonMissing, "Bearer", ""},
		{refused, 401, "BadJwt", "malformed JWT", "malformed", `Bearer error="invalid_token"`, ""},
		{forbidden, 403, "Forbidden", "role required", "forbidden", `Bearer error="insufficient_scope"`, ""},
		{down, 503, "AuthUnavailable", "try again later", "unavailable", "", "5"},
		{other, 500, "InternalServerError", "internal error", ReasonInternal, "", ""},
	} {
		wrapped := fmt.Errorf("verify: %w", tc.err)
		xe := XRPCError(wrapped)
		if xe.Status != tc.status || xe.Name != tc.name || xe.Message != tc.message {
			t.Errorf("XRPCError(%v) = %d %s %q, want %d %s %q", tc.err, xe.Status, xe.Name, xe.Message, tc.status, tc.name, tc.message)
		}
		if got := xe.Header.Get("WWW-Authenticate"); got != tc.challenge {
			t.Errorf("%v: WWW-Authenticate %q, want %q", tc.err, got, tc.challenge)
		}
		if got := xe.Header.Get("Retry-After"); got != tc.retry {
			t.Errorf("%v: Retry-After %q, want %q", tc.err, got, tc.retry)
		}
		if !errors.Is(xe, tc.err) {
			t.Errorf("XRPCError(%v) does not wrap its cause", tc.err)
		}
		if got := Reason(wrapped); got != tc.reason {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.reason)
		}
	}
}
