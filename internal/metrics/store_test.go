package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

type fakePools []store.PoolStats

func (f fakePools) PoolStats() []store.PoolStats { return f }

// TestStorePoolsAreReportedAtScrape checks the pool collector: nothing before
// a store is watched, then each pool's gauges and counters, and the group
// commit counters only for SQLite's writer.
func TestStorePoolsAreReportedAtScrape(t *testing.T) {
	m := New()
	if n, err := testutil.GatherAndCount(m.Registry, "cairn_store_pool_connections"); err != nil || n != 0 {
		t.Fatalf("pool series before a store is watched: %d (%v)", n, err)
	}
	m.WatchStorePools("sqlite", fakePools{
		{Pool: "read", Max: 4, InUse: 1, Idle: 2, WaitCount: 3, WaitDuration: 1500 * time.Millisecond},
		{Pool: "write", Max: 1, InUse: 1, Groups: 10, GroupedWrites: 25},
	})
	want := `
# HELP cairn_store_group_commit_writes_total Writes carried by SQLite group commits; divided by cairn_store_group_commits_total, the mean group size.
# TYPE cairn_store_group_commit_writes_total counter
cairn_store_group_commit_writes_total 25
# HELP cairn_store_pool_wait_seconds_total Time spent waiting for a store connection, by backend and pool.
# TYPE cairn_store_pool_wait_seconds_total counter
cairn_store_pool_wait_seconds_total{backend="sqlite",pool="read"} 1.5
cairn_store_pool_wait_seconds_total{backend="sqlite",pool="write"} 0
# HELP cairn_store_pool_connections Store connections by backend, pool (main; read, write) and state (in_use, idle).
# TYPE cairn_store_pool_connections gauge
cairn_store_pool_connections{backend="sqlite",pool="read",state="idle"} 2
cairn_store_pool_connections{backend="sqlite",pool="read",state="in_use"} 1
cairn_store_pool_connections{backend="sqlite",pool="write",state="idle"} 0
cairn_store_pool_connections{backend="sqlite",pool="write",state="in_use"} 1
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"cairn_store_group_commit_writes_total", "cairn_store_pool_wait_seconds_total", "cairn_store_pool_connections"); err != nil {
		t.Error(err)
	}
	m.WatchStorePools("postgres", fakePools{{Pool: "main", Max: 8, WaitCount: 2}})
	if n, _ := testutil.GatherAndCount(m.Registry, "cairn_store_group_commits_total"); n != 0 {
		t.Errorf("PostgreSQL reports %d group-commit series", n)
	}
	if got, _ := testutil.GatherAndCount(m.Registry, "cairn_store_pool_waits_total"); got != 1 {
		t.Errorf("waits series after switching to PostgreSQL: %d, want 1", got)
	}
}
