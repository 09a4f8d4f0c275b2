package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"gopkg.in/yaml.v3"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

var builder gatewaytest.Builder

func TestMain(m *testing.M) {
	code := m.Run()
	builder.Cleanup()
	releases.Cleanup()
	os.Exit(code)
}

// featuresCaddyfile serves every feature a dashboard or alert measures:
// XRPC metrics, a rate limit on Redis, auth, delivery on the embedded
// SQLite store, event streams, Caddy's own errors, a scheduled backup, and
// an HTTPS site with a certificate from Caddy's internal issuer.
const featuresCaddyfile = `{
	admin 127.0.0.1:%[1]d
	skip_install_trust
	auto_https disable_redirects
	cairn {
		mode development
		plc_url %[3]s
		redis %[4]s
		backup {
			target %[7]s
			schedule hourly
			key_file %[8]s
		}
	}
}
https://localhost:%[9]d {
	tls internal
	respond "ok"
}
http://127.0.0.1:%[2]d {
	log {
		output stderr
		format filter {
			wrap json
			fields {
				request>uri cairn_redact uri
				request>headers cairn_redact headers
			}
		}
	}
	cairn_request_id
	route /xrpc/* {
		cairn_xrpc_metrics
		cairn_rate_limit {
			zone %[5]s {
				key  ip
				rate 3/1h
				match path /xrpc/limited
			}
		}
		cairn_auth {
			service_did did:web:gateway.test
			replay memory
			leeway 1s
		}
		cairn_delivery
		error 501
	}
	handle_errors {
		cairn_xrpc_errors
	}
}
http://127.0.0.1:%[6]d {
	cairn_metrics
}
`

const (
	aliceDID = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
	groupID  = "00112233445566778899aabbccddeeff"
)

// TestDashboardsAndAlertsMatchTheScrape runs the real gateway, drives
// traffic through every feature, scrapes /metrics, checks that no label
// value is an identity the traffic carried, and checks that every
// metric named in a dashboard panel, a dashboard variable or an alert rule
// is in that scrape with every label its query uses, and every label value
// it matches exactly. Queries are parsed with Prometheus's PromQL parser.
func TestDashboardsAndAlertsMatchTheScrape(t *testing.T) {
	scraped := driveOnce(t).families
	// The traffic carried a DID, a conversation ID and a client address:
	// none may be a label value, on the new store and retention series as
	// on the rest.
	for name, f := range scraped {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, secret := range []string{"did:", groupID, "127.0.0.1"} {
					if strings.Contains(l.GetValue(), secret) {
						t.Errorf("%s{%s=%q} carries %q", name, l.GetName(), l.GetValue(), secret)
					}
				}
			}
		}
	}

	queries := map[string]string{} // query → where it comes from
	for name, d := range loadDashboards(t) {
		for where, q := range d.queries() {
			queries[q] = name + ": " + where
		}
	}
	for where, q := range ruleQueries(t) {
		queries[q] = where
	}
	if len(queries) < 40 {
		t.Fatalf("only %d queries found in the dashboards and rules", len(queries))
	}
	for q, where := range queries {
		checkQuery(t, scraped, where, q)
	}
}

// driven is what one run of the gateway through every feature left: its
// scrape and its log output.
type driven struct {
	families map[string]*dto.MetricFamily
	logs     string
}

var (
	driveMu   sync.Mutex
	driveDone *driven
)

// driveOnce runs the gateway through every feature once per test binary,
// for the tests that read its scrape and its logs.
func driveOnce(t *testing.T) *driven {
	t.Helper()
	driveMu.Lock()
	defer driveMu.Unlock()
	if driveDone == nil {
		families, logs := scrapeAfterTraffic(t)
		driveDone = &driven{families: families, logs: logs}
	}
	return driveDone
}

// scrapeAfterTraffic starts the gateway, drives it, and returns the parsed
// scrape and the gateway's log output.
func scrapeAfterTraffic(t *testing.T) (map[string]*dto.MetricFamily, string) {
	client, _ := testenv.Redis(t)
	zone := testenv.RandomName("obs_")
	t.Cleanup(func() {
		ctx := context.Background()
		if keys := client.Keys(ctx, "cairn:rl:"+zone+"|*").Val(); len(keys) > 0 {
			client.Del(ctx, keys...)
		}
	})
	plc := atprototest.NewPLC(t)
	const (
		create = "blue.catbird.mls.createConvo"
		list   = "blue.catbird.mls.getConvos"
		stream = "blue.catbird.mls.streamConvoEvents"
		ticket = "blue.catbird.mls.getSubscriptionTicket"
		other  = "com.example.notServed"
	)
	admin, port, metricsPort, tlsPort := gatewaytest.FreePort(t), gatewaytest.FreePort(t), gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	dir := t.TempDir()
	backups, keyFile := filepath.Join(dir, "backups"), filepath.Join(dir, "backup.key")
	if err := os.WriteFile(keyFile, []byte(strings.Repeat("k", 64)), 0o600); err != nil {
		t.Fatal(err)
	}
	g := gatewaytest.Start(t, &builder, gatewaytest.Options{
		Caddyfile: fmt.Sprintf(featuresCaddyfile, admin, port, plc.URL, testenv.RedisURL(), zone, metricsPort, backups, keyFile, tlsPort),
		AdminPort: admin,
	})
	// Tokens issued before the gateway's replay memory began are refused.
	now := gatewaytest.FreshIat(time.Now(), time.Second)
	var tokens []atprototest.Token
	for _, lxm := range []string{create, list, stream, ticket, other} {
		tokens = append(tokens, atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: lxm, Iat: now, Exp: now + 60})
	}
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}}, tokens)
	plc.Publish(aliceDID, minted.Keys["alice"])

	base := fmt.Sprintf("http://127.0.0.1:%d/xrpc/", port)
	call := func(method, nsid, token, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, base+nsid, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, nsid, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	// Delivery on the store: a conversation created and listed.
	if s := call(http.MethodPost, create, minted.Tokens[0], `{"groupId":"`+groupID+`","cipherSuite":"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519","idempotencyKey":"obs-1"}`); s != http.StatusOK {
		t.Fatalf("createConvo: %d\n%s", s, g.Logs())
	}
	if s := call(http.MethodGet, list, minted.Tokens[1], ""); s != http.StatusOK {
		t.Fatalf("getConvos: %d", s)
	}
	// An auth failure, and a method nobody serves (a 5xx class: 501).
	if s := call(http.MethodGet, list, "", ""); s != http.StatusUnauthorized {
		t.Fatalf("getConvos without a token: %d", s)
	}
	if s := call(http.MethodGet, other, minted.Tokens[4], ""); s != http.StatusNotImplemented {
		t.Fatalf("a method nobody serves: %d", s)
	}
	// The rate limit: the fourth request in the zone is refused.
	for range 4 {
		call(http.MethodGet, "limited", "", "")
	}
	// An event stream, open while the scrape runs, and a ticket.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+stream, nil)
	req.Header.Set("Authorization", "Bearer "+minted.Tokens[2])
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("streamConvoEvents: %v %v", resp, err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if s := call(http.MethodPost, ticket, minted.Tokens[3], `{}`); s != http.StatusOK {
		t.Fatalf("getSubscriptionTicket: %d", s)
	}

	// The schedule backs up at start (the target is empty); the internal
	// issuer's certificate is cached at start. Scrape once both show.
	var families map[string]*dto.MetricFamily
	deadline := time.Now().Add(30 * time.Second)
	for {
		families = scrape(t, metricsPort)
		backedUp := gaugeValue(families, "cairn_backup_last_success_timestamp_seconds", "")
		certExpiry := gaugeValue(families, "cairn_tls_certificate_expiry_timestamp_seconds", "localhost")
		if backedUp > 0 && certExpiry > 0 {
			if now := float64(time.Now().Unix()); backedUp > now+1 || backedUp < now-120 || certExpiry < now {
				t.Errorf("last backup at %v, certificate expiry at %v; now is %v", backedUp, certExpiry, now)
			}
			if gaugeValue(families, "cairn_backup_last_size_bytes", "") <= 0 {
				t.Error("the last backup's size is not reported")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backup (%v) or certificate expiry (%v) in the scrape\n%s", backedUp, certExpiry, g.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return families, g.Logs()
}

func scrape(t *testing.T, port int) map[string]*dto.MetricFamily {
	t.Helper()
	mresp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer mresp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(mresp.Body)
	if err != nil {
		t.Fatalf("parse scrape: %v", err)
	}
	return families
}

// gaugeValue returns the value of the gauge name whose one label (if any)
// has value label; 0 if absent.
func gaugeValue(families map[string]*dto.MetricFamily, name, label string) float64 {
	for _, m := range families[name].GetMetric() {
		if len(m.GetLabel()) == 0 && label == "" || len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// targetLabels are added by Prometheus to every scraped series; the
// exporter does not write them.
var targetLabels = []string{"instance", "job"}

// checkQuery parses q and checks each selector against the scrape.
func checkQuery(t *testing.T, scraped map[string]*dto.MetricFamily, where, q string) {
	t.Helper()
	expr, err := parser.ParseExpr(grafanaVariables.Replace(q))
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", where, q, err)
		return
	}
	var aggregated []string
	parser.Inspect(expr, func(n parser.Node, path []parser.Node) error {
		switch n := n.(type) {
		case *parser.AggregateExpr:
			aggregated = append(aggregated, n.Grouping...)
		case *parser.VectorSelector:
			checkSelector(t, scraped, where, n)
		}
		return nil
	})
	// Every label a query groups by must be on some series it selects.
	var names []string
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	for _, l := range aggregated {
		if slices.Contains(targetLabels, l) || l == "le" {
			continue
		}
		found := false
		for _, name := range names {
			if _, ok := seriesLabels(scraped, name)[l]; ok {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: groups by %q, which none of %v has", where, l, names)
		}
	}
}

func checkSelector(t *testing.T, scraped map[string]*dto.MetricFamily, where string, vs *parser.VectorSelector) {
	t.Helper()
	if vs.Name == "up" {
		return // written by Prometheus for each target
	}
	have := seriesLabels(scraped, vs.Name)
	if have == nil {
		t.Errorf("%s: metric %s is not in the scrape", where, vs.Name)
		return
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel || slices.Contains(targetLabels, m.Name) {
			continue
		}
		values, ok := have[m.Name]
		if !ok {
			t.Errorf("%s: %s has no label %q", where, vs.Name, m.Name)
			continue
		}
		if m.Type != labels.MatchEqual || m.Value == "" {
			continue
		}
		// nsid values are the lexicon's methods; the traffic calls only a
		// few of them.
		if m.Name == "nsid" && xrpc.LabelFor(m.Value) == m.Value {
			continue
		}
		if !values[m.Value] {
			t.Errorf("%s: no %s series has %s=%q (seen %v)", where, vs.Name, m.Name, m.Value, values)
		}
	}
}

// seriesLabels returns, for the series name as a query names it (a
// histogram's _bucket, _sum and _count included), each label's values in
// the scrape; nil if there is no such series.
func seriesLabels(scraped map[string]*dto.MetricFamily, name string) map[string]map[string]bool {
	f, extra := scraped[name], ""
	if f == nil {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(name, suffix)
			if fam := scraped[base]; ok && fam != nil && (fam.GetType() == dto.MetricType_HISTOGRAM || fam.GetType() == dto.MetricType_SUMMARY) {
				f = fam
				if suffix == "_bucket" {
					extra = "le"
				}
			}
		}
	}
	if f == nil || len(f.GetMetric()) == 0 {
		return nil
	}
	out := map[string]map[string]bool{}
	add := func(k, v string) {
		if out[k] == nil {
			out[k] = map[string]bool{}
		}
		out[k][v] = true
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			add(l.GetName(), l.GetValue())
		}
		if extra != "" {
			add(extra, "")
		}
		if f.GetType() == dto.MetricType_SUMMARY && name == f.GetName() {
			for _, q := range m.GetSummary().GetQuantile() {
				add("quantile", strconv.FormatFloat(q.GetQuantile(), 'g', -1, 64))
			}
		}
	}
	return out
}

// grafanaVariables stands in for the dashboards' template variables, so
// their queries parse as PromQL.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*")

// dashboard is the part of Grafana's dashboard JSON model the test reads.
type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	Targets    []struct {
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // a collapsed row's panels
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// loadDashboards reads deploy/grafana/dashboards and checks each against
// Grafana's JSON model: a uid and title, schemaVersion set, panel ids
// unique, and every data source the templated ${datasource}.
func loadDashboards(t *testing.T) map[string]*dashboard {
	t.Helper()
	files, err := filepath.Glob("grafana/dashboards/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards (%v)", err)
	}
	out := map[string]*dashboard{}
	uids := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d := new(dashboard)
		if err := json.Unmarshal(raw, d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 {
			t.Errorf("%s: uid %q, title %q, schemaVersion %d: all must be set (schemaVersion 30 or later)", f, d.UID, d.Title, d.SchemaVersion)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share the uid %q", f, other, d.UID)
		}
		uids[d.UID] = f
		hasVar := false
		for _, v := range d.Templating.List {
			if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
				hasVar = true
			}
			if v.Datasource != nil {
				checkDatasource(t, f, "variable "+v.Name, v.Datasource)
			}
		}
		if !hasVar {
			t.Errorf("%s: no datasource variable of type prometheus", f)
		}
		ids := map[int]bool{}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				if p.ID == 0 || ids[p.ID] {
					t.Errorf("%s: panel %q has id %d, missing or not unique", f, p.Title, p.ID)
				}
				ids[p.ID] = true
				if p.Type != "row" && p.Type != "text" {
					checkDatasource(t, f, "panel "+p.Title, p.Datasource)
					if len(p.Targets) == 0 {
						t.Errorf("%s: panel %q has no query", f, p.Title)
					}
				}
				for _, tg := range p.Targets {
					checkDatasource(t, f, "panel "+p.Title, tg.Datasource)
				}
				walk(p.Panels)
			}
		}
		walk(d.Panels)
		out[filepath.Base(f)] = d
	}
	for _, want := range []string{"overview.json", "delivery.json", "realtime.json", "database.json", "system.json"} {
		if out[want] == nil {
			t.Errorf("dashboard %s is missing", want)
		}
	}
	return out
}

func checkDatasource(t *testing.T, file, what string, ds *datasource) {
	t.Helper()
	if ds == nil || ds.UID != "${datasource}" {
		t.Errorf("%s: %s's datasource %+v is not the templated ${datasource}", file, what, ds)
	}
}

// queries returns the dashboard's PromQL by where it is: every panel
// target, and the metric of each label_values variable.
func (d *dashboard) queries() map[string]string {
	out := map[string]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for i, tg := range p.Targets {
				if tg.Expr != "" {
					out[fmt.Sprintf("panel %q target %d", p.Title, i)] = tg.Expr
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		var q struct{ Query string }
		if json.Unmarshal(v.Query, &q) != nil {
			continue
		}
		// label_values(<selector>, <label>): the selector is PromQL.
		if inner, ok := strings.CutPrefix(q.Query, "label_values("); ok {
			sel, _, _ := strings.Cut(inner, ",")
			out["variable "+v.Name] = sel
		}
	}
	return out
}

// ruleQueries returns every alerting rule's expression by its alert name.
func ruleQueries(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("prometheus/rules/cairn.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	runbook, err := os.ReadFile("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("alert %s lacks a severity or a summary", r.Alert)
			}
			anchor := strings.ToLower(r.Alert)
			if !strings.HasSuffix(r.Annotations["runbook_url"], "docs/runbook.md#"+anchor) || !strings.Contains(string(runbook), "\n## "+r.Alert+"\n") {
				t.Errorf("alert %s: runbook_url %q does not lead to its section in docs/runbook.md", r.Alert, r.Annotations["runbook_url"])
			}
		}
	}
	return out
}
