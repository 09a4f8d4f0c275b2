// Package metrics defines cairn's Prometheus collectors.
//
// Every label here takes values from a bounded set: known XRPC method NSIDs
// (anything else is "other"), HTTP status classes, rate-limit zone names from
// the operator's configuration, fixed outcome and backend names. No label is
// ever a DID, conversation ID, IP address or any other identity; the test in
// this package and the scrape test in caddymodules guard that.
//
// It does not serve the metrics; the cairn_metrics handler does.
package metrics

import (
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// Namespace prefixes every cairn metric name.
const Namespace = "cairn"

// Metrics holds cairn's collectors and the registry they are registered in.
// It is created once per process and kept across config reloads, so counters
// do not reset when an operator reloads.
type Metrics struct {
	// Registry holds every collector below. It does not hold Go runtime or
	// process collectors; Caddy's registry already has those.
	Registry *prometheus.Registry

	xrpcRequests  *prometheus.CounterVec
	xrpcDuration  *prometheus.HistogramVec
	xrpcUnavail   prometheus.Counter
	purged        *prometheus.CounterVec
	pools         *storePools
	rateDecisions *prometheus.CounterVec
	adaptive      *prometheus.CounterVec
	powChecks     *prometheus.CounterVec
	backendErrors *prometheus.CounterVec
	backendState  *prometheus.GaugeVec
	authOutcomes  *prometheus.CounterVec
	ops           operations

	// Realtime holds the event-stream collectors.
	Realtime *Realtime
	// Push counts push wake-ups.
	Push *Push

	// xrpcSeries maps every known NSID to its label children, resolved on
	// first use; it is built in New and only read after that.
	xrpcSeries map[string]*xrpcSeries
	xrpcOther  *xrpcSeries
}

// xrpcSeries caches the children of one NSID label value: looking a child
// up by label values hashes the labels on every call, which ObserveXRPC
// would otherwise do twice per request. Children are resolved when first
// used, not in advance, so that a scrape lists only series that happened.
type xrpcSeries struct {
	label    string
	requests [len(statusClasses)]atomic.Pointer[prometheus.Counter]
	duration atomic.Pointer[prometheus.Observer]
}

// New creates the collectors and registers them in a new registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		xrpcRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "xrpc", Name: "requests_total",
			Help: "XRPC requests by method NSID (unknown methods as \"other\") and response status class.",
		}, []string{"nsid", "status"}),
		xrpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "xrpc", Name: "request_duration_seconds",
			Help:    "XRPC request duration by method NSID (unknown methods as \"other\").",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"nsid"}),
		xrpcUnavail: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "xrpc", Name: "unavailable_total",
			Help: "XRPC requests answered 503: a backend did not answer (the store, the DID resolver, the replay store, a fail_closed rate limit) or the node is shutting down.",
		}),
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "retention", Name: "purged_total",
			Help: "Rows removed by retention passes, by kind (messages, events, welcomes, key_packages, idempotency).",
		}, []string{"kind"}),
		pools: newStorePools(),
		rateDecisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "ratelimit", Name: "decisions_total",
			Help: "Rate-limit decisions by zone, outcome (allowed, limited) and the backend that decided (local, shared, local_fallback, fail_open, fail_closed).",
		}, []string{"zone", "outcome", "backend"}),
		adaptive: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "ratelimit", Name: "adaptive_decisions_total",
			Help: "Decisions of rate-limit zone modifiers by zone, signal (new_account, high_churn, large_group) and outcome (allowed, limited).",
		}, []string{"zone", "signal", "outcome"}),
		powChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "pow", Name: "checks_total",
			Help: "Proof-of-work checks by outcome (ok, missing, malformed, insufficient, expired, replayed, unavailable).",
		}, []string{"outcome"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "backend_errors_total",
			Help: "Errors talking to a backend (redis, postgres, sqlite, did_resolver) by backend and operation.",
		}, []string{"backend", "operation"}),
		backendState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "backend_up",
			Help: "1 while a shared backend answers, 0 while cairn runs on its fallback.",
		}, []string{"backend"}),
		authOutcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "auth", Name: "requests_total",
			Help: "Authentication outcomes by kind (client, operator) and reason (ok, or the fixed failure reason, e.g. expired, replayed, bad_signature).",
		}, []string{"kind", "reason"}),
	}
	m.Registry.MustRegister(m.xrpcRequests, m.xrpcDuration, m.xrpcUnavail, m.purged, m.pools, m.rateDecisions, m.adaptive, m.powChecks, m.backendErrors, m.backendState, m.authOutcomes)
	for _, k := range retentionKinds {
		m.purged.WithLabelValues(k)
	}
	for _, b := range knownBackendErrors {
		m.backendErrors.WithLabelValues(b[0], b[1])
	}
	m.Realtime = newRealtime(m.Registry)
	m.registerOperations()
	m.Push = newPush(m.Registry)
	m.xrpcSeries = map[string]*xrpcSeries{}
	for _, nsid := range xrpc.KnownNSIDs() {
		m.xrpcSeries[nsid] = &xrpcSeries{label: nsid}
	}
	m.xrpcOther = &xrpcSeries{label: xrpc.OtherNSID}
	return m
}

// PreregisterAuthReasons creates the series of every auth reason at zero,
// so dashboards and alerts see them before the first failure.
func (m *Metrics) PreregisterAuthReasons(kind string, reasons []string) {
	for _, r := range reasons {
		m.authOutcomes.WithLabelValues(kind, r)
	}
}

// AuthOutcome records one authentication attempt. kind is "client" or
// "operator"; reason is "ok" or one of the verifier's fixed failure reasons.
func (m *Metrics) AuthOutcome(kind, reason string) {
	m.authOutcomes.WithLabelValues(kind, reason).Inc()
}

// ObserveXRPC records one XRPC request. nsid is the method as requested; it is
// reduced to the bounded label set here.
func (m *Metrics) ObserveXRPC(nsid string, status int, took time.Duration) {
	s, ok := m.xrpcSeries[nsid]
	if !ok {
		s = m.xrpcOther
	}
	class := statusClassIndex(status)
	requests := s.requests[class].Load()
	if requests == nil {
		c := m.xrpcRequests.WithLabelValues(s.label, statusClasses[class])
		requests = &c
		s.requests[class].Store(requests)
	}
	duration := s.duration.Load()
	if duration == nil {
		o := m.xrpcDuration.WithLabelValues(s.label)
		duration = &o
		s.duration.Store(duration)
	}
	(*requests).Inc()
	(*duration).Observe(took.Seconds())
	if status == http.StatusServiceUnavailable {
		m.xrpcUnavail.Inc()
	}
}

// knownBackendErrors are the backend and operation pairs whose error series
// exist at zero from the start, so that a dashboard shows a flat line before
// the first failure. Worker panics add their worker's name as operation.
var knownBackendErrors = [][2]string{{"redis", "ratelimit"}, {"ratelimit", "allow"}, {"store", "retention"}, {"store", "keypackage_stock"}}

// retentionKinds are the kind label values of cairn_retention_purged_total;
// their series exist at zero from the start, so a dashboard shows a flat line
// rather than "No data" before the first purge.
var retentionKinds = []string{"messages", "events", "welcomes", "key_packages", "idempotency", "device_additions", "chat_requests"}

// RetentionPurged records the rows one retention pass removed; kind is one of
// retentionKinds.
func (m *Metrics) RetentionPurged(kind string, n int64) {
	if n > 0 && slices.Contains(retentionKinds, kind) {
		m.purged.WithLabelValues(kind).Add(float64(n))
	}
}

// ZoneDecisions counts the rate-limit decisions of one zone. It caches the
// zone's label children, so that a decision costs no label lookup; make one
// per zone when the zone is provisioned.
type ZoneDecisions struct {
	vec  *prometheus.CounterVec
	zone string
	// counters[allowed][i] counts decisions by decisionBackends[i].
	counters [2][len(decisionBackends)]atomic.Pointer[prometheus.Counter]
}

// decisionBackends are the decision sources of the limiter, as labels.
var decisionBackends = [...]string{"local", "shared", "local_fallback", "fail_open", "fail_closed"}

// RateLimitZone returns the decision counters of zone, which must be an
// operator-configured zone name, never a key.
func (m *Metrics) RateLimitZone(zone string) *ZoneDecisions {
	return &ZoneDecisions{vec: m.rateDecisions, zone: zone}
}

// Record counts one decision. backend is one of the fixed decision sources
// of the limiter.
func (d *ZoneDecisions) Record(allowed bool, backend string) {
	outcome, a := "limited", 0
	if allowed {
		outcome, a = "allowed", 1
	}
	i := slices.Index(decisionBackends[:], backend)
	if i < 0 {
		d.vec.WithLabelValues(d.zone, outcome, backend).Inc()
		return
	}
	c := d.counters[a][i].Load()
	if c == nil {
		counter := d.vec.WithLabelValues(d.zone, outcome, backend)
		c = &counter
		d.counters[a][i].Store(c)
	}
	(*c).Inc()
}

// ModifierDecisions counts the decisions of one zone's modifier.
type ModifierDecisions struct {
	allowed, limited prometheus.Counter
}

// RateLimitModifier returns the decision counters of zone's modifier for
// signal; zone is an operator-configured zone name and signal one of the
// fixed signal names, never a key.
func (m *Metrics) RateLimitModifier(zone, signal string) *ModifierDecisions {
	return &ModifierDecisions{
		allowed: m.adaptive.WithLabelValues(zone, signal, "allowed"),
		limited: m.adaptive.WithLabelValues(zone, signal, "limited"),
	}
}

// Record counts one decision; the backend is counted by the zone's own
// decisions.
func (d *ModifierDecisions) Record(allowed bool, _ string) {
	if allowed {
		d.allowed.Inc()
	} else {
		d.limited.Inc()
	}
}

// PoWCheck counts one proof-of-work check by its outcome, one of the
// fixed reasons of internal/pow.
func (m *Metrics) PoWCheck(outcome string) { m.powChecks.WithLabelValues(outcome).Inc() }

// PreregisterPoWOutcomes creates the proof-of-work series at zero.
func (m *Metrics) PreregisterPoWOutcomes(outcomes []string) {
	for _, o := range outcomes {
		m.powChecks.WithLabelValues(o)
	}
}

// BackendError records a failed call to a backend.
func (m *Metrics) BackendError(backend, operation string) {
	m.backendErrors.WithLabelValues(backend, operation).Inc()
}

// BackendUp records whether a shared backend currently answers.
func (m *Metrics) BackendUp(backend string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.backendState.WithLabelValues(backend).Set(v)
}

// statusClasses are the status class labels, indexed by statusClassIndex.
var statusClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

func statusClassIndex(status int) int {
	if status < 100 || status > 599 {
		return 0
	}
	return status / 100
}

// StatusClass renders an HTTP status as its class: "2xx", "4xx", ….
func StatusClass(status int) string {
	return statusClasses[statusClassIndex(status)]
}
