package caddymodules

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// caddyfileParsers is every Caddyfile parser this package registers: the
// cairn global option, each handler directive and the log filter. Each
// returns the value it parsed, which must encode as JSON config.
var caddyfileParsers = []struct {
	name  string
	parse func(*caddyfile.Dispenser) (any, error)
}{
	{"cairn", func(d *caddyfile.Dispenser) (any, error) {
		v, err := parseAppOption(d, nil)
		if err != nil {
			return nil, err
		}
		return v.(httpcaddyfile.App).Value, nil
	}},
	{"cairn_auth", unmarshalInto[Auth]},
	{"cairn_delivery", unmarshalInto[Delivery]},
	{"cairn_edge", unmarshalInto[Edge]},
	{"cairn_metrics", unmarshalInto[Metrics]},
	{"cairn_operator_auth", unmarshalInto[OperatorAuth]},
	{"cairn_operator_api", unmarshalInto[OperatorAPI]},
	{"cairn_did_document", unmarshalInto[DIDDocument]},
	{"cairn_rate_limit", unmarshalInto[RateLimit]},
	{"cairn_request_id", unmarshalInto[RequestID]},
	{"cairn_security_headers", unmarshalInto[SecurityHeaders]},
	{"cairn_xrpc_errors", unmarshalInto[XRPCErrors]},
	{"cairn_xrpc_metrics", unmarshalInto[XRPCMetrics]},
	{"cairn_xrpc_proxy", unmarshalInto[XRPCProxy]},
	{"cairn_redact", unmarshalInto[RedactFilter]},
	{"cairn_web", unmarshalInto[Web]},
}

func unmarshalInto[T any, PT interface {
	*T
	caddyfile.Unmarshaler
}](d *caddyfile.Dispenser) (any, error) {
	v := PT(new(T))
	err := v.UnmarshalCaddyfile(d)
	return v, err
}

// FuzzCaddyfile: no Caddyfile text makes a cairn directive's parser, or
// the cairn global option's, panic, and whatever one accepts encodes as
// JSON config. which picks the parser; the input is what follows the
// directive's name, as Caddy hands it over.
func FuzzCaddyfile(f *testing.F) {
	seeds := map[string][]string{
		"cairn": {
			"{\n mode development\n data_dir /tmp/x\n log_level debug\n log_hash_key abc\n redis redis://127.0.0.1:6379/0\n log_identities\n plc_url http://127.0.0.1:1\n did_web_allow_http\n resolver_allow_hosts a b\n}",
			"{\n database postgres://x@127.0.0.1/db\n key_packages_per_device 50\n retention {\n  messages 14d\n  events 2d\n  interval 5m\n }\n streams {\n  max_per_did 3\n  max 50000\n  notifier redis\n }\n}",
			"{\n redis\n database\n}", "{\n retention {\n  messages\n }\n}", "{\n streams {\n  notifier {\n  }\n }\n}",
			"{\n audit {\n  key_file /run/secrets/audit\n  ip truncate\n  retention 30d\n }\n}", "{\n audit {\n  retention\n }\n}",
			"{\n identity {\n  key_file /var/lib/cairn/keys.json\n  grace 7d\n  refresh 10s\n }\n}", "{\n identity {\n  grace\n }\n}",
		},
		"cairn_auth":          {"{\n service_did did:web:chat.example\n plc_url https://plc.directory\n leeway 3s\n max_token_lifetime 2m\n replay memory\n lxm_optional\n}", "{\n leeway -1s\n}"},
		"cairn_delivery":      {"{\n max_message_size 1MiB\n max_members 50\n max_devices 5\n max_key_package_lifetime 30d\n message_ttl 7d\n websocket_endpoint wss://chat.example.com/xrpc/blue.catbird.mls.subscribeConvoEvents\n require_opt_in\n block_checks off\n block_source_unavailable allow\n block_cache_ttl 30s\n block_source both\n block_appview https://api.bsky.app\n chat_request_previews\n chat_request_sender_rate 20/1h\n chat_request_recipient_rate 30/1h\n}", "{\n max_message_size 2GiB\n}", "{\n proof_of_work {\n  difficulty 16\n  methods blue.catbird.mls.createConvo\n  first_key_package off\n  new_account +4\n  high_churn +2\n  max_age 5m\n  max_clock_skew 30s\n  replay redis\n }\n}"},
		"cairn_metrics":       {"{\n bearer_token sha256:00\n}", ""},
		"cairn_operator_auth": {"{\n oidc {\n  issuer https://sso.example/realms/ops\n  audience cairn\n  role_claim realm_access.roles\n  required_role admin\n  allow_http_issuer\n }\n static_token_hash sha256:00\n static_token_name ops\n}"},
		"cairn_operator_api":  {"", "{\n}"},
		"cairn_did_document":  {"{\n service_did did:web:chat.example\n endpoint https://chat.example\n}", "{\n service_did\n}"},
		"cairn_rate_limit": {
			"{\n preset api\n preset edge\n backend memory\n on_backend_error deny\n zone search {\n  key ip\n  rate 30/1m\n  burst 3\n  match nsid app.bsky.actor.searchActors\n  match method GET\n  otherwise\n }\n}",
			"{\n zone z {\n burst 99999999999999999999\n }\n}",
			"{\n admitted_headers off\n zone z {\n  key ip\n  rate 1/1s\n }\n}",
			"{\n signals {\n  new_account 7d\n  forget 30d\n  churn 20/1h\n  churn_methods blue.catbird.mls.*\n  large_group 500\n }\n zone z {\n  key did\n  rate 10/1m\n  when new_account rate 2/1m burst 1\n  when large_group rate 1/1m\n }\n}",
		},
		"cairn_edge":             {"{\n headers {\n  -X-Frame-Options\n  X-Extra value\n }\n rate_limit {\n  preset edge\n  zone z {\n   key ip\n   rate 3/1s\n  }\n }\n}", "{\n rate_limit\n rate_limit\n}"},
		"cairn_request_id":       {""},
		"cairn_security_headers": {"{\n -X-Frame-Options\n X-Extra value\n}"},
		"cairn_xrpc_errors":      {""},
		"cairn_xrpc_metrics":     {""},
		"cairn_xrpc_proxy":       {"{\n upstream http://127.0.0.1:1\n}"},
		"cairn_redact":           {"uri {\n keep limit status\n}", "headers {\n keep Content-Type\n ips truncate\n}", "ip {\n ips\n}", "{\n query convoId dids did cursor ticket\n}"},
		"cairn_web": {
			"{\n root /srv/client\n config {\n  name \"A & B\"\n  domain chat.example\n  service_did did:web:chat.example\n  branding {\n   accent_color #112233\n   tagline hi\n  }\n  feature realtime off\n  limit max_members 50\n }\n download \"Cairn\" {\n  os linux\n  arch amd64\n  url https://dl.example/c.tar.gz\n  sha256 00\n  size 10\n }\n}",
			"{\n config {\n  limit x 9999999999999999999999\n }\n}",
		},
	}
	for i, p := range caddyfileParsers {
		for _, s := range seeds[p.name] {
			f.Add(uint8(i), s)
		}
		f.Add(uint8(i), "arg")
	}
	f.Fuzz(func(t *testing.T, which uint8, input string) {
		p := caddyfileParsers[int(which)%len(caddyfileParsers)]
		tokens, err := caddyfile.Tokenize([]byte(p.name+" "+input), "Caddyfile")
		if err != nil {
			return // the lexer refuses it before any directive sees it
		}
		v, err := p.parse(caddyfile.NewDispenser(tokens))
		if err != nil {
			return
		}
		if _, err := json.Marshal(v); err != nil {
			t.Fatalf("%s %q: parsed %+v, which does not encode: %v", p.name, input, v, err)
		}
	})
}

// TestCaddyfileParsersListed keeps caddyfileParsers, and so FuzzCaddyfile,
// covering every directive, global option and log filter this package's
// source registers.
func TestCaddyfileParsersListed(t *testing.T) {
	listed := map[string]bool{}
	for _, p := range caddyfileParsers {
		listed[p.name] = true
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	register := regexp.MustCompile(`Register(?:HandlerDirective|GlobalOption)\("([a-z_]+)"|ID: +"caddy\.logging\.encoders\.filter\.([a-z_]+)"`)
	found := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range register.FindAllStringSubmatch(string(src), -1) {
			found++
			if d := m[1] + m[2]; !listed[d] {
				t.Errorf("%s registers %s, which caddyfileParsers lacks, so FuzzCaddyfile does not cover it", name, d)
			}
		}
	}
	if found != len(caddyfileParsers) {
		t.Errorf("found %d registrations in the source, caddyfileParsers has %d entries", found, len(caddyfileParsers))
	}
}
