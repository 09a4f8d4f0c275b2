package caddymodules_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

const deliveryCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	cairn {
		mode development
		plc_url %s
		%s
	}
}
http://127.0.0.1:{PORT} {
	cairn_request_id
	route /xrpc/* {
		cairn_auth {
			service_did did:web:gateway.test
			replay memory
			leeway 1s
		}
		cairn_delivery
		error 501
	}
	handle /boom {
		error "kaboom" 500
	}
	handle_errors {
		cairn_xrpc_errors
	}
}
`

// TestDeliveryThroughTheGateway drives cairn_delivery through cairn_auth with
// reference tokens, on the embedded SQLite default and on PostgreSQL, and
// restarts the gateway to show the conversation was stored.
func TestDeliveryThroughTheGateway(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			database := ""
			if backend == "postgres" {
				database = "database " + testenv.Postgres(t)
			}
			plc := atprototest.NewPLC(t)
			home := t.TempDir()
			text := fmt.Sprintf(deliveryCaddyfile, plc.URL, database)
			g := startPlain(t, text, gatewaytest.Options{Home: home})

			now := freshIat(t, testLeeway, g)
			tok := func(lxm string) atprototest.Token {
				return atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: lxm, Iat: now, Exp: now + 60}
			}
			const (
				create   = "blue.catbird.mls.createConvo"
				getEpoch = "blue.catbird.mls.getEpoch"
				other    = "com.example.notServed"
			)
			minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}},
				[]atprototest.Token{tok(create), tok(getConvo), tok(getEpoch), tok(other)})
			plc.Publish(aliceDID, minted.Keys["alice"])
			tokens := minted.Tokens

			const groupID = "00112233445566778899aabbccddeeff"
			body := `{"groupId":"` + groupID + `","cipherSuite":"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519","idempotencyKey":"gw-create-1"}`
			resp, out := postXRPC(t, g, create, tokens[0], body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(out, groupID) {
				t.Fatalf("createConvo: %d %s", resp.StatusCode, out)
			}
			var convo struct {
				GroupID string `json:"groupId"`
				Creator string `json:"creator"`
			}
			if err := json.Unmarshal([]byte(out), &convo); err != nil || convo.GroupID != groupID || convo.Creator != aliceDID {
				t.Fatalf("createConvo response %s (%v)", out, err)
			}

			resp, out = do(t, http.MethodGet, g.url("/xrpc/"+getConvo), bearer(tokens[1]))
			if resp.StatusCode != http.StatusOK || !strings.Contains(out, groupID) {
				t.Fatalf("getConvos: %d %s", resp.StatusCode, out)
			}
			resp, out = do(t, http.MethodGet, g.url("/xrpc/"+getEpoch+"?convoId="+groupID), bearer(tokens[2]))
			if resp.StatusCode != http.StatusOK || !strings.Contains(out, `"currentEpoch":0`) {
				t.Fatalf("getEpoch: %d %s", resp.StatusCode, out)
			}
			resp, out = do(t, http.MethodGet, g.url("/xrpc/"+other), bearer(tokens[3]))
			if resp.StatusCode != http.StatusNotImplemented || errorName(t, out) != "MethodNotImplemented" {
				t.Fatalf("a method outside the delivery service: %d %s", resp.StatusCode, out)
			}

			// Restart on the same data: the conversation is still there, and a
			// retried create (same idempotency key) returns the original.
			g.Stop()
			g2 := startPlain(t, text, gatewaytest.Options{Home: home})
			now = freshIat(t, testLeeway, g2)
			tokens = append(tokens, atprototest.Mint(t, []atprototest.Key{minted.Reuse("alice")}, []atprototest.Token{tok(getConvo), tok(create)}).Tokens...)
			resp, out = do(t, http.MethodGet, g2.url("/xrpc/"+getConvo), bearer(tokens[4]))
			if resp.StatusCode != http.StatusOK || !strings.Contains(out, groupID) {
				t.Fatalf("getConvos after restart: %d %s", resp.StatusCode, out)
			}
			resp, out = postXRPC(t, g2, create, tokens[5], body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(out, groupID) {
				t.Fatalf("retried createConvo after restart: %d %s", resp.StatusCode, out)
			}
		})
	}
}
