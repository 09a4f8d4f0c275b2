package mlswire

import (
	"bytes"
	"testing"
)

// fuzzSeedVectors bounds how many messages.json vectors seed each fuzz
// target, so that the seed corpus run by plain `go test` stays quick.
const fuzzSeedVectors = 25

var mlsMessageFields = []string{"mls_welcome", "mls_group_info", "mls_key_package", "public_message_application", "public_message_proposal", "public_message_commit", "private_message"}

func FuzzParseMessage(f *testing.F) {
	vs := messageVectors(f)
	for _, v := range vs[:fuzzSeedVectors] {
		for _, field := range mlsMessageFields {
			f.Add(unhex(f, v[field]))
		}
	}
	var wv []welcomeVector
	readJSON(f, "welcome.json", &wv)
	for _, v := range wv {
		f.Add(unhex(f, v.Welcome))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		out, err := Marshal(m)
		if err != nil {
			t.Fatalf("parsed but cannot re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs\n in: %x\nout: %x", b, out)
		}
		h, ok := m.Header()
		if ok != (m.PublicMessage != nil || m.PrivateMessage != nil) {
			t.Fatalf("Header ok = %v for %v", ok, m.WireFormat)
		}
		if ok && !h.ContentType.valid() {
			t.Fatalf("header with content type %v", h.ContentType)
		}
		if m.Welcome != nil {
			_ = m.Welcome.NewMembers()
		}
		if m.KeyPackage != nil {
			_, _ = m.KeyPackage.Ref()
			_ = m.KeyPackage.Verify()
		}
	})
}

func FuzzParseKeyPackage(f *testing.F) {
	vs := messageVectors(f)
	for _, v := range vs[:fuzzSeedVectors] {
		wrapped := unhex(f, v["mls_key_package"])
		f.Add(wrapped)
		f.Add(wrapped[4:])
	}
	var wv []welcomeVector
	readJSON(f, "welcome.json", &wv)
	for _, v := range wv {
		f.Add(unhex(f, v.KeyPackage))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		kp, err := ParseKeyPackage(b)
		if err != nil {
			return
		}
		bare, err := Marshal(kp)
		if err != nil {
			t.Fatalf("parsed but cannot re-encode: %v", err)
		}
		wrapped, err := Marshal(&Message{Version: ProtocolVersionMLS10, WireFormat: WireFormatKeyPackage, KeyPackage: kp})
		if err != nil {
			t.Fatalf("cannot wrap: %v", err)
		}
		if !bytes.Equal(bare, b) && !bytes.Equal(wrapped, b) {
			t.Fatalf("re-encoding matches neither form\n in: %x\nbare: %x", b, bare)
		}
		ref, err := kp.Ref()
		if err == nil {
			want, _ := RefHash(kp.CipherSuite, labelKeyPackageRef, bare)
			if !bytes.Equal(ref, want) {
				t.Fatalf("ref %x, want %x", ref, want)
			}
		}
		_ = kp.Verify()
		_, _ = kp.Credential().BasicIdentity()
		_ = kp.Lifetime().Contains(kp.Lifetime().End())
	})
}

// FuzzUnmarshal exercises every structure of messages.json, including the
// ones ParseMessage never reaches (RatchetTree, GroupSecrets, bare
// proposals): kind selects the structure.
func FuzzUnmarshal(f *testing.F) {
	vs := messageVectors(f)
	for _, v := range vs[:fuzzSeedVectors/5] {
		for kind, fld := range vectorFields {
			f.Add(uint8(kind), unhex(f, v[fld.field]))
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		val := vectorFields[int(kind)%len(vectorFields)].new()
		if err := Unmarshal(b, val); err != nil {
			return
		}
		out, err := Marshal(val)
		if err != nil {
			t.Fatalf("parsed but cannot re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs\n in: %x\nout: %x", b, out)
		}
	})
}
