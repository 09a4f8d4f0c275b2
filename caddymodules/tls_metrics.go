package caddymodules

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/metrics"
)

// Caddy v2.11 exports no certificate metrics. certmagic emits
// "cached_managed_cert" with the certificate's names when it puts a
// managed certificate in its cache (at start, from storage, and after
// obtaining one), and "cert_obtained" with its name after it obtains or
// renews one (a renewal replaces the cached certificate without the first
// event). certExpiry answers both by reading the certificate from storage
// and exporting its expiry as
// cairn_tls_certificate_expiry_timestamp_seconds{name}.
//
// The names are the sites the operator configured: operator configuration,
// not a user's identity, and few (metrics.MaxCertificateNames bounds them
// should on-demand TLS add many).
type certExpiry struct {
	storage certmagic.Storage
	metrics *metrics.Metrics
	logger  *zap.Logger
}

// watchCertificates subscribes certExpiry to this config's events app. A
// subscription is in-memory wiring only, and must precede the events
// app's start, so it happens here in Provision.
func (a *App) watchCertificates(ctx caddy.Context) error {
	app, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("cairn certificate metrics: %w", err)
	}
	events, ok := app.(*caddyevents.App)
	if !ok {
		return fmt.Errorf("cairn certificate metrics: the events app is a %T", app)
	}
	h := certExpiry{storage: ctx.Storage(), metrics: a.metrics, logger: a.logger}
	for _, event := range []string{"cached_managed_cert", "cert_obtained"} {
		if err := events.On(event, h); err != nil {
			return fmt.Errorf("cairn certificate metrics: %w", err)
		}
	}
	return nil
}

// certReadTimeout bounds the storage reads of one event.
const certReadTimeout = 10 * time.Second

// Handle implements caddyevents.Handler. A certificate it cannot read is
// logged and skipped: a metric must not stand in the way of serving it.
func (c certExpiry) Handle(ctx context.Context, e caddy.Event) error {
	names, _ := e.Data["sans"].([]string)
	if id, ok := e.Data["identifier"].(string); ok {
		names = append(names, id)
	}
	if len(names) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, certReadTimeout)
	defer cancel()
	// One directory per issuer: the certificate is under the one that
	// issued it.
	issuers, err := c.storage.List(ctx, certmagic.StorageKeys.CertsPrefix(""), false)
	if err != nil {
		c.logger.Warn("certificate expiry: listing certificate storage", zap.Error(err))
		return nil
	}
	for _, name := range names {
		var latest time.Time
		for _, issuer := range issuers {
			raw, err := c.storage.Load(ctx, certmagic.StorageKeys.SiteCert(path.Base(issuer), name))
			if err != nil {
				continue
			}
			if notAfter, ok := leafNotAfter(raw); ok && notAfter.After(latest) {
				latest = notAfter
			}
		}
		if !latest.IsZero() {
			c.metrics.CertificateExpiry(name, latest)
		}
	}
	return nil
}

// leafNotAfter returns the expiry of the first certificate in a PEM chain.
func leafNotAfter(chain []byte) (time.Time, bool) {
	block, _ := pem.Decode(chain)
	if block == nil || block.Type != "CERTIFICATE" {
		return time.Time{}, false
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return time.Time{}, false
	}
	return cert.NotAfter, true
}

var _ caddyevents.Handler = certExpiry{}
