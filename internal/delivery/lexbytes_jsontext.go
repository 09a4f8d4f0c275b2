//go:build go1.27

package delivery

import (
	"encoding/json/jsontext"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// MarshalJSONTo is MarshalJSON written straight into the encoder's buffer;
// encoding/json calls it in preference to MarshalJSON from Go 1.27.
func (b lexBytes) MarshalJSONTo(enc *jsontext.Encoder) error {
	return xrpc.WriteBytesJSON(enc, b)
}
