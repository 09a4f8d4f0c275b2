package mlswire

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"fmt"
)

// Labels of RFC 9420 used with SignWithLabel and RefHash.
const (
	labelPrefix        = "MLS 1.0 "
	labelKeyPackageTBS = "KeyPackageTBS"
	labelLeafNodeTBS   = "LeafNodeTBS"
	labelGroupInfoTBS  = "GroupInfoTBS"
	labelKeyPackageRef = "MLS 1.0 KeyPackage Reference"
)

// signContent encodes the SignContent structure of RFC 9420 §5.1.2, the
// bytes actually signed by SignWithLabel(key, label, content).
func signContent(label string, content []byte) ([]byte, error) {
	var w writer
	w.b = make([]byte, 0, len(labelPrefix)+len(label)+len(content)+8)
	w.opaque([]byte(labelPrefix + label))
	w.opaque(content)
	if w.err != nil {
		return nil, fmt.Errorf("sign content: %w", w.err)
	}
	return w.b, nil
}

// VerifyWithLabel checks signature against VerifyWithLabel(signatureKey,
// label, content) of RFC 9420 §5.1.2 under the cipher suite's signature
// scheme. label is the bare label (e.g. "KeyPackageTBS"); the "MLS 1.0 "
// prefix is added here. Ed25519 keys are the 32 raw bytes; ECDSA keys are
// uncompressed SEC1 points and signatures are DER, as RFC 9420 §5.1.1
// requires. Suites without an implemented scheme give
// ErrUnsupportedCipherSuite; a signature that does not verify, or a key
// that does not parse, gives ErrBadSignature.
func VerifyWithLabel(cs CipherSuite, signatureKey []byte, label string, content, signature []byte) error {
	s, ok := cs.info()
	if !ok || !cs.CanVerify() {
		return fmt.Errorf("verify %s: %v: %w", label, cs, ErrUnsupportedCipherSuite)
	}
	msg, err := signContent(label, content)
	if err != nil {
		return fmt.Errorf("verify %s: %w", label, err)
	}
	if s.curve == nil {
		// ed25519.Verify panics on a key of the wrong length.
		if len(signatureKey) != ed25519.PublicKeySize {
			return fmt.Errorf("verify %s: ed25519 key of %d bytes: %w", label, len(signatureKey), ErrBadSignature)
		}
		if !ed25519.Verify(ed25519.PublicKey(signatureKey), msg, signature) {
			return fmt.Errorf("verify %s: %w", label, ErrBadSignature)
		}
		return nil
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(s.curve(), signatureKey)
	if err != nil {
		return fmt.Errorf("verify %s: signature key: %v: %w", label, err, ErrBadSignature)
	}
	h := s.hash.New()
	h.Write(msg)
	if !ecdsa.VerifyASN1(pub, h.Sum(nil), signature) {
		return fmt.Errorf("verify %s: %w", label, ErrBadSignature)
	}
	return nil
}

// RefHash computes RefHash(label, value) of RFC 9420 §5.2: the suite's hash
// of the RefHashInput structure. label is used as given (for key packages
// it is "MLS 1.0 KeyPackage Reference").
func RefHash(cs CipherSuite, label string, value []byte) ([]byte, error) {
	hf, ok := cs.Hash()
	if !ok {
		return nil, fmt.Errorf("ref hash: %v: %w", cs, ErrUnsupportedCipherSuite)
	}
	var w writer
	w.opaque([]byte(label))
	w.opaque(value)
	if w.err != nil {
		return nil, fmt.Errorf("ref hash: %w", w.err)
	}
	h := hf.New()
	h.Write(w.b)
	return h.Sum(nil), nil
}

// Ref returns the KeyPackageRef of the key package (RFC 9420 §5.2), the
// value a Welcome names it by. It needs only the suite's hash, so it works
// for every suite RFC 9420 defines, including those Verify does not.
func (kp *KeyPackage) Ref() (KeyPackageRef, error) {
	b, err := Marshal(kp)
	if err != nil {
		return nil, fmt.Errorf("key package ref: %w", err)
	}
	ref, err := RefHash(kp.CipherSuite, labelKeyPackageRef, b)
	if err != nil {
		return nil, fmt.Errorf("key package ref: %w", err)
	}
	return ref, nil
}

// Verify checks a key package as RFC 9420 §10.1 asks of its recipient,
// except for the lifetime (see Lifetime) and the credential's binding to an
// identity, which are the caller's policy:
//   - the version is MLS 1.0 (ErrUnsupported otherwise);
//   - the cipher suite's signature scheme is implemented
//     (ErrUnsupportedCipherSuite otherwise);
//   - the leaf node's source is key_package and its encryption key differs
//     from the init key (ErrInvalid otherwise);
//   - the leaf node's signature ("LeafNodeTBS") and the key package's
//     signature ("KeyPackageTBS") both verify under the leaf's signature key
//     (ErrBadSignature otherwise).
func (kp *KeyPackage) Verify() error {
	if kp.Version != ProtocolVersionMLS10 {
		return fmt.Errorf("verify key package: protocol version %d: %w", kp.Version, ErrUnsupported)
	}
	if !kp.CipherSuite.CanVerify() {
		return fmt.Errorf("verify key package: %v: %w", kp.CipherSuite, ErrUnsupportedCipherSuite)
	}
	if kp.LeafNode.Source != LeafNodeSourceKeyPackage {
		return fmt.Errorf("verify key package: leaf node source %d: %w", kp.LeafNode.Source, ErrInvalid)
	}
	if bytes.Equal(kp.InitKey, kp.LeafNode.EncryptionKey) {
		return fmt.Errorf("verify key package: init key equals leaf encryption key: %w", ErrInvalid)
	}
	if err := kp.LeafNode.Verify(kp.CipherSuite, nil, 0); err != nil {
		return fmt.Errorf("verify key package: %w", err)
	}
	var w writer
	kp.marshalContent(&w)
	if w.err != nil {
		return fmt.Errorf("verify key package: %w", w.err)
	}
	if err := VerifyWithLabel(kp.CipherSuite, kp.LeafNode.SignatureKey, labelKeyPackageTBS, w.b, kp.Signature); err != nil {
		return fmt.Errorf("verify key package: %w", err)
	}
	return nil
}

// leafNodeTBS encodes LeafNodeTBS (RFC 9420 §7.2): the leaf node without
// its signature, followed, for the update and commit sources, by the group
// and leaf index it is bound to.
func (ln *LeafNode) leafNodeTBS(groupID []byte, leafIndex uint32) ([]byte, error) {
	var w writer
	ln.marshalContent(&w)
	if ln.Source == LeafNodeSourceUpdate || ln.Source == LeafNodeSourceCommit {
		w.opaque(groupID)
		w.u32(leafIndex)
	}
	return w.b, w.err
}

// Verify checks the leaf node's signature under its own signature key. For
// leaves from an update or a commit the signature also covers the group ID
// and the leaf index, which the caller supplies; for key package leaves
// they are ignored.
func (ln *LeafNode) Verify(cs CipherSuite, groupID []byte, leafIndex uint32) error {
	tbs, err := ln.leafNodeTBS(groupID, leafIndex)
	if err != nil {
		return fmt.Errorf("verify leaf node: %w", err)
	}
	if err := VerifyWithLabel(cs, ln.SignatureKey, labelLeafNodeTBS, tbs, ln.Signature); err != nil {
		return fmt.Errorf("verify leaf node: %w", err)
	}
	return nil
}

// Verify checks the GroupInfo's signature ("GroupInfoTBS") under the
// signature key of the member at leaf Signer, which the caller looks up in
// the group's ratchet tree; the GroupInfo does not carry it.
func (gi *GroupInfo) Verify(signatureKey []byte) error {
	var w writer
	gi.marshalContent(&w)
	if w.err != nil {
		return fmt.Errorf("verify group info: %w", w.err)
	}
	if err := VerifyWithLabel(gi.GroupContext.CipherSuite, signatureKey, labelGroupInfoTBS, w.b, gi.Signature); err != nil {
		return fmt.Errorf("verify group info: %w", err)
	}
	return nil
}
