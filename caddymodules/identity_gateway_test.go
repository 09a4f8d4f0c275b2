package caddymodules_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/servicekey"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

const identityCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	cairn {
		database %s
		identity {
			key_file %s
			refresh  500ms
		}
	}
}
http://127.0.0.1:{PORT} {
	cairn_did_document {
		service_did did:web:chat.example.com
	}
	respond 404
}
http://127.0.0.1:{METRICS} {
	route /operator/v1/* {
		cairn_operator_auth {
			static_token_hash %s
			static_token_name ops-team
		}
		cairn_operator_api
	}
}
`

// verifyDID runs test/atproto/verify-did.mjs: the reference atproto
// libraries parse doc, find the #atproto_mls service and the signing key,
// verify jwt, and verify each signature under its verification method.
func verifyDID(t *testing.T, req map[string]any) (map[string]any, error) {
	t.Helper()
	atprototest.RequireHarness(t)
	in, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "verify-did.mjs")
	cmd.Dir = atprototest.HarnessDir()
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, stderr.String())
	}
	var res map[string]any
	return res, json.Unmarshal(out, &res)
}

// TestServiceIdentityClusterRotation runs two nodes sharing one database
// and one key file: both serve the same did:web document, which the
// reference atproto libraries parse and verify the service's tokens
// against; a rotation through one node's operator API is audited and seen
// by the other, and during the grace period both keys are published and
// verify.
func TestServiceIdentityClusterRotation(t *testing.T) {
	token, hash := operatorToken(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "shared", "service-keys.json")
	text := fmt.Sprintf(identityCaddyfile, testenv.Postgres(t), keyFile, hash)
	env := []string{"CAIRN_AUDIT_KEY=" + strings.Repeat("a", 40), "CAIRN_LOG_HASH_KEY=" + strings.Repeat("l", 40)}
	a := startPlain(t, text, gatewaytest.Options{Env: env})
	b := startPlain(t, text, gatewaytest.Options{Env: env})

	doc := func(g *plainGateway) servicekey.Document {
		t.Helper()
		resp, body := do(t, http.MethodGet, g.url("/.well-known/did.json"), nil)
		var d servicekey.Document
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal([]byte(body), &d) != nil {
			t.Fatalf("did.json: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		return d
	}
	da, db := doc(a), doc(b)
	if len(da.VerificationMethod) != 1 || fmt.Sprint(da) != fmt.Sprint(db) {
		t.Fatalf("the nodes serve different documents:\n%+v\n%+v", da, db)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v (want mode 0600)", keyFile, err)
	}
	if resp, _ := do(t, http.MethodPost, a.url("/.well-known/did.json"), nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST did.json: %d", resp.StatusCode)
	}

	// Sign with the first key (as the service would, through its signer),
	// then rotate through node A's operator API.
	keys, err := servicekey.Open(keyFile, servicekey.Options{})
	testenv.Must(t, err, "open the keyring")
	oldData := []byte("signed with the first key")
	oldSig, oldID, err := keys.Sign(oldData)
	testenv.Must(t, err, "sign")

	opEnv := []string{fmt.Sprintf("CAIRN_OPERATOR_URL=http://127.0.0.1:%d", a.metrics), "CAIRN_OPERATOR_TOKEN=" + token}
	if r := runOperatorCLI(t, a.Home, opEnv, "rotate-key", "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "dry run") {
		t.Fatalf("rotate-key --dry-run: %+v", r)
	}
	if r := runOperatorCLI(t, a.Home, opEnv, "rotate-key"); r.code != 1 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("rotate-key off a terminal without --yes: %+v", r)
	}
	// On a terminal it asks; "n" changes nothing.
	if shown, code := onTerminal(t, opEnv, "[y/N] ", "n", "rotate-key"); code != 1 || !strings.Contains(shown, "not confirmed") || len(doc(a).VerificationMethod) != 1 {
		t.Fatalf("rotate-key answered n: exit %d, showed %q", code, shown)
	}
	r := runOperatorCLI(t, a.Home, opEnv, "rotate-key", "--yes", "--json")
	if r.code != 0 {
		t.Fatalf("rotate-key: %+v", r)
	}
	var rot servicekey.Rotation
	for _, e := range r.events(t) {
		if e["message_type"] == "summary" {
			raw, _ := json.Marshal(e["rotation"])
			testenv.Must(t, json.Unmarshal(raw, &rot), "rotation")
		}
	}
	if rot.Retired.ID != oldID || rot.New.ID == oldID || rot.Retired.ExpiresAt == nil ||
		time.Until(*rot.Retired.ExpiresAt) < 6*24*time.Hour {
		t.Fatalf("rotation %+v: want %s retired for 7 days", rot, oldID)
	}

	// Node B sees the rotation within its refresh interval.
	var got servicekey.Document
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if got = doc(b); len(got.VerificationMethod) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B still publishes %+v", got.VerificationMethod)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(doc(a)) {
		t.Errorf("after the rotation the nodes serve different documents")
	}

	// The reference libraries: the document parses, the service entry is
	// there, a token signed with the new key verifies under #atproto, and
	// the old key's signature under its grace-period method.
	testenv.Must(t, keys.Refresh(), "refresh")
	jwt, err := servicekey.Signer{DID: "did:web:chat.example.com", Keys: keys}.SignServiceAuth("did:web:pds.example.com", "app.bsky.graph.getBlocks", time.Minute)
	testenv.Must(t, err, "sign a token")
	newData := []byte("signed with the new key")
	newSig, newID, err := keys.Sign(newData)
	testenv.Must(t, err, "sign")
	if newID != rot.New.ID {
		t.Fatalf("after the rotation %s signs, want %s", newID, rot.New.ID)
	}
	res, err := verifyDID(t, map[string]any{"doc": got, "did": "did:web:chat.example.com", "endpoint": "https://chat.example.com",
		"jwt": jwt, "aud": "did:web:pds.example.com", "lxm": "app.bsky.graph.getBlocks",
		"signatures": []map[string]string{
			{"fragment": "#atproto", "data": base64.StdEncoding.EncodeToString(newData), "sig": base64.StdEncoding.EncodeToString(newSig)},
			{"fragment": "#atproto_" + oldID, "data": base64.StdEncoding.EncodeToString(oldData), "sig": base64.StdEncoding.EncodeToString(oldSig)},
		}})
	if err != nil || res["iss"] != "did:web:chat.example.com" || len(res["verified"].([]any)) != 2 {
		t.Fatalf("atproto verification: %v %v", res, err)
	}
	// And the old key's signature does not pass for the new key.
	if _, err := verifyDID(t, map[string]any{"doc": got, "did": "did:web:chat.example.com", "endpoint": "https://chat.example.com",
		"jwt": jwt, "aud": "did:web:pds.example.com", "lxm": "app.bsky.graph.getBlocks",
		"signatures": []map[string]string{{"fragment": "#atproto", "data": base64.StdEncoding.EncodeToString(oldData), "sig": base64.StdEncoding.EncodeToString(oldSig)}}}); err == nil {
		t.Fatal("the old key's signature verified under the new key")
	}

	// Audited, with the operator and the key ids.
	r = runOperatorCLI(t, b.Home, []string{fmt.Sprintf("CAIRN_OPERATOR_URL=http://127.0.0.1:%d", b.metrics), "CAIRN_OPERATOR_TOKEN=" + token},
		"audit", "--type", "key.rotate", "--json")
	var rows []map[string]any
	for _, e := range r.events(t) {
		if e["message_type"] == "audit_event" {
			rows = append(rows, e)
		}
	}
	if len(rows) != 1 || rows[0]["actor"] != "ops-team" || rows[0]["metadata"].(map[string]any)["key_id"] != rot.New.ID {
		t.Fatalf("key.rotate rows: %v", rows)
	}
	if r := runOperatorCLI(t, b.Home, opEnv, "rotate-key", "list"); r.code != 0 || !strings.Contains(r.stdout, rot.New.ID) || !strings.Contains(r.stdout, oldID) {
		t.Errorf("rotate-key list: %+v", r)
	}
}
