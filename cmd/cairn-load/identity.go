package main

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
)

// identities mints DIDs and their service-auth tokens. Every DID's
// document names the same P-256 key: the server still resolves each DID
// and verifies each token (one signature check per connection), and the
// tool does not spend minutes generating ten thousand keys.
type identities struct {
	key    atcrypto.PrivateKeyExportable
	pub    atcrypto.PublicKey
	prefix [7]byte
}

func newIdentities() (*identities, error) {
	k, err := atcrypto.GeneratePrivateKeyP256()
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	pub, err := k.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("signing key's public half: %w", err)
	}
	id := &identities{key: k, pub: pub}
	if _, err := rand.Read(id.prefix[:]); err != nil {
		return nil, fmt.Errorf("random DID prefix: %w", err)
	}
	return id, nil
}

// plcEncoding is did:plc's identifier alphabet (lower-case base32).
var plcEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// did returns the i-th user's DID: did:plc: and 24 base32 characters, unique
// per run.
func (id *identities) did(i int) string {
	var b [15]byte
	copy(b[:7], id.prefix[:])
	binary.BigEndian.PutUint64(b[7:], uint64(i))
	return "did:plc:" + plcEncoding.EncodeToString(b[:])
}

// token mints a service-auth JWT from did for method lxm, valid for a
// minute, with a fresh jti (the server refuses a replayed one).
func (id *identities) token(did, lxm string) (string, error) {
	now := time.Now().Unix()
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("random jti: %w", err)
	}
	claims, err := json.Marshal(map[string]any{
		"iss": did, "aud": serviceDID, "lxm": lxm,
		"iat": now, "exp": now + 60, "jti": hex.EncodeToString(jti[:]),
	})
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	input := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(claims)
	sig, err := id.key.HashAndSign([]byte(input))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// jwtHeader is the encoded header of every token (ES256: a P-256 key).
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"ES256"}`))

// plcDirectory serves a DID document for every DID the identities mint.
type plcDirectory struct {
	srv *http.Server
	url string

	mu     sync.Mutex
	served int
}

// servePLC starts the directory on a loopback port.
func servePLC(id *identities) (*plcDirectory, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the PLC directory: %w", err)
	}
	p := &plcDirectory{url: "http://" + l.Addr().String()}
	multibase := id.pub.Multibase()
	p.srv = &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			did := strings.TrimPrefix(r.URL.Path, "/")
			if !strings.HasPrefix(did, "did:plc:") {
				http.NotFound(w, r)
				return
			}
			doc, _ := json.Marshal(map[string]any{
				"@context": []string{"https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"},
				"id":       did,
				"verificationMethod": []map[string]string{{
					"id":                 did + "#atproto",
					"type":               "Multikey",
					"controller":         did,
					"publicKeyMultibase": multibase,
				}},
			})
			p.mu.Lock()
			p.served++
			p.mu.Unlock()
			w.Header().Set("Content-Type", "application/did+ld+json")
			_, _ = w.Write(doc)
		}),
	}
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

func (p *plcDirectory) close() { _ = p.srv.Close() }
