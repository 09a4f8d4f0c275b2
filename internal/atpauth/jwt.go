package atpauth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// MaxTokenSize bounds the length of a token this package will parse. Service
// tokens are a few hundred bytes; anything much larger is refused before it
// is decoded.
const MaxTokenSize = 4096

// maxJTILen bounds the jti claim; the reference implementation sends 32 hex
// characters.
const maxJTILen = 256

// The JWS algorithms atproto service auth uses.
const (
	algES256K = "ES256K" // secp256k1 / K-256
	algES256  = "ES256"  // NIST P-256
)

// b64 decodes the unpadded base64url of compact JWS, refusing padding and
// non-canonical trailing bits so each token has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// header is the decoded JOSE header of a token.
type header struct {
	Alg  string          `json:"alg"`
	Typ  string          `json:"typ"`
	Crit json.RawMessage `json:"crit"`
}

// claims is the decoded payload of a token. Until the signature has been
// verified nothing in here may be trusted or acted on, apart from iss and the
// header's alg, which select the key to verify with.
type claims struct {
	Iss string
	Aud string
	Exp int64
	Iat int64
	Lxm string
	Jti string
	// hasLxm records whether lxm was present at all.
	hasLxm bool
}

// rawClaims mirrors the payload for decoding; pointers tell absent from zero.
type rawClaims struct {
	Iss *string      `json:"iss"`
	Aud *string      `json:"aud"`
	Exp *json.Number `json:"exp"`
	Iat *json.Number `json:"iat"`
	Lxm *string      `json:"lxm"`
	Jti *string      `json:"jti"`
}

// token is a structurally valid, not yet verified, compact JWS.
type token struct {
	header       header
	claims       claims
	signingInput []byte // "<header>.<payload>" as sent
	signature    []byte // raw R‖S, 64 bytes
}

// parseToken decodes a compact JWS structurally: three base64url parts, a
// JSON object header with an alg, a JSON object payload with every claim
// service auth requires, and a 64-byte signature. It checks nothing that
// needs a key or a clock.
func parseToken(s string) (*token, error) {
	if len(s) > MaxTokenSize {
		return nil, fmt.Errorf("%w: token longer than %d bytes", ErrMalformed, MaxTokenSize)
	}
	h64, rest, ok := strings.Cut(s, ".")
	if !ok {
		return nil, fmt.Errorf("%w: not three dot-separated parts", ErrMalformed)
	}
	p64, s64, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(s64, ".") {
		return nil, fmt.Errorf("%w: not three dot-separated parts", ErrMalformed)
	}
	hb, err := b64.DecodeString(h64)
	if err != nil {
		return nil, fmt.Errorf("%w: header is not base64url: %w", ErrMalformed, err)
	}
	pb, err := b64.DecodeString(p64)
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64url: %w", ErrMalformed, err)
	}
	sig, err := b64.DecodeString(s64)
	if err != nil {
		return nil, fmt.Errorf("%w: signature is not base64url: %w", ErrMalformed, err)
	}

	var t token
	if err := decodeObject(hb, &t.header); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if t.header.Crit != nil {
		// RFC 7515 §4.1.11: extensions we do not understand must be refused.
		return nil, fmt.Errorf("%w: header has crit", ErrMalformed)
	}
	switch t.header.Alg {
	case algES256K, algES256:
	default:
		return nil, fmt.Errorf("%w: alg %.16q", ErrUnsupportedAlg, t.header.Alg)
	}
	switch strings.ToLower(t.header.Typ) {
	case "at+jwt", "application/at+jwt", "refresh+jwt", "application/refresh+jwt", "dpop+jwt", "application/dpop+jwt":
		return nil, fmt.Errorf("%w: typ %.32q", ErrBadType, t.header.Typ)
	}

	var rc rawClaims
	if err := decodeObject(pb, &rc); err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if t.claims, err = rc.validate(); err != nil {
		return nil, err
	}
	if len(sig) != 64 {
		return nil, fmt.Errorf("%w: signature is %d bytes, want raw 64-byte R||S", ErrBadSignature, len(sig))
	}
	t.signature = sig
	t.signingInput = []byte(s[:len(h64)+1+len(p64)])
	return &t, nil
}

// decodeObject decodes one JSON object into v, refusing trailing data.
func decodeObject(data []byte, v any) error {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return fmt.Errorf("not a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("trailing data after JSON object")
	}
	return nil
}

// validate checks presence and types of the claims service auth requires.
func (rc *rawClaims) validate() (claims, error) {
	var c claims
	if rc.Iss == nil || *rc.Iss == "" {
		return c, fmt.Errorf("%w: iss missing", ErrBadClaims)
	}
	if rc.Aud == nil || *rc.Aud == "" {
		return c, fmt.Errorf("%w: aud missing", ErrBadClaims)
	}
	if rc.Jti == nil || *rc.Jti == "" || len(*rc.Jti) > maxJTILen {
		return c, fmt.Errorf("%w: jti missing or longer than %d bytes", ErrBadClaims, maxJTILen)
	}
	exp, err := numericDate(rc.Exp)
	if err != nil {
		return c, fmt.Errorf("%w: exp: %w", ErrBadClaims, err)
	}
	iat, err := numericDate(rc.Iat)
	if err != nil {
		return c, fmt.Errorf("%w: iat: %w", ErrBadClaims, err)
	}
	if exp < iat {
		return c, fmt.Errorf("%w: exp before iat", ErrBadClaims)
	}
	c = claims{Iss: *rc.Iss, Aud: *rc.Aud, Exp: exp, Iat: iat, Jti: *rc.Jti}
	if rc.Lxm != nil {
		c.Lxm, c.hasLxm = *rc.Lxm, true
	}
	return c, nil
}

// maxNumericDate keeps dates far from int64 overflow when leeways and
// lifetimes are added (year 5138).
const maxNumericDate = 1 << 37

// numericDate parses a JWT NumericDate: seconds since the epoch, as a JSON
// number. Fractions are truncated, as RFC 7519 permits them.
func numericDate(n *json.Number) (int64, error) {
	if n == nil {
		return 0, fmt.Errorf("missing")
	}
	if i, err := n.Int64(); err == nil {
		if i < 0 || i > maxNumericDate {
			return 0, fmt.Errorf("out of range")
		}
		return i, nil
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return 0, fmt.Errorf("not a date in range")
	}
	return int64(f), nil
}
