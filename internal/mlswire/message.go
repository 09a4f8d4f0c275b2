package mlswire

import "fmt"

// Message is an MLSMessage (RFC 9420 §6): a protocol version, a wire format,
// and exactly one body, the one matching WireFormat.
type Message struct {
	Version        ProtocolVersion
	WireFormat     WireFormat
	PublicMessage  *PublicMessage
	PrivateMessage *PrivateMessage
	Welcome        *Welcome
	GroupInfo      *GroupInfo
	KeyPackage     *KeyPackage
}

// ParseMessage parses an MLSMessage of any wire format. The input must be
// exactly one message of protocol version MLS 1.0, at most MaxMessageSize
// bytes. Byte slices in the result alias b.
//
// For the routing fields of PublicMessage and PrivateMessage use Header;
// for a Welcome, Welcome.CipherSuite and Welcome.NewMembers; for a
// GroupInfo, GroupInfo.GroupContext; for a KeyPackage, KeyPackage.
func ParseMessage(b []byte) (*Message, error) {
	m := new(Message)
	if err := Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("parse mls message: %w", err)
	}
	return m, nil
}

// Header holds the fields a framed message carries in the clear: the group,
// the epoch it was sent in, and what kind of content it holds. For a commit,
// Epoch is the epoch the commit was made in; the group moves to Epoch+1 when
// it is applied.
type Header struct {
	GroupID     []byte
	Epoch       uint64
	ContentType ContentType
}

// Header returns the routing fields of a PublicMessage or PrivateMessage,
// and false for the other wire formats.
func (m *Message) Header() (Header, bool) {
	switch {
	case m.WireFormat == WireFormatPublicMessage && m.PublicMessage != nil:
		c := &m.PublicMessage.Content
		return Header{GroupID: c.GroupID, Epoch: c.Epoch, ContentType: c.ContentType}, true
	case m.WireFormat == WireFormatPrivateMessage && m.PrivateMessage != nil:
		p := m.PrivateMessage
		return Header{GroupID: p.GroupID, Epoch: p.Epoch, ContentType: p.ContentType}, true
	}
	return Header{}, false
}

func (m *Message) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	m.Version = ProtocolVersion(r.u16())
	m.WireFormat = WireFormat(r.u16())
	if !r.failed() && m.Version != ProtocolVersionMLS10 {
		r.fail(fmt.Errorf("protocol version %d: %w", m.Version, ErrUnsupported))
	}
	switch m.WireFormat {
	case WireFormatPublicMessage:
		m.PublicMessage = new(PublicMessage)
		m.PublicMessage.unmarshal(r)
	case WireFormatPrivateMessage:
		m.PrivateMessage = new(PrivateMessage)
		m.PrivateMessage.unmarshal(r)
	case WireFormatWelcome:
		m.Welcome = new(Welcome)
		m.Welcome.unmarshal(r)
	case WireFormatGroupInfo:
		m.GroupInfo = new(GroupInfo)
		m.GroupInfo.unmarshal(r)
	case WireFormatKeyPackage:
		m.KeyPackage = new(KeyPackage)
		m.KeyPackage.unmarshal(r)
	default:
		r.fail(fmt.Errorf("%v: %w", m.WireFormat, ErrUnsupported))
	}
}

func (m *Message) marshal(w *writer) {
	w.u16(uint16(m.Version))
	w.u16(uint16(m.WireFormat))
	switch {
	case m.WireFormat == WireFormatPublicMessage && m.PublicMessage != nil:
		m.PublicMessage.marshal(w)
	case m.WireFormat == WireFormatPrivateMessage && m.PrivateMessage != nil:
		m.PrivateMessage.marshal(w)
	case m.WireFormat == WireFormatWelcome && m.Welcome != nil:
		m.Welcome.marshal(w)
	case m.WireFormat == WireFormatGroupInfo && m.GroupInfo != nil:
		m.GroupInfo.marshal(w)
	case m.WireFormat == WireFormatKeyPackage && m.KeyPackage != nil:
		m.KeyPackage.marshal(w)
	default:
		w.fail(fmt.Errorf("%v without its body: %w", m.WireFormat, ErrMalformed))
	}
}

// Sender identifies the sender of a PublicMessage (RFC 9420 §6). Index is
// the leaf_index for SenderTypeMember and the sender_index into the
// external_senders extension for SenderTypeExternal; it is zero otherwise.
// A delivery service that promises not to record senders must not store
// or log it.
type Sender struct {
	Type  SenderType
	Index uint32
}

func (s *Sender) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	s.Type = SenderType(r.u8())
	switch s.Type {
	case SenderTypeMember, SenderTypeExternal:
		s.Index = r.u32()
	case SenderTypeNewMemberProposal, SenderTypeNewMemberCommit:
	default:
		r.fail(fmt.Errorf("sender type %d: %w", s.Type, ErrMalformed))
	}
	r.wrap("sender")
}

func (s *Sender) marshal(w *writer) {
	w.u8(uint8(s.Type))
	switch s.Type {
	case SenderTypeMember, SenderTypeExternal:
		w.u32(s.Index)
	case SenderTypeNewMemberProposal, SenderTypeNewMemberCommit:
	default:
		w.fail(fmt.Errorf("sender type %d: %w", s.Type, ErrMalformed))
	}
}

// FramedContent is the signed content of a PublicMessage (RFC 9420 §6).
// ApplicationData, Proposal or Commit is set according to ContentType.
type FramedContent struct {
	GroupID           []byte
	Epoch             uint64
	Sender            Sender
	AuthenticatedData []byte
	ContentType       ContentType
	ApplicationData   []byte
	Proposal          *Proposal
	Commit            *Commit
}

func (c *FramedContent) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	c.GroupID = r.opaque()
	c.Epoch = r.u64()
	c.Sender.unmarshal(r)
	c.AuthenticatedData = r.opaque()
	c.ContentType = ContentType(r.u8())
	switch c.ContentType {
	case ContentTypeApplication:
		c.ApplicationData = r.opaque()
	case ContentTypeProposal:
		c.Proposal = new(Proposal)
		c.Proposal.unmarshal(r)
	case ContentTypeCommit:
		c.Commit = new(Commit)
		c.Commit.unmarshal(r)
	default:
		r.fail(fmt.Errorf("%v: %w", c.ContentType, ErrMalformed))
	}
	r.wrap("framed content")
}

func (c *FramedContent) marshal(w *writer) {
	w.opaque(c.GroupID)
	w.u64(c.Epoch)
	c.Sender.marshal(w)
	w.opaque(c.AuthenticatedData)
	w.u8(uint8(c.ContentType))
	switch {
	case c.ContentType == ContentTypeApplication:
		w.opaque(c.ApplicationData)
	case c.ContentType == ContentTypeProposal && c.Proposal != nil:
		c.Proposal.marshal(w)
	case c.ContentType == ContentTypeCommit && c.Commit != nil:
		c.Commit.marshal(w)
	default:
		w.fail(fmt.Errorf("%v without its body: %w", c.ContentType, ErrMalformed))
	}
}

// FramedContentAuthData authenticates a FramedContent (RFC 9420 §6.1).
// ConfirmationTag is present only for commits.
type FramedContentAuthData struct {
	Signature       []byte
	ConfirmationTag []byte
}

// PublicMessage is a signed, unencrypted handshake message (RFC 9420 §6.2).
// MembershipTag is present only when the sender is a member.
type PublicMessage struct {
	Content       FramedContent
	Auth          FramedContentAuthData
	MembershipTag []byte
}

func (p *PublicMessage) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	p.Content.unmarshal(r)
	p.Auth.Signature = r.opaque()
	if p.Content.ContentType == ContentTypeCommit {
		p.Auth.ConfirmationTag = r.opaque()
	}
	if p.Content.Sender.Type == SenderTypeMember {
		p.MembershipTag = r.opaque()
	}
	r.wrap("public message")
}

func (p *PublicMessage) marshal(w *writer) {
	p.Content.marshal(w)
	w.opaque(p.Auth.Signature)
	if p.Content.ContentType == ContentTypeCommit {
		w.opaque(p.Auth.ConfirmationTag)
	}
	if p.Content.Sender.Type == SenderTypeMember {
		w.opaque(p.MembershipTag)
	}
}

// PrivateMessage is an encrypted framed message (RFC 9420 §6.3). Its group,
// epoch and content type are public; sender and content are encrypted.
type PrivateMessage struct {
	GroupID             []byte
	Epoch               uint64
	ContentType         ContentType
	AuthenticatedData   []byte
	EncryptedSenderData []byte
	Ciphertext          []byte
}

func (p *PrivateMessage) unmarshal(r *reader) {
	if r.failed() {
		return
	}
	p.GroupID = r.opaque()
	p.Epoch = r.u64()
	p.ContentType = ContentType(r.u8())
	if !r.failed() && !p.ContentType.valid() {
		r.fail(fmt.Errorf("%v: %w", p.ContentType, ErrMalformed))
	}
	p.AuthenticatedData = r.opaque()
	p.EncryptedSenderData = r.opaque()
	p.Ciphertext = r.opaque()
	r.wrap("private message")
}

func (p *PrivateMessage) marshal(w *writer) {
	if !p.ContentType.valid() {
		w.fail(fmt.Errorf("%v: %w", p.ContentType, ErrMalformed))
	}
	w.opaque(p.GroupID)
	w.u64(p.Epoch)
	w.u8(uint8(p.ContentType))
	w.opaque(p.AuthenticatedData)
	w.opaque(p.EncryptedSenderData)
	w.opaque(p.Ciphertext)
}
