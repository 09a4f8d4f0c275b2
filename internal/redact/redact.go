// Package redact turns identity-bearing values (DIDs, conversation IDs,
// cursors, tickets) into keyed hashes that are safe to write into logs.
//
// A bare hash is not enough: DIDs and handles are public and guessable, so an
// unkeyed SHA-256 of a DID can be reversed by hashing the directory. The hash
// here is HMAC-SHA256 under an operator-held key, truncated to 64 bits and
// rendered as "h:" followed by 16 hex characters. Equal inputs give equal
// outputs under one key, so an operator can still correlate log lines of one
// identity without learning which identity it is.
package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"sync"
)

// MinKeySize is the smallest key, in bytes, that New accepts.
const MinKeySize = 32

// Prefix starts every rendered hash.
const Prefix = "h:"

// Hasher computes keyed hashes of identity-bearing values. It is safe for
// concurrent use.
type Hasher struct {
	pool sync.Pool
}

// New returns a Hasher keyed with key, which must be at least MinKeySize
// bytes of secret, random data.
func New(key []byte) (*Hasher, error) {
	if len(key) < MinKeySize {
		return nil, errors.New("log-hash key must be at least 32 bytes")
	}
	k := append([]byte(nil), key...)
	return &Hasher{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}, nil
}

// Hash returns the rendered keyed hash of value: "h:" and 16 hex characters.
// The empty string hashes to the empty string, so absent values stay absent.
func (h *Hasher) Hash(value string) string {
	if value == "" {
		return ""
	}
	mac := h.pool.Get().(hash.Hash)
	mac.Reset()
	mac.Write([]byte(value))
	var sum [sha256.Size]byte
	out := mac.Sum(sum[:0])
	h.pool.Put(mac)
	buf := make([]byte, len(Prefix)+16)
	copy(buf, Prefix)
	hex.Encode(buf[len(Prefix):], out[:8])
	return string(buf)
}
