//go:build go1.27

package xrpc

import "encoding/json/jsontext"

// WriteBytesJSON writes b to enc as a lexicon "bytes" value (see
// [AppendBytesJSON]), built in the encoder's own buffer. A type's
// MarshalJSONTo calls it: from Go 1.27 encoding/json prefers that method
// to MarshalJSON, which saves an allocation and a copy per value.
func WriteBytesJSON(enc *jsontext.Encoder, b []byte) error {
	return enc.WriteValue(AppendBytesJSON(enc.AvailableBuffer(), b))
}
