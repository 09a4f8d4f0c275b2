package xrpc

import "encoding/base64"

// AppendBytesJSON appends b to dst as a lexicon "bytes" value,
// {"$bytes":"<base64>"}, in the standard alphabet without padding, as
// atproto's data model specifies. The alphabet needs no JSON escaping, so
// the base64 is appended directly: a page of messages is mostly these
// values, and a struct marshal per value was a large share of
// getMessages' allocations (docs/benchmarks.md).
func AppendBytesJSON(dst, b []byte) []byte {
	const prefix, suffix = `{"$bytes":"`, `"}`
	dst = append(dst, prefix...)
	dst = base64.RawStdEncoding.AppendEncode(dst, b)
	return append(dst, suffix...)
}

// BytesJSONLen is the length of b's encoding by [AppendBytesJSON].
func BytesJSONLen(b []byte) int {
	return len(`{"$bytes":""}`) + base64.RawStdEncoding.EncodedLen(len(b))
}
