package atpauth

import (
	"errors"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/authfail"
)

func TestParseToken(t *testing.T) {
	k := newK256(t)
	good := sign(t, k, hdrFor(algES256K), goodClaims("j"))
	parts := strings.Split(good, ".")
	// The signature is random: when it holds neither '-' nor '_' (about one
	// run in fifteen), the alphabet swap changes nothing, so force one
	// standard-alphabet character into it.
	std := strings.NewReplacer("-", "+", "_", "/").Replace(good)
	if std == good {
		std = parts[0] + "." + parts[1] + ".+" + parts[2][1:]
	}
	cases := []struct {
		name string
		tok  string
		want error
	}{
		{"valid", good, nil},
		{"two parts", parts[0] + "." + parts[1], ErrMalformed},
		{"four parts", good + ".x", ErrMalformed},
		{"padded", parts[0] + "=." + parts[1] + "." + parts[2], ErrMalformed},
		{"std base64", std, ErrMalformed},
		{"header not JSON", "bm9wZQ." + parts[1] + "." + parts[2], ErrMalformed},
		{"header JSON array", b64json(t, []string{"ES256K"}) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"header trailing data", b64raw(`{"alg":"ES256K"}{}`) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"alg missing", b64raw(`{"typ":"JWT"}`) + "." + parts[1] + "." + parts[2], ErrUnsupportedAlg},
		{"alg lower case", b64raw(`{"alg":"es256k"}`) + "." + parts[1] + "." + parts[2], ErrUnsupportedAlg},
		{"payload not JSON", parts[0] + ".bm9wZQ." + parts[2], ErrMalformed},
		{"exp a string of letters", parts[0] + "." + b64raw(`{"iss":"did:plc:a","aud":"did:web:b","exp":"soon","iat":1,"jti":"x"}`) + "." + parts[2], ErrMalformed},
		{"exp negative", parts[0] + "." + b64raw(`{"iss":"did:plc:a","aud":"did:web:b","exp":-1,"iat":1,"jti":"x"}`) + "." + parts[2], ErrBadClaims},
		{"exp huge", parts[0] + "." + b64raw(`{"iss":"did:plc:a","aud":"did:web:b","exp":1e300,"iat":1,"jti":"x"}`) + "." + parts[2], ErrBadClaims},
		{"payload null", parts[0] + "." + b64raw(`null`) + "." + parts[2], ErrMalformed},
		{"claim names in other case", parts[0] + "." + b64raw(`{"ISS":"did:plc:a","Aud":"did:web:b","exp":2,"iat":1,"jti":"x"}`) + "." + parts[2], ErrBadClaims},
		{"exp a numeric string", parts[0] + "." + b64raw(`{"iss":"did:plc:a","aud":"did:web:b","exp":"2","iat":1,"jti":"x"}`) + "." + parts[2], ErrMalformed},
		{"typ not a string", b64raw(`{"alg":"ES256K","typ":1}`) + "." + parts[1] + "." + parts[2], ErrMalformed},
		{"signature 63 bytes", parts[0] + "." + parts[1] + "." + parts[2][:84], ErrBadSignature},
		{"signature DER-sized", parts[0] + "." + parts[1] + "." + parts[2] + "AAAAAAAA", ErrBadSignature},
		{"too long", good + strings.Repeat("A", MaxTokenSize), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok, err := parseToken(c.tok)
			if c.want == nil {
				if err != nil {
					t.Fatalf("parseToken: %v", err)
				}
				if string(tok.signingInput) != parts[0]+"."+parts[1] || len(tok.signature) != 64 || tok.claims.Jti != "j" {
					t.Fatalf("parseToken = %+v", tok)
				}
				return
			}
			if !errors.Is(err, c.want) || tok != nil {
				t.Fatalf("parseToken = %v, %v; want %v", tok, err, c.want)
			}
		})
	}
}

func b64raw(s string) string { return b64.EncodeToString([]byte(s)) }

// FuzzParse checks that the structural parser never panics, that everything
// it refuses wraps a sentinel error, and that everything it accepts satisfies
// the invariants Verify relies on.
func FuzzParse(f *testing.F) {
	k := newK256(f)
	f.Add(sign(f, k, hdrFor(algES256K), goodClaims("seed")))
	f.Add(sign(f, k, map[string]any{"alg": "none"}, goodClaims("seed")))
	f.Add(sign(f, k, hdrFor(algES256), map[string]any{"iss": 1, "exp": 1.5e9}))
	f.Add("e30.e30.")
	f.Add("..")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := parseToken(s)
		if err != nil {
			if authfail.Reason(err) == authfail.ReasonInternal {
				t.Fatalf("error without sentinel: %v", err)
			}
			if tok != nil {
				t.Fatal("token returned with an error")
			}
			return
		}
		if tok.header.Alg != algES256K && tok.header.Alg != algES256 {
			t.Fatalf("accepted alg %q", tok.header.Alg)
		}
		c := tok.claims
		if len(tok.signature) != 64 || c.Iss == "" || c.Aud == "" || c.Jti == "" || len(c.Jti) > maxJTILen ||
			c.Exp < c.Iat || c.Iat < 0 || c.Exp > maxNumericDate || len(s) > MaxTokenSize {
			t.Fatalf("accepted token breaks an invariant: %+v", tok)
		}
		if !strings.HasPrefix(s, string(tok.signingInput)+".") {
			t.Fatal("signing input is not the token's prefix")
		}
	})
}
