package push

import (
	"errors"
	"fmt"

	"github.com/cairn-chat/cairn-caddy/internal/seal"
)

// ErrSealed means a stored token did not open: another key sealed it, or
// it was altered, or it was moved to another device's row.
var ErrSealed = errors.New("push: sealed token does not open")

// Sealer seals push tokens for storage (internal/seal, AES-256-GCM). The
// device's identity is the additional data, so a sealed token copied to
// another device's row does not open.
type Sealer struct {
	box *seal.Box
}

// NewSealer returns a Sealer over a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	box, err := seal.New(key)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	return &Sealer{box: box}, nil
}

func sealAD(ownerDID, deviceID, provider string) []byte {
	return []byte("cairn push token\x00" + ownerDID + "\x00" + deviceID + "\x00" + provider)
}

// Seal seals token for the device and provider.
func (s *Sealer) Seal(ownerDID, deviceID, provider string, token []byte) ([]byte, error) {
	out, err := s.box.Seal(sealAD(ownerDID, deviceID, provider), token)
	if err != nil {
		return nil, fmt.Errorf("seal push token: %w", err)
	}
	return out, nil
}

// Open opens a token Seal sealed for the same device and provider.
func (s *Sealer) Open(ownerDID, deviceID, provider string, sealed []byte) ([]byte, error) {
	out, err := s.box.Open(sealAD(ownerDID, deviceID, provider), sealed)
	if err != nil {
		return nil, ErrSealed
	}
	return out, nil
}
