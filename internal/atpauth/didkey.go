package atpauth

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/mr-tron/base58"
)

// MaxDIDDocumentSize caps the size of a DID document the resolver reads. Real
// documents are well under 2 KiB.
const MaxDIDDocumentSize = 64 << 10

// didDocument is the part of a DID document that service auth needs.
type didDocument struct {
	ID                 string               `json:"id"`
	VerificationMethod []verificationMethod `json:"verificationMethod"`
	Service            []didService         `json:"service"`
}

// didService is one entry of a DID document's service list.
type didService struct {
	ID              string `json:"id"`
	Type            string `json:"type"`
	ServiceEndpoint any    `json:"serviceEndpoint"`
}

// pdsFromDocument returns the #atproto_pds service endpoint of a DID
// document body already checked by atprotoKeyFromDocument, or "" when it
// names none or names one that is not an absolute http(s) URL without
// path, query or credentials.
func pdsFromDocument(did string, body []byte) string {
	var doc didDocument
	if json.Unmarshal(body, &doc) != nil {
		return ""
	}
	for _, s := range doc.Service {
		if s.ID != "#atproto_pds" && s.ID != did+"#atproto_pds" {
			continue
		}
		if s.Type != "AtprotoPersonalDataServer" {
			return ""
		}
		ep, _ := s.ServiceEndpoint.(string)
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
			strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
			return ""
		}
		return u.Scheme + "://" + u.Host
	}
	return ""
}

// verificationMethod is one entry of a DID document's verificationMethod.
type verificationMethod struct {
	ID                 string `json:"id"`
	Type               string `json:"type"`
	Controller         string `json:"controller"`
	PublicKeyMultibase string `json:"publicKeyMultibase"`
}

// atprotoKeyFromDocument parses a DID document for did and returns the public
// key of its #atproto verification method. It returns ErrDIDNotFound when the
// document is not a DID document for did, and ErrNoAtprotoKey when it has no
// usable #atproto key.
func atprotoKeyFromDocument(did string, body []byte) (atcrypto.PublicKey, error) {
	var doc didDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%w: document is not valid JSON: %w", ErrDIDNotFound, err)
	}
	if doc.ID != did {
		return nil, fmt.Errorf("%w: document id does not match the DID", ErrDIDNotFound)
	}
	for _, vm := range doc.VerificationMethod {
		if vm.ID != "#atproto" && vm.ID != did+"#atproto" {
			continue
		}
		if vm.Controller != "" && vm.Controller != did {
			return nil, fmt.Errorf("%w: #atproto key is controlled by another DID", ErrNoAtprotoKey)
		}
		key, err := parseVerificationKey(vm.Type, vm.PublicKeyMultibase)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNoAtprotoKey, err)
		}
		return key, nil
	}
	return nil, fmt.Errorf("%w: no #atproto verification method", ErrNoAtprotoKey)
}

// parseVerificationKey parses a verification method's publicKeyMultibase:
// Multikey (multicodec-prefixed compressed key, 0xe7 0x01 for K-256 and
// 0x80 0x24 for P-256) or the legacy EcdsaSecp256k1VerificationKey2019 and
// EcdsaSecp256r1VerificationKey2019 forms (the bare compressed or
// uncompressed point, without multicodec).
func parseVerificationKey(typ, multibase string) (atcrypto.PublicKey, error) {
	switch typ {
	case "Multikey":
		k, err := atcrypto.ParsePublicMultibase(multibase)
		if err != nil {
			return nil, fmt.Errorf("parse Multikey: %w", err)
		}
		return k, nil
	case "EcdsaSecp256k1VerificationKey2019", "EcdsaSecp256r1VerificationKey2019":
		raw, ok := strings.CutPrefix(multibase, "z")
		if !ok {
			return nil, fmt.Errorf("parse %s: publicKeyMultibase is not base58btc", typ)
		}
		b, err := base58.Decode(raw)
		if err != nil {
			return nil, fmt.Errorf("parse %s: publicKeyMultibase is not base58btc", typ)
		}
		k, err := parseLegacyPoint(typ == "EcdsaSecp256k1VerificationKey2019", b)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", typ, err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("unsupported verification method type %.64q", typ)
	}
}

// parseLegacyPoint parses a bare SEC1 point, compressed (33 bytes) or
// uncompressed (65 bytes).
func parseLegacyPoint(k256 bool, b []byte) (atcrypto.PublicKey, error) {
	switch {
	case k256 && len(b) == 33:
		return atcrypto.ParsePublicBytesK256(b)
	case k256 && len(b) == 65:
		return atcrypto.ParsePublicUncompressedBytesK256(b)
	case !k256 && len(b) == 33:
		return atcrypto.ParsePublicBytesP256(b)
	case !k256 && len(b) == 65:
		return atcrypto.ParsePublicUncompressedBytesP256(b)
	default:
		return nil, fmt.Errorf("key is %d bytes, want 33 or 65", len(b))
	}
}

// keyAlg returns the JWS alg that signatures by key use.
func keyAlg(key atcrypto.PublicKey) string {
	switch key.(type) {
	case *atcrypto.PublicKeyK256:
		return algES256K
	case *atcrypto.PublicKeyP256:
		return algES256
	default:
		return ""
	}
}
