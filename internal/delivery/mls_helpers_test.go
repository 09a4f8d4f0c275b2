package delivery_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
)

// suite is the cipher suite the tests use.
const suite = mlswire.MLS128DHKEMX25519AES128GCMSHA256Ed25519

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func marshal(t testing.TB, v mlswire.Value) []byte {
	t.Helper()
	b, err := mlswire.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// framed builds an MLSMessage carrying a PrivateMessage of the group at
// epoch, exactly size bytes long (size 0: small).
func framed(t testing.TB, groupHex string, epoch uint64, ct mlswire.ContentType, size int) []byte {
	t.Helper()
	gid, err := hex.DecodeString(groupHex)
	if err != nil {
		t.Fatal(err)
	}
	pm := &mlswire.PrivateMessage{GroupID: gid, Epoch: epoch, ContentType: ct, EncryptedSenderData: randBytes(t, 16)}
	msg := &mlswire.Message{Version: mlswire.ProtocolVersionMLS10, WireFormat: mlswire.WireFormatPrivateMessage, PrivateMessage: pm}
	if size == 0 {
		pm.Ciphertext = randBytes(t, 40)
		return marshal(t, msg)
	}
	base := len(marshal(t, msg)) // with an empty ciphertext (1-byte length)
	for extra := 0; extra <= 4; extra++ {
		n := size - base - extra
		if n < 0 {
			break
		}
		pm.Ciphertext = make([]byte, n)
		if b := marshal(t, msg); len(b) == size {
			return b
		}
	}
	t.Fatalf("cannot frame a message of %d bytes", size)
	return nil
}

// app is an application message of exactly 512 bytes.
func app(t testing.TB, groupHex string, epoch uint64) []byte {
	return framed(t, groupHex, epoch, mlswire.ContentTypeApplication, 512)
}

// commit is a commit made in epoch.
func commit(t testing.TB, groupHex string, epoch uint64) []byte {
	return framed(t, groupHex, epoch, mlswire.ContentTypeCommit, 0)
}

// welcome is a Welcome addressed to refs.
func welcome(t testing.TB, cs mlswire.CipherSuite, refs ...[]byte) []byte {
	t.Helper()
	w := &mlswire.Welcome{CipherSuite: cs, EncryptedGroupInfo: randBytes(t, 64)}
	for _, r := range refs {
		w.Secrets = append(w.Secrets, mlswire.EncryptedGroupSecrets{
			NewMember: r, EncryptedGroupSecrets: mlswire.HPKECiphertext{KEMOutput: randBytes(t, 32), Ciphertext: randBytes(t, 48)},
		})
	}
	return marshal(t, &mlswire.Message{Version: mlswire.ProtocolVersionMLS10, WireFormat: mlswire.WireFormatWelcome, Welcome: w})
}

// groupInfo is a GroupInfo of the group at epoch.
func groupInfo(t testing.TB, groupHex string, epoch uint64) []byte {
	t.Helper()
	gid, _ := hex.DecodeString(groupHex)
	gi := &mlswire.GroupInfo{
		GroupContext: mlswire.GroupContext{
			Version: mlswire.ProtocolVersionMLS10, CipherSuite: suite, GroupID: gid, Epoch: epoch,
			TreeHash: randBytes(t, 32), ConfirmedTranscriptHash: randBytes(t, 32),
		},
		ConfirmationTag: randBytes(t, 32), Signature: randBytes(t, 64),
	}
	return marshal(t, &mlswire.Message{Version: mlswire.ProtocolVersionMLS10, WireFormat: mlswire.WireFormatGroupInfo, GroupInfo: gi})
}

// appendVarint appends an RFC 9420 variable-length integer.
func appendVarint(b []byte, n int) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, 0x40|byte(n>>8), byte(n))
	default:
		return append(b, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// signContent encodes SignContent of RFC 9420 §5.1.2: what
// SignWithLabel signs.
func signContent(label string, content []byte) []byte {
	l := "MLS 1.0 " + label
	msg := appendVarint(nil, len(l))
	msg = append(msg, l...)
	msg = appendVarint(msg, len(content))
	return append(msg, content...)
}

// signWithLabel implements SignWithLabel of RFC 9420 §5.1.2 for Ed25519.
func signWithLabel(key ed25519.PrivateKey, label string, content []byte) []byte {
	return ed25519.Sign(key, signContent(label, content))
}

// withoutSignature encodes v with an empty trailing signature and drops
// that signature's length byte: the TBS encoding of a leaf node or key
// package.
func withoutSignature(t testing.TB, v mlswire.Value) []byte {
	b := marshal(t, v)
	return b[:len(b)-1]
}

// keyPackage is a fresh, signed key package (as an MLSMessage) for
// identity, valid for lifetime from now.
type testKeyPackage struct {
	data []byte
	ref  []byte
}

func (k testKeyPackage) b64() string    { return base64.StdEncoding.EncodeToString(k.data) }
func (k testKeyPackage) refHex() string { return hex.EncodeToString(k.ref) }

func newKeyPackage(t testing.TB, identity string, now time.Time, lifetime time.Duration, exts ...mlswire.Extension) testKeyPackage {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(label string, content []byte) []byte { return signWithLabel(priv, label, content) }
	return buildKeyPackage(t, suite, pub, sign, identity, now, lifetime, exts...)
}

// newP256KeyPackage is newKeyPackage for the P-256 suite (ECDSA, DER
// signatures, uncompressed SEC1 key).
func newP256KeyPackage(t testing.TB, identity string, now time.Time, lifetime time.Duration) testKeyPackage {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	sign := func(label string, content []byte) []byte {
		h := sha256.Sum256(signContent(label, content))
		sig, err := ecdsa.SignASN1(rand.Reader, key, h[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	return buildKeyPackage(t, mlswire.MLS128DHKEMP256AES128GCMSHA256P256, pub, sign, identity, now, lifetime)
}

func buildKeyPackage(t testing.TB, cs mlswire.CipherSuite, pub []byte, sign func(label string, content []byte) []byte,
	identity string, now time.Time, lifetime time.Duration, exts ...mlswire.Extension) testKeyPackage {
	t.Helper()
	kp := &mlswire.KeyPackage{
		Version: mlswire.ProtocolVersionMLS10, CipherSuite: cs, InitKey: randBytes(t, 32),
		LeafNode: mlswire.LeafNode{
			EncryptionKey: randBytes(t, 32), SignatureKey: pub,
			Credential: mlswire.Credential{Type: mlswire.CredentialTypeBasic, Identity: []byte(identity)},
			Capabilities: mlswire.Capabilities{
				Versions: []mlswire.ProtocolVersion{mlswire.ProtocolVersionMLS10}, CipherSuites: []mlswire.CipherSuite{cs},
				Credentials: []mlswire.CredentialType{mlswire.CredentialTypeBasic},
			},
			Source:   mlswire.LeafNodeSourceKeyPackage,
			Lifetime: mlswire.Lifetime{NotBefore: uint64(now.Add(-time.Hour).Unix()), NotAfter: uint64(now.Add(lifetime).Unix())},
		},
		Extensions: exts,
	}
	kp.LeafNode.Signature = sign("LeafNodeTBS", withoutSignature(t, &kp.LeafNode))
	kp.Signature = sign("KeyPackageTBS", withoutSignature(t, kp))
	data := marshal(t, &mlswire.Message{Version: mlswire.ProtocolVersionMLS10, WireFormat: mlswire.WireFormatKeyPackage, KeyPackage: kp})
	parsed, err := mlswire.ParseKeyPackage(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := parsed.Verify(); err != nil {
		t.Fatalf("test key package does not verify: %v", err)
	}
	ref, err := parsed.Ref()
	if err != nil {
		t.Fatal(err)
	}
	return testKeyPackage{data: data, ref: ref}
}
