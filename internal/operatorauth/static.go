package operatorauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
)

// staticHashPrefix starts every stored static-token hash.
const staticHashPrefix = "sha256:"

// StaticToken verifies a single operator secret against its stored SHA-256
// hash. The secret itself is never kept. SHA-256 without salt or stretching
// is enough because the secret is a random 256-bit value (GenerateStaticToken),
// not a password.
type StaticToken struct {
	sum [sha256.Size]byte
	// Name is the operator's Subject when the token is accepted, so the
	// audit log can tell who acted; "static" when empty.
	Name string
}

// ParseStaticTokenHash parses a stored hash of the form "sha256:<64 hex>", as
// produced by HashStaticToken.
func ParseStaticTokenHash(s string) (*StaticToken, error) {
	h, ok := strings.CutPrefix(strings.TrimSpace(s), staticHashPrefix)
	if !ok {
		return nil, fmt.Errorf("operatorauth: static token hash must start with %q", staticHashPrefix)
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("operatorauth: static token hash must be %q followed by 64 hex digits", staticHashPrefix)
	}
	var st StaticToken
	copy(st.sum[:], b)
	return &st, nil
}

// HashStaticToken returns the value to store for token: "sha256:<hex>".
func HashStaticToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return staticHashPrefix + hex.EncodeToString(sum[:])
}

// GenerateStaticToken returns a new random operator token (32 bytes,
// base64url) and the hash to configure.
func GenerateStaticToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate static operator token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, HashStaticToken(token), nil
}

// Verify implements Verifier. The comparison of hashes takes constant time.
func (s *StaticToken) Verify(_ context.Context, credential string) (*Operator, error) {
	tok, err := bearerToken(credential)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], s.sum[:]) != 1 {
		return nil, fmt.Errorf("%w: static token does not match", ErrInvalidToken)
	}
	name := s.Name
	if name == "" {
		name = "static"
	}
	return &Operator{Method: "static", Subject: name}, nil
}
