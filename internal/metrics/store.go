package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// poolSource is the store whose pools a scrape reads.
type poolSource struct {
	backend string
	stats   func() []store.PoolStats
}

// storePools reports the store's connection pools at scrape time. Its labels
// are the backend (postgres, sqlite) and the pool's fixed name.
type storePools struct {
	src                         atomic.Pointer[poolSource]
	conns, max, waits, waitSecs *prometheus.Desc
	groups, grouped             *prometheus.Desc
}

func newStorePools() *storePools {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "store", name), help, labels, nil)
	}
	return &storePools{
		conns:    desc("pool_connections", "Store connections by backend, pool (main; read, write) and state (in_use, idle).", "backend", "pool", "state"),
		max:      desc("pool_max_connections", "The connection limit of each store pool (0: unlimited).", "backend", "pool"),
		waits:    desc("pool_waits_total", "Connection acquisitions that had to wait for a free connection, by backend and pool.", "backend", "pool"),
		waitSecs: desc("pool_wait_seconds_total", "Time spent waiting for a store connection, by backend and pool.", "backend", "pool"),
		groups:   desc("group_commits_total", "SQLite group commits (transactions of the single writer)."),
		grouped:  desc("group_commit_writes_total", "Writes carried by SQLite group commits; divided by cairn_store_group_commits_total, the mean group size."),
	}
}

// Describe implements prometheus.Collector.
func (p *storePools) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{p.conns, p.max, p.waits, p.waitSecs, p.groups, p.grouped} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (p *storePools) Collect(ch chan<- prometheus.Metric) {
	src := p.src.Load()
	if src == nil {
		return
	}
	for _, s := range src.stats() {
		b := src.backend
		ch <- prometheus.MustNewConstMetric(p.conns, prometheus.GaugeValue, float64(s.InUse), b, s.Pool, "in_use")
		ch <- prometheus.MustNewConstMetric(p.conns, prometheus.GaugeValue, float64(s.Idle), b, s.Pool, "idle")
		ch <- prometheus.MustNewConstMetric(p.max, prometheus.GaugeValue, float64(s.Max), b, s.Pool)
		ch <- prometheus.MustNewConstMetric(p.waits, prometheus.CounterValue, float64(s.WaitCount), b, s.Pool)
		ch <- prometheus.MustNewConstMetric(p.waitSecs, prometheus.CounterValue, s.WaitDuration.Seconds(), b, s.Pool)
		if b == "sqlite" && s.Pool == "write" {
			ch <- prometheus.MustNewConstMetric(p.groups, prometheus.CounterValue, float64(s.Groups))
			ch <- prometheus.MustNewConstMetric(p.grouped, prometheus.CounterValue, float64(s.GroupedWrites))
		}
	}
}

// WatchStorePools makes scrapes report the pools of the open store; backend
// is "postgres" or "sqlite". A store that does not report its pools, or a
// second call with the same store after a reload, is harmless.
func (m *Metrics) WatchStorePools(backend string, st any) {
	if ps, ok := st.(store.PoolStatser); ok {
		m.pools.src.Store(&poolSource{backend: backend, stats: ps.PoolStats})
	}
}
