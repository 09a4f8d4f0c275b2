package certstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the size of the encryption key: AES-256.
const KeySize = 32

// sealVersion is the first byte of every stored value; it names the
// format (AES-256-GCM, 12-byte random nonce, the storage key as additional
// data) so that a later format can be told apart.
const sealVersion byte = 1

// ErrWrongKey means a value does not decrypt under the configured key: it
// was written under another key, or it was altered.
var ErrWrongKey = errors.New("certstore: value does not decrypt under the configured key")

// ParseKey decodes a key written as 64 hexadecimal characters (what
// `openssl rand -hex 32` prints). Surrounding white space is ignored.
func ParseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	key, err := hex.DecodeString(text)
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("certstore: the encryption key must be %d hexadecimal characters (%d bytes); generate one with `openssl rand -hex %d`", 2*KeySize, KeySize, KeySize)
	}
	return key, nil
}

// sealer encrypts and decrypts values with AES-256-GCM. Go's crypto/cipher
// is the maintained implementation (constant time, hardware accelerated);
// values are small and read whole, so no streaming format is needed.
type sealer struct {
	aead cipher.AEAD
	id   string
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("certstore: encryption key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("certstore: encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("certstore: encryption key: %w", err)
	}
	return &sealer{aead: aead, id: KeyID(key)}, nil
}

// KeyID returns a short, non-secret fingerprint of key (a keyed hash, not
// the key), which the database records so that a node with a different key
// is refused before it writes anything.
func KeyID(key []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("cairn certstore key id v1"))
	return hex.EncodeToString(mac.Sum(nil)[:8])
}

// seal encrypts value for storage under name; name is bound as additional
// data, so a value copied to another name does not decrypt.
func (s *sealer) seal(name string, value []byte) ([]byte, error) {
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(value)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("certstore: nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], value, []byte(name)), nil
}

// open decrypts a value stored under name.
func (s *sealer) open(name string, sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w (key %s): stored value has an unknown format", ErrWrongKey, s.id)
	}
	value, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("%w (key %s)", ErrWrongKey, s.id)
	}
	return value, nil
}
