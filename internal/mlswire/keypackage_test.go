package mlswire

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

// welcomeVector is one entry of welcome.json.
type welcomeVector struct {
	CipherSuite CipherSuite `json:"cipher_suite"`
	KeyPackage  string      `json:"key_package"`
	Welcome     string      `json:"welcome"`
	SignerPub   string      `json:"signer_pub"`
	InitPriv    string      `json:"init_priv"`
}

// TestWelcomeVectors checks, for every suite of welcome.json, that the key
// package parses, that its KeyPackageRef is among the Welcome's new
// members, and that it verifies wherever the suite's signature scheme is
// implemented.
func TestWelcomeVectors(t *testing.T) {
	var vs []welcomeVector
	readJSON(t, "welcome.json", &vs)
	if len(vs) == 0 {
		t.Fatal("no welcome vectors")
	}
	for _, v := range vs {
		t.Run(v.CipherSuite.String(), func(t *testing.T) {
			kp, err := ParseKeyPackage(unhex(t, v.KeyPackage))
			if err != nil {
				t.Fatal(err)
			}
			if kp.CipherSuite != v.CipherSuite {
				t.Fatalf("key package suite %v, vector says %v", kp.CipherSuite, v.CipherSuite)
			}
			ref, err := kp.Ref()
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseMessage(unhex(t, v.Welcome))
			if err != nil {
				t.Fatal(err)
			}
			if m.WireFormat != WireFormatWelcome {
				t.Fatalf("wire format %v", m.WireFormat)
			}
			if m.Welcome.CipherSuite != v.CipherSuite {
				t.Fatalf("welcome suite %v, vector says %v", m.Welcome.CipherSuite, v.CipherSuite)
			}
			if !slices.ContainsFunc(m.Welcome.NewMembers(), func(r KeyPackageRef) bool { return bytes.Equal(r, ref) }) || !m.Welcome.HasNewMember(ref) {
				t.Fatalf("ref %x not among new members %x", ref, m.Welcome.NewMembers())
			}
			if m.Welcome.HasNewMember(flipLastBit(ref)) {
				t.Fatal("Welcome claims a reference it does not hold")
			}
			err = kp.Verify()
			if v.CipherSuite.CanVerify() {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
			} else if !errors.Is(err, ErrUnsupportedCipherSuite) {
				t.Fatalf("verify on %v: err = %v, want ErrUnsupportedCipherSuite", v.CipherSuite, err)
			}
		})
	}
}

// TestMessageVectorKeyPackagesVerify verifies every key package of
// messages.json (Ed25519 and P-256 suites) and checks that the bare and
// the MLSMessage forms give the same key package and reference.
func TestMessageVectorKeyPackagesVerify(t *testing.T) {
	for i, v := range messageVectors(t) {
		wrapped := unhex(t, v["mls_key_package"])
		kp, err := ParseKeyPackage(wrapped)
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		if err := kp.Verify(); err != nil {
			t.Fatalf("vector %d (%v): %v", i, kp.CipherSuite, err)
		}
		bare, err := Marshal(kp)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bare, wrapped[4:]) {
			t.Fatalf("vector %d: bare encoding is not the MLSMessage body", i)
		}
		kp2, err := ParseKeyPackage(bare)
		if err != nil {
			t.Fatalf("vector %d bare: %v", i, err)
		}
		r1, err1 := kp.Ref()
		r2, err2 := kp2.Ref()
		if err1 != nil || err2 != nil || !bytes.Equal(r1, r2) {
			t.Fatalf("vector %d: refs %x (%v) and %x (%v) differ", i, r1, err1, r2, err2)
		}
		want, _ := RefHash(kp.CipherSuite, "MLS 1.0 KeyPackage Reference", bare)
		if !bytes.Equal(r1, want) {
			t.Fatalf("vector %d: ref %x, want %x", i, r1, want)
		}
	}
}

// testSigner signs like an MLS client would, so tests can build fresh key
// packages for each implemented signature scheme.
type testSigner struct {
	cs CipherSuite
	ed ed25519.PrivateKey
	ec *ecdsa.PrivateKey
}

func newTestSigner(t testing.TB, cs CipherSuite) *testSigner {
	t.Helper()
	s := &testSigner{cs: cs}
	info, ok := cs.info()
	if !ok {
		t.Fatalf("no suite %v", cs)
	}
	var err error
	if info.curve == nil {
		_, s.ed, err = ed25519.GenerateKey(rand.Reader)
	} else {
		s.ec, err = ecdsa.GenerateKey(info.curve(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *testSigner) public(t testing.TB) []byte {
	t.Helper()
	if s.ed != nil {
		return s.ed.Public().(ed25519.PublicKey)
	}
	b, err := s.ec.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign implements SignWithLabel of RFC 9420 §5.1.2.
func (s *testSigner) sign(t testing.TB, label string, content []byte) []byte {
	t.Helper()
	msg, err := signContent(label, content)
	if err != nil {
		t.Fatal(err)
	}
	if s.ed != nil {
		return ed25519.Sign(s.ed, msg)
	}
	info, _ := s.cs.info()
	h := info.hash.New()
	h.Write(msg)
	sig, err := ecdsa.SignASN1(rand.Reader, s.ec, h.Sum(nil))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newTestKeyPackage builds and signs a key package for identity with this
// package's encoder, as a client would publish it.
func newTestKeyPackage(t testing.TB, cs CipherSuite, identity string, lt Lifetime) *KeyPackage {
	t.Helper()
	s := newTestSigner(t, cs)
	kp := &KeyPackage{
		Version:     ProtocolVersionMLS10,
		CipherSuite: cs,
		InitKey:     randomBytes(t, 32),
		LeafNode: LeafNode{
			EncryptionKey: randomBytes(t, 32),
			SignatureKey:  s.public(t),
			Credential:    Credential{Type: CredentialTypeBasic, Identity: []byte(identity)},
			Capabilities: Capabilities{
				Versions:     []ProtocolVersion{ProtocolVersionMLS10},
				CipherSuites: []CipherSuite{cs},
				Credentials:  []CredentialType{CredentialTypeBasic},
			},
			Source:   LeafNodeSourceKeyPackage,
			Lifetime: lt,
		},
		Extensions: []Extension{{Type: 0x0a0a, Data: []byte("grease")}},
	}
	tbs, err := kp.LeafNode.leafNodeTBS(nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	kp.LeafNode.Signature = s.sign(t, "LeafNodeTBS", tbs)
	var w writer
	kp.marshalContent(&w)
	if w.err != nil {
		t.Fatal(w.err)
	}
	kp.Signature = s.sign(t, "KeyPackageTBS", w.b)
	return kp
}

// TestFreshKeyPackages builds, publishes (as an MLSMessage), parses and
// verifies a new key package for every implemented signature scheme.
func TestFreshKeyPackages(t *testing.T) {
	now := time.Now()
	lt := Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(90 * 24 * time.Hour).Unix())}
	for _, cs := range []CipherSuite{
		MLS128DHKEMX25519AES128GCMSHA256Ed25519,
		MLS128DHKEMP256AES128GCMSHA256P256,
		MLS128DHKEMX25519ChaCha20Poly1305SHA256Ed25519,
		MLS256DHKEMP384AES256GCMSHA384P384,
		MLS256DHKEMP521AES256GCMSHA512P521,
	} {
		t.Run(cs.String(), func(t *testing.T) {
			const id = "did:plc:ewvi7nxzyoun6zhxrhs64oiz#device-1"
			built := newTestKeyPackage(t, cs, id, lt)
			wire, err := Marshal(&Message{Version: ProtocolVersionMLS10, WireFormat: WireFormatKeyPackage, KeyPackage: built})
			if err != nil {
				t.Fatal(err)
			}
			kp, err := ParseKeyPackage(wire)
			if err != nil {
				t.Fatal(err)
			}
			if err := kp.Verify(); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if got, ok := kp.Credential().BasicIdentity(); !ok || string(got) != id {
				t.Fatalf("identity = %q, %v", got, ok)
			}
			if kp.Lifetime() != lt || !kp.Lifetime().Contains(now) || kp.Lifetime().Contains(now.Add(100*24*time.Hour)) {
				t.Fatalf("lifetime = %+v", kp.Lifetime())
			}
			ref, err := kp.Ref()
			if err != nil {
				t.Fatal(err)
			}
			h, _ := cs.Hash()
			if len(ref) != h.Size() {
				t.Fatalf("ref of %d bytes, want %d", len(ref), h.Size())
			}
		})
	}
}

// TestKeyPackageVerifyFailures mutates valid key packages, one field at a
// time, and checks that Verify refuses each with the right sentinel.
func TestKeyPackageVerifyFailures(t *testing.T) {
	lt := Lifetime{NotBefore: 0, NotAfter: math.MaxUint64}
	flip := func(b []byte) []byte {
		c := slices.Clone(b)
		c[len(c)/2] ^= 0x01
		return c
	}
	tests := []struct {
		name   string
		mutate func(*KeyPackage)
		want   error
	}{
		{"kp signature bit", func(kp *KeyPackage) { kp.Signature = flip(kp.Signature) }, ErrBadSignature},
		{"leaf signature bit", func(kp *KeyPackage) { kp.LeafNode.Signature = flip(kp.LeafNode.Signature) }, ErrBadSignature},
		{"identity changed", func(kp *KeyPackage) { kp.LeafNode.Credential.Identity = []byte("did:plc:mallory") }, ErrBadSignature},
		{"init key changed", func(kp *KeyPackage) { kp.InitKey = flip(kp.InitKey) }, ErrBadSignature},
		{"lifetime extended", func(kp *KeyPackage) { kp.LeafNode.Lifetime.NotAfter-- }, ErrBadSignature},
		{"extension added", func(kp *KeyPackage) { kp.Extensions = append(kp.Extensions, Extension{Type: 5}) }, ErrBadSignature},
		{"signature key bit", func(kp *KeyPackage) { kp.LeafNode.SignatureKey = flip(kp.LeafNode.SignatureKey) }, ErrBadSignature},
		{"signature key short", func(kp *KeyPackage) { kp.LeafNode.SignatureKey = kp.LeafNode.SignatureKey[:5] }, ErrBadSignature},
		{"empty signature", func(kp *KeyPackage) { kp.Signature = nil }, ErrBadSignature},
		{"ed448 suite", func(kp *KeyPackage) { kp.CipherSuite = MLS256DHKEMX448AES256GCMSHA512Ed448 }, ErrUnsupportedCipherSuite},
		{"unknown suite", func(kp *KeyPackage) { kp.CipherSuite = 0x0a0a }, ErrUnsupportedCipherSuite},
		{"version 2", func(kp *KeyPackage) { kp.Version = 2 }, ErrUnsupported},
		{"leaf from update", func(kp *KeyPackage) { kp.LeafNode.Source = LeafNodeSourceUpdate }, ErrInvalid},
		{"init key reused as leaf key", func(kp *KeyPackage) { kp.InitKey = kp.LeafNode.EncryptionKey }, ErrInvalid},
	}
	for _, cs := range []CipherSuite{MLS128DHKEMX25519AES128GCMSHA256Ed25519, MLS128DHKEMP256AES128GCMSHA256P256} {
		base := newTestKeyPackage(t, cs, "did:plc:alice", lt)
		wire, err := Marshal(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range tests {
			t.Run(cs.String()+"/"+tt.name, func(t *testing.T) {
				kp, err := ParseKeyPackage(wire)
				if err != nil {
					t.Fatal(err)
				}
				if err := kp.Verify(); err != nil {
					t.Fatalf("unmutated: %v", err)
				}
				// Parsed slices alias wire; detach them before mutating.
				kp, _ = ParseKeyPackage(slices.Clone(wire))
				tt.mutate(kp)
				if err := kp.Verify(); !errors.Is(err, tt.want) {
					t.Fatalf("err = %v, want %v", err, tt.want)
				}
			})
		}
	}
	// An Ed25519 key package relabelled as P-256 must fail, not verify.
	kp := newTestKeyPackage(t, MLS128DHKEMX25519AES128GCMSHA256Ed25519, "did:plc:alice", lt)
	kp.CipherSuite = MLS128DHKEMP256AES128GCMSHA256P256
	if err := kp.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("suite swapped: err = %v, want ErrBadSignature", err)
	}
}

// TestKeyPackageWireBitFlips flips every bit of a published key package:
// each result must either fail to parse or fail to verify.
func TestKeyPackageWireBitFlips(t *testing.T) {
	kp := newTestKeyPackage(t, MLS128DHKEMX25519AES128GCMSHA256Ed25519, "did:plc:alice", Lifetime{NotAfter: 1 << 40})
	wire, err := Marshal(&Message{Version: ProtocolVersionMLS10, WireFormat: WireFormatKeyPackage, KeyPackage: kp})
	if err != nil {
		t.Fatal(err)
	}
	for i := range len(wire) * 8 {
		b := slices.Clone(wire)
		b[i/8] ^= 1 << (i % 8)
		got, err := ParseKeyPackage(b)
		if err != nil {
			continue
		}
		if err := got.Verify(); err == nil {
			t.Fatalf("bit %d flipped: still verifies", i)
		}
	}
}

func TestParseKeyPackageErrors(t *testing.T) {
	var vs []welcomeVector
	readJSON(t, "welcome.json", &vs)
	welcome := unhex(t, vs[0].Welcome)
	kp := unhex(t, vs[0].KeyPackage)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"welcome", welcome, ErrWrongWireFormat},
		{"truncated mls message", kp[:len(kp)-1], ErrTruncated},
		{"trailing byte", append(slices.Clone(kp), 0), ErrTrailingData},
		{"truncated bare", kp[4 : len(kp)-1], ErrTruncated},
		{"unknown credential type", func() []byte {
			// Bare key package, suite 1: the credential type follows the
			// init, encryption and signature keys (32 bytes each).
			b := slices.Clone(kp[4:])
			off := 4 + 3*33
			b[off], b[off+1] = 0x0a, 0x0a
			return b
		}(), ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKeyPackage(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestLifetime(t *testing.T) {
	tests := []struct {
		name string
		lt   Lifetime
		at   time.Time
		want bool
	}{
		{"inside", Lifetime{100, 200}, time.Unix(150, 0), true},
		{"at start", Lifetime{100, 200}, time.Unix(100, 0), true},
		{"at end", Lifetime{100, 200}, time.Unix(200, 0), true},
		{"before", Lifetime{100, 200}, time.Unix(99, 0), false},
		{"after", Lifetime{100, 200}, time.Unix(201, 0), false},
		{"no expiry", Lifetime{0, math.MaxUint64}, time.Now(), true},
		{"before 1970", Lifetime{0, 200}, time.Unix(-5, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.lt.Contains(tt.at); got != tt.want {
				t.Fatalf("Contains = %v, want %v", got, tt.want)
			}
		})
	}
	if end := (Lifetime{NotAfter: math.MaxUint64}).End(); end.Year() < 9999 {
		t.Fatalf("saturated End = %v", end)
	}
}

// TestParseKeyPackageAmbiguous builds bytes that read both as a bare
// cipher-suite-5 key package and as an MLSMessage-wrapped key package:
// the bare package's 128-byte init key holds the start of the wrapped
// one, whose signature field swallows the rest. ParseKeyPackage must
// refuse them rather than pick a reading.
func TestParseKeyPackageAmbiguous(t *testing.T) {
	leaf := LeafNode{
		Credential: Credential{Type: CredentialTypeBasic, Identity: []byte("did:plc:alice")},
		Source:     LeafNodeSourceKeyPackage,
	}
	var w writer
	leaf.marshal(&w)
	writeExtensions(&w, nil)
	w.opaque([]byte("signature"))
	tail := w.b // what follows the init key in the bare reading

	// The wrapped reading, from its cipher suite on: suite 0x0001, empty
	// init key, a minimal update-source leaf node, no extensions, and a
	// signature header covering everything left.
	inner := unhex(t, "0001"+"00"+"0000"+"000100"+"0000000000"+"02"+"00"+"00"+"00")
	const initLen = 128 // header 0x4080 doubles as the wrapped version
	sigLen := initLen - len(inner) - 2 + len(tail)
	inner, err := appendVarint(inner, uint64(sigLen))
	if err != nil || varintLen(uint64(sigLen)) != 2 {
		t.Fatalf("signature length %d does not take a two-byte header", sigLen)
	}
	init := append(inner, make([]byte, initLen-len(inner))...)

	bare := KeyPackage{Version: ProtocolVersionMLS10, CipherSuite: MLS256DHKEMP521AES256GCMSHA512P521, InitKey: init, LeafNode: leaf, Signature: []byte("signature")}
	in, err := Marshal(&bare)
	if err != nil {
		t.Fatal(err)
	}
	var asBare KeyPackage
	var asWrapped Message
	if err := Unmarshal(in, &asBare); err != nil {
		t.Fatalf("bare reading: %v", err)
	}
	if err := Unmarshal(in, &asWrapped); err != nil || asWrapped.WireFormat != WireFormatKeyPackage {
		t.Fatalf("wrapped reading: %v, %v", err, asWrapped.WireFormat)
	}
	if _, err := ParseKeyPackage(in); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("err = %v, want ErrAmbiguous", err)
	}
}

// flipLastBit returns a copy of b with its last bit inverted.
func flipLastBit(b []byte) []byte {
	c := slices.Clone(b)
	c[len(c)-1] ^= 1
	return c
}
