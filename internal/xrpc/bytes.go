package xrpc

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// Bytes is a lexicon "bytes" value, {"$bytes": "<base64>"} in JSON.
type Bytes []byte

// BytesError is the error Bytes.UnmarshalJSON returns for a value that is
// not {"$bytes": base64}; its message is fit for a 400 InvalidRequest.
type BytesError struct{ msg string }

func (e *BytesError) Error() string { return e.msg }

// UnmarshalJSON accepts {"$bytes": base64} with standard or URL alphabet,
// padded or not.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var obj struct {
		Bytes *string `json:"$bytes"`
	}
	if err := json.Unmarshal(data, &obj); err != nil || obj.Bytes == nil {
		return &BytesError{msg: `bytes field must be an object {"$bytes": "<base64>"}`}
	}
	v, err := DecodeBase64(*obj.Bytes)
	if err != nil {
		return &BytesError{msg: "bytes field is not valid base64"}
	}
	*b = v
	return nil
}

// MarshalJSON writes {"$bytes": base64} in the standard alphabet without
// padding, as atproto's data model specifies; MarshalJSONTo, where the
// toolchain has it, does the same without the copy.
func (b Bytes) MarshalJSON() ([]byte, error) {
	const wrapper = len(`{"$bytes":""}`)
	return appendBytesJSON(make([]byte, 0, wrapper+base64.RawStdEncoding.EncodedLen(len(b))), b), nil
}

// appendBytesJSON appends b to dst as {"$bytes":"<base64>"}. The alphabet
// needs no JSON escaping, so the base64 is appended directly: a page of
// messages is mostly these values, and a struct marshal per value was a
// large share of getMessages' allocations (docs/benchmarks.md).
func appendBytesJSON(dst, b []byte) []byte {
	const prefix, suffix = `{"$bytes":"`, `"}`
	dst = append(dst, prefix...)
	dst = base64.RawStdEncoding.AppendEncode(dst, b)
	return append(dst, suffix...)
}

// DecodeBase64 accepts standard or URL-safe base64, padded or not:
// clients of these lexicons use all four for string-typed byte fields.
func DecodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
