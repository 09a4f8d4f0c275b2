package atpauth

import (
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
)

func TestVerifiedIdentityDevice(t *testing.T) {
	const did = "did:plc:abcdefghijklmnopqrstuvwx"
	long := strings.Repeat("d", MaxDeviceIDLen)
	for _, tc := range []struct {
		name, fragment, header, want string
	}{
		{name: "no device", want: ""},
		{name: "header", header: "device-1", want: "device-1"},
		{name: "header with every allowed character", header: "Az09._:-", want: "Az09._:-"},
		{name: "header at the length bound", header: long, want: long},
		{name: "header too long", header: long + "d", want: ""},
		{name: "header with a space", header: "dev 1", want: ""},
		{name: "header with a slash", header: "dev/1", want: ""},
		{name: "header with a hash", header: "dev#1", want: ""},
		{name: "header with non-ASCII", header: "dév", want: ""},
		{name: "header with a newline", header: "dev\n1", want: ""},
		{name: "signed fragment wins over the header", fragment: "signed", header: "device-1", want: "signed"},
		{name: "fragment alone", fragment: "atproto_labeler", want: "atproto_labeler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &Verified{DID: did, IssuerFragment: tc.fragment}
			got := v.Identity(tc.header)
			if want := (caller.Identity{DID: did, DeviceID: tc.want}); got != want {
				t.Errorf("Identity(%q) with fragment %q = %+v, want %+v", tc.header, tc.fragment, got, want)
			}
		})
	}
}
