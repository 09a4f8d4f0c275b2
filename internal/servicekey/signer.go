package servicekey

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ServiceAuthSigner signs the service-auth JWTs this service sends: aud is
// the DID of the service called (a PDS), lxm the method (NSID) the token
// is good for, ttl its lifetime. Code that calls other atproto services
// depends on this interface, not on Keyring.
type ServiceAuthSigner interface {
	SignServiceAuth(aud, lxm string, ttl time.Duration) (string, error)
}

// Signer signs as DID with the keyring's current key.
type Signer struct {
	DID  string
	Keys *Keyring
}

var _ ServiceAuthSigner = Signer{}

// MaxTTL caps a token's lifetime, as atproto verifiers do.
const MaxTTL = time.Hour

// SignServiceAuth returns a compact JWT (ES256K) with iss DID, aud, lxm,
// iat, exp and a random jti, as atproto's createServiceJwt makes them.
func (s Signer) SignServiceAuth(aud, lxm string, ttl time.Duration) (string, error) {
	if s.DID == "" || s.Keys == nil {
		return "", errors.New("servicekey: the signer has no DID or keyring")
	}
	if aud == "" || ttl <= 0 || ttl > MaxTTL {
		return "", fmt.Errorf("servicekey: want an audience and a lifetime up to %s", MaxTTL)
	}
	key, err := s.Keys.current()
	if err != nil {
		return "", err
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("servicekey: %w", err)
	}
	now := s.Keys.now()
	claims := map[string]any{"iss": s.DID, "aud": aud, "iat": now.Unix(), "exp": now.Add(ttl).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(nonce)}
	if lxm != "" {
		claims["lxm"] = lxm
	}
	header, err := json.Marshal(map[string]string{"typ": "JWT", "alg": "ES256K"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	// HashAndSign: SHA-256, low-S, r||s: the JWS form of ES256K.
	sig, err := key.priv.HashAndSign([]byte(signing))
	if err != nil {
		return "", fmt.Errorf("servicekey: signing: %w", err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Sign signs data with the current key (SHA-256, low-S r||s) and returns
// the signature and the key's id.
func (k *Keyring) Sign(data []byte) (sig []byte, keyID string, err error) {
	key, err := k.current()
	if err != nil {
		return nil, "", err
	}
	sig, err = key.priv.HashAndSign(data)
	return sig, key.ID, err
}
