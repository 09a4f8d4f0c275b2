package e2etest

import (
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
)

// moderationSteps are the steps of issue 14's moderation scenario
// (test/mls/moderation.mjs), in order. Each asserts what it names inside
// the harness: the sealed report is decrypted by both admins' clients and
// by no other key, and the server's copy equals the submitted bytes and
// holds neither the reporter nor the text; erin's external commit is
// applied by alice and the two exchange a message; the chat request's held
// message is opened by the recipient's client only, and the conversation
// it becomes carries messages both ways; an account alice removed is
// refused (403 Unauthorized) the GroupInfo and its real external commit by
// an invite that does not name it, without using the invite, while dave,
// who left, returns through that invite and an invite naming carol admits
// her, each then decrypting alice's next message.
var moderationSteps = []string{
	"create a group of four with one commit and a Welcome",
	"an admin promotes a member; the admins publish report keys in the group",
	"a member files a sealed report that only the admins can open",
	"a non-admin's removal is refused",
	"a block between two accounts stops their being added together",
	"an invite is created, redeemed by external commit and revoked",
	"a chat request is sent, accepted and becomes a conversation where the two exchange a message",
	"a removed account cannot come back through an untargeted invite; a leaver and a named invitee can",
}

// TestMLSModerationEndToEnd runs the moderation scenario with real ts-mls
// clients against a real gateway, on SQLite and on PostgreSQL.
func TestMLSModerationEndToEnd(t *testing.T) {
	for _, st := range []struct {
		name  string
		store func(t *testing.T) mlsStore
	}{{"sqlite", sqliteStore}, {"postgres", postgresStore}} {
		t.Run(st.name, func(t *testing.T) {
			requireMLSHarness(t)
			plc := atprototest.NewPLC(t)
			// frank blocks bob in the PDS stand-in their DID documents
			// name; the gateway reads it through its resolver (plain HTTP
			// on loopback, allowed in development mode).
			pds := atprototest.NewPDS(t)
			caddyfile := strings.Replace(mlsCaddyfile, "plc_url {PLC}", "plc_url {PLC}\n\t\tdid_web_allow_http\n\t\tresolver_allow_hosts 127.0.0.1", 1)
			g, base := startMLSGateway(t, caddyfile, plc, st.store(t),
				[]string{"CAIRN_LOG_HASH_KEY=" + strings.Repeat("e", 40), "CAIRN_AUDIT_KEY=" + strings.Repeat("a", 40)})
			runHarnessScript(t, harnessScript{name: "moderation.mjs", members: 6, steps: moderationSteps,
				pds: pds, seed: func(did map[string]string) { pds.Block(did["frank"], did["bob"]) }},
				plc, base, g, nil)
		})
	}
}

// TestMLSModerationEndToEndWithAppView runs the same scenario with the
// gateway reading blocks from an AppView (block_appview): the stand-in
// answers app.bsky.graph.getRelationships from the PDS stand-in's records,
// as an AppView indexes the network, and the gateway never asks the PDS.
func TestMLSModerationEndToEndWithAppView(t *testing.T) {
	requireMLSHarness(t)
	plc := atprototest.NewPLC(t)
	pds := atprototest.NewPDS(t)
	av := atprototest.NewAppView(t, pds)
	caddyfile := strings.Replace(mlsCaddyfile, "\t\tcairn_delivery {\n", "\t\tcairn_delivery {\n\t\t\tblock_appview "+av.URL+"\n", 1)
	if caddyfile == mlsCaddyfile {
		t.Fatal("no cairn_delivery block to configure")
	}
	g, base := startMLSGateway(t, caddyfile, plc, sqliteStore(t),
		[]string{"CAIRN_LOG_HASH_KEY=" + strings.Repeat("e", 40), "CAIRN_AUDIT_KEY=" + strings.Repeat("a", 40)})
	runHarnessScript(t, harnessScript{name: "moderation.mjs", members: 6, steps: moderationSteps,
		pds: pds, seed: func(did map[string]string) { pds.Block(did["frank"], did["bob"]) }},
		plc, base, g, nil)
	if av.Hits() == 0 {
		t.Fatal("the gateway never asked the AppView")
	}
	if pds.Hits() != 0 {
		t.Fatalf("the gateway asked the PDS %d times with block_appview set", pds.Hits())
	}
}
