package caddymodules_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStorageModuleValidatesWithoutSideEffects: `caddy validate` accepts
// the storage with its database unreachable (Provision connects to
// nothing) and leaves no key file behind; bad settings are refused with a
// message naming them.
func TestStorageModuleValidatesWithoutSideEffects(t *testing.T) {
	const site = "\nhttp://127.0.0.1:1 {\n\trespond ok\n}\n"
	home := t.TempDir()
	dir := filepath.Join(home, "cfg")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out, ok := validate(t, "{\n\tstorage cairn_postgres {\n\t\turl postgres://nobody@127.0.0.1:1/none?connect_timeout=1\n\t}\n}\n"+site, "XDG_DATA_HOME="+home)
	if !ok {
		t.Fatalf("validate refused a storage whose database is down; Provision must not connect:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(home, "caddy", "cairn", "certstore.key")); !os.IsNotExist(err) {
		t.Fatalf("validate generated a certificate storage key (%v)", err)
	}
	out, ok = validate(t, "{\n\tstorage cairn_postgres\n}\n"+site, "CAIRN_DATABASE_URL=postgres://nobody@127.0.0.1:1/none")
	if !ok {
		t.Fatalf("validate refused the storage with its URL from CAIRN_DATABASE_URL:\n%s", out)
	}
	for _, tc := range []struct{ name, storage, want string }{
		{"no database", "storage cairn_postgres", "CAIRN_DATABASE_URL"},
		{"short key", "storage cairn_postgres {\n\t\turl postgres://x@127.0.0.1/db\n\t\tkey abcd\n\t}", "64 hexadecimal characters"},
		{"missing key file", "storage cairn_postgres {\n\t\turl postgres://x@127.0.0.1/db\n\t\tkey_file /nonexistent/cert.key\n\t}", "key_file"},
		{"short lock ttl", "storage cairn_postgres {\n\t\turl postgres://x@127.0.0.1/db\n\t\tlock_ttl 1s\n\t}", "at least 3s"},
		{"unknown option", "storage cairn_postgres {\n\t\ttable certs\n\t}", `unknown storage cairn_postgres option \"table\"`},
		{"key and key file", "storage cairn_postgres {\n\t\tkey a\n\t\tkey_file b\n\t}", "not both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := validate(t, "{\n\t"+tc.storage+"\n}\n"+site, "CAIRN_DATABASE_URL=", "CAIRN_CERT_KEY=")
			if ok || !strings.Contains(out, tc.want) {
				t.Fatalf("want a refusal naming %q, got (accepted %v):\n%s", tc.want, ok, out)
			}
		})
	}
}

// TestOnDemandTLSNeedsAskInProduction: on-demand TLS without an ask
// endpoint is refused in production, naming the option; with ask, or in
// development, it is accepted.
func TestOnDemandTLSNeedsAskInProduction(t *testing.T) {
	const site = "\nhttps://chat.example {\n\ttls {\n\t\ton_demand\n\t}\n\trespond ok\n}\n"
	out, ok := validate(t, "{\n\tcairn {\n\t\tmode production\n\t}\n}\n"+site)
	if ok || !strings.Contains(out, "on_demand_tls { ask") {
		t.Fatalf("production accepted on-demand TLS without ask, or did not name the option:\n%s", out)
	}
	if out, ok := validate(t, "{\n\ton_demand_tls {\n\t\task http://127.0.0.1:9/allowed\n\t}\n\tcairn {\n\t\tmode production\n\t}\n}\n"+site); !ok {
		t.Fatalf("production refused on-demand TLS with an ask endpoint:\n%s", out)
	}
	if out, ok := validate(t, "{\n\tcairn {\n\t\tmode development\n\t}\n}\n"+site); !ok {
		t.Fatalf("development refused on-demand TLS for a named site:\n%s", out)
	}
	if out, ok := validate(t, "{\n\tcairn {\n\t\tmode production\n\t}\n}\nhttps://chat.example {\n\trespond ok\n}\n"); !ok {
		t.Fatalf("production refused a site without on-demand TLS:\n%s", out)
	}
}
