package delivery_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func TestNewRequiresStore(t *testing.T) {
	if _, err := delivery.New(delivery.Config{}); err == nil {
		t.Fatal("New without a store succeeded")
	}
}

func TestHandlesAndMethods(t *testing.T) {
	e := newEnv(t, openSQLite)
	for _, n := range e.svc.Methods() {
		if !e.svc.Handles(n) {
			t.Errorf("Handles(%s) = false", n)
		}
		if typ, ok := xrpc.Lookup(n); !ok || typ == xrpc.Subscription {
			t.Errorf("%s is not a known query or procedure", n)
		}
	}
	// 23 of issue 3, 18 of the social API, 3 of blocks and 8 of chat
	// requests (issue 14) and 12 of devices and recovery;
	// processExternalCommit is shared by invites and rejoin.
	if len(e.svc.Methods()) != 63 {
		t.Errorf("%d methods served, want 63", len(e.svc.Methods()))
	}
	if !e.svc.Handles("blue.catbird.mls.notYetAMethod") {
		t.Error("an unserved blue.catbird.mls method must be answered (501)")
	}
	if e.svc.Handles("app.bsky.feed.getTimeline") {
		t.Error("a foreign method must be passed on")
	}
}

func TestProtocol(t *testing.T) {
	e := newEnv(t, openSQLite)
	g := e.createConvo(t, alice)
	big := append([]byte(`{"deviceId":"`), bytes.Repeat([]byte("a"), 2<<20)...)
	cases := []struct {
		name        string
		id          who
		method      string
		nsid        string
		query       string
		body        string
		contentType string
		status      int
		err         string
	}{
		{"unknown mls method", alice, "GET", "blue.catbird.mls.notYetAMethod", "", "", "", 501, "MethodNotImplemented"},
		{"foreign method", alice, "GET", "com.example.nope", "", "", "", 501, "MethodNotImplemented"},
		{"query with POST", alice, "POST", "blue.catbird.mls.getConvos", "", "{}", "application/json", 405, "InvalidRequest"},
		{"procedure with GET", alice, "GET", "blue.catbird.mls.sendMessage", "", "", "", 405, "InvalidRequest"},
		{"anonymous", who{}, "GET", "blue.catbird.mls.getConvos", "", "", "", 401, "AuthenticationRequired"},
		{"no content type", alice, "POST", "blue.catbird.mls.leaveConvo", "", `{"convoId":"` + g + `"}`, "", 415, "InvalidRequest"},
		{"text content type", alice, "POST", "blue.catbird.mls.leaveConvo", "", `{"convoId":"` + g + `"}`, "text/plain", 415, "InvalidRequest"},
		{"body too large", alice, "POST", "blue.catbird.mls.deleteDevice", "", string(big), "application/json", 413, "PayloadTooLarge"},
		{"malformed JSON", alice, "POST", "blue.catbird.mls.deleteDevice", "", `{"deviceId":`, "application/json", 400, "InvalidRequest"},
		{"JSON array", alice, "POST", "blue.catbird.mls.deleteDevice", "", `["x"]`, "application/json", 400, "InvalidRequest"},
		{"trailing data", alice, "POST", "blue.catbird.mls.deleteDevice", "", `{"deviceId":"x"} {}`, "application/json", 400, "InvalidRequest"},
		{"empty body", alice, "POST", "blue.catbird.mls.deleteDevice", "", ``, "application/json", 400, "InvalidRequest"},
		{"wrong type", alice, "POST", "blue.catbird.mls.deleteDevice", "", `{"deviceId":7}`, "application/json", 400, "InvalidRequest"},
		{"charset is fine", alice, "POST", "blue.catbird.mls.deleteDevice", "", `{"deviceId":"x"}`, "application/json; charset=utf-8", 404, "DeviceNotFound"},
		{"limit not a number", alice, "GET", "blue.catbird.mls.getConvos", "limit=ten", "", "", 400, "InvalidRequest"},
		{"limit too big", alice, "GET", "blue.catbird.mls.getConvos", "limit=101", "", "", 400, "InvalidRequest"},
		{"limit repeated", alice, "GET", "blue.catbird.mls.getConvos", "limit=1&limit=2", "", "", 400, "InvalidRequest"},
		{"bad query escape", alice, "GET", "blue.catbird.mls.getConvos", "limit=%zz", "", "", 400, "InvalidRequest"},
		{"missing convoId", alice, "GET", "blue.catbird.mls.getEpoch", "", "", "", 400, "InvalidRequest"},
		{"negative sinceSeq", alice, "GET", "blue.catbird.mls.getMessages", "convoId=" + g + "&sinceSeq=-1", "", "", 400, "InvalidRequest"},
		{"createConvo without key", alice, "POST", "blue.catbird.mls.createConvo", "", `{"groupId":"abcd","cipherSuite":"` + suite.String() + `"}`, "application/json", 400, "IdempotencyKeyRequired"},
		{"createConvo bad group", alice, "POST", "blue.catbird.mls.createConvo", "", `{"groupId":"xyz","cipherSuite":"` + suite.String() + `","idempotencyKey":"k"}`, "application/json", 400, "InvalidRequest"},
		{"createConvo bad suite", alice, "POST", "blue.catbird.mls.createConvo", "", `{"groupId":"abcd","cipherSuite":"nope","idempotencyKey":"k"}`, "application/json", 400, "InvalidCipherSuite"},
		{"createConvo bad member", alice, "POST", "blue.catbird.mls.createConvo", "", `{"groupId":"abcd","cipherSuite":"` + suite.String() + `","idempotencyKey":"k","initialMembers":["bob"]}`, "application/json", 400, "InvalidDid"},
		{"createConvo long name", alice, "POST", "blue.catbird.mls.createConvo", "", `{"groupId":"abcd","cipherSuite":"` + suite.String() + `","idempotencyKey":"k","metadata":{"name":"` + strings.Repeat("n", 129) + `"}}`, "application/json", 400, "InvalidRequest"},
		{"addMembers without key", alice, "POST", "blue.catbird.mls.addMembers", "", `{"convoId":"` + g + `","didList":["did:plc:bob"]}`, "application/json", 400, "IdempotencyKeyRequired"},
		{"addMembers empty list", alice, "POST", "blue.catbird.mls.addMembers", "", `{"convoId":"` + g + `","didList":[],"idempotencyKey":"k"}`, "application/json", 400, "InvalidRequest"},
		{"addMembers bad commit", alice, "POST", "blue.catbird.mls.addMembers", "", `{"convoId":"` + g + `","didList":["did:plc:bob"],"idempotencyKey":"k","commit":"AAAA"}`, "application/json", 400, "InvalidMessage"},
		{"addMembers bad hash", alice, "POST", "blue.catbird.mls.addMembers", "", `{"convoId":"` + g + `","didList":["did:plc:bob"],"idempotencyKey":"k","keyPackageHashes":[{"did":"did:plc:bob","hash":"zz"}]}`, "application/json", 400, "InvalidRequest"},
		{"removeMember without key", alice, "POST", "blue.catbird.mls.removeMember", "", `{"convoId":"` + g + `","targetDid":"did:plc:bob"}`, "application/json", 400, "IdempotencyKeyRequired"},
		{"removeMember bad target", alice, "POST", "blue.catbird.mls.removeMember", "", `{"convoId":"` + g + `","targetDid":"bob","idempotencyKey":"k"}`, "application/json", 400, "InvalidDid"},
		{"convoId too long", alice, "POST", "blue.catbird.mls.leaveConvo", "", `{"convoId":"` + strings.Repeat("ab", 65) + `"}`, "application/json", 400, "InvalidRequest"},
		{"leaveConvo unknown", alice, "POST", "blue.catbird.mls.leaveConvo", "", `{"convoId":"abcd"}`, "application/json", 404, "ConvoNotFound"},
		{"sendMessage huge paddedSize", alice, "POST", "blue.catbird.mls.sendMessage", "", `{"convoId":"` + g + `","msgId":"m","ciphertext":{"$bytes":""},"epoch":0,"paddedSize":1e30}`, "application/json", 400, "InvalidRequest"},
		{"sendMessage fractional epoch", alice, "POST", "blue.catbird.mls.sendMessage", "", `{"convoId":"` + g + `","msgId":"m","ciphertext":{"$bytes":""},"epoch":0.5,"paddedSize":512}`, "application/json", 400, "InvalidRequest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.serve(tc.id, tc.method, tc.nsid, tc.query, []byte(tc.body), tc.contentType)
			r.isErr(t, tc.status, tc.err)
		})
	}
}

func TestWrongVerbNamesAllow(t *testing.T) {
	e := newEnv(t, openSQLite)
	req := httptest.NewRequest(http.MethodPut, "/xrpc/blue.catbird.mls.sendMessage", nil)
	req = req.WithContext(caller.With(req.Context(), alice))
	rec := httptest.NewRecorder()
	e.svc.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != http.MethodPost {
		t.Fatalf("%d Allow=%q", rec.Code, rec.Header().Get("Allow"))
	}
}

// FuzzProcedureBodies: no request body makes any procedure panic or answer
// anything but a success or a 4xx XRPC error.
func FuzzProcedureBodies(f *testing.F) {
	seeds := []string{
		`{}`, `{"convoId":"abcd"}`, `{"convoId":"abcd","msgId":"m","ciphertext":{"$bytes":"AAEAAg"},"epoch":0,"paddedSize":512}`,
		`{"groupId":"abcd","cipherSuite":"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519","idempotencyKey":"k","initialMembers":["did:plc:b#1"],"keyPackageHashes":[{"did":"did:plc:b","hash":"00"}]}`,
		`{"keyPackages":[{"keyPackage":"AAE","cipherSuite":"x","expires":"2030-01-01T00:00:00Z"}]}`,
		`{"deviceName":"d","keyPackages":[{}],"signaturePublicKey":{"$bytes":"` + strings.Repeat("A", 43) + `"}}`,
		`{"localHashes":["a"],"deviceId":"d"}`, `{"convoId":"abcd","groupInfo":"AAE","epoch":0}`, `{"convoId":"abcd","success":true}`,
		`{"convoId":"abcd","targetDid":"did:plc:x","idempotencyKey":"k","commit":"AAEAAg"}`, `null`, `[]`, `{"epoch":-1}`, "\x00",
	}
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	e := newFuzzEnv(f)
	var procedures []string
	for _, n := range e.svc.Methods() {
		if typ, _ := xrpc.Lookup(n); typ == xrpc.Procedure {
			procedures = append(procedures, n)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		nsid := procedures[int(which)%len(procedures)]
		req := httptest.NewRequest(http.MethodPost, "/xrpc/"+nsid, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req = req.WithContext(caller.With(req.Context(), alice))
		rec := httptest.NewRecorder()
		e.svc.ServeHTTP(rec, req)
		testenv.ClientError(t, rec, fmt.Sprintf("%s %q", nsid, body))
	})
}

// FuzzQueryParams: no query string makes any query panic or answer
// anything but a success or a 4xx XRPC error.
func FuzzQueryParams(f *testing.F) {
	seeds := []string{
		"", "limit=5", "convoId=abcd&sinceSeq=3", "dids=did:plc:a&dids=did:plc:b&cipherSuite=x", "cursor=%00",
		"convoId=abcd&fromEpoch=2&toEpoch=1", "limit=-1", "sinceSeq=99999999999999999999", "did=did:plc:a", "deviceId=x",
	}
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	e := newFuzzEnv(f)
	var queries []string
	for _, n := range e.svc.Methods() {
		if typ, _ := xrpc.Lookup(n); typ == xrpc.Query {
			queries = append(queries, n)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, query string) {
		nsid := queries[int(which)%len(queries)]
		req := httptest.NewRequest(http.MethodGet, "/xrpc/"+nsid, nil)
		req.URL.RawQuery = query
		req = req.WithContext(caller.With(req.Context(), alice))
		rec := httptest.NewRecorder()
		e.svc.ServeHTTP(rec, req)
		testenv.ClientError(t, rec, nsid+"?"+url.QueryEscape(query))
	})
}

// newFuzzEnv is an SQLite-backed service for a fuzz target, with one
// conversation whose id is the "abcd" of the seeds.
func newFuzzEnv(f *testing.F) *env {
	c := &clock{t: start}
	s := openSQLite(f, c.Now)
	svc, err := delivery.New(delivery.Config{Store: s, Now: c.Now})
	if err != nil {
		f.Fatal(err)
	}
	e := &env{clock: c, store: s, svc: svc}
	req := httptest.NewRequest(http.MethodPost, "/xrpc/blue.catbird.mls.createConvo",
		strings.NewReader(`{"groupId":"abcd","cipherSuite":"`+suite.String()+`","idempotencyKey":"seed"}`))
	req.Header.Set("Content-Type", "application/json")
	req = req.WithContext(caller.With(req.Context(), alice))
	rec := httptest.NewRecorder()
	svc.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		f.Fatalf("seed convo: %d %s", rec.Code, rec.Body)
	}
	return e
}

// TestHostileInputsNever5xx sends hostile values to every method on both
// stores: PostgreSQL refuses some strings SQLite takes (NUL), so the
// fuzzers' SQLite-only property is checked here on both.
func TestHostileInputsNever5xx(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		g := e.createConvo(t, alice, bob)
		values := []string{"\\u0000", "a\\u0000b", "\\ud800", strings.Repeat("z", 300), "did:plc:\\u0000", "💥", g + "\\u0000", ""}
		for _, n := range e.svc.Methods() {
			typ, _ := xrpc.Lookup(n)
			for _, v := range values {
				if typ == xrpc.Query {
					raw, _ := url.QueryUnescape(strings.ReplaceAll(v, "\\u0000", "%00"))
					q := url.Values{}
					for _, p := range []string{"convoId", "cursor", "dids", "did", "deviceId", "cipherSuite"} {
						q.Set(p, raw)
					}
					q.Set("fromEpoch", "0")
					if r := e.serve(alice, http.MethodGet, n, q.Encode(), nil, ""); r.status >= 500 {
						t.Errorf("%s %q: %d %s", n, v, r.status, r.raw)
					}
					continue
				}
				body := `{"convoId":"` + v + `","groupId":"` + v + `","cipherSuite":"` + v + `","idempotencyKey":"` + v +
					`","msgId":"` + v + `","deviceId":"` + v + `","targetDid":"` + v + `","didList":["` + v + `"],"initialMembers":["` + v +
					`"],"localHashes":["` + v + `"],"deviceName":"` + v + `","keyPackage":"` + v + `","groupInfo":"` + v + `","epoch":0,"success":true}`
				if r := e.serve(alice, http.MethodPost, n, "", []byte(body), "application/json"); r.status >= 500 {
					t.Errorf("%s %q: %d %s", n, v, r.status, r.raw)
				}
			}
		}
	})
}

// TestHostileCursorsNever5xx sends every query cursors that are well-formed
// but carry what a stored identifier never holds (NUL, invalid UTF-8,
// extreme times), on both stores: PostgreSQL refused the first two as query
// arguments with a 500 before DecodeCursor did.
func TestHostileCursorsNever5xx(t *testing.T) {
	eachBackend(t, func(t *testing.T, e *env) {
		e.createConvo(t, alice, bob)
		for _, raw := range []string{"1:\x00", "1:a\x00b", "1:\xff", "1:\xed\xa0\x80", "9223372036854775807:a", "-9223372036854775808:a"} {
			cursor := base64.RawURLEncoding.EncodeToString([]byte(raw))
			for _, n := range e.svc.Methods() {
				if typ, _ := xrpc.Lookup(n); typ != xrpc.Query {
					continue
				}
				if r := e.serve(alice, http.MethodGet, n, "cursor="+cursor, nil, ""); r.status >= 500 {
					t.Errorf("%s cursor %q: %d %s", n, raw, r.status, r.raw)
				}
			}
		}
	})
}

// failingStore fails the membership read with err.
type failingStore struct {
	store.Store
	err error
}

func (f failingStore) ActiveMember(context.Context, string, string) (store.Member, error) {
	return store.Member{}, f.err
}

func TestStoreFailuresRevealNothing(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
		errNm  string
	}{
		{"broken", errors.New("disk on fire at /var/lib/secret"), 500, "InternalServerError"},
		{"timeout", fmt.Errorf("query: %w", context.DeadlineExceeded), 503, "ServiceUnavailable"},
		{"connection refused", fmt.Errorf("query: %w: %w", store.ErrUnavailable, &net.OpError{Op: "dial", Err: errors.New("refused")}), 503, "ServiceUnavailable"},
		{"busy", fmt.Errorf("begin: %w: database is locked", store.ErrUnavailable), 503, "ServiceUnavailable"},
		{"outcome unknown", fmt.Errorf("commit: %w: unexpected EOF", store.ErrOutcomeUnknown), 503, "ServiceUnavailable"},
		// The backends classify their own errors: one they left
		// unclassified is a 500, whatever it looks like.
		{"unclassified network error", &net.OpError{Op: "read", Err: errors.New("refused")}, 500, "InternalServerError"},
		{"constraint", errors.New("insert: null value violates not-null constraint (SQLSTATE 23502)"), 500, "InternalServerError"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(t testing.TB, now func() time.Time) store.Store {
				return failingStore{Store: openSQLite(t, now), err: tc.err}
			})
			r := e.get(alice, "getEpoch", url.Values{"convoId": {"abcd"}})
			r.isErr(t, tc.status, tc.errNm)
			if retry := r.header.Get("Retry-After"); (tc.status == 503) != (retry != "") {
				t.Errorf("%d with Retry-After %q: a 503 says when to retry, nothing else does", tc.status, retry)
			}
			if strings.Contains(string(r.raw), "secret") || strings.Contains(string(r.raw), "refused") || strings.Contains(string(r.raw), "EOF") {
				t.Fatalf("cause leaked: %s", r.raw)
			}
			// Only a write whose commit was cut off says it may have
			// been applied, and how to find out.
			if unknown := strings.Contains(errMsg(r), "may or may not"); unknown != errors.Is(tc.err, store.ErrOutcomeUnknown) {
				t.Errorf("message %q for %v", errMsg(r), tc.err)
			}
		})
	}
}

// errMsg is the message of an XRPC error body.
func errMsg(r resp) string {
	s, _ := r.body["message"].(string)
	return s
}
