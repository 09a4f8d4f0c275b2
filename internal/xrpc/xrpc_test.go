package xrpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestKnownNSIDsMatchLexicons keeps nsids.go equal to the lexicon set in
// ../shared: every method lexicon is known with its type, and nothing else.
func TestKnownNSIDsMatchLexicons(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "shared", "lexicons", "blue", "catbird", "mls")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no lexicons found in %s (err %v); shared/ must sit beside the repository", dir, err)
	}
	types := map[string]MethodType{"query": Query, "procedure": Procedure, "subscription": Subscription}
	want := map[string]MethodType{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			ID   string `json:"id"`
			Defs map[string]struct {
				Type string `json:"type"`
			} `json:"defs"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if m, ok := doc.Defs["main"]; ok {
			if mt, ok := types[m.Type]; ok {
				want[doc.ID] = mt
			}
		}
	}
	for id, mt := range want {
		if got, ok := Lookup(id); !ok || got != mt {
			t.Errorf("%s: Lookup = %v, %v; want %v", id, got, ok, mt)
		}
	}
	var extra []string
	for _, id := range KnownNSIDs() {
		if _, ok := want[id]; !ok {
			extra = append(extra, id)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("known NSIDs without a lexicon: %v", extra)
	}
}

func TestNSIDFromPath(t *testing.T) {
	for _, tc := range []struct {
		path, nsid string
		ok         bool
	}{
		{"/xrpc/blue.catbird.mls.sendMessage", "blue.catbird.mls.sendMessage", true},
		{"/xrpc/", "", false},
		{"/xrpc/a/b", "", false},
		{"/metrics", "", false},
		{"/xrpcx/foo", "", false},
	} {
		nsid, ok := NSIDFromPath(tc.path)
		if nsid != tc.nsid || ok != tc.ok {
			t.Errorf("NSIDFromPath(%q) = %q, %v; want %q, %v", tc.path, nsid, ok, tc.nsid, tc.ok)
		}
	}
}

func TestLabelForIsBounded(t *testing.T) {
	if got := LabelFor("blue.catbird.mls.sendMessage"); got != "blue.catbird.mls.sendMessage" {
		t.Errorf("known NSID relabelled as %q", got)
	}
	if got := LabelFor("did:plc:abc"); got != OtherNSID {
		t.Errorf("unknown NSID labelled %q, want %q", got, OtherNSID)
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	e := Errorf(http.StatusTooManyRequests, "RateLimitExceeded", "slow down <now> & later")
	e.Header = http.Header{"Retry-After": {"3"}}
	WriteError(rec, fmt.Errorf("wrapped: %w", e))
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "3" {
		t.Fatalf("status %d, Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
	var b Body
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Error != "RateLimitExceeded" || b.Message != "slow down <now> & later" || !strings.Contains(rec.Body.String(), "<now> &") {
		t.Fatalf("body %q (err %v)", rec.Body.String(), err)
	}

	rec = httptest.NewRecorder()
	WriteError(rec, errors.New("pq: secret detail"))
	if rec.Code != 500 || json.Unmarshal(rec.Body.Bytes(), &b) != nil || b.Error != "InternalServerError" || b.Message != "internal error" {
		t.Fatalf("plain error gave %d %q", rec.Code, rec.Body.String())
	}
}
