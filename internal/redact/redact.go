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
	pool sync.Pool // of *macState
}

// macState is one HMAC with scratch space for its input and output, so
// that a hash allocates nothing but its result.
type macState struct {
	mac hash.Hash
	in  []byte
	sum []byte
}

// New returns a Hasher keyed with key, which must be at least MinKeySize
// bytes of secret, random data.
func New(key []byte) (*Hasher, error) {
	if len(key) < MinKeySize {
		return nil, errors.New("log-hash key must be at least 32 bytes")
	}
	k := append([]byte(nil), key...)
	return &Hasher{pool: sync.Pool{New: func() any {
		return &macState{mac: hmac.New(sha256.New, k), sum: make([]byte, 0, sha256.Size)}
	}}}, nil
}

// HashLen is the length of a rendered hash: "h:" and 16 hex characters.
const HashLen = len(Prefix) + 16

// Hash returns the rendered keyed hash of value: "h:" and 16 hex characters.
// The empty string hashes to the empty string, so absent values stay absent.
func (h *Hasher) Hash(value string) string {
	if value == "" {
		return ""
	}
	var buf [HashLen]byte
	return string(h.AppendHash(buf[:0], value))
}

// AppendHash appends the rendered keyed hash of value to dst, as Hash
// renders it, and returns the extended slice. It lets a caller build a
// string around a hash without allocating for the hash itself. Unlike Hash,
// it hashes the empty string too.
func (h *Hasher) AppendHash(dst []byte, value string) []byte {
	st := h.pool.Get().(*macState)
	st.mac.Reset()
	st.in = append(st.in[:0], value...)
	st.mac.Write(st.in)
	st.sum = st.mac.Sum(st.sum[:0])
	dst = append(dst, Prefix...)
	dst = hex.AppendEncode(dst, st.sum[:8])
	if len(st.in) > 1024 {
		st.in = nil // do not pin one huge input in the pool
	}
	h.pool.Put(st)
	return dst
}
