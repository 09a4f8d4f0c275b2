// Package seal keeps small secrets at rest in the database under a key the
// database does not hold: AES-256-GCM, with the identity of the row a
// value belongs to as additional data, so that a sealed value copied to
// another row does not open. A copy of the database alone reveals none of
// them; the key lives in a file of the data directory (KeyFile).
//
// It is not a key-management system: there is one key per purpose, no
// rotation, and losing the key file loses what it sealed.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeySize is the size of a Box key: AES-256.
const KeySize = 32

// ErrOpen means a sealed value did not open: another key sealed it, it was
// altered, or it was moved to another row.
var ErrOpen = errors.New("seal: sealed value does not open")

// Box seals and opens values under one key.
type Box struct {
	aead cipher.AEAD
}

// New returns a Box over a KeySize-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal key must be %d bytes", KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal key: %w", err)
	}
	return &Box{aead: aead}, nil
}

// Seal seals plaintext bound to ad: a random nonce, then the ciphertext.
func (b *Box) Seal(ad, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return b.aead.Seal(nonce, nonce, plaintext, ad), nil
}

// Open opens a value Seal sealed with the same ad; ErrOpen otherwise.
func (b *Box) Open(ad, sealed []byte) ([]byte, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n+b.aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := b.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// NewKey returns a fresh random key.
func NewKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate seal key: %w", err)
	}
	return k, nil
}

// ReadKeyFile reads a key file (hex, surrounding whitespace ignored). A
// missing file is an error matching fs.ErrNotExist.
func ReadKeyFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read seal key file: %w", err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(k) != KeySize {
		return nil, fmt.Errorf("seal key file %s: want %d bytes as hex", path, KeySize)
	}
	return k, nil
}

// WriteKeyFile writes key to path, readable by the owner only, refusing
// to replace an existing file (what it sealed would no longer open).
func WriteKeyFile(path string, key []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write seal key file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		_ = f.Close()
		return fmt.Errorf("write seal key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write seal key file: %w", err)
	}
	return nil
}
