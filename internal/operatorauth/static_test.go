package operatorauth

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/authfail"
)

func TestStaticToken(t *testing.T) {
	token, hash, err := GenerateStaticToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(token) < 43 || !strings.HasPrefix(hash, "sha256:") || strings.Contains(hash, token) {
		t.Fatalf("GenerateStaticToken = %q, %q", token, hash)
	}
	st, err := ParseStaticTokenHash(hash)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cred string
		want error
	}{
		{"valid bearer", "Bearer " + token, nil},
		{"valid bare", token, nil},
		{"wrong token", "Bearer " + token + "x", ErrInvalidToken},
		{"prefix of token", "Bearer " + token[:10], ErrInvalidToken},
		{"the hash itself", "Bearer " + hash, ErrInvalidToken},
		{"missing", "", ErrAuthMissing},
		{"other scheme", "Basic " + token, ErrAuthMissing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			op, err := st.Verify(context.Background(), c.cred)
			if c.want == nil {
				if err != nil || op.Method != "static" {
					t.Fatalf("Verify = %+v, %v", op, err)
				}
				return
			}
			if !errors.Is(err, c.want) || op != nil {
				t.Fatalf("Verify = %+v, %v; want %v", op, err, c.want)
			}
		})
	}
}

func TestParseStaticTokenHash(t *testing.T) {
	good := HashStaticToken("s3cret")
	for _, c := range []struct {
		in string
		ok bool
	}{
		{good, true},
		{"  " + good + "\n", true},
		{strings.TrimPrefix(good, "sha256:"), false},
		{"sha1:" + strings.TrimPrefix(good, "sha256:"), false},
		{good[:len(good)-2], false},
		{good[:len(good)-1] + "g", false},
		{"s3cret", false},
	} {
		if _, err := ParseStaticTokenHash(c.in); (err == nil) != c.ok {
			t.Errorf("ParseStaticTokenHash(%q) error = %v, want ok=%v", c.in, err, c.ok)
		}
	}
}

func TestErrorMapping(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		name   string
	}{
		{ErrAuthMissing, 401, "AuthMissing"},
		{ErrInvalidToken, 401, "InvalidToken"},
		{ErrExpired, 401, "ExpiredToken"},
		{ErrBadAudience, 401, "InvalidToken"},
		{ErrForbidden, 403, "Forbidden"},
		{ErrUnavailable, 503, "AuthUnavailable"},
		{errors.New("x"), 500, "InternalServerError"},
	} {
		xe := authfail.XRPCError(c.err)
		if xe.Status != c.status || xe.Name != c.name {
			t.Errorf("authfail.XRPCError(%v) = %d %s, want %d %s", c.err, xe.Status, xe.Name, c.status, c.name)
		}
		if authfail.Reason(c.err) == "" {
			t.Errorf("authfail.Reason(%v) empty", c.err)
		}
	}
}

func TestStaticTokenName(t *testing.T) {
	token, hash, err := GenerateStaticToken()
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseStaticTokenHash(hash)
	if err != nil {
		t.Fatal(err)
	}
	if op, err := st.Verify(t.Context(), token); err != nil || op.Subject != "static" {
		t.Fatalf("unnamed: %+v, %v", op, err)
	}
	st.Name = "ops-team"
	if op, err := st.Verify(t.Context(), token); err != nil || op.Subject != "ops-team" || op.Method != "static" {
		t.Fatalf("named: %+v, %v", op, err)
	}
}
