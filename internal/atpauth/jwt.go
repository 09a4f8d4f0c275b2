package atpauth

import (
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
	Alg     string
	Typ     string
	hasCrit bool
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
	hm, err := decodeObject(hb)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if err := optString(hm, "alg", &t.header.Alg); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if err := optString(hm, "typ", &t.header.Typ); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrMalformed, err)
	}
	if _, t.header.hasCrit = hm["crit"]; t.header.hasCrit {
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

	pm, err := decodeObject(pb)
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %w", ErrMalformed, err)
	}
	if t.claims, err = decodeClaims(pm); err != nil {
		return nil, err
	}
	if len(sig) != 64 {
		return nil, fmt.Errorf("%w: signature is %d bytes, want raw 64-byte R||S", ErrBadSignature, len(sig))
	}
	t.signature = sig
	t.signingInput = []byte(s[:len(h64)+1+len(p64)])
	return &t, nil
}

// decodeObject decodes one JSON object into its members. Member names are
// matched exactly (encoding/json's struct decoding would also match "ISS" or
// "Aud", which JavaScript verifiers would not); of duplicate members the last
// wins, as in JSON.parse.
func decodeObject(data []byte) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("invalid JSON object: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	return m, nil
}

// optString decodes member name of m into dst if present; it must be a
// string.
func optString(m map[string]json.RawMessage, name string, dst *string) error {
	raw, ok := m[name]
	if !ok {
		return nil
	}
	if len(raw) == 0 || raw[0] != '"' {
		return fmt.Errorf("%s is not a string", name)
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// decodeClaims checks presence and types of the claims service auth
// requires. A claim of the wrong type is malformed; a missing one is
// ErrBadClaims.
func decodeClaims(m map[string]json.RawMessage) (claims, error) {
	var c claims
	for _, f := range []struct {
		name string
		dst  *string
	}{{"iss", &c.Iss}, {"aud", &c.Aud}, {"jti", &c.Jti}, {"lxm", &c.Lxm}} {
		if err := optString(m, f.name, f.dst); err != nil {
			return claims{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	_, c.hasLxm = m["lxm"]
	switch {
	case c.Iss == "":
		return claims{}, fmt.Errorf("%w: iss missing", ErrBadClaims)
	case c.Aud == "":
		return claims{}, fmt.Errorf("%w: aud missing", ErrBadClaims)
	case c.Jti == "" || len(c.Jti) > maxJTILen:
		return claims{}, fmt.Errorf("%w: jti missing or longer than %d bytes", ErrBadClaims, maxJTILen)
	}
	var err error
	if c.Exp, err = numericDate(m, "exp"); err != nil {
		return claims{}, err
	}
	if c.Iat, err = numericDate(m, "iat"); err != nil {
		return claims{}, err
	}
	if c.Exp < c.Iat {
		return claims{}, fmt.Errorf("%w: exp before iat", ErrBadClaims)
	}
	return c, nil
}

// maxNumericDate keeps dates far from int64 overflow when leeways and
// lifetimes are added (year 5138).
const maxNumericDate = 1 << 37

// numericDate parses member name of m as a JWT NumericDate: seconds since
// the epoch, as a JSON number. Fractions are truncated, as RFC 7519 permits
// them.
func numericDate(m map[string]json.RawMessage, name string) (int64, error) {
	raw, ok := m[name]
	if !ok {
		return 0, fmt.Errorf("%w: %s missing", ErrBadClaims, name)
	}
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return 0, fmt.Errorf("%w: %s is not a number", ErrMalformed, name)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrMalformed, name, err)
	}
	if i, err := n.Int64(); err == nil {
		if i < 0 || i > maxNumericDate {
			return 0, fmt.Errorf("%w: %s out of range", ErrBadClaims, name)
		}
		return i, nil
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return 0, fmt.Errorf("%w: %s out of range", ErrBadClaims, name)
	}
	return int64(f), nil
}
