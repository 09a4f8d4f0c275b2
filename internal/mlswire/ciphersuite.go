package mlswire

import (
	"crypto"
	"crypto/elliptic"
	_ "crypto/sha256" // registers crypto.SHA256 for CipherSuite.Hash
	_ "crypto/sha512" // registers crypto.SHA384 and crypto.SHA512
	"strconv"
)

// CipherSuite is an MLS cipher suite (RFC 9420 §5.1, §17.1).
type CipherSuite uint16

// Cipher suites defined by RFC 9420 §17.1.
const (
	MLS128DHKEMX25519AES128GCMSHA256Ed25519        CipherSuite = 1
	MLS128DHKEMP256AES128GCMSHA256P256             CipherSuite = 2
	MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519 CipherSuite = 3
	MLS256DHKEMX448AES256GCMSHA512Ed448            CipherSuite = 4
	MLS256DHKEMP521AES256GCMSHA512P521             CipherSuite = 5
	MLS256DHKEMX448ChaCha20Poly1305SHA512Ed448     CipherSuite = 6
	MLS256DHKEMP384AES256GCMSHA384P384             CipherSuite = 7
)

// suiteInfo is the part of a cipher suite this package needs: the hash
// for references and the signature scheme.
type suiteInfo struct {
	name  string
	hash  crypto.Hash
	curve func() elliptic.Curve // nil for Ed25519/Ed448
	ed    int                   // 25519 or 448 for EdDSA suites
}

var suites = [...]suiteInfo{
	MLS128DHKEMX25519AES128GCMSHA256Ed25519:        {"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", crypto.SHA256, nil, 25519},
	MLS128DHKEMP256AES128GCMSHA256P256:             {"MLS_128_DHKEMP256_AES128GCM_SHA256_P256", crypto.SHA256, elliptic.P256, 0},
	MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519: {"MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519", crypto.SHA256, nil, 25519},
	MLS256DHKEMX448AES256GCMSHA512Ed448:            {"MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448", crypto.SHA512, nil, 448},
	MLS256DHKEMP521AES256GCMSHA512P521:             {"MLS_256_DHKEMP521_AES256GCM_SHA512_P521", crypto.SHA512, elliptic.P521, 0},
	MLS256DHKEMX448ChaCha20Poly1305SHA512Ed448:     {"MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448", crypto.SHA512, nil, 448},
	MLS256DHKEMP384AES256GCMSHA384P384:             {"MLS_256_DHKEMP384_AES256GCM_SHA384_P384", crypto.SHA384, elliptic.P384, 0},
}

func (cs CipherSuite) info() (suiteInfo, bool) {
	if cs == 0 || int(cs) >= len(suites) {
		return suiteInfo{}, false
	}
	return suites[cs], true
}

// String returns the RFC 9420 name of the cipher suite.
func (cs CipherSuite) String() string {
	if s, ok := cs.info(); ok {
		return s.name
	}
	return "cipher_suite(" + strconv.Itoa(int(cs)) + ")"
}

// Hash returns the suite's hash function, used for references
// (RFC 9420 §5.2), and false for suites RFC 9420 does not define.
func (cs CipherSuite) Hash() (crypto.Hash, bool) {
	s, ok := cs.info()
	return s.hash, ok
}

// CanVerify reports whether this package implements the suite's signature
// scheme: Ed25519 (suites 1 and 3) and ECDSA on P-256, P-384 and P-521
// (suites 2, 7 and 5). Ed448 (suites 4 and 6) is not implemented.
func (cs CipherSuite) CanVerify() bool {
	s, ok := cs.info()
	return ok && (s.curve != nil || s.ed == 25519)
}
