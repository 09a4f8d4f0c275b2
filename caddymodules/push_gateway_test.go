package caddymodules_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/push"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
)

const pushCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	cairn {
		mode development
		plc_url %s
		data_dir %s
		push {
			interval 100ms
			allow_hosts 127.0.0.1
			unifiedpush {
				contact mailto:ops@example.com
			}
		}
	}
}
http://127.0.0.1:{PORT} {
	route /xrpc/* {
		cairn_auth {
			service_did did:web:gateway.test
			replay memory
			leeway 1s
		}
		cairn_delivery
	}
}
http://127.0.0.1:{METRICS} {
	cairn_metrics
}
`

// TestPushThroughTheGateway: with push on, a device registers a
// UnifiedPush subscription, a message to its conversation makes the
// gateway POST one encrypted wake-up to the device's distributor, the key
// file is in the data directory, and the metric counts the send.
func TestPushThroughTheGateway(t *testing.T) {
	got := make(chan *http.Request, 10)
	dist := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- r
		w.WriteHeader(http.StatusCreated)
	}))
	defer dist.Close()

	plc := atprototest.NewPLC(t)
	dataDir := t.TempDir()
	g := startPlain(t, fmt.Sprintf(pushCaddyfile, plc.URL, dataDir), gatewaytest.Options{})
	now := freshIat(t, testLeeway, g)
	tok := func(lxm string) atprototest.Token {
		return atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: "blue.catbird.mls." + lxm, Iat: now, Exp: now + 60}
	}
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}},
		[]atprototest.Token{tok("createConvo"), tok("registerDeviceToken"), tok("sendMessage")})
	plc.Publish(aliceDID, minted.Keys["alice"])

	// The device row, as registerDevice would leave it (registering
	// through the API needs real MLS key packages, tested in delivery).
	st, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(dataDir, "cairn.db")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.RegisterDevice(t.Context(), store.Device{OwnerDID: aliceDID, DeviceID: "phone", Name: "phone"}, 10); err != nil {
		t.Fatal(err)
	}
	st.Close()

	const groupID = "1f1e2d3c4b5a69788796a5b4c3d2e1f0"
	mustPostXRPC(t, g, "blue.catbird.mls.createConvo", minted.Tokens[0], `{"groupId":"`+groupID+`","cipherSuite":"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519","idempotencyKey":"push"}`)
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	auth := make([]byte, 16)
	_, _ = rand.Read(auth)
	sub, _ := json.Marshal(map[string]any{"endpoint": dist.URL + "/up/device", "keys": map[string]string{
		"p256dh": base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes()), "auth": base64.RawURLEncoding.EncodeToString(auth)}})
	reg, _ := json.Marshal(map[string]string{"deviceId": "phone", "platform": "android", "pushToken": string(sub)})
	mustPostXRPC(t, g, "blue.catbird.mls.registerDeviceToken", minted.Tokens[1], string(reg))

	ct := base64.RawStdEncoding.EncodeToString(applicationMessage(t, groupID, 512))
	mustPostXRPC(t, g, "blue.catbird.mls.sendMessage", minted.Tokens[2], fmt.Sprintf(`{"convoId":%q,"msgId":"m1","ciphertext":{"$bytes":%q},"epoch":0,"paddedSize":512}`, groupID, ct))

	select {
	case r := <-got:
		if r.URL.Path != "/up/device" || r.Header.Get("Content-Encoding") != "aes128gcm" || !strings.HasPrefix(r.Header.Get("Authorization"), "vapid ") {
			t.Errorf("distributor saw %s %v", r.URL.Path, r.Header)
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, groupID) || strings.Contains(v, aliceDID) {
					t.Errorf("header %s names the conversation or the account: %s", k, v)
				}
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no wake-up reached the distributor; logs:\n%s", g.Logs())
	}
	keys, err := push.ReadKeyFile(filepath.Join(dataDir, push.KeyFileName))
	if err != nil || keys.VAPIDPublic == "" {
		t.Fatalf("push key file: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(scrape(t, g), "cairn_push_wakeups_total", `outcome="sent"`) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("cairn_push_wakeups_total{outcome=\"sent\"} never reached 1")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(g.Logs(), dist.URL+"/up/device") {
		t.Error("the endpoint reached the logs")
	}
}
