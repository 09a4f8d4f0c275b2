package atpauth

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// didServer plays a PLC directory (GET /<did:plc:…>) and a did:web host
// (GET /.well-known/did.json, chosen by the Host header) for the tests.
type didServer struct {
	*httptest.Server
	mu     sync.Mutex
	docs   map[string][]byte // by DID
	status map[string]int    // by DID; overrides the document
	hits   map[string]int    // by DID
	block  chan struct{}     // when non-nil, requests wait on it
}

func newDIDServer(t testing.TB) *didServer {
	t.Helper()
	s := &didServer{docs: map[string][]byte{}, status: map[string]int{}, hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *didServer) serve(w http.ResponseWriter, r *http.Request) {
	var did string
	switch {
	case r.URL.Path == "/.well-known/did.json":
		did = "did:web:" + strings.ReplaceAll(r.Host, ":", "%3A")
	case strings.HasPrefix(r.URL.Path, "/did:plc:"):
		did = strings.TrimPrefix(r.URL.Path, "/")
	default:
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.hits[did]++
	doc, status, block := s.docs[did], s.status[did], s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case status != 0:
		w.WriteHeader(status)
	case doc == nil:
		http.NotFound(w, r)
	default:
		w.Header().Set("Content-Type", "application/did+ld+json")
		_, _ = w.Write(doc)
	}
}

// port returns the server's TCP port.
func (s *didServer) port(t testing.TB) string {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, p, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// webDID returns the did:web DID that names this server under host.
func (s *didServer) webDID(t testing.TB, host string) string {
	return "did:web:" + host + "%3A" + s.port(t)
}

func (s *didServer) set(did string, doc []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.docs[did] = doc
}

func (s *didServer) setStatus(did string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[did] = status
}

func (s *didServer) hitCount(did string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[did]
}

// multikeyDoc returns a DID document whose #atproto key is the Multikey
// multibase mb.
func multikeyDoc(t testing.TB, did, mb string) []byte {
	return didDoc(t, did, verificationMethod{ID: did + "#atproto", Type: "Multikey", Controller: did, PublicKeyMultibase: mb})
}

func didDoc(t testing.TB, did string, vms ...verificationMethod) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"@context":           []string{"https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"},
		"id":                 did,
		"alsoKnownAs":        []string{"at://alice.example.com"},
		"verificationMethod": vms,
		"service": []map[string]string{{
			"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example.com",
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
