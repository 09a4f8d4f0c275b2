package caddymodules_test

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/acmetest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// exampleWithGlobals returns Caddyfile.example with extra lines added to its
// global options block, so tests run the example as operators do and add
// only what points it at the test CA.
func exampleWithGlobals(t *testing.T, extra string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(gatewaytest.RepoRoot(), "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) == "{" {
			out := append(append(append([]string{}, lines[:i+1]...), strings.Split(extra, "\n")...), lines[i+1:]...)
			return strings.Join(out, "\n")
		}
	}
	t.Fatal("Caddyfile.example has no global options block")
	return ""
}

// startBalancer listens on a loopback port and hands each connection to the
// next of backends (round robin) that accepts it, like a load balancer
// with health checks in front of a cluster. It returns the port.
func startBalancer(t *testing.T, backends ...int) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var next atomic.Uint64
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				start := next.Add(1)
				for i := range uint64(len(backends)) {
					port := backends[(start+i)%uint64(len(backends))]
					out, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
					if err != nil {
						continue
					}
					defer out.Close()
					go func() { _, _ = io.Copy(out, in); out.(*net.TCPConn).CloseWrite() }()
					_, _ = io.Copy(in, out)
					return
				}
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// clusterNode is one cairn-caddy of the test cluster, on its own ports.
type clusterNode struct {
	http, https, admin, metrics int
	g                           *gatewaytest.Gateway
}

func newClusterNode(t *testing.T) *clusterNode {
	return &clusterNode{http: gatewaytest.FreePort(t), https: gatewaytest.FreePort(t), admin: gatewaytest.FreePort(t), metrics: gatewaytest.FreePort(t)}
}

func (n *clusterNode) options(caddyfile string, env []string) gatewaytest.Options {
	return gatewaytest.Options{
		Caddyfile: caddyfile,
		AdminPort: n.admin,
		Env: append([]string{
			fmt.Sprintf("CAIRN_HTTPS_PORT=%d", n.https),
			fmt.Sprintf("CAIRN_HTTP_PORT=%d", n.http),
			fmt.Sprintf("CAIRN_ADMIN_ADDR=127.0.0.1:%d", n.admin),
			fmt.Sprintf("CAIRN_METRICS_ADDR=127.0.0.1:%d", n.metrics),
		}, env...),
	}
}

// servedLeaf does a verified TLS handshake with the node for name and
// returns the leaf certificate it serves, or nil if it serves none yet.
func servedLeaf(port int, name string, roots *x509.CertPool) *x509.Certificate {
	d := &net.Dialer{Timeout: 2 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func fingerprint(c *x509.Certificate) string {
	if c == nil {
		return "none"
	}
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:8])
}

// waitForLeaf waits until every node serves a Pebble-issued certificate
// for name other than the one fingerprinted not, and returns them.
func waitForLeaf(t *testing.T, nodes []*clusterNode, name string, roots *x509.CertPool, not string, within time.Duration, pebble *acmetest.Pebble) []*x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		leaves := make([]*x509.Certificate, len(nodes))
		ready := true
		for i, n := range nodes {
			leaves[i] = servedLeaf(n.https, name, roots)
			if leaves[i] == nil || fingerprint(leaves[i]) == not {
				ready = false
			}
		}
		if ready {
			return leaves
		}
		if time.Now().After(deadline) {
			for i, n := range nodes {
				t.Logf("node %d serves %s; its log:\n%s", i, fingerprint(leaves[i]), n.g.Logs())
			}
			t.Fatalf("the nodes did not all serve a new certificate for %s within %s (orders so far: %d)", name, within, pebble.Orders())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestClusterObtainsOneCertificateThroughPebble runs two cairn-caddy nodes on
// Caddyfile.example, sharing one PostgreSQL for the delivery store and the
// certificate storage (storage cairn_postgres), both configured for the same
// name, against a Pebble CA that really validates HTTP-01 through a
// round-robin balancer in front of both nodes' HTTP ports, as a cluster's
// load balancer would (so some validation requests reach the node that did
// not place the order, which answers from the shared storage). It proves
// that the cluster orders once, serves one
// certificate, renews once, and that a node started later loads the
// certificate instead of ordering; and that HTTP-01 validation passes
// through the public site while the site's per-IP limit refuses ordinary
// requests from the validator's address.
func TestClusterObtainsOneCertificateThroughPebble(t *testing.T) {
	dbURL := testenv.Postgres(t)
	const name = "chat.cairn.test"
	// Certificates live 90 s; certmagic renews a third before expiry, so
	// the renewal comes about 60 s after issuance.
	const validity = 90 * time.Second
	t.Setenv("PEBBLE_AUTHZREUSE", "0") // the renewal validates again
	a, b := newClusterNode(t), newClusterNode(t)
	lb := startBalancer(t, a.http, b.http)
	pebble := acmetest.Start(t, acmetest.Options{HTTPPort: lb, TLSPort: a.https, Validity: validity})
	roots := pebble.Roots(t)

	caddyfile := exampleWithGlobals(t, fmt.Sprintf(`	cert_issuer acme {
		dir %s
		trusted_roots %s
		disable_tlsalpn_challenge
	}
	renew_interval 1s
	storage cairn_postgres`, pebble.DirectoryURL, pebble.ServerRootFile))
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	env := []string{
		"CAIRN_DOMAIN=" + name,
		"CAIRN_DATABASE_URL=" + dbURL,
		"CAIRN_CERT_KEY=" + hex.EncodeToString(key),
		"CAIRN_LOG_HASH_KEY=" + strings.Repeat("k", 40),
		// Nodes sharing a database share the audit key.
		"CAIRN_AUDIT_KEY=" + strings.Repeat("a", 40),
		"CAIRN_REDIS_URL=",
	}

	// Caddy generates its internal CA (provisioned because of
	// skip_install_trust) into the storage at start without a lock: two
	// nodes starting together on an empty storage can fail with "loading
	// root key: file does not exist" (docs/tls.md says to start the first
	// node alone once). A short-lived node creates it here first, as that
	// first start would.
	seed := newClusterNode(t)
	seedFile := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tskip_install_trust\n\tstorage cairn_postgres\n}\nhttp://127.0.0.1:%d {\n\trespond ok\n}\n", seed.admin, seed.http)
	seed.g = gatewaytest.Start(t, &builder, gatewaytest.Options{Caddyfile: seedFile, AdminPort: seed.admin, Env: env})
	seed.g.Stop()

	// Both nodes start at once and race for the certificate.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, n := range []*clusterNode{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.g, errs[i] = gatewaytest.StartErr(t, &builder, n.options(caddyfile, env))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	nodes := []*clusterNode{a, b}
	t.Cleanup(func() {
		if t.Failed() {
			for i, n := range nodes {
				t.Logf("node %c's log:\n%s", 'A'+i, n.g.Logs())
			}
		}
	})
	first := waitForLeaf(t, nodes, name, roots, "", 90*time.Second, pebble)
	if fa, fb := fingerprint(first[0]), fingerprint(first[1]); fa != fb {
		t.Fatalf("the nodes serve different certificates: %s and %s", fa, fb)
	}
	if n := pebble.Orders(); n != 1 {
		t.Fatalf("Pebble received %d orders for one name on a two-node cluster, want 1", n)
	}
	if pebble.ValidationsOf(name) == 0 {
		t.Fatalf("Pebble never validated HTTP-01 against the node:\n%s", pebble.Logs())
	}

	checkTLSPosture(t, a, name, roots)

	// Until the renewal, keep both nodes' public per-IP limit (preset
	// public: 60/min, burst 6; the limit of /xrpc/_health) drained for
	// 127.0.0.1, the validator's address too. Each round sends more
	// requests at once than the burst admits, over one HTTP/2 connection,
	// and a pause of a second refills one: every round is refused in part
	// however slowly a loaded machine answers, where a paced loop of
	// single requests can fall below the limit's rate and never reach it.
	const round = 10
	validationsBefore := pebble.ValidationsOf(name)
	refused := make([]atomic.Int64, len(nodes))
	stop := make(chan struct{})
	var hammer sync.WaitGroup
	stopHammer := sync.OnceFunc(func() { close(stop); hammer.Wait() })
	defer stopHammer()
	for i, n := range nodes {
		hammer.Add(1)
		go func() {
			defer hammer.Done()
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{ServerName: name, RootCAs: roots},
				ForceAttemptHTTP2: true,
			}}
			defer client.CloseIdleConnections()
			for {
				var sent sync.WaitGroup
				for range round {
					sent.Go(func() {
						req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/xrpc/_health", n.https), nil)
						req.Host = name
						if resp, err := client.Do(req); err == nil {
							resp.Body.Close()
							if resp.StatusCode == http.StatusTooManyRequests {
								refused[i].Add(1)
							}
						}
					})
				}
				sent.Wait()
				select {
				case <-stop:
					return
				case <-time.After(time.Second):
				}
			}
		}()
	}
	// The renewal is awaited once every node has refused the address.
	for i := range nodes {
		for deadline := time.Now().Add(2 * time.Minute); refused[i].Load() == 0; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("node %c never refused 127.0.0.1 under rounds of %d requests", 'A'+i, round)
			}
		}
	}
	renewed := waitForLeaf(t, nodes, name, roots, fingerprint(first[0]), validity+60*time.Second, pebble)
	stopHammer()
	if fa, fb := fingerprint(renewed[0]), fingerprint(renewed[1]); fa != fb {
		t.Fatalf("after renewal the nodes serve different certificates: %s and %s", fa, fb)
	}
	if n := pebble.Orders(); n != 2 {
		t.Fatalf("Pebble received %d orders by the first renewal, want 2 (one order, one renewal)", n)
	}
	if pebble.ValidationsOf(name) == validationsBefore {
		t.Fatal("the renewal was not validated again over HTTP-01")
	}
	// With both nodes up, the balancer spread the renewal's three
	// validation requests over both, so the node that did not order
	// answered from the shared storage. (At the first issuance a node may
	// not listen yet, and the balancer skips it.)
	if !strings.Contains(a.g.Logs()+b.g.Logs(), `"distributed":true`) {
		t.Fatal("no node answered a challenge from the shared storage")
	}

	t.Logf("renewed: %d orders; HTTP-01 validation requests %d before the renewal, %d after; %d ordinary requests from 127.0.0.1 refused with 429 meanwhile",
		pebble.Orders(), validationsBefore, pebble.ValidationsOf(name), refused[0].Load()+refused[1].Load())

	// A node that starts later loads the certificate from PostgreSQL.
	c := newClusterNode(t)
	c.g = gatewaytest.Start(t, &builder, c.options(caddyfile, env))
	late := waitForLeaf(t, []*clusterNode{c}, name, roots, "", 60*time.Second, pebble)
	if fingerprint(late[0]) != fingerprint(renewed[0]) {
		t.Fatalf("the late node serves %s, the cluster %s", fingerprint(late[0]), fingerprint(renewed[0]))
	}
	if n := pebble.Orders(); n != 2 {
		t.Fatalf("the late node placed an order: %d orders, want 2", n)
	}
}

// checkTLSPosture checks what docs/tls.md promises of a node serving a
// public certificate: TLS 1.0 and 1.1 are refused, TLS 1.2 and 1.3 are
// served, plain HTTP redirects to HTTPS (Caddy's automatic redirect is
// permanent; the test accepts any redirect, so that a site block that
// redirects itself also passes) without HSTS, and HTTPS responses
// carry HSTS.
func checkTLSPosture(t *testing.T, n *clusterNode, name string, roots *x509.CertPool) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", n.https)
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, MinVersion: v, MaxVersion: v})
		if err == nil {
			conn.Close()
			t.Errorf("a %s handshake succeeded", tls.VersionName(v))
		} else if !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("a %s handshake failed for another reason than the version: %v", tls.VersionName(v), err)
		}
	}
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Errorf("a %s handshake failed: %v", tls.VersionName(v), err)
			continue
		}
		conn.Close()
	}

	noFollow := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{ServerName: name, RootCAs: roots}},
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/xrpc/_health", n.http), nil)
	req.Host = name
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode/100 != 3 || !strings.HasPrefix(loc, "https://"+name) {
		t.Errorf("plain HTTP: %d Location %q, want a redirect to https://%s", resp.StatusCode, loc, name)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); h != "" {
		t.Errorf("plain HTTP response carries HSTS %q", h)
	}

	req, _ = http.NewRequest(http.MethodGet, "https://"+addr+"/xrpc/_health", nil)
	req.Host = name
	resp, err = noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("HTTPS health: %d, HSTS %q; want 200 with HSTS", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
}
