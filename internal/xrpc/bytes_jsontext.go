//go:build go1.27

package xrpc

import "encoding/json/jsontext"

// MarshalJSONTo is MarshalJSON written straight into the encoder's own
// buffer: from Go 1.27 encoding/json prefers it to MarshalJSON, which
// saves an allocation and a copy per value.
func (b Bytes) MarshalJSONTo(enc *jsontext.Encoder) error {
	return enc.WriteValue(appendBytesJSON(enc.AvailableBuffer(), b))
}
