package servicekey

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{now: time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)} }
func verifies(t *testing.T, p PublicKey, data, sig []byte) bool {
	t.Helper()
	pub, err := atcrypto.ParsePublicDIDKey(p.DIDKey)
	if err != nil {
		t.Fatal(err)
	}
	return pub.HashAndVerify(data, sig) == nil
}

func TestOpenCreatesOneKeyOwnerOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", FileName)
	var wg sync.WaitGroup
	rings := make([]*Keyring, 4)
	for i := range rings {
		wg.Go(func() {
			k, err := Open(path, Options{})
			if err != nil {
				t.Error(err)
			}
			rings[i] = k
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
	id := rings[0].Published()[0].ID
	for _, k := range rings {
		if p := k.Published(); len(p) != 1 || p[0].ID != id || !p[0].Current || p[0].Fragment != "atproto" {
			t.Fatalf("nodes opening at once made different keys: %+v vs %s", p, id)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable key file: %v", err)
	}
}

func TestRotateKeepsTheOldKeyForTheGracePeriod(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), FileName)
	a, err := Open(path, Options{Grace: 48 * time.Hour, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	// A second node sharing the file.
	b, err := Open(path, Options{Grace: 48 * time.Hour, Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("signed before the rotation")
	oldSig, oldID, err := a.Sign(data)
	if err != nil {
		t.Fatal(err)
	}
	c.Add(time.Second)
	rot, err := a.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if rot.Retired.ID != oldID || rot.New.ID == oldID || rot.Retired.ExpiresAt == nil || !rot.Retired.ExpiresAt.Equal(c.Now().Add(48*time.Hour)) {
		t.Fatalf("rotation %+v", rot)
	}
	newSig, newID, err := a.Sign(data)
	if err != nil || newID != rot.New.ID {
		t.Fatalf("after the rotation the key %s signs (%v), want %s", newID, err, rot.New.ID)
	}
	if err := b.Refresh(); err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]*Keyring{"rotating node": a, "other node": b} {
		pub := k.Published()
		if len(pub) != 2 || pub[0].ID != rot.New.ID || pub[0].Fragment != "atproto" || pub[1].ID != oldID || pub[1].Fragment != "atproto_"+oldID {
			t.Fatalf("%s publishes %+v", name, pub)
		}
		if !verifies(t, pub[0], data, newSig) || !verifies(t, pub[1], data, oldSig) || verifies(t, pub[0], data, oldSig) {
			t.Fatalf("%s: the published keys do not verify their signatures", name)
		}
		doc := k.Document("did:web:chat.example.com", "https://chat.example.com")
		if len(doc.VerificationMethod) != 2 || doc.VerificationMethod[0].ID != "did:web:chat.example.com#atproto" {
			t.Fatalf("%s: document %+v", name, doc)
		}
	}

	c.Add(48 * time.Hour)
	if pub := b.Published(); len(pub) != 1 || pub[0].ID != rot.New.ID {
		t.Fatalf("after the grace period the document still publishes %+v", pub)
	}
	if err := b.Refresh(); err != nil {
		t.Fatal(err)
	}
	f, _, err := readFile(path)
	if err != nil || len(f.Keys) != 1 || f.Keys[0].ID != rot.New.ID {
		t.Fatalf("the file still holds the old key after the grace period: %+v, %v", f, err)
	}
}

func TestSignServiceAuth(t *testing.T) {
	k, err := Open(filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := Signer{DID: "did:web:chat.example.com", Keys: k}
	tok, err := s.SignServiceAuth("did:web:pds.example.com", "app.bsky.graph.getBlocks", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	var header, claims map[string]any
	for i, v := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(raw, v) != nil {
			t.Fatalf("part %d: %v", i, err)
		}
	}
	if header["alg"] != "ES256K" || claims["iss"] != s.DID || claims["aud"] != "did:web:pds.example.com" ||
		claims["lxm"] != "app.bsky.graph.getBlocks" || claims["exp"].(float64)-claims["iat"].(float64) != 60 || claims["jti"] == "" {
		t.Fatalf("header %v claims %v", header, claims)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if !verifies(t, k.Published()[0], []byte(parts[0]+"."+parts[1]), sig) {
		t.Fatal("the token's signature does not verify under the published key")
	}
	for _, ttl := range []time.Duration{0, 2 * time.Hour} {
		if _, err := s.SignServiceAuth("did:web:x", "", ttl); err == nil {
			t.Errorf("ttl %s accepted", ttl)
		}
	}
}

func TestParseDIDWeb(t *testing.T) {
	for did, want := range map[string]string{
		"did:web:chat.example.com":     "https://chat.example.com",
		"did:web:localhost%3A8443":     "https://localhost:8443",
		"did:web:chat.example.com:u:1": "",
		"did:plc:abc":                  "",
		"did:web:":                     "",
		"did:web:a%2Fb":                "",
	} {
		got, err := ParseDIDWeb(did)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("ParseDIDWeb(%q) = %q, %v; want %q", did, got, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	k, err := Open(filepath.Join(f.TempDir(), FileName), Options{})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := os.ReadFile(k.Path())
	f.Add(good)
	f.Add([]byte(`{"version":1,"keys":[]}`))
	f.Add([]byte(`{"version":1,"keys":[{"id":"k0","type":"k256","private_multibase":"z","created_at":"2026-01-01T00:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ff, err := Parse(data)
		if err != nil {
			return
		}
		// What parses loads: every key is usable.
		for _, key := range ff.Keys {
			if _, err := load(key); err != nil {
				t.Fatalf("parsed a key that does not load: %v", err)
			}
		}
	})
}
