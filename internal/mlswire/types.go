package mlswire

import "strconv"

// ProtocolVersion is an MLS protocol version (RFC 9420 §6).
type ProtocolVersion uint16

// ProtocolVersionMLS10 is MLS 1.0, the only version this package parses
// messages of.
const ProtocolVersionMLS10 ProtocolVersion = 1

// WireFormat says which structure an MLSMessage carries (RFC 9420 §6).
type WireFormat uint16

// Wire formats defined by RFC 9420 §17.2.
const (
	WireFormatPublicMessage  WireFormat = 1
	WireFormatPrivateMessage WireFormat = 2
	WireFormatWelcome        WireFormat = 3
	WireFormatGroupInfo      WireFormat = 4
	WireFormatKeyPackage     WireFormat = 5
)

// String returns the RFC 9420 name of the wire format.
func (f WireFormat) String() string {
	switch f {
	case WireFormatPublicMessage:
		return "mls_public_message"
	case WireFormatPrivateMessage:
		return "mls_private_message"
	case WireFormatWelcome:
		return "mls_welcome"
	case WireFormatGroupInfo:
		return "mls_group_info"
	case WireFormatKeyPackage:
		return "mls_key_package"
	}
	return "wire_format(" + strconv.Itoa(int(f)) + ")"
}

// ContentType is the type of the content of a framed message (RFC 9420 §6).
// It is public in both PublicMessage and PrivateMessage.
type ContentType uint8

// Content types defined by RFC 9420 §6.
const (
	ContentTypeApplication ContentType = 1
	ContentTypeProposal    ContentType = 2
	ContentTypeCommit      ContentType = 3
)

// String returns the RFC 9420 name of the content type.
func (c ContentType) String() string {
	switch c {
	case ContentTypeApplication:
		return "application"
	case ContentTypeProposal:
		return "proposal"
	case ContentTypeCommit:
		return "commit"
	}
	return "content_type(" + strconv.Itoa(int(c)) + ")"
}

func (c ContentType) valid() bool { return c >= ContentTypeApplication && c <= ContentTypeCommit }

// SenderType says who sent a PublicMessage (RFC 9420 §6).
type SenderType uint8

// Sender types defined by RFC 9420 §6.
const (
	SenderTypeMember            SenderType = 1
	SenderTypeExternal          SenderType = 2
	SenderTypeNewMemberProposal SenderType = 3
	SenderTypeNewMemberCommit   SenderType = 4
)

// ProposalType identifies a proposal (RFC 9420 §12.1).
type ProposalType uint16

// Proposal types defined by RFC 9420 §17.4.
const (
	ProposalTypeAdd                    ProposalType = 1
	ProposalTypeUpdate                 ProposalType = 2
	ProposalTypeRemove                 ProposalType = 3
	ProposalTypePreSharedKey           ProposalType = 4
	ProposalTypeReInit                 ProposalType = 5
	ProposalTypeExternalInit           ProposalType = 6
	ProposalTypeGroupContextExtensions ProposalType = 7
)

// CredentialType identifies a credential format (RFC 9420 §5.3).
type CredentialType uint16

// Credential types defined by RFC 9420 §17.5.
const (
	CredentialTypeBasic CredentialType = 1
	CredentialTypeX509  CredentialType = 2
)

// ExtensionType identifies an extension (RFC 9420 §13). Extension data is
// kept opaque; decode a known one with Unmarshal (for example the
// ratchet_tree extension of a GroupInfo into a RatchetTree).
type ExtensionType uint16

// Extension types defined by RFC 9420 §17.3.
const (
	ExtensionTypeApplicationID        ExtensionType = 1
	ExtensionTypeRatchetTree          ExtensionType = 2
	ExtensionTypeRequiredCapabilities ExtensionType = 3
	ExtensionTypeExternalPub          ExtensionType = 4
	ExtensionTypeExternalSenders      ExtensionType = 5
)

// LeafNodeSource says how a leaf node was created (RFC 9420 §7.2).
type LeafNodeSource uint8

// Leaf node sources defined by RFC 9420 §7.2.
const (
	LeafNodeSourceKeyPackage LeafNodeSource = 1
	LeafNodeSourceUpdate     LeafNodeSource = 2
	LeafNodeSourceCommit     LeafNodeSource = 3
)

// PSKType identifies the kind of a pre-shared key (RFC 9420 §8.4).
type PSKType uint8

// PSK types defined by RFC 9420 §8.4.
const (
	PSKTypeExternal   PSKType = 1
	PSKTypeResumption PSKType = 2
)

// ResumptionPSKUsage says what a resumption PSK is for (RFC 9420 §8.4). It
// does not affect the structure, so any value is preserved.
type ResumptionPSKUsage uint8

// ProposalOrRefType selects between an inline proposal and a reference in a
// Commit (RFC 9420 §12.4).
type ProposalOrRefType uint8

// Proposal-or-reference selectors defined by RFC 9420 §12.4.
const (
	ProposalOrRefTypeProposal  ProposalOrRefType = 1
	ProposalOrRefTypeReference ProposalOrRefType = 2
)

// NodeType selects leaf or parent in a ratchet tree node (RFC 9420 §12.4.3.3).
type NodeType uint8

// Node types defined by RFC 9420 §12.4.3.3.
const (
	NodeTypeLeaf   NodeType = 1
	NodeTypeParent NodeType = 2
)

// Extension is an entry of an extension list (RFC 9420 §13). Data is the
// opaque extension_data.
type Extension struct {
	Type ExtensionType
	Data []byte
}

func (e *Extension) unmarshal(r *reader) {
	e.Type = ExtensionType(r.u16())
	e.Data = r.opaque()
}

func (e *Extension) marshal(w *writer) {
	w.u16(uint16(e.Type))
	w.opaque(e.Data)
}

func readExtensions(r *reader) []Extension {
	return readList(r, "extensions", (*Extension).unmarshal)
}

func writeExtensions(w *writer, xs []Extension) {
	writeList(w, xs, (*Extension).marshal)
}

// HPKECiphertext is an HPKE-encrypted value (RFC 9420 §12.4.1).
type HPKECiphertext struct {
	KEMOutput  []byte
	Ciphertext []byte
}

func (c *HPKECiphertext) unmarshal(r *reader) {
	c.KEMOutput = r.opaque()
	c.Ciphertext = r.opaque()
}

func (c *HPKECiphertext) marshal(w *writer) {
	w.opaque(c.KEMOutput)
	w.opaque(c.Ciphertext)
}
