package servicekey

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ServiceID and ServiceType are the service entry of the
// blue.catbird.mls API, as the reference server publishes it.
const (
	ServiceID   = "#atproto_mls"
	ServiceType = "AtprotoMlsService"
)

// Document is a DID document in the shape atproto resolves.
type Document struct {
	Context            []string             `json:"@context"`
	ID                 string               `json:"id"`
	VerificationMethod []VerificationMethod `json:"verificationMethod"`
	Service            []Service            `json:"service"`
}

// VerificationMethod is one published key, in multikey form.
type VerificationMethod struct {
	ID                 string `json:"id"`
	Type               string `json:"type"`
	Controller         string `json:"controller"`
	PublicKeyMultibase string `json:"publicKeyMultibase"`
}

// Service is one service entry.
type Service struct {
	ID              string `json:"id"`
	Type            string `json:"type"`
	ServiceEndpoint string `json:"serviceEndpoint"`
}

// Document returns the DID document of did, publishing the keyring's keys
// and the service entry at endpoint.
func (k *Keyring) Document(did, endpoint string) Document {
	doc := Document{
		Context: []string{"https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1",
			"https://w3id.org/security/suites/secp256k1-2019/v1"},
		ID:      did,
		Service: []Service{{ID: ServiceID, Type: ServiceType, ServiceEndpoint: endpoint}},
	}
	for _, p := range k.Published() {
		doc.VerificationMethod = append(doc.VerificationMethod, VerificationMethod{
			ID: did + "#" + p.Fragment, Type: "Multikey", Controller: did, PublicKeyMultibase: p.Multibase})
	}
	return doc
}

// ParseDIDWeb checks that did is a did:web DID whose document lives at
// the host's /.well-known/did.json (no path), and returns the service
// endpoint it implies: https://<host>, with a port when the DID has one
// (percent-encoded, did:web:localhost%3A8443).
func ParseDIDWeb(did string) (endpoint string, err error) {
	host, ok := strings.CutPrefix(did, "did:web:")
	if !ok || host == "" {
		return "", fmt.Errorf("%q is not a did:web DID (want did:web:chat.example.com)", did)
	}
	if strings.Contains(host, ":") {
		return "", errors.New("a did:web DID with a path is served elsewhere than /.well-known/did.json: use a bare host (did:web:chat.example.com)")
	}
	h, err := url.PathUnescape(host)
	if err != nil || h == "" || strings.ContainsAny(h, "/?#@ ") {
		return "", fmt.Errorf("%q: the host of the did:web DID is not valid", did)
	}
	u := url.URL{Scheme: "https", Host: h}
	if _, err := url.Parse(u.String()); err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("%q: the host of the did:web DID is not valid", did)
	}
	return u.String(), nil
}
