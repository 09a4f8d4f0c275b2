package caddymodules

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestDeliveryCaddyfile(t *testing.T) {
	var d Delivery
	err := d.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`cairn_delivery {
		max_message_size 1MiB
		max_members 50
		message_ttl 7d
		websocket_endpoint wss://chat.example.com/xrpc/blue.catbird.mls.subscribeConvoEvents
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.MaxMessageBytes != 1<<20 || d.MaxMembers != 50 || d.WebSocketEndpoint != "wss://chat.example.com/xrpc/blue.catbird.mls.subscribeConvoEvents" {
		t.Fatalf("parsed %+v", d)
	}
	for _, bad := range []string{
		"max_message_size 2GiB",
		"max_members 0",
		"message_ttl forever",
		"websocket_endpoint https://chat.example.com/xrpc/x",
		"websocket_endpoint /xrpc/blue.catbird.mls.subscribeConvoEvents",
		"websocket_endpoint wss://chat.example.com/x?ticket=1",
		"websocket_endpoint wss://user:pw@chat.example.com/x",
		"unknown 1",
	} {
		err := new(Delivery).UnmarshalCaddyfile(caddyfile.NewTestDispenser("cairn_delivery {\n" + bad + "\n}"))
		if err == nil {
			t.Errorf("accepted %q", bad)
			continue
		}
		if opt := strings.Fields(bad)[0]; !strings.Contains(err.Error(), opt) {
			t.Errorf("%q: error %q does not name the option", bad, err)
		}
	}
}
