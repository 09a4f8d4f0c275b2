package push

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// The providers a token may name.
const (
	ProviderAPNs        = "apns"
	ProviderUnifiedPush = "unifiedpush"
)

// MaxTokenLen bounds a registered token's text.
const MaxTokenLen = 4096

// ErrBadToken means a registration's token is not one this server can
// send to; the message says what was expected.
var ErrBadToken = errors.New("push: bad token")

// Subscription is a UnifiedPush (Web Push) subscription: the distributor
// endpoint and the client's RFC 8291 keys, in the shape of the browser's
// PushSubscription.toJSON().
type Subscription struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// Registration is a parsed registerDeviceToken: the provider and the token
// to seal, in canonical form.
type Registration struct {
	Provider string
	Token    []byte
}

// ParseRegistration reads registerDeviceToken's platform and pushToken.
// An "ios" platform (or none, the lexicon's original meaning) names an
// APNs device token in hex; "android" and "web" name a UnifiedPush
// subscription as JSON (docs/push.md). insecureHosts lists endpoint host
// names that may be reached over plain http (development and tests).
func ParseRegistration(platform, token string, insecureHosts []string) (Registration, error) {
	if len(token) > MaxTokenLen {
		return Registration{}, fmt.Errorf("%w: longer than %d characters", ErrBadToken, MaxTokenLen)
	}
	switch platform {
	case "", "ios":
		b, err := hex.DecodeString(token)
		if err != nil || len(b) < 16 || len(b) > 256 {
			return Registration{}, fmt.Errorf("%w: an APNs device token is 16 to 256 bytes in hex", ErrBadToken)
		}
		return Registration{Provider: ProviderAPNs, Token: []byte(hex.EncodeToString(b))}, nil
	case "android", "web":
		var s Subscription
		if err := json.Unmarshal([]byte(token), &s); err != nil {
			return Registration{}, fmt.Errorf("%w: a UnifiedPush token is a JSON subscription {endpoint, keys: {p256dh, auth}}", ErrBadToken)
		}
		if err := s.validate(insecureHosts); err != nil {
			return Registration{}, err
		}
		b, err := json.Marshal(s)
		if err != nil {
			return Registration{}, fmt.Errorf("encode subscription: %w", err)
		}
		return Registration{Provider: ProviderUnifiedPush, Token: b}, nil
	default:
		return Registration{}, fmt.Errorf("%w: platform must be ios, android or web", ErrBadToken)
	}
}

func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

func (s Subscription) validate(insecureHosts []string) error {
	u, err := url.Parse(s.Endpoint)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%w: endpoint must be an absolute https URL without credentials", ErrBadToken)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && containsHost(insecureHosts, u.Hostname()):
	default:
		return fmt.Errorf("%w: endpoint must be an https URL", ErrBadToken)
	}
	if k, err := decodeB64URL(s.Keys.P256dh); err != nil || len(k) != 65 || k[0] != 4 {
		return fmt.Errorf("%w: keys.p256dh must be an uncompressed P-256 point in base64url", ErrBadToken)
	}
	if a, err := decodeB64URL(s.Keys.Auth); err != nil || len(a) != 16 {
		return fmt.Errorf("%w: keys.auth must be 16 bytes in base64url", ErrBadToken)
	}
	return nil
}

func containsHost(hosts []string, h string) bool {
	for _, x := range hosts {
		if strings.EqualFold(x, h) {
			return true
		}
	}
	return false
}
