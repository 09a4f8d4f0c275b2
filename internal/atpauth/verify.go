package atpauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Verifier defaults and limits.
const (
	DefaultLeeway           = 5 * time.Second
	DefaultMaxTokenLifetime = 60 * time.Second
	// MaxMaxTokenLifetime is the largest MaxTokenLifetime a Config may set.
	MaxMaxTokenLifetime = time.Hour
)

// KeyResolver finds the current #atproto signing key of a DID. *Resolver is
// the production implementation.
type KeyResolver interface {
	// SigningKey returns did's key. With forceRefresh the implementation
	// should bypass its cache, because a signature just failed with the
	// cached key (the account may have rotated it).
	SigningKey(ctx context.Context, did string, forceRefresh bool) (atcrypto.PublicKey, error)
}

// Config configures a Verifier. Zero durations take their defaults.
type Config struct {
	// ServiceDID is this service's DID, the only accepted audience (bare,
	// or with a #serviceId fragment). Required.
	ServiceDID string
	// Leeway absorbs clock skew in the exp and iat checks. Default 5s.
	Leeway time.Duration
	// MaxTokenLifetime is the largest exp − iat accepted. Default 60s; at
	// most one hour.
	MaxTokenLifetime time.Duration
	// LXMOptional accepts tokens without an lxm claim (a present lxm must
	// still match). Development only: the adapter must refuse it in
	// production mode.
	LXMOptional bool
	// Keys resolves issuer DIDs to signing keys. Required.
	Keys KeyResolver
	// Replay remembers used token IDs. Required.
	Replay ReplayStore
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Verifier verifies atproto service-auth tokens. It is safe for concurrent
// use.
type Verifier struct {
	cfg Config
}

// NewVerifier checks cfg, applies defaults and returns a Verifier.
func NewVerifier(cfg Config) (*Verifier, error) {
	did, err := syntax.ParseDID(cfg.ServiceDID)
	if err != nil || strings.Contains(cfg.ServiceDID, "#") {
		return nil, fmt.Errorf("atpauth: ServiceDID must be a DID without fragment, e.g. did:web:chat.example.com")
	}
	cfg.ServiceDID = did.String()
	setDefault(&cfg.Leeway, DefaultLeeway)
	setDefault(&cfg.MaxTokenLifetime, DefaultMaxTokenLifetime)
	if cfg.MaxTokenLifetime > MaxMaxTokenLifetime {
		return nil, fmt.Errorf("atpauth: MaxTokenLifetime %s exceeds the maximum of %s", cfg.MaxTokenLifetime, MaxMaxTokenLifetime)
	}
	if cfg.Keys == nil {
		return nil, fmt.Errorf("atpauth: a key resolver is required")
	}
	if cfg.Replay == nil {
		return nil, fmt.Errorf("atpauth: a replay store is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg}, nil
}

// Verified is a token that passed every check. Verify returns one only on
// success, so nothing can act on the claims of an unverified token.
type Verified struct {
	// DID is the caller: the token's iss without any #fragment. sub, if
	// present, is ignored.
	DID string
	// IssuerFragment is iss's #fragment (without '#'), usually empty; a
	// service issuer such as did:web:labeler.example#atproto_labeler sets
	// it.
	IssuerFragment string
	// LXM is the lexicon method the token was minted for; empty only when
	// LXMOptional let a token without one through.
	LXM string
	// IssuedAt and ExpiresAt are the token's iat and exp.
	IssuedAt, ExpiresAt time.Time
}

// Verify checks credential — an Authorization header value ("Bearer
// <jwt>") or a bare token — for a call to the method nsid, and returns the
// verified caller.
//
// The order of checks keeps unverified data inert: the header's alg and typ
// and the claims' shape are checked structurally; iss selects the key; then
// the signature is verified (re-resolving the DID once on failure, for key
// rotation); only then are aud, exp, iat, the lifetime, lxm and finally the
// single-use jti checked, with iat against the start of the replay store's
// memory (ErrIssuedBeforeReplayMemory). Every error wraps one sentinel; see
// authfail.XRPCError.
func (v *Verifier) Verify(ctx context.Context, credential, nsid string) (*Verified, error) {
	raw, err := bearerToken(credential)
	if err != nil {
		return nil, err
	}
	tok, err := parseToken(raw)
	if err != nil {
		return nil, err
	}
	did, fragment, err := splitIssuer(tok.claims.Iss)
	if err != nil {
		return nil, err
	}
	if err := v.verifySignature(ctx, did, tok); err != nil {
		return nil, err
	}

	c := &tok.claims
	if !v.audienceOK(c.Aud) {
		return nil, fmt.Errorf("%w", ErrBadAudience)
	}
	now := v.cfg.Now()
	exp, iat := time.Unix(c.Exp, 0), time.Unix(c.Iat, 0)
	if now.After(exp.Add(v.cfg.Leeway)) {
		return nil, fmt.Errorf("%w: expired %s ago", ErrExpired, now.Sub(exp).Truncate(time.Second))
	}
	if iat.After(now.Add(v.cfg.Leeway)) {
		return nil, fmt.Errorf("%w: issued %s in the future", ErrNotYetValid, iat.Sub(now).Truncate(time.Second))
	}
	if lifetime := exp.Sub(iat); lifetime > v.cfg.MaxTokenLifetime {
		return nil, fmt.Errorf("%w: %s > %s", ErrLifetimeTooLong, lifetime, v.cfg.MaxTokenLifetime)
	}
	switch {
	case !c.hasLxm && v.cfg.LXMOptional:
	case !c.hasLxm:
		return nil, fmt.Errorf("%w: lxm missing", ErrBadLexiconMethod)
	case c.Lxm != nsid:
		return nil, fmt.Errorf("%w: lxm does not match the called method", ErrBadLexiconMethod)
	}

	rec, err := v.cfg.Replay.Remember(ctx, replayKey(did, c.Jti), exp.Add(v.cfg.Leeway))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReplayUnavailable, err)
	}
	if !rec.Fresh {
		return nil, fmt.Errorf("%w", ErrReplayed)
	}
	// A token accepted before the store's memory began had iat at most
	// Leeway past that moment (the future-iat check above), so only a
	// token issued at least Leeway after it cannot have been used then.
	if iat.Before(rec.Since.Add(v.cfg.Leeway)) {
		return nil, fmt.Errorf("%w: issued %s before the replay memory began (+%s leeway)", ErrIssuedBeforeReplayMemory,
			rec.Since.Sub(iat).Truncate(time.Second), v.cfg.Leeway)
	}
	return &Verified{DID: did, IssuerFragment: fragment, LXM: c.Lxm, IssuedAt: iat, ExpiresAt: exp}, nil
}

// verifySignature checks tok's signature with did's key, and once more with
// a freshly resolved key if that fails.
func (v *Verifier) verifySignature(ctx context.Context, did string, tok *token) error {
	key, err := v.cfg.Keys.SigningKey(ctx, did, false)
	if err != nil {
		return fmt.Errorf("resolve issuer key: %w", err)
	}
	err = checkSignature(key, tok)
	if err == nil {
		return nil
	}
	fresh, rerr := v.cfg.Keys.SigningKey(ctx, did, true)
	if rerr != nil {
		if errors.Is(rerr, ErrDIDUnavailable) {
			return err // keep the signature failure; the refresh told us nothing
		}
		return fmt.Errorf("re-resolve issuer key: %w", rerr)
	}
	if fresh.Equal(key) {
		return err
	}
	return checkSignature(fresh, tok)
}

// checkSignature verifies tok's raw R‖S signature with key. High-S
// signatures are accepted, as the atproto reference verifier accepts them for
// JWTs (allowMalleableSig); a malleated copy of a token still carries the
// same jti, so the replay check refuses it.
func checkSignature(key atcrypto.PublicKey, tok *token) error {
	if keyAlg(key) != tok.header.Alg {
		return fmt.Errorf("%w: token alg %s, key alg %s", ErrAlgKeyMismatch, tok.header.Alg, keyAlg(key))
	}
	var err error
	switch k := key.(type) {
	case *atcrypto.PublicKeyK256:
		err = k.HashAndVerifyLenient(tok.signingInput, tok.signature)
	case *atcrypto.PublicKeyP256:
		err = k.HashAndVerifyLenient(tok.signingInput, tok.signature)
	default:
		err = errors.New("unsupported key type")
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return nil
}

// audienceOK reports whether aud names this service: its DID, bare or with a
// non-empty #serviceId fragment.
func (v *Verifier) audienceOK(aud string) bool {
	did, frag, hasFrag := strings.Cut(aud, "#")
	return did == v.cfg.ServiceDID && (!hasFrag || frag != "")
}

// bearerToken extracts the token from an Authorization header value, or
// returns a bare token unchanged.
func bearerToken(credential string) (string, error) {
	credential = strings.TrimSpace(credential)
	if credential == "" || strings.EqualFold(credential, "Bearer") {
		return "", fmt.Errorf("%w: no credential", ErrAuthMissing)
	}
	scheme, tok, ok := strings.Cut(credential, " ")
	if !ok {
		return credential, nil
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return "", fmt.Errorf("%w: not a Bearer credential", ErrAuthMissing)
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", fmt.Errorf("%w: empty Bearer token", ErrAuthMissing)
	}
	return tok, nil
}

// splitIssuer validates iss and splits it into the DID and its fragment.
func splitIssuer(iss string) (did, fragment string, err error) {
	did, fragment, hasFrag := strings.Cut(iss, "#")
	if hasFrag && fragment == "" {
		return "", "", fmt.Errorf("%w: empty fragment", ErrBadIssuer)
	}
	if _, perr := syntax.ParseDID(did); perr != nil {
		return "", "", fmt.Errorf("%w: not a DID", ErrBadIssuer)
	}
	if !strings.HasPrefix(did, "did:plc:") && !strings.HasPrefix(did, "did:web:") {
		return "", "", fmt.Errorf("%w: unsupported DID method", ErrBadIssuer)
	}
	return did, fragment, nil
}

// replayKey names a token ID in the replay store. It hashes issuer and jti so
// that stored keys are short, bounded and free of identities.
func replayKey(did, jti string) string {
	h := sha256.New()
	h.Write([]byte(did))
	h.Write([]byte{0})
	h.Write([]byte(jti))
	return hex.EncodeToString(h.Sum(nil)[:16])
}
