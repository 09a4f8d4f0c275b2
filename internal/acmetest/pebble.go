// Package acmetest runs Let's Encrypt's Pebble test CA in the test process,
// on loopback: its ACME server (over HTTPS, with a certificate made for the
// test), its validation authority, and a DNS server (Pebble's challenge test
// server) that resolves every name to 127.0.0.1, so that Pebble really
// validates HTTP-01 challenges against a gateway on this host.
//
// It counts the orders Pebble accepts, which is how tests prove that a
// cluster orders a certificate once.
//
// It is imported only from tests.
package acmetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// Options configure a Pebble.
type Options struct {
	// HTTPPort is the port Pebble's validation authority connects to for
	// HTTP-01 challenges (on 127.0.0.1, where every name resolves).
	HTTPPort int
	// TLSPort is the port for TLS-ALPN-01 challenges.
	TLSPort int
	// Validity is the lifetime of issued certificates. Default 90 days.
	Validity time.Duration
}

// Pebble is a running Pebble CA.
type Pebble struct {
	// DirectoryURL is the ACME directory, https://127.0.0.1:<port>/dir.
	DirectoryURL string
	// ServerRootFile is a PEM file with the CA of Pebble's own HTTPS
	// listener, for the ACME client's trusted roots.
	ServerRootFile string

	mgmt   http.Handler
	orders atomic.Int64
	logs   *testenv.SyncBuffer
}

// Start runs Pebble until the test ends. It sets Pebble's environment
// switches for the test (no random validation sleeps, no rejected nonces),
// so tests using it cannot run in parallel.
func Start(t testing.TB, opts Options) *Pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	validity := opts.Validity
	if validity == 0 {
		validity = 90 * 24 * time.Hour
	}
	p := &Pebble{logs: &testenv.SyncBuffer{}}
	logger := log.New(p.logs, "pebble ", log.LstdFlags|log.Lmicroseconds)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Pebble's log:\n%s", p.logs.String())
		}
	})

	// challtestsrv binds when it runs; find a free port for it first.
	dnsAddr := freeAddr(t)
	dns, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{dnsAddr}, Log: logger})
	if err != nil {
		t.Fatalf("pebble DNS: %v", err)
	}
	dns.SetDefaultDNSIPv4("127.0.0.1")
	dns.SetDefaultDNSIPv6("")
	go dns.Run()
	t.Cleanup(dns.Shutdown)

	store := db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "cairn test profile", ValidityPeriod: uint64(validity / time.Second)}}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, opts.HTTPPort, opts.TLSPort, false, dnsAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	p.mgmt = front.ManagementHandler()

	cert, rootPEM := serverCert(t)
	p.ServerRootFile = filepath.Join(t.TempDir(), "pebble-server-root.pem")
	if err := os.WriteFile(p.ServerRootFile, rootPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(p.wrap(front.Handler()))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = logger
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.DirectoryURL = srv.URL + wfe.DirectoryPath
	return p
}

// wrap counts accepted orders and hides ACME Renewal Information from the
// directory, so that certmagic renews by the certificate's lifetime (a
// third before expiry) rather than at a random time Pebble suggests.
func (p *Pebble) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == wfe.DirectoryPath:
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var dir map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &dir); err == nil {
				delete(dir, "renewalInfo")
				body, _ := json.Marshal(dir)
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.Header().Del("Content-Length")
				w.WriteHeader(rec.Code)
				w.Write(body)
				return
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes())
		case r.URL.Path == "/order-plz" && r.Method == http.MethodPost:
			sw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(sw, r)
			if sw.status == http.StatusCreated {
				p.orders.Add(1)
			}
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// Orders returns how many orders Pebble has accepted.
func (p *Pebble) Orders() int64 { return p.orders.Load() }

// Roots returns the pool of Pebble's issuing root, to verify the
// certificates a gateway serves.
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	rec := httptest.NewRecorder()
	p.mgmt.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, wfe.RootCertPath+"0", nil))
	pool := x509.NewCertPool()
	if rec.Code != http.StatusOK || !pool.AppendCertsFromPEM(rec.Body.Bytes()) {
		t.Fatalf("pebble root: %d %s", rec.Code, rec.Body.String())
	}
	return pool
}

// Logs returns Pebble's log so far.
func (p *Pebble) Logs() string { return p.logs.String() }

// ValidationsOf counts the HTTP-01 validations Pebble's log shows for a
// name.
func (p *Pebble) ValidationsOf(name string) int {
	return strings.Count(p.logs.String(), "Attempting to validate w/ HTTP: http://"+name)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// serverCert makes a CA and a certificate for 127.0.0.1 signed by it, for
// Pebble's HTTPS listener.
func serverCert(t testing.TB) (tls.Certificate, []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cairn test Pebble server CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

// freeAddr returns a loopback address whose port is leased for TCP and UDP
// until the test ends (the DNS server listens on both): see testenv.Port.
func freeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.Port(t)))
}
