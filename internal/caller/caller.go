// Package caller carries the verified identity of the client making a request.
//
// Only the authentication layer (cairn_auth) puts an Identity into a context,
// and only after it has verified the caller's token. Everything downstream —
// per-DID rate limits, the delivery service — reads the caller from here and
// nowhere else: never from a header, a body field or an unverified claim.
package caller

import "context"

// Identity is a verified caller.
type Identity struct {
	// DID is the caller's atproto DID (the verified token issuer, without any
	// #fragment).
	DID string
	// DeviceID is the caller's device identifier, when the client sent one.
	// It is empty when the request is not bound to a device.
	DeviceID string
}

type contextKey struct{}

// With returns a copy of ctx that carries id.
func With(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// From returns the verified identity carried by ctx, and whether there is one.
// An Identity with an empty DID is never reported as present.
func From(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(contextKey{}).(Identity)
	if !ok || id.DID == "" {
		return Identity{}, false
	}
	return id, true
}
