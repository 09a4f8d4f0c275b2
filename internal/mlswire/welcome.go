package mlswire

import "bytes"

// KeyPackageRef identifies a key package: RefHash("MLS 1.0 KeyPackage
// Reference", KeyPackage) under the suite's hash (RFC 9420 §5.2).
type KeyPackageRef []byte

// EncryptedGroupSecrets is the GroupSecrets of one new member, encrypted to
// the init key of the key package NewMember refers to (RFC 9420 §12.4.3.1).
type EncryptedGroupSecrets struct {
	NewMember             KeyPackageRef
	EncryptedGroupSecrets HPKECiphertext
}

func (e *EncryptedGroupSecrets) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	e.NewMember = r.opaque()
	e.EncryptedGroupSecrets.unmarshal(r)
	r.wrap("encrypted group secrets")
}

func (e *EncryptedGroupSecrets) marshal(w *writer) {
	w.opaque(e.NewMember)
	e.EncryptedGroupSecrets.marshal(w)
}

// Welcome invites new members into a group (RFC 9420 §12.4.3.1). Everything
// but the cipher suite and the new members' KeyPackageRefs is encrypted.
type Welcome struct {
	CipherSuite        CipherSuite
	Secrets            []EncryptedGroupSecrets
	EncryptedGroupInfo []byte
}

// NewMembers returns the KeyPackageRefs of the key packages the Welcome is
// addressed to, in order.
func (wl *Welcome) NewMembers() []KeyPackageRef {
	refs := make([]KeyPackageRef, len(wl.Secrets))
	for i := range wl.Secrets {
		refs[i] = wl.Secrets[i].NewMember
	}
	return refs
}

// HasNewMember reports whether the Welcome is addressed to the key package
// with the given reference.
func (wl *Welcome) HasNewMember(ref KeyPackageRef) bool {
	for i := range wl.Secrets {
		if bytes.Equal(wl.Secrets[i].NewMember, ref) {
			return true
		}
	}
	return false
}

func (wl *Welcome) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	wl.CipherSuite = CipherSuite(r.u16())
	wl.Secrets = readList(r, "secrets", (*EncryptedGroupSecrets).unmarshal)
	wl.EncryptedGroupInfo = r.opaque()
	r.wrap("welcome")
}

func (wl *Welcome) marshal(w *writer) {
	w.u16(uint16(wl.CipherSuite))
	writeList(w, wl.Secrets, (*EncryptedGroupSecrets).marshal)
	w.opaque(wl.EncryptedGroupInfo)
}

// GroupContext is the shared state every member agrees on in an epoch
// (RFC 9420 §8.1).
type GroupContext struct {
	Version                 ProtocolVersion
	CipherSuite             CipherSuite
	GroupID                 []byte
	Epoch                   uint64
	TreeHash                []byte
	ConfirmedTranscriptHash []byte
	Extensions              []Extension
}

func (gc *GroupContext) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	gc.Version = ProtocolVersion(r.u16())
	gc.CipherSuite = CipherSuite(r.u16())
	gc.GroupID = r.opaque()
	gc.Epoch = r.u64()
	gc.TreeHash = r.opaque()
	gc.ConfirmedTranscriptHash = r.opaque()
	gc.Extensions = readExtensions(r)
	r.wrap("group context")
}

func (gc *GroupContext) marshal(w *writer) {
	w.u16(uint16(gc.Version))
	w.u16(uint16(gc.CipherSuite))
	w.opaque(gc.GroupID)
	w.u64(gc.Epoch)
	w.opaque(gc.TreeHash)
	w.opaque(gc.ConfirmedTranscriptHash)
	writeExtensions(w, gc.Extensions)
}

// GroupInfo describes a group to joiners (RFC 9420 §12.4.3). Signer is the
// leaf index of the member who signed it.
type GroupInfo struct {
	GroupContext    GroupContext
	Extensions      []Extension
	ConfirmationTag []byte
	Signer          uint32
	Signature       []byte
}

func (gi *GroupInfo) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	gi.GroupContext.unmarshal(r)
	gi.Extensions = readExtensions(r)
	gi.ConfirmationTag = r.opaque()
	gi.Signer = r.u32()
	gi.Signature = r.opaque()
	r.wrap("group info")
}

// marshalContent writes GroupInfoTBS: everything but the signature.
func (gi *GroupInfo) marshalContent(w *writer) {
	gi.GroupContext.marshal(w)
	writeExtensions(w, gi.Extensions)
	w.opaque(gi.ConfirmationTag)
	w.u32(gi.Signer)
}

func (gi *GroupInfo) marshal(w *writer) {
	gi.marshalContent(w)
	w.opaque(gi.Signature)
}

// PathSecret is a secret for a node of the ratchet tree (RFC 9420 §12.4.3.1).
type PathSecret struct {
	PathSecret []byte
}

// GroupSecrets is the plaintext of EncryptedGroupSecrets (RFC 9420
// §12.4.3.1). The delivery service never sees it; it is here for
// completeness and tests. PathSecret is nil when absent.
type GroupSecrets struct {
	JoinerSecret []byte
	PathSecret   *PathSecret
	PSKs         []PreSharedKeyID
}

func (gs *GroupSecrets) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	gs.JoinerSecret = r.opaque()
	if r.optional() {
		gs.PathSecret = &PathSecret{PathSecret: r.opaque()}
	}
	gs.PSKs = readList(r, "psks", (*PreSharedKeyID).unmarshal)
	r.wrap("group secrets")
}

func (gs *GroupSecrets) marshal(w *writer) {
	w.opaque(gs.JoinerSecret)
	w.optional(gs.PathSecret != nil)
	if gs.PathSecret != nil {
		w.opaque(gs.PathSecret.PathSecret)
	}
	writeList(w, gs.PSKs, (*PreSharedKeyID).marshal)
}
