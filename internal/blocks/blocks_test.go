package blocks_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/blocks"
)

const (
	alice = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	bob   = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
	carol = "did:plc:cccccccccccccccccccccccc"
)

// newSource returns a Source reading from a PDS stand-in through a real
// resolver and a local PLC directory.
func newSource(t *testing.T) (*blocks.Source, *atprototest.PDS) {
	t.Helper()
	plc := atprototest.NewPLC(t)
	pds := atprototest.NewPDS(t)
	for _, d := range []string{alice, bob, carol} {
		plc.PublishWithPDS(t, d, pds.URL)
	}
	res, err := atpauth.NewResolver(atpauth.ResolverConfig{PLCURL: plc.URL, AllowHTTP: true, AllowedHosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	src, err := blocks.New(blocks.Config{Locator: blocks.ResolverLocator{Resolver: res}, Client: res.GuardedClient()})
	if err != nil {
		t.Fatal(err)
	}
	return src, pds
}

func TestAmongFindsBlocksBothWaysAndCaches(t *testing.T) {
	src, pds := newSource(t)
	ctx := context.Background()
	pds.Block(alice, bob)
	pds.Block(carol, "did:plc:dddddddddddddddddddddddd") // outside the set
	rs, err := src.Among(ctx, []string{alice, bob, carol})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Blocker != alice || rs[0].Blocked != bob || rs[0].URI == "" {
		t.Fatalf("relations = %+v, want alice blocks bob", rs)
	}
	hits := pds.Hits()
	if _, err := src.Among(ctx, []string{bob, alice}); err != nil {
		t.Fatal(err)
	}
	if pds.Hits() != hits {
		t.Fatalf("a second read within the TTL hit the PDS %d times", pds.Hits()-hits)
	}
}

func TestBetweenLeavesOutPairsOfExistingMembers(t *testing.T) {
	src, pds := newSource(t)
	ctx := context.Background()
	pds.Block(alice, bob)   // two existing members
	pds.Block(carol, alice) // the newcomer blocks a member
	rs, err := src.Between(ctx, []string{carol}, []string{alice, bob})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Blocker != carol || rs[0].Blocked != alice {
		t.Fatalf("relations = %+v, want carol's block of alice alone", rs)
	}
	rs, err = src.Between(ctx, []string{bob}, []string{alice, carol})
	if err != nil || len(rs) != 1 || rs[0].Blocker != alice || rs[0].Blocked != bob {
		t.Fatalf("Between = %+v, %v; want a member's block of the newcomer, read from the member's repository", rs, err)
	}
}

func TestAmongPagesThroughManyRecords(t *testing.T) {
	src, pds := newSource(t)
	pds.Block(bob, carol)
	for i := 0; i < 150; i++ {
		pds.Block(bob, "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz")
	}
	rs, err := src.Among(context.Background(), []string{bob, carol})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].Blocked != carol {
		t.Fatalf("relations = %+v, want the oldest block on the second page", rs)
	}
}

func TestSourceDownIsUnavailable(t *testing.T) {
	src, pds := newSource(t)
	pds.SetDown(true)
	_, err := src.Among(context.Background(), []string{alice, bob})
	if !errors.Is(err, blocks.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestVerify(t *testing.T) {
	src, pds := newSource(t)
	ctx := context.Background()
	uri := pds.Block(alice, bob)
	if _, ok, err := src.Verify(ctx, alice, bob, uri); err != nil || !ok {
		t.Fatalf("Verify by URI = %v, %v; want found", ok, err)
	}
	if _, ok, err := src.Verify(ctx, alice, bob, ""); err != nil || !ok {
		t.Fatalf("Verify by listing = %v, %v; want found", ok, err)
	}
	if _, ok, _ := src.Verify(ctx, bob, alice, uri); ok {
		t.Fatal("a URI in alice's repository verified a block by bob")
	}
	if _, ok, _ := src.Verify(ctx, alice, carol, uri); ok {
		t.Fatal("a block of bob verified a block of carol")
	}
	pds.Unblock(alice, bob)
	if _, ok, err := src.Verify(ctx, alice, bob, uri); err != nil || ok {
		t.Fatalf("Verify of a deleted record = %v, %v; want not found", ok, err)
	}
	if _, ok, err := src.Verify(ctx, alice, bob, ""); err != nil || ok {
		t.Fatalf("Verify after unblock = %v, %v; want not found (no stale cache)", ok, err)
	}
}

func FuzzParseListRecords(f *testing.F) {
	f.Add([]byte(`{"cursor":"3l1","records":[{"uri":"at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.graph.block/3l1","cid":"x","value":{"$type":"app.bsky.graph.block","subject":"did:plc:b","createdAt":"2024-01-01T00:00:00Z"}}]}`))
	f.Add([]byte(`{"records":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := blocks.ParseListRecords(alice, body)
		if err != nil {
			return
		}
		for _, r := range p.Blocks {
			if r.Blocker != alice {
				t.Fatalf("a record of another repository was accepted: %+v", r)
			}
		}
		_, _ = blocks.ParseRecord(alice, body)
	})
}

func FuzzParseBlockURI(f *testing.F) {
	f.Add("at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.graph.block/3l1")
	f.Add("at://did:web:x/app.bsky.graph.block/..")
	f.Fuzz(func(t *testing.T, uri string) {
		repo, rkey, err := blocks.ParseBlockURI(uri)
		if err == nil && (repo == "" || rkey == "" || "at://"+repo+"/"+blocks.Collection+"/"+rkey != uri) {
			t.Fatalf("ParseBlockURI(%q) = %q, %q", uri, repo, rkey)
		}
	})
}

func TestAccountWithoutPDSHasNoBlocks(t *testing.T) {
	src, pds := newSource(t)
	pds.Block(alice, bob)
	// An unknown did:plc (404 at the directory) and a malformed one.
	rs, err := src.Among(context.Background(), []string{alice, bob, "did:plc:eeeeeeeeeeeeeeeeeeeeeeee", "did:plc:nope"})
	if err != nil || len(rs) != 1 {
		t.Fatalf("Among = %+v, %v; want alice's block and no error", rs, err)
	}
}
