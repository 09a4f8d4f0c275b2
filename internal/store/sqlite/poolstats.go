package sqlite

import (
	"database/sql"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// PoolStats reports the reader pool and the single writer, with the group
// commit's counts on the writer, for metrics.
func (s *Store) PoolStats() []store.PoolStats {
	w := dbStats("write", s.w.Stats())
	w.Groups, w.GroupedWrites = s.gc.groups.Load(), s.gc.grouped.Load()
	return []store.PoolStats{dbStats("read", s.r.db.Stats()), w}
}

func dbStats(pool string, st sql.DBStats) store.PoolStats {
	return store.PoolStats{Pool: pool, Max: st.MaxOpenConnections, InUse: st.InUse, Idle: st.Idle,
		WaitCount: st.WaitCount, WaitDuration: st.WaitDuration}
}

var _ store.PoolStatser = (*Store)(nil)
