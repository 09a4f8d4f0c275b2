package mlswire

import (
	"bytes"
	"testing"
)

// BenchmarkParseMessage parses application messages as the delivery
// service does for every send: an encrypted one of a typical 1 KiB size
// and a signed public one from the test vectors.
func BenchmarkParseMessage(b *testing.B) {
	var w writer
	(&Message{Version: ProtocolVersionMLS10, WireFormat: WireFormatPrivateMessage, PrivateMessage: &PrivateMessage{
		GroupID:             bytes.Repeat([]byte{0x42}, 32),
		Epoch:               7,
		ContentType:         ContentTypeApplication,
		EncryptedSenderData: bytes.Repeat([]byte{1}, 28),
		Ciphertext:          bytes.Repeat([]byte{2}, 1024),
	}}).marshal(&w)
	inputs := []struct {
		name string
		in   []byte
	}{
		{"private_application_1KiB", w.b},
		{"public_application", unhex(b, messageVectors(b)[0]["public_message_application"])},
	}
	for _, in := range inputs {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.in)))
			b.ReportAllocs()
			for b.Loop() {
				m, err := ParseMessage(in.in)
				if err != nil {
					b.Fatal(err)
				}
				if _, ok := m.Header(); !ok {
					b.Fatal("no header")
				}
			}
		})
	}
}

// BenchmarkKeyPackageVerify measures what publishing a key package costs the
// server: parse, both signatures, and the reference.
func BenchmarkKeyPackageVerify(b *testing.B) {
	for _, cs := range []CipherSuite{MLS128DHKEMX25519AES128GCMSHA256Ed25519, MLS128DHKEMP256AES128GCMSHA256P256} {
		kp := newTestKeyPackage(b, cs, "did:plc:ewvi7nxzyoun6zhxrhs64oiz#device-1", Lifetime{NotAfter: 1 << 40})
		wire, err := Marshal(&Message{Version: ProtocolVersionMLS10, WireFormat: WireFormatKeyPackage, KeyPackage: kp})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(cs.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				kp, err := ParseKeyPackage(wire)
				if err != nil {
					b.Fatal(err)
				}
				if err := kp.Verify(); err != nil {
					b.Fatal(err)
				}
				if _, err := kp.Ref(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
