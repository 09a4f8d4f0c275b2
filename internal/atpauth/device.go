package atpauth

import "github.com/cairn-chat/cairn-caddy/internal/caller"

// DeviceHeader is the request header a client may name its registered
// device in, when the verified token does not carry one as the issuer's
// #fragment.
const DeviceHeader = "X-Device-ID"

// MaxDeviceIDLen bounds a device ID taken from DeviceHeader.
const MaxDeviceIDLen = 128

// Identity returns the caller identity the adapter puts into the request
// context: the verified DID and the device the request is bound to.
//
// The device is the issuer's #fragment when the token has one, since it is
// signed; otherwise deviceHeader, the value of DeviceHeader, when it is
// 1–MaxDeviceIDLen characters of A-Z a-z 0-9 . _ : -, and none otherwise.
// The header is not verified, and need not be: a device ID only selects
// among the verified account's own devices, which the delivery service
// checks.
func (v *Verified) Identity(deviceHeader string) caller.Identity {
	id := caller.Identity{DID: v.DID, DeviceID: v.IssuerFragment}
	if id.DeviceID == "" && validDeviceID(deviceHeader) {
		id.DeviceID = deviceHeader
	}
	return id
}

// validDeviceID reports whether s is a device ID a header may carry.
func validDeviceID(s string) bool {
	if len(s) == 0 || len(s) > MaxDeviceIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}
