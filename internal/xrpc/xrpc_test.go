package xrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// lexiconDir is the repository's copy of the blue.catbird.mls lexicons.
var lexiconDir = filepath.Join("..", "..", "lexicons", "blue", "catbird", "mls")

// TestKnownNSIDsMatchLexicons keeps nsids.go equal to the lexicons in
// lexicons/: every method lexicon is known with its type, and nothing else.
func TestKnownNSIDsMatchLexicons(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(lexiconDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no lexicons found in %s (err %v)", lexiconDir, err)
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

// workspaceLexiconDir is where the development workspace keeps the lexicons
// that lexicons/ was copied from: a directory beside the repository, which a
// clone elsewhere does not have.
var workspaceLexiconDir = filepath.Join("..", "..", "..", "shared", "lexicons", "blue", "catbird", "mls")

// TestLexiconsMatchWorkspaceCopy checks, where the workspace's reference
// copy exists, that lexicons/ holds the same documents byte for byte, so
// that the vendored contract cannot drift from the one the issues cite.
func TestLexiconsMatchWorkspaceCopy(t *testing.T) {
	if _, err := os.Stat(workspaceLexiconDir); errors.Is(err, fs.ErrNotExist) {
		t.Logf("%s does not exist (a clone outside the development workspace); only lexicons/ is checked, by TestKnownNSIDsMatchLexicons", workspaceLexiconDir)
		return
	}
	read := func(dir string) map[string][]byte {
		t.Helper()
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no lexicons found in %s (err %v)", dir, err)
		}
		docs := map[string][]byte{}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs[filepath.Base(f)] = raw
		}
		return docs
	}
	ours, theirs := read(lexiconDir), read(workspaceLexiconDir)
	for name, raw := range theirs {
		if mine, ok := ours[name]; !ok {
			t.Errorf("%s is in %s but not in lexicons/", name, workspaceLexiconDir)
		} else if !bytes.Equal(mine, raw) {
			t.Errorf("lexicons/%s differs from %s", name, filepath.Join(workspaceLexiconDir, name))
		}
	}
	for name := range ours {
		if _, ok := theirs[name]; !ok {
			t.Errorf("lexicons/%s is not in %s", name, workspaceLexiconDir)
		}
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

// TestRespondErrorReportsServerFaultsOnce checks the error path: every
// error is written, and exactly the server faults (5xx but 501) reach the
// reporter, once, with the error written.
func TestRespondErrorReportsServerFaultsOnce(t *testing.T) {
	cause := errors.New("conn closed")
	for _, tc := range []struct {
		err        error
		status     int
		wantReport bool
	}{
		{Errorf(http.StatusBadRequest, "InvalidRequest", "bad"), 400, false},
		{Errorf(http.StatusTooManyRequests, "RateLimitExceeded", "slow"), 429, false},
		{Errorf(http.StatusNotImplemented, "MethodNotImplemented", "no"), 501, false},
		{&Error{Status: http.StatusServiceUnavailable, Name: "ServiceUnavailable", Message: "later", Err: cause}, 503, true},
		{&Error{Status: http.StatusBadGateway, Name: "UpstreamFailure", Message: "upstream", Err: cause}, 502, true},
		{cause, 500, true}, // not an *Error: a 500 whose cause is err
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/xrpc/x", nil)
		var reports []*Error
		RespondError(rec, req, tc.err, func(r *http.Request, e *Error) {
			if r != req {
				t.Error("reporter got another request")
			}
			reports = append(reports, e)
		})
		if rec.Code != tc.status {
			t.Errorf("%v: status %d, want %d", tc.err, rec.Code, tc.status)
		}
		if got := len(reports) == 1; got != tc.wantReport || len(reports) > 1 {
			t.Errorf("%v: reported %d times, want %v", tc.err, len(reports), tc.wantReport)
			continue
		}
		if tc.wantReport && (reports[0].Status != tc.status || !errors.Is(reports[0], cause)) {
			t.Errorf("%v: reported %+v, want the written error with its cause", tc.err, reports[0])
		}
		// A nil reporter is allowed: the error is still written.
		rec = httptest.NewRecorder()
		RespondError(rec, req, tc.err, nil)
		if rec.Code != tc.status {
			t.Errorf("%v without a reporter: status %d", tc.err, rec.Code)
		}
	}
}
