package mlswire

import (
	"bytes"
	"errors"
	"slices"
	"testing"
)

// TestLeafNodeVerifyBindsGroupAndIndex checks that an update leaf's
// signature covers the group ID and leaf index the caller supplies.
func TestLeafNodeVerifyBindsGroupAndIndex(t *testing.T) {
	for _, cs := range []CipherSuite{MLS128DHKEMX25519AES128GCMSHA256Ed25519, MLS128DHKEMP256AES128GCMSHA256P256} {
		t.Run(cs.String(), func(t *testing.T) {
			s := newTestSigner(t, cs)
			ln := LeafNode{
				EncryptionKey: randomBytes(t, 32),
				SignatureKey:  s.public(t),
				Credential:    Credential{Type: CredentialTypeBasic, Identity: []byte("did:plc:alice")},
				Source:        LeafNodeSourceUpdate,
			}
			group := []byte("group-1")
			tbs, err := ln.leafNodeTBS(group, 3)
			if err != nil {
				t.Fatal(err)
			}
			ln.Signature = s.sign(t, "LeafNodeTBS", tbs)
			if err := ln.Verify(cs, group, 3); err != nil {
				t.Fatalf("verify: %v", err)
			}
			tests := []struct {
				name  string
				group []byte
				index uint32
			}{
				{"other group", []byte("group-2"), 3},
				{"other leaf", group, 4},
			}
			for _, tt := range tests {
				if err := ln.Verify(cs, tt.group, tt.index); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("%s: err = %v, want ErrBadSignature", tt.name, err)
				}
			}
		})
	}
}

// TestGroupInfoVerify signs a GroupInfo, round-trips it as an MLSMessage,
// and checks that its signature verifies and that changing the epoch or
// the key breaks it.
func TestGroupInfoVerify(t *testing.T) {
	for _, cs := range []CipherSuite{MLS128DHKEMX25519AES128GCMSHA256Ed25519, MLS128DHKEMP256AES128GCMSHA256P256} {
		t.Run(cs.String(), func(t *testing.T) {
			s := newTestSigner(t, cs)
			gi := &GroupInfo{
				GroupContext: GroupContext{
					Version:                 ProtocolVersionMLS10,
					CipherSuite:             cs,
					GroupID:                 []byte("group-1"),
					Epoch:                   9,
					TreeHash:                randomBytes(t, 32),
					ConfirmedTranscriptHash: randomBytes(t, 32),
				},
				ConfirmationTag: randomBytes(t, 32),
				Signer:          2,
			}
			var w writer
			gi.marshalContent(&w)
			gi.Signature = s.sign(t, "GroupInfoTBS", w.b)
			wire, err := Marshal(&Message{Version: ProtocolVersionMLS10, WireFormat: WireFormatGroupInfo, GroupInfo: gi})
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseMessage(wire)
			if err != nil {
				t.Fatal(err)
			}
			got := m.GroupInfo
			if got.GroupContext.Epoch != 9 || string(got.GroupContext.GroupID) != "group-1" || got.GroupContext.CipherSuite != cs {
				t.Fatalf("group context = %+v", got.GroupContext)
			}
			if err := got.Verify(s.public(t)); err != nil {
				t.Fatalf("verify: %v", err)
			}
			if err := got.Verify(newTestSigner(t, cs).public(t)); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("other key: err = %v, want ErrBadSignature", err)
			}
			m, _ = ParseMessage(slices.Clone(wire))
			m.GroupInfo.GroupContext.Epoch++
			if err := m.GroupInfo.Verify(s.public(t)); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("epoch changed: err = %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestRefHashUnknownSuite(t *testing.T) {
	if _, err := RefHash(0, "label", nil); !errors.Is(err, ErrUnsupportedCipherSuite) {
		t.Fatalf("suite 0: err = %v", err)
	}
	kp := &KeyPackage{CipherSuite: 0x0a0a, LeafNode: LeafNode{Credential: Credential{Type: CredentialTypeBasic}, Source: LeafNodeSourceKeyPackage}}
	if _, err := kp.Ref(); !errors.Is(err, ErrUnsupportedCipherSuite) {
		t.Fatalf("key package suite 0x0a0a: err = %v", err)
	}
}

// TestGroupInfoVectorsRatchetTreeExtension decodes the ratchet_tree
// extension each GroupInfo vector carries and re-encodes it.
func TestGroupInfoVectorsRatchetTreeExtension(t *testing.T) {
	found := 0
	for i, v := range messageVectors(t) {
		m, err := ParseMessage(unhex(t, v["mls_group_info"]))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range m.GroupInfo.Extensions {
			if e.Type != ExtensionTypeRatchetTree {
				continue
			}
			found++
			var rt RatchetTree
			if err := Unmarshal(e.Data, &rt); err != nil {
				t.Fatalf("vector %d: ratchet_tree extension: %v", i, err)
			}
			if out, err := Marshal(&rt); err != nil || !bytes.Equal(out, e.Data) {
				t.Fatalf("vector %d: ratchet tree re-encodes differently (%v)", i, err)
			}
		}
	}
	if found == 0 {
		t.Fatal("no GroupInfo vector carries a ratchet_tree extension")
	}
}
