package atprototest

import (
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
)

// AppView is a Bluesky AppView stand-in that serves
// app.bsky.graph.getRelationships, in the real output shape, from the
// block records of a PDS stand-in (as an AppView indexes the network).
// Only the block fields are filled in: "blocking" and "blockedBy", each the
// AT-URI of the block record.
type AppView struct {
	*httptest.Server
	pds *PDS

	mu        sync.Mutex
	down      bool
	unknown   map[string]bool
	hits      int
	maxOthers int
}

// NewAppView starts an AppView stand-in over pds's records, stopped when
// the test ends.
func NewAppView(t testing.TB, pds *PDS) *AppView {
	t.Helper()
	a := &AppView{pds: pds, unknown: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /xrpc/app.bsky.graph.getRelationships", a.getRelationships)
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.hits++
		down := a.down
		a.mu.Unlock()
		if down {
			xrpcError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "down")
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

// SetDown makes the stand-in answer 503 to everything (down) or serve again.
func (a *AppView) SetDown(down bool) {
	a.mu.Lock()
	a.down = down
	a.mu.Unlock()
}

// SetUnknownActor makes the stand-in answer for did as the primary actor
// as the reference AppView does for an actor it cannot resolve: no
// "actor" in the output and every other not found.
func (a *AppView) SetUnknownActor(did string) {
	a.mu.Lock()
	a.unknown[did] = true
	a.mu.Unlock()
}

// Hits returns how many requests the stand-in received.
func (a *AppView) Hits() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hits
}

// MaxOthers returns the most others one request asked about.
func (a *AppView) MaxOthers() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maxOthers
}

// blockURI returns the AT-URI of blocker's newest block of subject, or "".
func (p *PDS) blockURI(blocker, subject string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var keys []string
	for rkey, b := range p.blocks[blocker] {
		if b.Subject == subject {
			keys = append(keys, rkey)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Strings(keys)
	return "at://" + blocker + "/" + BlockCollection + "/" + keys[len(keys)-1]
}

// getRelationships serves app.bsky.graph.getRelationships: actor
// required, at most 30 others, and one app.bsky.graph.defs#relationship
// (or #notFoundActor) per other, as packages/bsky of bluesky-social/atproto
// answers.
func (a *AppView) getRelationships(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	actor, others := q.Get("actor"), q["others"]
	if actor == "" {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", `Error: Params must have the property "actor"`)
		return
	}
	if len(others) > 30 {
		xrpcError(w, http.StatusBadRequest, "InvalidRequest", "Error: others must not have more than 30 elements")
		return
	}
	a.mu.Lock()
	a.maxOthers = max(a.maxOthers, len(others))
	unknown := a.unknown[actor]
	a.mu.Unlock()
	out := map[string]any{"actor": actor}
	if unknown {
		delete(out, "actor") // the reference AppView omits an actor it does not know
	}
	rels := []map[string]any{}
	for _, o := range others {
		if unknown {
			rels = append(rels, map[string]any{"$type": "app.bsky.graph.defs#notFoundActor", "actor": o, "notFound": true})
			continue
		}
		rel := map[string]any{"$type": "app.bsky.graph.defs#relationship", "did": o}
		if u := a.pds.blockURI(actor, o); u != "" {
			rel["blocking"] = u
		}
		if u := a.pds.blockURI(o, actor); u != "" {
			rel["blockedBy"] = u
		}
		rels = append(rels, rel)
	}
	out["relationships"] = rels
	writeJSON(w, out)
}
