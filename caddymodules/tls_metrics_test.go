package caddymodules

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/metrics"
)

// TestCertificateExpiryFollowsRenewals stores a certificate as certmagic
// does, reports it through the event Caddy emits when it caches it, then
// stores a renewed one and reports the renewal's event (certmagic replaces
// a renewed certificate in its cache without a second caching event): the
// gauge follows the newest certificate of the name.
func TestCertificateExpiryFollowsRenewals(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	m := metrics.New()
	h := certExpiry{storage: storage, metrics: m, logger: zap.NewNop()}
	const name, issuer = "chat.example.com", "acme-v02.api.letsencrypt.org-directory"
	put := func(notAfter time.Time) {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: notAfter.Add(-90 * 24 * time.Hour), NotAfter: notAfter}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := storage.Store(t.Context(), certmagic.StorageKeys.SiteCert(issuer, name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
			t.Fatal(err)
		}
	}
	expiry := func() float64 {
		t.Helper()
		families, err := m.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "cairn_tls_certificate_expiry_timestamp_seconds" {
				continue
			}
			for _, s := range f.GetMetric() {
				if s.GetLabel()[0].GetValue() == name {
					return s.GetGauge().GetValue()
				}
			}
		}
		return 0
	}

	first := time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second)
	put(first)
	if err := h.Handle(t.Context(), caddy.Event{Data: map[string]any{"sans": []string{name}}}); err != nil {
		t.Fatal(err)
	}
	if got := expiry(); got != float64(first.Unix()) {
		t.Fatalf("after caching: expiry %v, want %v", got, first.Unix())
	}
	renewed := first.Add(60 * 24 * time.Hour)
	put(renewed)
	if err := h.Handle(t.Context(), caddy.Event{Data: map[string]any{"renewal": true, "identifier": name, "issuer": issuer}}); err != nil {
		t.Fatal(err)
	}
	if got := expiry(); got != float64(renewed.Unix()) {
		t.Fatalf("after renewal: expiry %v, want %v", got, renewed.Unix())
	}
	// A name with no certificate in storage exports nothing.
	if err := h.Handle(t.Context(), caddy.Event{Data: map[string]any{"sans": []string{"other.example.com"}}}); err != nil {
		t.Fatal(err)
	}
}
