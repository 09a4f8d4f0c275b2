// Package requestid mints, validates and carries request IDs: the value of
// the X-Request-ID header that ties one request's log lines together across
// the gateway and the services behind it.
package requestid

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// Header is the HTTP header a request ID travels in.
const Header = "X-Request-ID"

// MinLength and MaxLength bound an accepted inbound ID.
const (
	MinLength = 8
	MaxLength = 128
)

// Valid reports whether an inbound ID may be reused: 8 to 128 characters of
// A-Z, a-z, 0-9, '.', '_' and '-'. Anything else (including values that could
// inject into logs or headers) is replaced by a fresh ID.
func Valid(id string) bool {
	if len(id) < MinLength || len(id) > MaxLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// New mints a fresh request ID: a UUIDv7, which sorts by creation time.
func New() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("minting request ID: %w", err)
	}
	return id.String(), nil
}

// Resolve returns inbound if it is Valid, and a fresh ID otherwise.
func Resolve(inbound string) (string, error) {
	if Valid(inbound) {
		return inbound, nil
	}
	return New()
}

type contextKey struct{}

// With returns a copy of ctx carrying id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// From returns the request ID carried by ctx, or "".
func From(ctx context.Context) string {
	id, _ := ctx.Value(contextKey{}).(string)
	return id
}
