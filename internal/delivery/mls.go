package delivery

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/mlswire"
)

// extensionTypeLastResort is the last_resort key package extension
// (draft-ietf-mls-extensions), marking a package that may be handed out
// more than once.
const extensionTypeLastResort mlswire.ExtensionType = 0x000a

// suiteByName maps a lexicon cipher-suite name to its MLS code point.
func suiteByName(name string) (mlswire.CipherSuite, bool) {
	for cs := mlswire.CipherSuite(1); cs <= mlswire.MLS256DHKEMP384AES256GCMSHA384P384; cs++ {
		if cs.String() == name {
			return cs, true
		}
	}
	return 0, false
}

// groupIDBytes decodes a conversation id (hex group id).
func groupIDBytes(convoID string) []byte {
	b, err := hex.DecodeString(convoID)
	if err != nil {
		return nil
	}
	return b
}

// parseFramed parses a PublicMessage or PrivateMessage of the conversation
// and returns its public header. The group id must be the conversation's.
func parseFramed(data []byte, convoID string) (mlswire.Header, error) {
	m, err := mlswire.ParseMessage(data)
	if err != nil {
		return mlswire.Header{}, fmt.Errorf("%w: %v", ErrInvalidMessage, err)
	}
	h, ok := m.Header()
	if !ok {
		return mlswire.Header{}, fmt.Errorf("%w: wire format %v is not a framed message", ErrInvalidMessage, m.WireFormat)
	}
	if !bytes.Equal(h.GroupID, groupIDBytes(convoID)) {
		return mlswire.Header{}, fmt.Errorf("%w: group id does not match the conversation", ErrInvalidMessage)
	}
	return h, nil
}

// parseCommit parses a commit of the conversation and returns the epoch it
// was made in.
func parseCommit(data []byte, convoID string) (int64, error) {
	h, err := parseFramed(data, convoID)
	if err != nil {
		return 0, err
	}
	if h.ContentType != mlswire.ContentTypeCommit {
		return 0, fmt.Errorf("%w: content type %v is not a commit", ErrInvalidMessage, h.ContentType)
	}
	return epochInt(h.Epoch)
}

// epochInt converts a wire epoch to the store's int64.
func epochInt(e uint64) (int64, error) {
	if e > 1<<62 {
		return 0, fmt.Errorf("%w: epoch out of range", ErrInvalidMessage)
	}
	return int64(e), nil
}

// parseWelcome parses a Welcome, framed as an MLSMessage or bare.
func parseWelcome(data []byte) (*mlswire.Welcome, error) {
	var m mlswire.Message
	if err := mlswire.Unmarshal(data, &m); err == nil {
		if m.WireFormat != mlswire.WireFormatWelcome || m.Welcome == nil {
			return nil, fmt.Errorf("%w: wire format %v is not a welcome", ErrInvalidMessage, m.WireFormat)
		}
		return m.Welcome, nil
	}
	var w mlswire.Welcome
	if err := mlswire.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("%w: welcome: %v", ErrInvalidMessage, err)
	}
	return &w, nil
}

// parseGroupInfo parses a GroupInfo, framed as an MLSMessage or bare.
func parseGroupInfo(data []byte) (*mlswire.GroupInfo, error) {
	var m mlswire.Message
	if err := mlswire.Unmarshal(data, &m); err == nil {
		if m.WireFormat != mlswire.WireFormatGroupInfo || m.GroupInfo == nil {
			return nil, fmt.Errorf("%w: wire format %v is not a group info", ErrInvalidGroupInfo, m.WireFormat)
		}
		return m.GroupInfo, nil
	}
	var gi mlswire.GroupInfo
	if err := mlswire.Unmarshal(data, &gi); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidGroupInfo, err)
	}
	return &gi, nil
}

// checkGroupInfo parses group info and checks it belongs to the
// conversation at epoch (epoch < 0: any epoch). It returns the epoch.
func checkGroupInfo(data []byte, convoID string, epoch int64) (int64, error) {
	gi, err := parseGroupInfo(data)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(gi.GroupContext.GroupID, groupIDBytes(convoID)) {
		return 0, fmt.Errorf("%w: group id does not match the conversation", ErrInvalidGroupInfo)
	}
	e, err := epochInt(gi.GroupContext.Epoch)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrInvalidGroupInfo, err)
	}
	if epoch >= 0 && e != epoch {
		return 0, fmt.Errorf("%w: group info is for epoch %d, not %d", ErrInvalidGroupInfo, e, epoch)
	}
	return e, nil
}
