package operator_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/ban"
	"github.com/cairn-chat/cairn-caddy/internal/operator"
	"github.com/cairn-chat/cairn-caddy/internal/operatorauth"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
)

var key = []byte("operator-test-key-operator-test-key-!!!!")

type fixture struct {
	api   *operator.API
	store *sqlite.Store
	log   *audit.Log
	fail  bool // makes the recorder fail
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "cairn.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h, _ := redact.New(key)
	f := &fixture{store: s}
	f.log, err = audit.New(audit.Config{Store: s, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	bans, _ := ban.New(ban.Config{Store: s, Hasher: h})
	rec := audit.RecorderFunc(func(ctx context.Context, e audit.Event) error {
		if f.fail {
			return errors.New("database down")
		}
		return f.log.Record(ctx, e)
	})
	f.api, err = operator.New(operator.Config{
		Recorder: rec,
		Status: func(context.Context) (operator.Status, error) {
			return operator.Status{Version: "test", Store: operator.Health{Backend: "sqlite", Healthy: true}}, nil
		},
		Audit: s,
		Bans:  bans,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// call serves one request as operator "alice" (or anonymously when op is
// nil) and returns the status and decoded body.
func (f *fixture) call(t *testing.T, op *operatorauth.Operator, method, target, body string) (int, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if op != nil {
		r = r.WithContext(operatorauth.NewContext(r.Context(), op))
	}
	w := httptest.NewRecorder()
	f.api.ServeHTTP(w, r)
	var out map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, target, w.Body.String(), err)
	}
	return w.Code, out
}

var alice = &operatorauth.Operator{Method: "oidc", Subject: "alice"}

func (f *fixture) rows(t *testing.T, types ...string) []store.AuditRecord {
	t.Helper()
	rows, err := f.store.AuditRecords(t.Context(), store.AuditFilter{Types: types, Ascending: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestEveryCallIsAuthenticatedAndAudited(t *testing.T) {
	f := newFixture(t)
	if code, body := f.call(t, nil, "GET", "/operator/v1/status", ""); code != 401 || body["error"] != "AuthMissing" {
		t.Fatalf("anonymous status = %d %v", code, body)
	}
	if code, body := f.call(t, alice, "GET", "/operator/v1/status", ""); code != 200 || body["version"] != "test" ||
		body["last_backup"] != nil || body["redis"] != nil {
		t.Fatalf("status = %d %v", code, body)
	}
	rows := f.rows(t, audit.TypeOperatorAction)
	if len(rows) != 1 || rows[0].Actor != "alice" || !strings.Contains(string(rows[0].Metadata), `"route":"status"`) {
		t.Fatalf("audit rows = %+v", rows)
	}
	// A call that cannot be audited is not served.
	f.fail = true
	if code, body := f.call(t, alice, "POST", "/operator/v1/bans", `{"did":"did:plc:abc"}`); code != 503 || body["error"] != "AuditUnavailable" {
		t.Fatalf("unaudited ban = %d %v", code, body)
	}
	f.fail = false
	if bans, _ := f.store.Bans(t.Context()); len(bans) != 0 {
		t.Fatal("an unaudited call changed the ban list")
	}
}

func TestNotFoundAndMethodInXRPCShape(t *testing.T) {
	f := newFixture(t)
	if code, body := f.call(t, alice, "GET", "/operator/v1/nothing", ""); code != 404 || body["error"] != "NotFound" {
		t.Fatalf("unknown route = %d %v", code, body)
	}
	if code, body := f.call(t, alice, "DELETE", "/operator/v1/status", ""); code != 405 || body["error"] != "MethodNotAllowed" {
		t.Fatalf("wrong method = %d %v", code, body)
	}
}

func TestBansThroughTheAPI(t *testing.T) {
	f := newFixture(t)
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	code, dry := f.call(t, alice, "POST", "/operator/v1/bans", `{"did":"`+did+`","dry_run":true}`)
	if code != 200 || dry["changed"] != true || dry["dry_run"] != true {
		t.Fatalf("dry run = %d %v", code, dry)
	}
	if bans, _ := f.store.Bans(t.Context()); len(bans) != 0 {
		t.Fatal("a dry run banned")
	}
	code, added := f.call(t, alice, "POST", "/operator/v1/bans", `{"did":"`+did+`"}`)
	if code != 200 || added["changed"] != true || added["hash"] != dry["hash"] {
		t.Fatalf("ban = %d %v", code, added)
	}
	if _, again := f.call(t, alice, "POST", "/operator/v1/bans", `{"did":"`+did+`"}`); again["changed"] != false {
		t.Fatalf("second ban = %v", again)
	}
	_, list := f.call(t, alice, "GET", "/operator/v1/bans", "")
	if bans := list["bans"].([]any); len(bans) != 1 || bans[0].(map[string]any)["hash"] != added["hash"] {
		t.Fatalf("list = %v", list)
	}
	if code, removed := f.call(t, alice, "POST", "/operator/v1/bans/remove", `{"hash":"`+added["hash"].(string)+`"}`); code != 200 || removed["changed"] != true {
		t.Fatalf("unban = %d %v", code, removed)
	}
	adds, removes := f.rows(t, audit.TypeBanAdd), f.rows(t, audit.TypeBanRemove)
	if len(adds) != 1 || len(removes) != 1 || adds[0].Target != added["hash"] || adds[0].Actor != "alice" {
		t.Fatalf("ban audit rows = %+v %+v", adds, removes)
	}
	for _, r := range f.rows(t) {
		if strings.Contains(string(r.Metadata)+r.Actor+r.Target, "ewvi7") {
			t.Fatalf("an audit row holds the raw DID: %+v", r)
		}
	}
	for _, body := range []string{``, `{}`, `{"did":"alice"}`, `{"did":"did:plc:a#b"}`, `{"hash":"h:00"}`, `{"did":"did:plc:a","x":1}`, `{"did":"did:plc:a"} {}`} {
		for _, path := range []string{"/operator/v1/bans", "/operator/v1/bans/remove"} {
			if code, out := f.call(t, alice, "POST", path, body); code != 400 || out["error"] != "InvalidRequest" {
				t.Errorf("POST %s %s = %d %v, want 400 InvalidRequest", path, body, code, out)
			}
		}
	}
	if code, _ := f.call(t, alice, "POST", "/operator/v1/bans/remove", `{"hash":"h:zzzzzzzzzzzzzzzz"}`); code != 400 {
		t.Errorf("non-hex hash = %d", code)
	}
}

func TestAuditQueryPagesAndFilters(t *testing.T) {
	f := newFixture(t)
	for range 7 {
		if err := f.log.Record(t.Context(), audit.Event{Type: audit.TypeConfigLoad}); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []float64
	next := "/operator/v1/audit?type=config.load&limit=3"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		code, page := f.call(t, alice, "GET", next, "")
		if code != 200 {
			t.Fatalf("page = %d %v", code, page)
		}
		for _, e := range page["events"].([]any) {
			seqs = append(seqs, e.(map[string]any)["seq"].(float64))
		}
		next = ""
		if c, ok := page["cursor"].(string); ok {
			next = "/operator/v1/audit?type=config.load&limit=3&cursor=" + url.QueryEscape(c)
		}
	}
	if len(seqs) != 7 || seqs[0] != 7 || seqs[6] != 1 {
		t.Fatalf("paged seqs = %v, want 7..1", seqs)
	}
	// The audit queries themselves are audited.
	_, page := f.call(t, alice, "GET", "/operator/v1/audit?type=operator.action&actor=alice", "")
	if n := len(page["events"].([]any)); n < 3 {
		t.Fatalf("operator.action rows for alice = %d, want the earlier queries", n)
	}
	for _, q := range []string{"limit=0", "limit=501", "limit=3.5", "limit=03", "since=yesterday", "cursor=xyz", "cursor=", "foo=1", "actor=a&actor=b", "type="} {
		if code, out := f.call(t, alice, "GET", "/operator/v1/audit?"+q, ""); code != 400 || out["error"] != "InvalidRequest" {
			t.Errorf("?%s = %d %v, want 400 InvalidRequest", q, code, out)
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	for _, seq := range []int64{1, 42, 1 << 62} {
		got, err := operator.ParseCursor(operator.EncodeCursor(seq))
		if err != nil || got != seq {
			t.Errorf("round trip %d = %d, %v", seq, got, err)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add(operator.EncodeCursor(7))
	f.Add("")
	f.Add("YTE6MA")
	f.Fuzz(func(t *testing.T, c string) {
		seq, err := operator.ParseCursor(c)
		if err != nil {
			return
		}
		if seq <= 0 || operator.EncodeCursor(seq) != c {
			t.Fatalf("accepted %q as %d, which encodes as %q", c, seq, operator.EncodeCursor(seq))
		}
	})
}

func FuzzParseAuditQuery(f *testing.F) {
	f.Add("type=ban.add&actor=alice&since=2026-01-01T00:00:00Z&limit=10")
	f.Add("cursor=" + operator.EncodeCursor(3))
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		filter, err := operator.ParseAuditQuery(q)
		if err != nil {
			return
		}
		if filter.Limit < 1 || filter.Limit > operator.MaxAuditLimit || filter.BeforeSeq < 0 {
			t.Fatalf("accepted %q as %+v", raw, filter)
		}
	})
}

// FuzzAPIRequests sends arbitrary requests as an operator: bad input is
// always a 4xx in the XRPC error shape, never a 5xx.
func FuzzAPIRequests(f *testing.F) {
	f.Add("POST", "/operator/v1/bans", "", `{"did":"did:plc:abc"}`)
	f.Add("POST", "/operator/v1/bans/remove", "", `{"hash":"h:0011223344556677"}`)
	f.Add("GET", "/operator/v1/audit", "type=ban.add&limit=2&cursor=YTE6Mw", "")
	f.Add("GET", "/operator/v1/bans", "", "")
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		u := &url.URL{Path: path, RawQuery: query}
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(method, " \t\r\n") || method == "" {
			return
		}
		r, err := http.NewRequest(method, "http://op.test"+u.RequestURI(), strings.NewReader(body))
		if err != nil {
			return
		}
		r = r.WithContext(operatorauth.NewContext(r.Context(), alice))
		w := httptest.NewRecorder()
		fx.api.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s?%s %q = %d %s", method, path, query, body, w.Code, w.Body)
		}
		if w.Code >= 400 {
			var e struct{ Error, Message string }
			if json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" {
				t.Fatalf("%d body %q is not an XRPC error", w.Code, w.Body)
			}
		}
	})
}
