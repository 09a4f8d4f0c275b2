// Package authfail is the refusal type cairn's authenticators share: atpauth
// (clients' service-auth tokens) and operatorauth (operators' tokens) each
// declare their sentinel errors as a [Failure], which carries the HTTP
// status, the XRPC error name, a bounded metric reason and the sentence the
// client reads. [XRPCError] is the one mapping from such an error to the
// response, and [Reason] the one mapping to a metric label.
//
// It verifies nothing itself, and knows nothing of Caddy.
package authfail

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Failure is one reason an authenticator refuses a request. Authenticators
// declare one per reason, as a sentinel, and wrap it in what they return.
type Failure struct {
	// Status is the HTTP status: 401, 403 or 503.
	Status int
	// Name is the XRPC error name sent to the client.
	Name string
	// Reason is the metric label; ReasonMissing marks a request that sent
	// no credential at all.
	Reason string
	// Message is the sentence sent to the client. It never holds token
	// data or an identity.
	Message string
}

// New returns a *Failure as an error, for declaring sentinels.
func New(status int, name, reason, message string) error {
	return &Failure{Status: status, Name: name, Reason: reason, Message: message}
}

// Error returns the client message.
func (f *Failure) Error() string { return f.Message }

const (
	// ReasonMissing is the reason of a refusal for want of any
	// credential; its 401 challenges with a bare "Bearer".
	ReasonMissing = "missing"
	// ReasonInternal labels errors that are not Failures.
	ReasonInternal = "internal"
)

// RetryAfter is the delay, in seconds, advertised in the Retry-After header
// of the 503 responses XRPCError builds: the authenticator's dependency
// (replay store, DID host, identity provider) was unreachable.
const RetryAfter = 5

// Reason returns the metric label of err: its Failure's Reason, or
// ReasonInternal.
func Reason(err error) string {
	var f *Failure
	if errors.As(err, &f) {
		return f.Reason
	}
	return ReasonInternal
}

// XRPCError converts an authenticator's error into the XRPC error the client
// receives. A 401 carries the RFC 6750 challenge (`Bearer`, or
// `Bearer error="invalid_token"` when a credential was sent but refused), a
// 403 `Bearer error="insufficient_scope"`, and a 503 Retry-After. An error
// that wraps no Failure is a 500 InternalServerError whose message reveals
// nothing. The returned error's Err is err itself, which holds no token or
// identity and may be logged.
func XRPCError(err error) *xrpc.Error {
	var f *Failure
	if !errors.As(err, &f) {
		return &xrpc.Error{Status: http.StatusInternalServerError, Name: "InternalServerError", Message: "internal error", Err: err}
	}
	xe := &xrpc.Error{Status: f.Status, Name: f.Name, Message: f.Message, Err: err}
	switch f.Status {
	case http.StatusServiceUnavailable:
		xe.Header = http.Header{"Retry-After": {strconv.Itoa(RetryAfter)}}
	case http.StatusUnauthorized:
		challenge := `Bearer error="invalid_token"`
		if f.Reason == ReasonMissing {
			challenge = "Bearer"
		}
		xe.Header = http.Header{"Www-Authenticate": {challenge}}
	case http.StatusForbidden:
		xe.Header = http.Header{"Www-Authenticate": {`Bearer error="insufficient_scope"`}}
	}
	return xe
}
