// Package atprototest drives the Node harness in test/atproto, which mints
// atproto service-auth tokens with the reference npm packages
// (@atproto/crypto, @atproto/xrpc-server), and serves the DID documents of
// the keys it generates from a local PLC directory. Integration tests use it
// to talk to a gateway the way real atproto clients do.
//
// It is imported only from tests.
package atprototest

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// HarnessDir returns the directory of the Node harness.
func HarnessDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "test", "atproto")
}

// RequireHarness makes sure node and the harness's npm dependencies are
// there (see testenv.RequireNodeHarness).
func RequireHarness(t testing.TB) {
	t.Helper()
	testenv.RequireNodeHarness(t, HarnessDir())
}

// Key asks the harness for a key pair: Type "k256" or "p256". Private, if
// set, is a key a previous Mint returned (MintedKey.Private), to sign more
// tokens with a key already published.
type Key struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Private string `json:"private,omitempty"`
}

// Token asks the harness for a token signed by the key named Key.
type Token struct {
	Key string `json:"key"`
	Iss string `json:"iss"`
	Aud string `json:"aud"`
	Lxm string `json:"lxm,omitempty"`
	Iat int64  `json:"iat"`
	Exp int64  `json:"exp"`
}

// MintedKey is a generated key's public half.
type MintedKey struct {
	Type      string `json:"type"`
	JWTAlg    string `json:"jwtAlg"`
	DID       string `json:"did"`
	Multibase string `json:"multibase"`
	// Private is the private key in hex, for Key.Private.
	Private string `json:"private"`
}

// Minted is the harness's answer: the keys by name and the tokens in order.
type Minted struct {
	Keys   map[string]MintedKey `json:"keys"`
	Tokens []string             `json:"tokens"`
}

// Reuse returns the Key that signs with the minted key name again.
func (m Minted) Reuse(name string) Key {
	k := m.Keys[name]
	return Key{Name: name, Type: k.Type, Private: k.Private}
}

// Mint runs the harness once. A key is new unless its Key carries the
// Private of an earlier MintedKey.
func Mint(t testing.TB, keys []Key, tokens []Token) Minted {
	t.Helper()
	RequireHarness(t)
	req, err := json.Marshal(map[string]any{"keys": keys, "tokens": tokens})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "mint.mjs")
	cmd.Dir = HarnessDir()
	cmd.Stdin = bytes.NewReader(req)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node mint.mjs: %v\n%s", err, stderr.String())
	}
	var resp Minted
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("decode harness output: %v\n%s", err, out)
	}
	if len(resp.Tokens) != len(tokens) {
		t.Fatalf("harness minted %d tokens, want %d", len(resp.Tokens), len(tokens))
	}
	return resp
}

// PLC is a local PLC directory serving DID documents whose #atproto key is a
// harness key.
type PLC struct {
	*httptest.Server
	mu   sync.Mutex
	docs map[string][]byte
}

// NewPLC starts a PLC directory, stopped when the test ends.
func NewPLC(t testing.TB) *PLC {
	t.Helper()
	p := &PLC{docs: map[string][]byte{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		doc, ok := p.docs[strings.TrimPrefix(r.URL.Path, "/")]
		p.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/did+ld+json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(p.Close)
	return p
}

// Publish serves a DID document for did whose #atproto key is k.
func (p *PLC) Publish(did string, k MintedKey) {
	doc := DIDDocument(did, k)
	p.mu.Lock()
	p.docs[did] = doc
	p.mu.Unlock()
}

// PublishDocument serves doc as did's DID document.
func (p *PLC) PublishDocument(did string, doc []byte) {
	p.mu.Lock()
	p.docs[did] = doc
	p.mu.Unlock()
}

// DIDDocument returns the DID document of did whose #atproto key is k.
func DIDDocument(did string, k MintedKey) []byte {
	doc, _ := json.Marshal(map[string]any{
		"@context": []string{"https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"},
		"id":       did,
		"verificationMethod": []map[string]string{{
			"id":                 did + "#atproto",
			"type":               "Multikey",
			"controller":         did,
			"publicKeyMultibase": k.Multibase,
		}},
	})
	return doc
}

// DIDWeb is a did:web host on this machine: a plain-HTTP server on
// 127.0.0.1 serving one DID, did:web:localhost%3A<port>, whose document is
// at /.well-known/did.json. Resolving it takes a gateway in development mode
// with did_web_allow_http and resolver_allow_hosts localhost.
type DIDWeb struct {
	*httptest.Server
	// DID is the DID this host serves.
	DID string
	mu  sync.Mutex
	doc []byte
}

// NewDIDWeb starts a did:web host, stopped when the test ends. Its document
// is served once Publish has named the key.
func NewDIDWeb(t testing.TB) *DIDWeb {
	t.Helper()
	w := &DIDWeb{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		doc := w.doc
		w.mu.Unlock()
		if r.URL.Path != "/.well-known/did.json" || doc == nil {
			http.NotFound(rw, r)
			return
		}
		rw.Header().Set("Content-Type", "application/did+ld+json")
		_, _ = rw.Write(doc)
	}))
	t.Cleanup(w.Close)
	w.DID = "did:web:localhost%3A" + strconv.Itoa(w.Listener.Addr().(*net.TCPAddr).Port)
	return w
}

// Publish serves the DID document whose #atproto key is k.
func (w *DIDWeb) Publish(k MintedKey) {
	doc := DIDDocument(w.DID, k)
	w.mu.Lock()
	w.doc = doc
	w.mu.Unlock()
}
