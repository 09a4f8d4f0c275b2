package push

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
)

// UnifiedPushConfig configures the UnifiedPush provider.
type UnifiedPushConfig struct {
	// Keys holds the VAPID key pair the requests are signed with.
	Keys Keys
	// Subscriber is the VAPID contact (a mailto: address or https URL).
	Subscriber string
	// AllowHosts lists endpoint host names that may be plain http and on
	// a non-public address (development and tests only).
	AllowHosts []string
	// Timeout bounds one send; zero is 10 s.
	Timeout time.Duration
}

// UnifiedPush POSTs RFC 8291-encrypted wake-ups to the distributor
// endpoint a device registered (RFC 8030), with
// github.com/SherClockHolmes/webpush-go. Endpoints are client-supplied
// URLs, so connections go to public addresses only.
type UnifiedPush struct {
	cfg    UnifiedPushConfig
	client *http.Client
}

// NewUnifiedPush builds the provider.
func NewUnifiedPush(cfg UnifiedPushConfig) *UnifiedPush {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = atpauth.PublicDialer(net.Dialer{Timeout: cfg.Timeout}, cfg.AllowHosts)
	return &UnifiedPush{cfg: cfg, client: &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		// A distributor answers; it does not send us elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Send implements Provider.
func (u *UnifiedPush) Send(ctx context.Context, tok []byte) error {
	var sub Subscription
	if err := json.Unmarshal(tok, &sub); err != nil {
		return fmt.Errorf("UnifiedPush subscription: %w", err)
	}
	// Revalidate: the allowed hosts may have changed since registration.
	if err := sub.validate(u.cfg.AllowHosts); err != nil {
		return ErrUnregistered
	}
	ws := &webpush.Subscription{Endpoint: sub.Endpoint, Keys: webpush.Keys{P256dh: sub.Keys.P256dh, Auth: sub.Keys.Auth}}
	res, err := webpush.SendNotificationWithContext(ctx, wakePayload, ws, &webpush.Options{
		HTTPClient:      u.client,
		Subscriber:      u.cfg.Subscriber,
		TTL:             3600,
		Urgency:         webpush.UrgencyHigh,
		Topic:           "wake", // a newer wake-up replaces an undelivered one
		VAPIDPublicKey:  u.cfg.Keys.VAPIDPublic,
		VAPIDPrivateKey: u.cfg.Keys.VAPIDPrivate,
	})
	if err != nil {
		return fmt.Errorf("UnifiedPush send: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	_ = res.Body.Close()
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return nil
	case res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusGone:
		return ErrUnregistered
	default:
		return fmt.Errorf("UnifiedPush endpoint answered %d", res.StatusCode)
	}
}
