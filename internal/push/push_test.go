package push_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v4"

	"github.com/cairn-chat/cairn-caddy/internal/push"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSealerBindsTokenToDevice(t *testing.T) {
	k, err := push.GenerateKeys()
	must(t, err)
	s, err := push.NewSealer(k.Seal)
	must(t, err)
	sealed, err := s.Seal("did:plc:a", "d1", "apns", []byte("tok"))
	must(t, err)
	if bytes.Contains(sealed, []byte("tok")) {
		t.Fatal("sealed token contains the token")
	}
	got, err := s.Open("did:plc:a", "d1", "apns", sealed)
	if err != nil || string(got) != "tok" {
		t.Fatalf("open = %q, %v", got, err)
	}
	for _, c := range [][3]string{{"did:plc:b", "d1", "apns"}, {"did:plc:a", "d2", "apns"}, {"did:plc:a", "d1", "unifiedpush"}} {
		if _, err := s.Open(c[0], c[1], c[2], sealed); !errors.Is(err, push.ErrSealed) {
			t.Errorf("open as %v: %v, want ErrSealed", c, err)
		}
	}
	other, _ := push.GenerateKeys()
	s2, _ := push.NewSealer(other.Seal)
	if _, err := s2.Open("did:plc:a", "d1", "apns", sealed); !errors.Is(err, push.ErrSealed) {
		t.Errorf("open under another key: %v, want ErrSealed", err)
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	k, err := push.GenerateKeys()
	must(t, err)
	path := t.TempDir() + "/" + push.KeyFileName
	must(t, push.WriteKeyFile(path, k))
	if err := push.WriteKeyFile(path, k); err == nil {
		t.Fatal("WriteKeyFile replaced an existing key file")
	}
	got, err := push.ReadKeyFile(path)
	must(t, err)
	if !bytes.Equal(got.Seal, k.Seal) || got.VAPIDPublic != k.VAPIDPublic || got.VAPIDPrivate != k.VAPIDPrivate {
		t.Fatal("key file did not round-trip")
	}
}

func TestParseRegistration(t *testing.T) {
	c := newWebPushClient(t)
	apnsHex := strings.Repeat("ab", 32)
	cases := []struct {
		name, platform, token string
		provider              string // "" = refused
	}{
		{"apns hex", "ios", apnsHex, push.ProviderAPNs},
		{"apns no platform", "", strings.ToUpper(apnsHex), push.ProviderAPNs},
		{"apns not hex", "ios", "zz" + apnsHex, ""},
		{"apns too short", "ios", "abcd", ""},
		{"unifiedpush https", "android", c.subscription("https://push.example/up/1"), push.ProviderUnifiedPush},
		{"web https", "web", c.subscription("https://push.example/up/1"), push.ProviderUnifiedPush},
		{"unifiedpush http refused", "android", c.subscription("http://push.example/up/1"), ""},
		{"unifiedpush http allowed host", "android", c.subscription("http://127.0.0.1:9/up"), push.ProviderUnifiedPush},
		{"unifiedpush credentials", "android", c.subscription("https://u:p@push.example/x"), ""},
		{"unifiedpush not json", "android", apnsHex, ""},
		{"unifiedpush bad key", "android", `{"endpoint":"https://a.example/","keys":{"p256dh":"AAAA","auth":"AAAAAAAAAAAAAAAAAAAAAA"}}`, ""},
		{"unknown platform", "windows", apnsHex, ""},
		{"oversize", "ios", strings.Repeat("a", push.MaxTokenLen+2), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := push.ParseRegistration(tc.platform, tc.token, []string{"127.0.0.1"})
			if tc.provider == "" {
				if !errors.Is(err, push.ErrBadToken) {
					t.Fatalf("got %v, %v; want ErrBadToken", r, err)
				}
				return
			}
			if err != nil || r.Provider != tc.provider {
				t.Fatalf("got %v, %v; want provider %s", r, err, tc.provider)
			}
		})
	}
}

func FuzzParseRegistration(f *testing.F) {
	f.Add("ios", strings.Repeat("ab", 32))
	f.Add("android", `{"endpoint":"https://a.example/x","keys":{"p256dh":"BNc","auth":"AAAAAAAAAAAAAAAAAAAAAA"}}`)
	f.Add("web", `{"endpoint":"http://127.0.0.1/","keys":{}}`)
	f.Fuzz(func(t *testing.T, platform, token string) {
		r, err := push.ParseRegistration(platform, token, []string{"127.0.0.1"})
		if err != nil {
			if !errors.Is(err, push.ErrBadToken) {
				t.Fatalf("error %v is not ErrBadToken", err)
			}
			return
		}
		if r.Provider == push.ProviderUnifiedPush {
			// The canonical form parses again to itself.
			r2, err := push.ParseRegistration(platform, string(r.Token), []string{"127.0.0.1"})
			if err != nil || !bytes.Equal(r2.Token, r.Token) {
				t.Fatalf("canonical token %q does not re-parse: %v", r.Token, err)
			}
		}
	})
}

// TestQueueBoundedUnderStalledProvider: while the provider never answers,
// Add keeps returning at once and the queue holds at most its capacity,
// however many conversations change; the overflow is counted.
func TestQueueBoundedUnderStalledProvider(t *testing.T) {
	q := push.NewQueue(100)
	stall := make(chan struct{})
	defer close(stall)
	var calls sync.WaitGroup
	calls.Add(1)
	var once sync.Once
	stalled := push.ProviderFunc(func(ctx context.Context, _ []byte) error {
		once.Do(calls.Done)
		select {
		case <-stall:
		case <-ctx.Done():
		}
		return nil
	})
	k, _ := push.GenerateKeys()
	sealer, _ := push.NewSealer(k.Seal)
	st := backends[0].open(t)
	setup(t, st, sealer)
	s := &push.Sender{Queue: q, Store: st, Sealer: sealer, Providers: map[string]push.Provider{"apns": stalled}, Interval: 1, Concurrency: 1}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go s.Run(ctx)
	q.Add("c1")
	calls.Wait() // the sender is now stuck in the provider
	const n = 10000
	accepted := 0
	for i := range n {
		if q.Add(fmt.Sprintf("convo-%d", i)) {
			accepted++
		}
	}
	if q.Len() > q.Cap() {
		t.Fatalf("queue holds %d, capacity %d", q.Len(), q.Cap())
	}
	if accepted != q.Cap() || q.Dropped() != uint64(n-q.Cap()) {
		t.Fatalf("accepted %d, dropped %d; want %d and %d", accepted, q.Dropped(), q.Cap(), n-q.Cap())
	}
	// A conversation already queued is not queued twice nor dropped.
	before := q.Dropped()
	if !q.Add("convo-0") || q.Dropped() != before {
		t.Fatal("re-adding a queued conversation was refused")
	}
}

// TestUnifiedPushWhatTheDistributorSees: the distributor receives an RFC
// 8291 body that the device's keys decrypt to the constant wake-up, with a
// VAPID authorization, and nothing that names a conversation or a sender.
func TestUnifiedPushWhatTheDistributorSees(t *testing.T) {
	dev := newWebPushClient(t)
	type seen struct {
		path   string
		header http.Header
		body   []byte
	}
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.URL.Path, r.Header.Clone(), b})
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/gone") {
			w.WriteHeader(http.StatusGone)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	keys, _ := push.GenerateKeys()
	up := push.NewUnifiedPush(push.UnifiedPushConfig{Keys: keys, Subscriber: "ops@example.net", AllowHosts: []string{u.Hostname()}})

	reg, err := push.ParseRegistration("android", dev.subscription(srv.URL+"/up/abc"), []string{u.Hostname()})
	must(t, err)
	must(t, up.Send(t.Context(), reg.Token))
	if len(got) != 1 {
		t.Fatalf("distributor saw %d requests", len(got))
	}
	r := got[0]
	if r.path != "/up/abc" || r.header.Get("Content-Encoding") != "aes128gcm" || r.header.Get("TTL") == "" {
		t.Errorf("request: path %s, headers %v", r.path, r.header)
	}
	if !strings.HasPrefix(r.header.Get("Authorization"), "vapid t=") || !strings.Contains(r.header.Get("Authorization"), "k="+keys.VAPIDPublic) {
		t.Errorf("Authorization = %q, want a VAPID header with the server's key", r.header.Get("Authorization"))
	}
	plain, err := dev.decrypt(r.body)
	must(t, err)
	if string(plain) != `{"wake":1}` {
		t.Errorf("decrypted payload = %q, want the constant wake-up", plain)
	}

	gone, _ := push.ParseRegistration("android", dev.subscription(srv.URL+"/up/gone"), []string{u.Hostname()})
	if err := up.Send(t.Context(), gone.Token); !errors.Is(err, push.ErrUnregistered) {
		t.Errorf("410 from the distributor: %v, want ErrUnregistered", err)
	}

	// Without the host allowed, a loopback endpoint is refused before any
	// connection (the endpoint is a client-supplied URL).
	strict := push.NewUnifiedPush(push.UnifiedPushConfig{Keys: keys, Subscriber: "ops@example.net"})
	n := len(got)
	if err := strict.Send(t.Context(), reg.Token); err == nil {
		t.Error("sent to a loopback endpoint without it being allowed")
	}
	if len(got) != n {
		t.Error("the distributor was reached")
	}
}

// TestAPNsWhatAppleSees: over HTTP/2 and TLS, APNs receives a background
// push with an ES256 provider token, the topic, and a payload that is
// content-available and nothing else; Unregistered maps to ErrUnregistered.
func TestAPNsWhatAppleSees(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	p8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	type seen struct {
		proto, path string
		header      http.Header
		body        []byte
	}
	var got []seen
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Proto, r.URL.Path, r.Header.Clone(), b})
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, strings.Repeat("cd", 32)) {
			w.WriteHeader(http.StatusGone)
			_, _ = w.Write([]byte(`{"reason":"Unregistered","timestamp":1700000000000}`))
			return
		}
		w.Header().Set("apns-id", "00000000-0000-0000-0000-000000000001")
		w.WriteHeader(http.StatusOK)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	a, err := push.NewAPNs(push.APNsConfig{AuthKey: p8, KeyID: "KEY123", TeamID: "TEAM456", Topic: "blue.catbird.app",
		Host: srv.URL, TLS: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}})
	must(t, err)
	tok := strings.Repeat("ab", 32)
	must(t, a.Send(t.Context(), []byte(tok)))
	if len(got) != 1 {
		t.Fatalf("APNs saw %d requests", len(got))
	}
	r := got[0]
	if r.proto != "HTTP/2.0" || r.path != "/3/device/"+tok {
		t.Errorf("request %s %s", r.proto, r.path)
	}
	if r.header.Get("apns-push-type") != "background" || r.header.Get("apns-topic") != "blue.catbird.app" || r.header.Get("apns-priority") != "5" {
		t.Errorf("headers %v", r.header)
	}
	bearer := strings.TrimPrefix(r.header.Get("Authorization"), "bearer ")
	parsed, err := jwt.Parse(bearer, func(tk *jwt.Token) (any, error) {
		if tk.Method != jwt.SigningMethodES256 || tk.Header["kid"] != "KEY123" {
			return nil, fmt.Errorf("token header %v", tk.Header)
		}
		return &key.PublicKey, nil
	})
	if err != nil || parsed.Claims.(jwt.MapClaims)["iss"] != "TEAM456" {
		t.Errorf("provider token: %v", err)
	}
	var body map[string]any
	must(t, json.Unmarshal(r.body, &body))
	if fmt.Sprint(body) != "map[aps:map[content-available:1]]" {
		t.Errorf("payload = %s, want content-available only", r.body)
	}
	if err := a.Send(t.Context(), []byte(strings.Repeat("cd", 32))); !errors.Is(err, push.ErrUnregistered) {
		t.Errorf("Unregistered: %v, want ErrUnregistered", err)
	}
}
