package mlswire

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"
)

// Credential binds a leaf to an identity (RFC 9420 §5.3). For a basic
// credential Identity holds the identity bytes; for X.509 Certificates holds
// the DER certificates, leaf first. Other credential types cannot be parsed
// (their length is not self-describing) and fail with ErrUnsupported.
type Credential struct {
	Type         CredentialType
	Identity     []byte
	Certificates [][]byte
}

// BasicIdentity returns the identity of a basic credential, and false for
// any other credential type.
func (c *Credential) BasicIdentity() ([]byte, bool) {
	if c.Type != CredentialTypeBasic {
		return nil, false
	}
	return c.Identity, true
}

func (c *Credential) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	c.Type = CredentialType(r.u16())
	switch c.Type {
	case CredentialTypeBasic:
		c.Identity = r.opaque()
	case CredentialTypeX509:
		c.Certificates = readList(r, "certificates", func(p *[]byte, r *reader) { *p = r.opaque() })
	default:
		r.fail(fmt.Errorf("credential type %d: %w", c.Type, ErrUnsupported))
	}
	r.wrap("credential")
}

func (c *Credential) marshal(w *writer) {
	w.u16(uint16(c.Type))
	switch c.Type {
	case CredentialTypeBasic:
		w.opaque(c.Identity)
	case CredentialTypeX509:
		writeList(w, c.Certificates, func(p *[]byte, w *writer) { w.opaque(*p) })
	default:
		w.fail(fmt.Errorf("credential type %d: %w", c.Type, ErrMalformed))
	}
}

// Capabilities lists what a client supports (RFC 9420 §7.2).
type Capabilities struct {
	Versions     []ProtocolVersion
	CipherSuites []CipherSuite
	Extensions   []ExtensionType
	Proposals    []ProposalType
	Credentials  []CredentialType
}

func (c *Capabilities) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	c.Versions = readU16List[ProtocolVersion](r, "versions")
	c.CipherSuites = readU16List[CipherSuite](r, "cipher_suites")
	c.Extensions = readU16List[ExtensionType](r, "extensions")
	c.Proposals = readU16List[ProposalType](r, "proposals")
	c.Credentials = readU16List[CredentialType](r, "credentials")
	r.wrap("capabilities")
}

func (c *Capabilities) marshal(w *writer) {
	writeU16List(w, c.Versions)
	writeU16List(w, c.CipherSuites)
	writeU16List(w, c.Extensions)
	writeU16List(w, c.Proposals)
	writeU16List(w, c.Credentials)
}

// Lifetime bounds when a key package may be used, in seconds since the Unix
// epoch (RFC 9420 §7.2).
type Lifetime struct {
	NotBefore uint64
	NotAfter  uint64
}

// unixTime converts MLS seconds to a time, saturating values that do not fit
// an int64 (some clients use 2^64-1 for "no expiry").
func unixTime(s uint64) time.Time {
	if s > math.MaxInt64/2 {
		s = math.MaxInt64 / 2
	}
	return time.Unix(int64(s), 0).UTC()
}

// Start returns NotBefore as a time.
func (l Lifetime) Start() time.Time { return unixTime(l.NotBefore) }

// End returns NotAfter as a time. Values beyond the range of time.Time
// saturate far in the future.
func (l Lifetime) End() time.Time { return unixTime(l.NotAfter) }

// Contains reports whether t lies within the lifetime, bounds included.
func (l Lifetime) Contains(t time.Time) bool {
	if t.Before(time.Unix(0, 0)) {
		return false
	}
	s := uint64(t.Unix())
	return l.NotBefore <= s && s <= l.NotAfter
}

// LeafNode is a member's leaf in the ratchet tree (RFC 9420 §7.2). Lifetime
// is meaningful only for LeafNodeSourceKeyPackage and ParentHash only for
// LeafNodeSourceCommit.
type LeafNode struct {
	EncryptionKey []byte
	SignatureKey  []byte
	Credential    Credential
	Capabilities  Capabilities
	Source        LeafNodeSource
	Lifetime      Lifetime
	ParentHash    []byte
	Extensions    []Extension
	Signature     []byte
}

func (ln *LeafNode) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	ln.EncryptionKey = r.opaque()
	ln.SignatureKey = r.opaque()
	ln.Credential.unmarshal(r)
	ln.Capabilities.unmarshal(r)
	ln.Source = LeafNodeSource(r.u8())
	switch ln.Source {
	case LeafNodeSourceKeyPackage:
		ln.Lifetime.NotBefore = r.u64()
		ln.Lifetime.NotAfter = r.u64()
	case LeafNodeSourceUpdate:
	case LeafNodeSourceCommit:
		ln.ParentHash = r.opaque()
	default:
		r.fail(fmt.Errorf("leaf node source %d: %w", ln.Source, ErrMalformed))
	}
	ln.Extensions = readExtensions(r)
	ln.Signature = r.opaque()
	r.wrap("leaf node")
}

// marshalContent writes the fields shared by LeafNode and LeafNodeTBS.
func (ln *LeafNode) marshalContent(w *writer) {
	w.opaque(ln.EncryptionKey)
	w.opaque(ln.SignatureKey)
	ln.Credential.marshal(w)
	ln.Capabilities.marshal(w)
	w.u8(uint8(ln.Source))
	switch ln.Source {
	case LeafNodeSourceKeyPackage:
		w.u64(ln.Lifetime.NotBefore)
		w.u64(ln.Lifetime.NotAfter)
	case LeafNodeSourceUpdate:
	case LeafNodeSourceCommit:
		w.opaque(ln.ParentHash)
	default:
		w.fail(fmt.Errorf("leaf node source %d: %w", ln.Source, ErrMalformed))
	}
	writeExtensions(w, ln.Extensions)
}

func (ln *LeafNode) marshal(w *writer) {
	ln.marshalContent(w)
	w.opaque(ln.Signature)
}

// KeyPackage is a client's published offer to be added to groups
// (RFC 9420 §10).
type KeyPackage struct {
	Version     ProtocolVersion
	CipherSuite CipherSuite
	InitKey     []byte
	LeafNode    LeafNode
	Extensions  []Extension
	Signature   []byte
}

func (kp *KeyPackage) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	kp.Version = ProtocolVersion(r.u16())
	kp.CipherSuite = CipherSuite(r.u16())
	kp.InitKey = r.opaque()
	kp.LeafNode.unmarshal(r)
	kp.Extensions = readExtensions(r)
	kp.Signature = r.opaque()
	r.wrap("key package")
}

// marshalContent writes KeyPackageTBS: everything but the signature.
func (kp *KeyPackage) marshalContent(w *writer) {
	w.u16(uint16(kp.Version))
	w.u16(uint16(kp.CipherSuite))
	w.opaque(kp.InitKey)
	kp.LeafNode.marshal(w)
	writeExtensions(w, kp.Extensions)
}

func (kp *KeyPackage) marshal(w *writer) {
	kp.marshalContent(w)
	w.opaque(kp.Signature)
}

// Credential returns the credential of the key package's leaf node.
func (kp *KeyPackage) Credential() *Credential { return &kp.LeafNode.Credential }

// Lifetime returns the lifetime of the key package's leaf node. It is the
// zero Lifetime if the leaf node's source is not key_package, which Verify
// rejects.
func (kp *KeyPackage) Lifetime() Lifetime {
	if kp.LeafNode.Source != LeafNodeSourceKeyPackage {
		return Lifetime{}
	}
	return kp.LeafNode.Lifetime
}

// ParseKeyPackage parses a key package given either as an MLSMessage with
// wire format mls_key_package (what MLS libraries emit for publishing) or as
// a bare KeyPackage structure.
//
// The two forms share their first bytes when the bare package's cipher
// suite is 5, so both readings are tried: exactly one must parse completely.
// If both do, the bytes would mean different key packages to different
// clients and ParseKeyPackage fails with ErrAmbiguous. When neither parses,
// the error is ErrWrongWireFormat for a well-formed MLSMessage of another
// wire format, the MLSMessage reading's if the input starts like a wrapped
// key package (version 1, wire format 5), and the bare reading's otherwise.
//
// ParseKeyPackage checks only the encoding; call Verify for signatures and
// the RFC 9420 §10.1 rules.
func ParseKeyPackage(b []byte) (*KeyPackage, error) {
	var wrapped Message
	werr := Unmarshal(b, &wrapped)
	if werr == nil && wrapped.WireFormat != WireFormatKeyPackage {
		werr = fmt.Errorf("mls message is %v: %w", wrapped.WireFormat, ErrWrongWireFormat)
	}
	var bare KeyPackage
	berr := Unmarshal(b, &bare)
	switch {
	case werr == nil && berr == nil:
		return nil, fmt.Errorf("parse key package: bytes read both as mls message and as bare key package: %w", ErrAmbiguous)
	case werr == nil:
		return wrapped.KeyPackage, nil
	case berr == nil:
		return &bare, nil
	case errors.Is(werr, ErrWrongWireFormat),
		bytes.HasPrefix(b, []byte{0, 1, 0, byte(WireFormatKeyPackage)}):
		return nil, fmt.Errorf("parse key package: %w", werr)
	default:
		return nil, fmt.Errorf("parse key package: %w", berr)
	}
}
