package push

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
)

// APNsConfig configures the APNs provider with token-based (.p8)
// authentication.
type APNsConfig struct {
	// AuthKey is the .p8 signing key's PEM, from the Apple developer
	// account.
	AuthKey []byte
	// KeyID and TeamID identify the key and the team.
	KeyID, TeamID string
	// Topic is the app's bundle ID.
	Topic string
	// Host is the APNs base URL; empty is production
	// (https://api.push.apple.com). Development uses
	// https://api.sandbox.push.apple.com.
	Host string
	// TLS, when set, replaces the default client TLS settings (tests point
	// it at a local server's certificate).
	TLS *tls.Config
	// Timeout bounds one send; zero is 10 s.
	Timeout time.Duration
}

// APNs sends background wake-ups through Apple's HTTP/2 provider API,
// with github.com/sideshow/apns2.
type APNs struct {
	client *apns2.Client
	topic  string
}

// NewAPNs builds the provider; it connects on the first send.
func NewAPNs(cfg APNsConfig) (*APNs, error) {
	key, err := token.AuthKeyFromBytes(cfg.AuthKey)
	if err != nil {
		return nil, fmt.Errorf("APNs auth key: %w", err)
	}
	if cfg.KeyID == "" || cfg.TeamID == "" || cfg.Topic == "" {
		return nil, fmt.Errorf("APNs needs key_id, team_id and topic")
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	tlsCfg := cfg.TLS
	if tlsCfg == nil {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	host := cfg.Host
	if host == "" {
		host = apns2.HostProduction
	}
	// APNs speaks HTTP/2 only; keep the connection open and ping it when
	// idle, as Apple asks providers to.
	tr := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, Protocols: new(http.Protocols),
		HTTP2: &http.HTTP2Config{SendPingTimeout: apns2.ReadIdleTimeout}}
	tr.Protocols.SetHTTP2(true)
	client := &apns2.Client{
		Token:      &token.Token{AuthKey: key, KeyID: cfg.KeyID, TeamID: cfg.TeamID},
		HTTPClient: &http.Client{Transport: tr, Timeout: timeout},
		Host:       host,
	}
	return &APNs{client: client, topic: cfg.Topic}, nil
}

// apnsPayload asks iOS to wake the app in the background, with no alert,
// no badge, no sound and nothing else.
var apnsPayload = payload.NewPayload().ContentAvailable()

// Send implements Provider.
func (a *APNs) Send(ctx context.Context, tok []byte) error {
	n := &apns2.Notification{
		DeviceToken: string(tok),
		Topic:       a.topic,
		PushType:    apns2.PushTypeBackground,
		Priority:    apns2.PriorityLow,
		Expiration:  time.Now().Add(time.Hour),
		Payload:     apnsPayload,
	}
	res, err := a.client.PushWithContext(ctx, n)
	if err != nil {
		return fmt.Errorf("APNs send: %w", err)
	}
	if res.Sent() {
		return nil
	}
	switch res.Reason {
	case apns2.ReasonUnregistered, apns2.ReasonBadDeviceToken, apns2.ReasonDeviceTokenNotForTopic, apns2.ReasonExpiredToken:
		return ErrUnregistered
	}
	if res.StatusCode == http.StatusGone {
		return ErrUnregistered
	}
	return fmt.Errorf("APNs refused the notification: %d %s", res.StatusCode, res.Reason)
}
