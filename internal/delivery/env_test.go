package delivery_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start is where every test clock starts. Key packages carry real Unix
// lifetimes, so it is near the real time.
var start = time.Now().UTC().Truncate(time.Second)

// openSQLite opens a fresh SQLite store in the test's temp dir.
func openSQLite(t testing.TB, now func() time.Time) store.Store {
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "cairn.db"), Now: now})
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openPostgres opens a store on a fresh database (skipping the test when
// PostgreSQL is unreachable, unless CAIRN_REQUIRE_SERVICES=1).
func openPostgres(t testing.TB, now func() time.Time) store.Store {
	s, err := postgres.Open(t.Context(), postgres.Config{URL: testenv.Postgres(t), Now: now})
	if err != nil {
		t.Fatalf("open postgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// backends are the stores every behaviour test runs against.
var backends = []struct {
	name string
	open func(t testing.TB, now func() time.Time) store.Store
}{{"sqlite", openSQLite}, {"postgres", openPostgres}}

// env is one test's service over one backend.
type env struct {
	t     testing.TB
	clock *clock
	store store.Store
	svc   *delivery.Service
	// prepare, if set, adjusts each request before it is served (a
	// header, a context value).
	prepare func(*http.Request) *http.Request
}

func newEnv(t testing.TB, open func(testing.TB, func() time.Time) store.Store, mutate ...func(*delivery.Config)) *env {
	t.Helper()
	c := &clock{t: start}
	s := open(t, c.Now)
	cfg := delivery.Config{Store: s, Now: c.Now}
	for _, m := range mutate {
		m(&cfg)
	}
	svc, err := delivery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, clock: c, store: s, svc: svc}
}

// eachBackend runs f as a subtest per backend.
func eachBackend(t *testing.T, f func(t *testing.T, e *env)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, newEnv(t, b.open)) })
	}
}

// who is a test caller.
type who = caller.Identity

var (
	alice = who{DID: "did:plc:alice", DeviceID: "a1"}
	bob   = who{DID: "did:plc:bob", DeviceID: "b1"}
	carol = who{DID: "did:plc:carol", DeviceID: "c1"}
	eve   = who{DID: "did:plc:eve", DeviceID: "e1"}
	// mallory is never a member of anything.
	mallory = who{DID: "did:plc:mallory", DeviceID: "m1"}
)

// resp is a decoded response.
type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (r resp) errName() string {
	s, _ := r.body["error"].(string)
	return s
}

// serve sends one request as id (zero: anonymous) through the service.
func (e *env) serve(id who, method, nsid, query string, body []byte, contentType string) resp {
	target := "/xrpc/" + nsid
	if query != "" {
		target += "?" + query
	}
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if id.DID != "" {
		req = req.WithContext(caller.With(req.Context(), id))
	}
	if e.prepare != nil {
		req = e.prepare(req)
	}
	rec := httptest.NewRecorder()
	e.svc.ServeHTTP(rec, req)
	r := resp{status: rec.Code, header: rec.Header(), raw: rec.Body.Bytes()}
	if err := json.Unmarshal(r.raw, &r.body); err != nil {
		e.t.Errorf("%s %s: response is not a JSON object: %q", method, nsid, r.raw)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		e.t.Errorf("%s %s: Content-Type %q", method, nsid, ct)
	}
	if r.status >= 400 {
		if r.errName() == "" {
			e.t.Errorf("%s %s: error %d without an XRPC error name: %s", method, nsid, r.status, r.raw)
		}
	}
	return r
}

// post calls a procedure with a JSON body built from v.
func (e *env) post(id who, method string, v any) resp {
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.serve(id, http.MethodPost, "blue.catbird.mls."+method, "", b, "application/json")
}

// get calls a query.
func (e *env) get(id who, method string, q url.Values) resp {
	return e.serve(id, http.MethodGet, "blue.catbird.mls."+method, q.Encode(), nil, "")
}

// must fails the test unless r has status want.
func (r resp) must(t testing.TB, want int) resp {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d: %s", r.status, want, r.raw)
	}
	return r
}

// isErr fails the test unless r is the XRPC error status/name.
func (r resp) isErr(t testing.TB, status int, name string) {
	t.Helper()
	if r.status != status || r.errName() != name {
		t.Fatalf("got %d %q, want %d %q: %s", r.status, r.errName(), status, name, r.raw)
	}
}

type obj = map[string]any

type deliveryConfig = delivery.Config

func b64bytes(b []byte) obj { return obj{"$bytes": base64.RawStdEncoding.EncodeToString(b)} }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
