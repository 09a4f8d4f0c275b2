package push

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// ErrSealed means a stored token did not open: another key sealed it, or
// it was altered, or it was moved to another device's row.
var ErrSealed = errors.New("push: sealed token does not open")

// Sealer seals push tokens for storage with AES-256-GCM. The device's
// identity is the additional data, so a sealed token copied to another
// device's row does not open.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer over a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, errors.New("push seal key must be 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("push seal key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("push seal key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

func sealAD(ownerDID, deviceID, provider string) []byte {
	return []byte("cairn push token\x00" + ownerDID + "\x00" + deviceID + "\x00" + provider)
}

// Seal seals token for the device and provider.
func (s *Sealer) Seal(ownerDID, deviceID, provider string, token []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(token)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal push token: %w", err)
	}
	return s.aead.Seal(nonce, nonce, token, sealAD(ownerDID, deviceID, provider)), nil
}

// Open opens a token Seal sealed for the same device and provider.
func (s *Sealer) Open(ownerDID, deviceID, provider string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrSealed
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], sealAD(ownerDID, deviceID, provider))
	if err != nil {
		return nil, ErrSealed
	}
	return out, nil
}
