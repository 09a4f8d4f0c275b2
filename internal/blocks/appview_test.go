package blocks_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/blocks"
)

// newAppViewSource returns an AppView source reading from an AppView
// stand-in that indexes a PDS stand-in's records.
func newAppViewSource(t *testing.T) (*blocks.AppView, *atprototest.AppView, *atprototest.PDS) {
	t.Helper()
	pds := atprototest.NewPDS(t)
	av := atprototest.NewAppView(t, pds)
	src, err := blocks.NewAppView(blocks.AppViewConfig{BaseURL: av.URL + "/"})
	if err != nil {
		t.Fatal(err)
	}
	return src, av, pds
}

func TestAppViewAmongFindsBlocksBothWaysAndCaches(t *testing.T) {
	src, av, pds := newAppViewSource(t)
	ctx := context.Background()
	uri := pds.Block(bob, alice)
	pds.Block(carol, "did:plc:dddddddddddddddddddddddd") // outside the set
	rs, err := src.Among(ctx, []string{alice, bob, carol, alice})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Blocker != bob || rs[0].Blocked != alice || rs[0].URI != uri {
		t.Fatalf("relations = %+v, want bob blocks alice by %s", rs, uri)
	}
	hits := av.Hits()
	if rs, err := src.Among(ctx, []string{carol, bob, alice}); err != nil || len(rs) != 1 {
		t.Fatalf("second Among = %+v, %v", rs, err)
	}
	if av.Hits() != hits {
		t.Fatalf("a second read within the TTL hit the AppView %d times", av.Hits()-hits)
	}
}

func TestAppViewAsksAtMost30OthersAndEveryPairOnce(t *testing.T) {
	src, av, pds := newAppViewSource(t)
	var dids []string
	for i := range 70 {
		dids = append(dids, fmt.Sprintf("did:plc:%024d", i))
	}
	pds.Block(dids[69], dids[0]) // asked from dids[0], in its third request
	pds.Block(dids[31], dids[65])
	rs, err := src.Among(context.Background(), dids)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("relations = %+v, want two", rs)
	}
	if av.MaxOthers() > 30 {
		t.Fatalf("a request asked about %d others; the lexicon allows 30", av.MaxOthers())
	}
	// Account i asks about the 69-i after it, 30 at a time.
	want := 0
	for i := range 70 {
		want += (69 - i + 29) / 30
	}
	if av.Hits() != want {
		t.Fatalf("%d requests for 70 accounts, want %d (each pair once)", av.Hits(), want)
	}
}

func TestAppViewBetweenAsksLinearlyForOneNewcomer(t *testing.T) {
	src, av, pds := newAppViewSource(t)
	var members []string
	for i := range 200 {
		members = append(members, fmt.Sprintf("did:plc:%024d", i))
	}
	newcomer := "did:plc:nnnnnnnnnnnnnnnnnnnnnnnn"
	pds.Block(members[150], newcomer)
	pds.Block(members[3], members[4]) // between members: not this add's business
	rs, err := src.Between(context.Background(), []string{newcomer}, members)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Blocker != members[150] || rs[0].Blocked != newcomer {
		t.Fatalf("relations = %+v, want member 150's block of the newcomer alone", rs)
	}
	// The newcomer asks about the 200 members, 30 at a time: 7 requests,
	// where Among over the 201 accounts makes 770.
	if av.Hits() != (200+29)/30 {
		t.Fatalf("%d requests for one newcomer to 200 members, want %d", av.Hits(), (200+29)/30)
	}
	if av.MaxOthers() > 30 {
		t.Fatalf("a request asked about %d others; the lexicon allows 30", av.MaxOthers())
	}
	// Cached: the same add again asks nothing.
	if _, err := src.Between(context.Background(), []string{newcomer}, members); err != nil || av.Hits() != 7 {
		t.Fatalf("second Between: %v, %d requests in all, want 7", err, av.Hits())
	}
}

func TestAppViewBetweenCoversNewcomersAmongThemselves(t *testing.T) {
	src, av, pds := newAppViewSource(t)
	dave := "did:plc:dddddddddddddddddddddddd"
	pds.Block(carol, bob)  // two newcomers
	pds.Block(alice, dave) // two members
	rs, err := src.Between(context.Background(), []string{bob, carol, bob}, []string{alice, dave, carol})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Blocker != carol || rs[0].Blocked != bob {
		t.Fatalf("relations = %+v, want carol's block of bob alone", rs)
	}
	// bob asks about carol, alice and dave; carol about alice and dave.
	if av.Hits() != 2 {
		t.Fatalf("%d requests, want 2", av.Hits())
	}
	// A newcomer the AppView does not know is asked about from the
	// members' side.
	av.SetUnknownActor("did:plc:eeeeeeeeeeeeeeeeeeeeeeee")
	pds.Block(alice, "did:plc:eeeeeeeeeeeeeeeeeeeeeeee")
	rs, err = src.Between(context.Background(), []string{"did:plc:eeeeeeeeeeeeeeeeeeeeeeee"}, []string{alice})
	if err != nil || len(rs) != 1 || rs[0].Blocker != alice {
		t.Fatalf("Between = %+v, %v; want alice's block of the newcomer", rs, err)
	}
	av.SetDown(true)
	if _, err := src.Between(context.Background(), []string{"did:plc:ffffffffffffffffffffffff"}, []string{alice}); !errors.Is(err, blocks.ErrUnavailable) {
		t.Fatalf("Between with the AppView down: %v, want ErrUnavailable", err)
	}
}

func TestAppViewAsksAboutAnUnknownAccountFromTheOtherSide(t *testing.T) {
	src, av, pds := newAppViewSource(t)
	// The AppView answers nothing for alice as the actor (the reference
	// AppView's answer for an actor it cannot resolve), so her pairs are
	// asked from bob's and carol's side.
	av.SetUnknownActor(alice)
	pds.Block(bob, alice)
	pds.Block(alice, carol)
	rs, err := src.Among(context.Background(), []string{alice, bob, carol})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("relations = %+v, want bob's block of alice and alice's of carol, read from bob's and carol's side", rs)
	}
}

func TestAppViewDownIsUnavailable(t *testing.T) {
	src, av, _ := newAppViewSource(t)
	av.SetDown(true)
	_, err := src.Among(context.Background(), []string{alice, bob})
	if !errors.Is(err, blocks.ErrUnavailable) {
		t.Fatalf("Among: err = %v, want ErrUnavailable", err)
	}
	// Callers log errors: they name no account (the request URL does).
	if strings.Contains(err.Error(), "did:") {
		t.Fatalf("the error names a DID: %v", err)
	}
	if _, _, err := src.Verify(context.Background(), alice, bob, ""); !errors.Is(err, blocks.ErrUnavailable) {
		t.Fatalf("Verify: err = %v, want ErrUnavailable", err)
	}
	// Unreachable: nothing listens.
	av.Close()
	if _, err := src.Among(context.Background(), []string{alice, carol}); !errors.Is(err, blocks.ErrUnavailable) {
		t.Fatalf("Among of a closed AppView: err = %v, want ErrUnavailable", err)
	}
}

func TestAppViewVerify(t *testing.T) {
	src, _, pds := newAppViewSource(t)
	ctx := context.Background()
	uri := pds.Block(alice, bob)
	if r, ok, err := src.Verify(ctx, alice, bob, uri); err != nil || !ok || r.URI != uri {
		t.Fatalf("Verify by URI = %+v, %v, %v; want found", r, ok, err)
	}
	if _, ok, err := src.Verify(ctx, alice, bob, ""); err != nil || !ok {
		t.Fatalf("Verify = %v, %v; want found", ok, err)
	}
	if _, ok, _ := src.Verify(ctx, bob, alice, ""); ok {
		t.Fatal("alice's block verified a block by bob")
	}
	if _, ok, _ := src.Verify(ctx, alice, bob, uri+"x"); ok {
		t.Fatal("another record verified")
	}
	// Among caches; Verify reads afresh and refreshes the cache.
	if rs, _ := src.Among(ctx, []string{alice, bob}); len(rs) != 1 {
		t.Fatalf("Among = %+v", rs)
	}
	pds.Unblock(alice, bob)
	if _, ok, err := src.Verify(ctx, alice, bob, ""); err != nil || ok {
		t.Fatalf("Verify after unblock = %v, %v; want not found (no stale cache)", ok, err)
	}
	if rs, _ := src.Among(ctx, []string{alice, bob}); len(rs) != 0 {
		t.Fatalf("Among after Verify saw the unblock: %+v", rs)
	}
}

func TestCombinedUnitesSourcesAndFailsIfEitherFails(t *testing.T) {
	pdsSrc, pds := newSource(t)
	av := atprototest.NewAppView(t, atprototest.NewPDS(t)) // indexes a different network view
	avSrc, err := blocks.NewAppView(blocks.AppViewConfig{BaseURL: av.URL})
	if err != nil {
		t.Fatal(err)
	}
	both := blocks.Combined{Primary: pdsSrc, Secondary: avSrc}
	ctx := context.Background()
	pds.Block(alice, bob)
	rs, err := both.Among(ctx, []string{alice, bob, carol})
	if err != nil || len(rs) != 1 || rs[0].CreatedAt.IsZero() {
		t.Fatalf("Among = %+v, %v; want alice's block from the PDS, dated", rs, err)
	}
	av.SetDown(true)
	// A pair neither has cached.
	if _, err := both.Among(ctx, []string{alice, "did:plc:dddddddddddddddddddddddd"}); !errors.Is(err, blocks.ErrUnavailable) {
		t.Fatalf("Among with the AppView down: %v, want ErrUnavailable", err)
	}
	if _, err := both.Between(ctx, []string{"did:plc:dddddddddddddddddddddddd"}, []string{alice}); !errors.Is(err, blocks.ErrUnavailable) {
		t.Fatalf("Between with the AppView down: %v, want ErrUnavailable", err)
	}
	av.SetDown(false)
	rs, err = both.Between(ctx, []string{bob}, []string{alice, carol})
	if err != nil || len(rs) != 1 || rs[0].Blocker != alice || rs[0].CreatedAt.IsZero() {
		t.Fatalf("Between = %+v, %v; want alice's block of bob from the PDS, dated", rs, err)
	}
	// Verify reads the PDS, which holds a record the moment it is made.
	if _, ok, err := both.Verify(ctx, alice, bob, ""); err != nil || !ok {
		t.Fatalf("Verify = %v, %v; want found on the PDS", ok, err)
	}
}

func TestValidateAppViewURL(t *testing.T) {
	for _, ok := range []string{"https://api.bsky.app", "https://api.bsky.app/", "http://127.0.0.1:2584", "http://localhost:3000", "http://[::1]:80", "https://appview.example.com/base"} {
		if _, err := blocks.ValidateAppViewURL(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "api.bsky.app", "http://api.bsky.app", "http://10.0.0.1", "ftp://api.bsky.app", "https://u:p@api.bsky.app", "https://api.bsky.app?x=1", "https://api.bsky.app#f", "https:///x"} {
		if _, err := blocks.ValidateAppViewURL(bad); err == nil || !strings.Contains(err.Error(), "AppView URL") {
			t.Errorf("%q accepted (err %v)", bad, err)
		}
	}
	if got, _ := blocks.ValidateAppViewURL("https://api.bsky.app/"); got != "https://api.bsky.app" {
		t.Errorf("trailing slash kept: %q", got)
	}
	if _, err := blocks.NewAppView(blocks.AppViewConfig{BaseURL: "http://api.bsky.app"}); err == nil {
		t.Error("NewAppView took plain http to a public host")
	}
}

func FuzzParseRelationships(f *testing.F) {
	f.Add([]byte(`{"actor":"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa","relationships":[{"$type":"app.bsky.graph.defs#relationship","did":"did:plc:bbbbbbbbbbbbbbbbbbbbbbbb","blocking":"at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.graph.block/3l1","blockedBy":"at://did:plc:bbbbbbbbbbbbbbbbbbbbbbbb/app.bsky.graph.block/3l2"},{"$type":"app.bsky.graph.defs#notFoundActor","actor":"did:plc:cccccccccccccccccccccccc","notFound":true}]}`))
	f.Add([]byte(`{"relationships":[]}`))
	f.Add([]byte(`{"actor":"did:plc:x","relationships":null}`))
	others := []string{bob, carol}
	f.Fuzz(func(t *testing.T, body []byte) {
		edges, known, err := blocks.ParseRelationships(alice, others, body)
		if err != nil {
			return
		}
		if !known && len(edges) != 0 {
			t.Fatalf("edges %+v for an unknown actor", edges)
		}
		for did, e := range edges {
			if did != bob && did != carol {
				t.Fatalf("an account not asked about: %q", did)
			}
			if e.BlockingURI != "" {
				if repo, _, err := blocks.ParseBlockURI(e.BlockingURI); err != nil || repo != alice || !e.Blocking {
					t.Fatalf("blocking URI %q is not a block record of the actor", e.BlockingURI)
				}
			}
			if e.BlockedByURI != "" {
				if repo, _, err := blocks.ParseBlockURI(e.BlockedByURI); err != nil || repo != did || !e.BlockedBy {
					t.Fatalf("blockedBy URI %q is not a block record of %s", e.BlockedByURI, did)
				}
			}
		}
	})
}

// The AppView source's default client follows no redirects: an AppView
// that redirects is unavailable, not a way to send the server elsewhere.
func TestAppViewFollowsNoRedirect(t *testing.T) {
	pds := atprototest.NewPDS(t)
	target := atprototest.NewAppView(t, pds)
	redirector := httptest.NewServer(http.RedirectHandler(target.URL+"/xrpc/"+blocks.RelationshipsNSID, http.StatusFound))
	t.Cleanup(redirector.Close)
	src, err := blocks.NewAppView(blocks.AppViewConfig{BaseURL: redirector.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Among(context.Background(), []string{alice, bob}); !errors.Is(err, blocks.ErrUnavailable) {
		t.Fatalf("Among through a redirect: %v, want ErrUnavailable", err)
	}
	if target.Hits() != 0 {
		t.Fatal("the redirect was followed")
	}
}
