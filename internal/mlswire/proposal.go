package mlswire

import "fmt"

// Proposal is a proposed change to a group (RFC 9420 §12.1). Exactly the
// field matching Type is set.
type Proposal struct {
	Type                   ProposalType
	Add                    *Add
	Update                 *Update
	Remove                 *Remove
	PreSharedKey           *PreSharedKey
	ReInit                 *ReInit
	ExternalInit           *ExternalInit
	GroupContextExtensions *GroupContextExtensions
}

func (p *Proposal) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	p.Type = ProposalType(r.u16())
	var body Value
	switch p.Type {
	case ProposalTypeAdd:
		p.Add = new(Add)
		body = p.Add
	case ProposalTypeUpdate:
		p.Update = new(Update)
		body = p.Update
	case ProposalTypeRemove:
		p.Remove = new(Remove)
		body = p.Remove
	case ProposalTypePreSharedKey:
		p.PreSharedKey = new(PreSharedKey)
		body = p.PreSharedKey
	case ProposalTypeReInit:
		p.ReInit = new(ReInit)
		body = p.ReInit
	case ProposalTypeExternalInit:
		p.ExternalInit = new(ExternalInit)
		body = p.ExternalInit
	case ProposalTypeGroupContextExtensions:
		p.GroupContextExtensions = new(GroupContextExtensions)
		body = p.GroupContextExtensions
	default:
		// Proposals are not length-prefixed, so an unknown type cannot be
		// skipped.
		r.fail(fmt.Errorf("proposal type %d: %w", p.Type, ErrUnsupported))
	}
	if body != nil {
		body.unmarshal(r)
	}
	r.wrap("proposal")
}

// body returns the variant selected by Type, or nil if it is missing.
func (p *Proposal) body() Value {
	switch p.Type {
	case ProposalTypeAdd:
		if p.Add != nil {
			return p.Add
		}
	case ProposalTypeUpdate:
		if p.Update != nil {
			return p.Update
		}
	case ProposalTypeRemove:
		if p.Remove != nil {
			return p.Remove
		}
	case ProposalTypePreSharedKey:
		if p.PreSharedKey != nil {
			return p.PreSharedKey
		}
	case ProposalTypeReInit:
		if p.ReInit != nil {
			return p.ReInit
		}
	case ProposalTypeExternalInit:
		if p.ExternalInit != nil {
			return p.ExternalInit
		}
	case ProposalTypeGroupContextExtensions:
		if p.GroupContextExtensions != nil {
			return p.GroupContextExtensions
		}
	}
	return nil
}

func (p *Proposal) marshal(w *writer) {
	body := p.body()
	if body == nil {
		w.fail(fmt.Errorf("proposal type %d without its body: %w", p.Type, ErrMalformed))
		return
	}
	w.u16(uint16(p.Type))
	body.marshal(w)
}

// Add proposes adding the client of a key package (RFC 9420 §12.1.1).
type Add struct {
	KeyPackage KeyPackage
}

func (a *Add) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	a.KeyPackage.unmarshal(r)
	r.wrap("add")
}

func (a *Add) marshal(w *writer) { a.KeyPackage.marshal(w) }

// Update proposes replacing the sender's leaf node (RFC 9420 §12.1.2).
type Update struct {
	LeafNode LeafNode
}

func (u *Update) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	u.LeafNode.unmarshal(r)
	r.wrap("update")
}

func (u *Update) marshal(w *writer) { u.LeafNode.marshal(w) }

// Remove proposes removing the member at a leaf index (RFC 9420 §12.1.3).
type Remove struct {
	Removed uint32
}

func (rm *Remove) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	rm.Removed = r.u32()
	r.wrap("remove")
}

func (rm *Remove) marshal(w *writer) { w.u32(rm.Removed) }

// PreSharedKeyID identifies a pre-shared key (RFC 9420 §8.4). PSKID is set
// for external PSKs; Usage, PSKGroupID and PSKEpoch for resumption PSKs.
type PreSharedKeyID struct {
	Type       PSKType
	PSKID      []byte
	Usage      ResumptionPSKUsage
	PSKGroupID []byte
	PSKEpoch   uint64
	Nonce      []byte
}

func (p *PreSharedKeyID) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	p.Type = PSKType(r.u8())
	switch p.Type {
	case PSKTypeExternal:
		p.PSKID = r.opaque()
	case PSKTypeResumption:
		p.Usage = ResumptionPSKUsage(r.u8())
		p.PSKGroupID = r.opaque()
		p.PSKEpoch = r.u64()
	default:
		r.fail(fmt.Errorf("psk type %d: %w", p.Type, ErrMalformed))
	}
	p.Nonce = r.opaque()
	r.wrap("pre-shared key id")
}

func (p *PreSharedKeyID) marshal(w *writer) {
	w.u8(uint8(p.Type))
	switch p.Type {
	case PSKTypeExternal:
		w.opaque(p.PSKID)
	case PSKTypeResumption:
		w.u8(uint8(p.Usage))
		w.opaque(p.PSKGroupID)
		w.u64(p.PSKEpoch)
	default:
		w.fail(fmt.Errorf("psk type %d: %w", p.Type, ErrMalformed))
	}
	w.opaque(p.Nonce)
}

// PreSharedKey proposes injecting a PSK into the key schedule
// (RFC 9420 §12.1.4).
type PreSharedKey struct {
	PSK PreSharedKeyID
}

func (p *PreSharedKey) unmarshal(r *reader) { p.PSK.unmarshal(r) }
func (p *PreSharedKey) marshal(w *writer)   { p.PSK.marshal(w) }

// ReInit proposes re-initialising the group with new parameters
// (RFC 9420 §12.1.5). Version and CipherSuite are preserved as sent.
type ReInit struct {
	GroupID     []byte
	Version     ProtocolVersion
	CipherSuite CipherSuite
	Extensions  []Extension
}

func (ri *ReInit) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	ri.GroupID = r.opaque()
	ri.Version = ProtocolVersion(r.u16())
	ri.CipherSuite = CipherSuite(r.u16())
	ri.Extensions = readExtensions(r)
	r.wrap("reinit")
}

func (ri *ReInit) marshal(w *writer) {
	w.opaque(ri.GroupID)
	w.u16(uint16(ri.Version))
	w.u16(uint16(ri.CipherSuite))
	writeExtensions(w, ri.Extensions)
}

// ExternalInit carries the KEM output of an external joiner
// (RFC 9420 §12.1.6).
type ExternalInit struct {
	KEMOutput []byte
}

func (e *ExternalInit) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	e.KEMOutput = r.opaque()
	r.wrap("external init")
}

func (e *ExternalInit) marshal(w *writer) { w.opaque(e.KEMOutput) }

// GroupContextExtensions proposes new group context extensions
// (RFC 9420 §12.1.7).
type GroupContextExtensions struct {
	Extensions []Extension
}

func (g *GroupContextExtensions) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	g.Extensions = readExtensions(r)
	r.wrap("group context extensions")
}

func (g *GroupContextExtensions) marshal(w *writer) { writeExtensions(w, g.Extensions) }

// ProposalOrRef is an entry of a Commit's proposal list: an inline Proposal
// or the ProposalRef of one sent earlier (RFC 9420 §12.4).
type ProposalOrRef struct {
	Type      ProposalOrRefType
	Proposal  *Proposal
	Reference []byte
}

func (p *ProposalOrRef) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	p.Type = ProposalOrRefType(r.u8())
	switch p.Type {
	case ProposalOrRefTypeProposal:
		p.Proposal = new(Proposal)
		p.Proposal.unmarshal(r)
	case ProposalOrRefTypeReference:
		p.Reference = r.opaque()
	default:
		r.fail(fmt.Errorf("proposal-or-ref type %d: %w", p.Type, ErrMalformed))
	}
	r.wrap("proposal or ref")
}

func (p *ProposalOrRef) marshal(w *writer) {
	w.u8(uint8(p.Type))
	switch {
	case p.Type == ProposalOrRefTypeProposal && p.Proposal != nil:
		p.Proposal.marshal(w)
	case p.Type == ProposalOrRefTypeReference:
		w.opaque(p.Reference)
	default:
		w.fail(fmt.Errorf("proposal-or-ref type %d without its body: %w", p.Type, ErrMalformed))
	}
}

// UpdatePathNode is one step of an UpdatePath (RFC 9420 §7.6).
type UpdatePathNode struct {
	EncryptionKey       []byte
	EncryptedPathSecret []HPKECiphertext
}

func (n *UpdatePathNode) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	n.EncryptionKey = r.opaque()
	n.EncryptedPathSecret = readList(r, "encrypted_path_secret", (*HPKECiphertext).unmarshal)
	r.wrap("update path node")
}

func (n *UpdatePathNode) marshal(w *writer) {
	w.opaque(n.EncryptionKey)
	writeList(w, n.EncryptedPathSecret, (*HPKECiphertext).marshal)
}

// UpdatePath is the committer's new leaf and path secrets (RFC 9420 §7.6).
type UpdatePath struct {
	LeafNode LeafNode
	Nodes    []UpdatePathNode
}

func (u *UpdatePath) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	u.LeafNode.unmarshal(r)
	u.Nodes = readList(r, "nodes", (*UpdatePathNode).unmarshal)
	r.wrap("update path")
}

func (u *UpdatePath) marshal(w *writer) {
	u.LeafNode.marshal(w)
	writeList(w, u.Nodes, (*UpdatePathNode).marshal)
}

// Commit applies proposals and optionally updates the committer's path
// (RFC 9420 §12.4). Path is nil when absent.
type Commit struct {
	Proposals []ProposalOrRef
	Path      *UpdatePath
}

func (c *Commit) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	c.Proposals = readList(r, "proposals", (*ProposalOrRef).unmarshal)
	if r.optional() {
		c.Path = new(UpdatePath)
		c.Path.unmarshal(r)
	}
	r.wrap("commit")
}

func (c *Commit) marshal(w *writer) {
	writeList(w, c.Proposals, (*ProposalOrRef).marshal)
	w.optional(c.Path != nil)
	if c.Path != nil {
		c.Path.marshal(w)
	}
}
